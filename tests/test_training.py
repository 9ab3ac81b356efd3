"""course_utils.training: one rule for weights (fp32 on the training device), whatever the checkpoint's dtype."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from course_utils import training
from course_utils.data import load_bundled


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory, tiny_model_dir):
    """A copy of the tiny model saved the way SmolLM2 is stored on the Hub: bf16 safetensors."""
    path = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("bf16") / "tiny")
    AutoModelForCausalLM.from_pretrained(path).to(torch.bfloat16).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"
    return path


def test_from_pretrained_keeps_the_stored_bf16(bf16_checkpoint):
    # Why the rule exists: transformers 5 loads a checkpoint in its stored dtype when no dtype is given.
    assert AutoModelForCausalLM.from_pretrained(bf16_checkpoint).dtype == torch.bfloat16


def test_load_model_gives_fp32_weights(bf16_checkpoint):
    model = training.load_model(bf16_checkpoint)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_load_model_puts_the_model_on_the_training_device(bf16_checkpoint, monkeypatch):
    # Evaluation runs where the weights are: a model left on the CPU would be measured there, not on the GPU.
    monkeypatch.setattr(training, "device_settings", lambda **kw: {"device": "meta"})
    assert training.load_model(bf16_checkpoint).device.type == "meta"
    assert training.load_model(bf16_checkpoint, device="cpu").device.type == "cpu"


def test_sft_trains_fp32_weights_from_a_bf16_checkpoint(bf16_checkpoint, tmp_path):
    rows = load_bundled("instruction_train").select(range(8))
    settings = {"learning_rate": 1e-3, "max_steps": 1, "per_device_train_batch_size": 4}
    out, metrics = training.sft(str(bf16_checkpoint), rows, tmp_path, settings)
    assert metrics["global_step"] == 1
    with safe_open(f"{out}/model.safetensors", "pt") as saved:
        assert {saved.get_tensor(k).dtype for k in saved.keys()} == {torch.float32}


def dpo_log(model_dir, pairs, out, seed: int) -> list[float]:
    """Loss and gradient norm of each of 3 DPO steps of 2 pairs, with the course's common arguments and `seed`."""
    args = DPOConfig(
        **{**training.common_args(out, seed=seed), "logging_steps": 1},
        max_steps=3,
        per_device_train_batch_size=2,
        max_length=128,
        learning_rate=1e-3,
        use_cpu=True,
        disable_tqdm=True,
    )
    model, tokenizer = training.load_model(model_dir, device="cpu"), AutoTokenizer.from_pretrained(model_dir)
    trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.train()
    return [log[key] for log in trainer.state.log_history if "loss" in log for key in ("loss", "grad_norm")]


def test_same_seed_same_training_other_seed_other_training(tiny_model_dir, bundled_pairs, tmp_path):
    # The lessons quote numbers a fresh notebook run must reproduce: that needs the seed to fix every random choice.
    pairs = bundled_pairs.select(range(16))
    first, again = (dpo_log(tiny_model_dir, pairs, tmp_path / name, seed=0) for name in ("a", "b"))
    other = dpo_log(tiny_model_dir, pairs, tmp_path / "c", seed=1)
    assert len(first) == 2 * 3
    assert first == pytest.approx(again, rel=1e-6)
    assert first != pytest.approx(other, rel=1e-6)  # the seed chooses the batches: another seed, other steps


def test_release_memory_runs_once_per_update(tiny_model_dir, bundled_pairs, tmp_path, monkeypatch):
    # make real's memory stays flat only if freed pages go back after every update, not once at the end.
    calls = []
    monkeypatch.setattr(training, "release_memory", lambda: calls.append(1))
    args = DPOConfig(
        **training.common_args(tmp_path, seed=0),
        max_steps=3,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        max_length=128,
        use_cpu=True,
        disable_tqdm=True,
    )
    model, tokenizer = training.load_model(tiny_model_dir, device="cpu"), AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=bundled_pairs.select(range(8)),
        processing_class=tokenizer,
        callbacks=[training.ReleaseMemory()],
    )
    trainer.train()
    assert len(calls) == trainer.state.global_step == 3


def test_the_silenced_deprecations_are_trls_own_and_still_there():
    """course_utils.training silences transformers' warnings about the gradient-checkpointing aliases because TRL itself
    calls them on every reference pass. Once TRL stops, the filter must go: a learner's own call should warn."""
    import inspect
    import re

    from trl.models import utils as trl_utils

    source = inspect.getsource(trl_utils.disable_gradient_checkpointing)
    called = set(re.findall(r"\.(is_gradient_checkpointing|gradient_checkpointing_(?:enable|disable))\b", source))
    assert called, "TRL no longer calls the deprecated aliases: remove TRL_OWN_DEPRECATIONS from course_utils.training"
    for name in called:
        assert re.match(training.TRL_OWN_DEPRECATIONS, f"`{name}` is deprecated and will be removed in v6.")
    assert not re.match(training.TRL_OWN_DEPRECATIONS, "`gradient_checkpointing` is deprecated")  # configs still warn
