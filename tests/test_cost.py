"""course_utils.cost: forward passes are counted per whole model, memory growth is seen, time is wall time."""

import os

import pytest
import torch

from course_utils import cost


def test_counts_whole_model_calls_not_layers_until_the_block_ends(tiny):
    model, _ = tiny
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), cost.measure() as m:
        model(input_ids=ids)
        model(input_ids=ids)
        model.model.layers[0].mlp(torch.zeros(1, 4, model.config.hidden_size))  # a layer alone is not a model pass
    with torch.no_grad():
        model(input_ids=ids)
    assert m["forward_passes"] == 2
    assert m["seconds"] > 0


@pytest.mark.skipif(cost.memory_kind().startswith("not measured"), reason="peak memory needs CUDA or Linux")
def test_peak_memory_sees_a_temporary_allocation():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with cost.measure() as small:
        pass
    with cost.measure() as big:
        block = torch.ones(64 * 2**20 // 4, device=device)  # 64 MB, freed before the block ends
        del block
    assert big["peak_memory_mb"] >= 60
    assert small["peak_memory_mb"] < 60


@pytest.mark.skipif(cost.memory_kind() != "peak growth of the process's resident memory (CPU)", reason="Linux only")
def test_release_memory_hands_freed_pages_back_to_the_system():
    blocks = [torch.ones(16 * 2**10) for _ in range(2048)]  # 128 MB in 64 KB tensors: the heap, not mmap
    pin = torch.ones(16 * 2**10)  # above them on the heap, so freeing them cannot shrink the heap from the top
    del blocks
    held = cost._status_mb("VmRSS")
    cost.release_memory()
    assert held - cost._status_mb("VmRSS") >= 64, "the freed 128 MB stayed in the process"
    del pin


def test_hardware_on_a_cpu_names_the_model_and_the_cores(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cost, "CPUINFO", tmp_path / "cpuinfo")
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    assert cost.hardware() == f"AMD EPYC 7763 64-Core Processor, {os.cpu_count()} cores"
