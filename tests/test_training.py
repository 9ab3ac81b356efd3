"""course_utils.training: one rule for weights (fp32 on the training device), whatever the checkpoint's dtype."""

import inspect
import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
from trl.models import utils as trl_utils

from course_utils import training
from course_utils.data import load_bundled


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory, tiny_model_dir):
    """A copy of the tiny model saved the way SmolLM2 is stored on the Hub: bf16 safetensors."""
    path = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("bf16") / "tiny")
    AutoModelForCausalLM.from_pretrained(path).to(torch.bfloat16).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"
    return path


def test_load_model_gives_fp32_weights(bf16_checkpoint):
    # Why the rule exists: transformers 5 loads a checkpoint in its stored dtype when no dtype is given.
    assert AutoModelForCausalLM.from_pretrained(bf16_checkpoint).dtype == torch.bfloat16
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


def dpo_trainer(model_dir, pairs, out, seed: int = 0, callbacks: tuple = (), **settings) -> DPOTrainer:
    """A DPO trainer for 3 steps of 2 pairs on the CPU, with the course's common arguments, `seed` and `settings`."""
    args = training.common_args(out, seed=seed) | {"logging_steps": 1, "max_steps": 3, "per_device_train_batch_size": 2}
    args = DPOConfig(**args | settings, max_length=128, learning_rate=1e-3, use_cpu=True, disable_tqdm=True)
    model, tokenizer = training.load_model(model_dir, device="cpu"), AutoTokenizer.from_pretrained(model_dir)
    return DPOTrainer(model, args=args, train_dataset=pairs, processing_class=tokenizer, callbacks=list(callbacks))


def dpo_log(model_dir, pairs, out, seed: int) -> list[float]:
    """Loss and gradient norm of each of `dpo_trainer`'s 3 steps."""
    trainer = dpo_trainer(model_dir, pairs, out, seed)
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


def test_the_silenced_deprecations_are_trls_own_and_still_there():
    # Silenced: the deprecated gradient-checkpointing aliases TRL itself calls. Once it stops, a learner's call warns.
    source = inspect.getsource(trl_utils.disable_gradient_checkpointing)
    called = set(re.findall(r"\.(is_gradient_checkpointing|gradient_checkpointing_(?:enable|disable))\b", source))
    assert called, "TRL no longer calls the deprecated aliases: remove TRL_OWN_DEPRECATIONS from course_utils.training"
    for name in called:
        assert re.match(training.TRL_OWN_DEPRECATIONS, f"`{name}` is deprecated and will be removed in v6.")
    assert not re.match(training.TRL_OWN_DEPRECATIONS, "`gradient_checkpointing` is deprecated")  # configs still warn


def test_base_tokenizer_gets_chatml_and_a_pad_token(tiny_model_dir, tmp_path):
    # Saved like SmolLM2-135M's: no chat template, no pad token.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template, tokenizer.pad_token = None, None
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    ready = training.load_tokenizer(tmp_path)
    assert ready.pad_token == ready.eos_token and ready.pad_token_id is not None
    text = ready.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")


def test_token_comes_from_the_environment_or_colab_secrets(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert training.hf_token() is None  # not in Colab, no variable
    secrets = {"HF_TOKEN": "hf_secret"}
    colab = types.ModuleType("google.colab")  # Colab's userdata, whose get raises SecretNotFoundError when missing
    colab.userdata = types.SimpleNamespace(
        get=secrets.__getitem__, SecretNotFoundError=KeyError, NotebookAccessError=PermissionError
    )
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert training.hf_token() == "hf_secret"  # Colab's secret
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert training.hf_token() == "hf_env"  # the environment first
    monkeypatch.delenv("HF_TOKEN")
    secrets.clear()
    assert training.hf_token() is None  # no such secret: no push, no error


def test_each_notebook_pushes_to_its_own_repo():
    notebooks = Path(__file__).resolve().parents[1] / "2_preference_alignment" / "notebooks"
    repos = {}
    for name in ("dpo", "orpo"):
        text = (notebooks / f"{name}_finetuning_example.ipynb").read_text(encoding="utf-8")
        repos[name] = re.findall(r'hub_model_id=\\"([^\\"]+)\\"', text)
        assert len(repos[name]) == 1, f"{name}: one hub_model_id, in the training config"
        assert "push_to_hub(token=token)" in text and "hf_token()" in text
    assert repos["dpo"] != repos["orpo"], "DPO and ORPO would overwrite each other's model"
