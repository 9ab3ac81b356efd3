"""Plumbing the notebooks share but do not teach: the trainers' common arguments and a supervised fine-tuning stage."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from course_utils.profiles import device_settings

# ChatML, the format SmolLM2-Instruct uses, so both profiles see the same conversation layout.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# TRL 1.16's DPOTrainer calls transformers' deprecated gradient-checkpointing aliases itself, on every reference pass
# (trl/models/utils.py, disable_gradient_checkpointing), whatever the config says: nothing a learner can change.
# Silenced until TRL moves to the new names; a test fails once it has, so that this line goes.
TRL_OWN_DEPRECATIONS = r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable)` is"
warnings.filterwarnings("ignore", message=TRL_OWN_DEPRECATIONS, category=FutureWarning)


def load_model(path: str | Path, device: str | None = None) -> PreTrainedModel:
    """A model in fp32 on the training device, whatever dtype its checkpoint was stored in."""
    # fp32 master weights, bf16/fp16 only in the computation: SmolLM2 is stored in bf16, where an update of 1e-6 to a
    # weight of 0.04 rounds away to nothing
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.to(device or device_settings()["device"])


def load_tokenizer(path: str | Path, revision: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer at `path`, ready for chat pairs: a base model's gets ChatML turns and pads with its eos token."""
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    if tokenizer.chat_template is None:  # a base model (SmolLM2-135M) was never trained on conversations
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:  # nor has it a pad token, which batching pairs of different lengths needs
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def hf_token() -> str | None:
    """A Hugging Face token: `HF_TOKEN` from the environment, else Colab's secret of that name, else None."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    try:
        from google.colab import userdata
    except ImportError:  # not in Colab
        return None
    try:
        return userdata.get("HF_TOKEN")
    except (userdata.SecretNotFoundError, userdata.NotebookAccessError):  # no such secret, or access not granted
        return None


def common_args(output_dir: str | Path, seed: int = 0) -> dict:
    """Plumbing every trainer in the course shares: output folder, seed, logging every 5 steps, no checkpoints."""
    return {"output_dir": str(output_dir), "seed": seed, "report_to": "none", "save_strategy": "no", "logging_steps": 5}


def precision(device: dict) -> dict:
    """The mixed-precision flags of `device_settings()`'s answer, as `TrainingArguments` takes them."""
    return {key: device[key] for key in ("use_cpu", "bf16", "fp16")}


def sft(
    model_path: str | Path,
    dataset: Dataset,
    output_dir: str | Path,
    settings: dict,
    seed: int = 0,
    device: dict | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[str, dict]:
    """Supervised fine-tuning on prompt/completion data; saves model and tokenizer, returns their folder and metrics."""
    # The offline warm start (standing in for SmolLM2-Instruct's instruction tuning) and SFT→DPO's first stage
    model = load_model(model_path)
    tokenizer = tokenizer or load_tokenizer(model_path)
    device = device or device_settings(cpu_bf16=False)
    args = SFTConfig(**{**common_args(output_dir, seed), "logging_steps": 50}, **precision(device), **settings)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.save_model(str(output_dir))
    return str(output_dir), {**metrics, "global_step": trainer.state.global_step}
