"""The two ways to run the course, in one place: `hub` (SmolLM2, Anthropic/hh-rlhf) and `offline` (the bundled world).

Both profiles go through the same loading, formatting and training code; only these settings differ.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field

import torch

HUB_PROBE = "https://huggingface.co/api/models/HuggingFaceTB/SmolLM2-135M-Instruct"

# What the hub recipes share: 16 sequences (pairs) per optimizer update, HH-RLHF-length inputs, checkpointing on.
# Weights stay fp32 and `device_settings()` adds bf16 or fp16 autocast: the recipe `benchmarks/bench.py` measures.
HUB_BATCH = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "max_length": 1024,
    "warmup_steps": 0.1,
    "gradient_checkpointing": True,
}
# The original module's DPO settings, in fp32: what `benchmarks/bench.py` compares the recipe with.
ORIGINAL_BATCH = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "max_length": 1536,
    "warmup_steps": 0.1,
    "gradient_checkpointing": True,
}


@dataclass(frozen=True)
class Profile:
    """Everything that differs between running online on a GPU and running offline on a laptop or in CI."""

    name: str
    instruct_model: str  # the DPO notebook's starting point: instruction-tuned
    base_model: str  # the ORPO notebook's starting point: no instruction tuning
    dataset: str  # Hub id, or "bundled" for the offline world
    train_rows: int | None  # None: every row
    test_rows: int | None
    dpo: dict = field(default_factory=dict)  # DPOConfig hyperparameters that work for this profile
    sft: dict = field(default_factory=dict)  # SFTConfig: the offline warm start, and the SFT stage of SFT→DPO
    orpo: dict = field(default_factory=dict)  # ORPOConfig hyperparameters, from a base model in one stage


PROFILES = {
    "hub": Profile(
        name="hub",
        instruct_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        base_model="HuggingFaceTB/SmolLM2-135M",
        dataset="Anthropic/hh-rlhf",
        train_rows=4000,
        test_rows=200,
        # The SmolLM2 DPO recipe (alignment-handbook, recipes/smollm2/dpo/config_smol.yaml).
        dpo={
            "learning_rate": 1e-6,
            "beta": 0.5,
            "num_train_epochs": 1,
            **HUB_BATCH,
        },
        # The SmolLM2 SFT recipe (alignment-handbook, recipes/smollm2/sft/config_smol.yaml).
        sft={
            "learning_rate": 1e-3,
            "num_train_epochs": 2,
            **HUB_BATCH,
        },
        # The ORPO authors' learning rate and λ for Mistral-ORPO-β (xfactlab/orpo, scripts/run_mistral_orpo_beta.sh),
        # with the batch and length of the DPO recipe.
        orpo={
            "learning_rate": 5e-6,
            "beta": 0.1,
            "num_train_epochs": 1,
            **HUB_BATCH,
        },
    ),
    "offline": Profile(
        name="offline",
        instruct_model="tiny",  # built locally by course_utils.tiny_model, then loaded from its folder
        base_model="tiny",
        dataset="bundled",
        train_rows=None,
        test_rows=None,
        # A 1M-parameter model moves far less per step than a 135M one: it needs a much larger learning rate.
        dpo={
            "learning_rate": 2e-4,
            "beta": 0.1,
            "num_train_epochs": 3,
            "per_device_train_batch_size": 16,
            "gradient_accumulation_steps": 1,
            "max_length": 128,
            "warmup_steps": 0.1,
            "gradient_checkpointing": False,  # a 1M-parameter model has memory to spare: skip the recomputation
        },
        sft={
            "learning_rate": 3e-3,
            "num_train_epochs": 20,
            "per_device_train_batch_size": 16,
            "warmup_steps": 0.05,
            "gradient_checkpointing": False,
        },
        # From an untrained model, ORPO must teach the language too: a large learning rate and many passes.
        orpo={
            "learning_rate": 3e-3,
            "beta": 0.1,
            "num_train_epochs": 15,
            "per_device_train_batch_size": 16,
            "max_length": 128,
            "warmup_steps": 0.05,
            "gradient_checkpointing": False,
        },
    ),
}


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers within `timeout` seconds."""
    try:
        with urllib.request.urlopen(HUB_PROBE, timeout=timeout) as response:
            return response.status == 200
    except Exception:
        return False


def choose_profile() -> tuple[Profile, str]:
    """The profile to run and why: `COURSE_PROFILE` if set, else `hub` only when the Hub answers and a GPU is here."""
    forced = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"COURSE_PROFILE={forced!r} is not one of {sorted(PROFILES)}")
        return PROFILES[forced], f"COURSE_PROFILE={forced} is set"
    if not torch.cuda.is_available():
        return PROFILES["offline"], "no CUDA GPU here (set COURSE_PROFILE=hub to train SmolLM2 anyway, slowly)"
    if not hub_reachable():
        return PROFILES["offline"], "the Hugging Face Hub did not answer within 2 s"
    return PROFILES["hub"], "a CUDA GPU is here and the Hugging Face Hub answers"


def device_settings() -> dict:
    """The device and the mixed-precision flags `TrainingArguments` accepts on it (bf16 only where it works)."""
    if torch.cuda.is_available():  # bf16 from Ampere on; older GPUs (a Colab T4) get fp16 autocast instead
        bf16 = torch.cuda.is_bf16_supported()
        return {"device": "cuda", "use_cpu": False, "bf16": bf16, "fp16": not bf16}
    if torch.backends.mps.is_available():
        return {"device": "mps", "use_cpu": False, "bf16": False, "fp16": False}
    return {"device": "cpu", "use_cpu": True, "bf16": False, "fp16": False}
