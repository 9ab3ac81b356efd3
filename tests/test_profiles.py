"""Profile choice: an explicit COURSE_PROFILE wins; otherwise never hang, fall back to offline."""

import dataclasses
import json
import re
import socket
import time
from pathlib import Path

import pytest
from standin_hub import serve

from course_utils import profiles


def test_course_profile_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "hub")
    profile, reason = profiles.choose_profile()
    assert profile.name == "hub" and "COURSE_PROFILE" in reason
    monkeypatch.setenv("COURSE_PROFILE", "Offline ")
    assert profiles.choose_profile()[0].name == "offline"


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cloud")
    with pytest.raises(ValueError, match="'cloud' is not one of"):
        profiles.choose_profile()


def test_hub_with_gpu_and_hub_local_with_gpu_only_offline_on_cpu(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(profiles, "hub_reachable", lambda: True)
    assert profiles.choose_profile()[0].name == "offline"  # a CPU trains the small world, Hub or not
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    profile, reason = profiles.choose_profile()
    assert profile.name == "local" and "did not answer" in reason
    monkeypatch.setattr(profiles, "hub_reachable", lambda: True)
    assert profiles.choose_profile()[0].name == "hub"


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_smoke_caps_rows_and_replies_and_keeps_every_other_value(monkeypatch, name):
    monkeypatch.setenv("COURSE_PROFILE", name)
    monkeypatch.setenv("COURSE_SMOKE", "1")
    profile, reason = profiles.choose_profile()
    assert "COURSE_SMOKE" in reason
    full = profiles.PROFILES[name]
    capped = {
        key: cap if getattr(full, key) is None else min(cap, getattr(full, key))
        for key, cap in profiles.SMOKE_ROWS.items()
    }
    assert {key: getattr(profile, key) for key in profiles.SMOKE_ROWS} == capped  # a cap: offline's 0 stays 0
    assert profile.max_new_tokens == min(full.max_new_tokens, profiles.SMOKE_REPLY_TOKENS) < full.max_new_tokens
    uncapped = dataclasses.replace(profile, max_new_tokens=full.max_new_tokens)
    assert dataclasses.replace(uncapped, **{key: getattr(full, key) for key in profiles.SMOKE_ROWS}) == full
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert profiles.choose_profile()[0] == full


def test_silent_hub_does_not_hang(monkeypatch):
    # A loopback server that accepts connections and never answers: only the timeout ends the probe.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        start = time.monotonic()
        assert profiles.hub_reachable(timeout=0.5) is False
        assert time.monotonic() - start < 1.5


def test_a_slow_name_lookup_is_bounded_too(monkeypatch):
    # urllib's timeout does not cover the name lookup: a resolver that takes 5 s must not make the probe take 5 s.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(5) or [])
    start = time.monotonic()
    assert profiles.hub_reachable(timeout=0.5) is False
    assert time.monotonic() - start < 1.5


def test_the_probe_asks_hf_endpoint(monkeypatch, tmp_path):
    # A mirror (or the stand-in Hub) in HF_ENDPOINT is the Hub the libraries will use: it is the one to ask.
    (tmp_path / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct").mkdir(parents=True)
    (tmp_path / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct" / "config.json").write_text("{}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve(tmp_path) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert profiles.hub_reachable(timeout=5) is True
        assert "GET /api/models/HuggingFaceTB/SmolLM2-135M-Instruct" in hub.requests
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the libraries will not use the Hub: neither does the choice
        asked = len(hub.requests)
        assert profiles.hub_reachable(timeout=5) is False and len(hub.requests) == asked
        monkeypatch.delenv("COURSE_PROFILE", raising=False)
        monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: True)
        profile, reason = profiles.choose_profile()
        assert profile.name == "local" and "HF_HUB_OFFLINE" in reason


def test_profiles_hold_no_hyperparameter_and_name_a_recipe_row():
    """Hyperparameters live in the notebooks' tables; a profile names the row it trains with."""
    learned = {"learning_rate", "beta", "num_train_epochs", "per_device_train_batch_size", "max_length", "warmup_steps"}
    for name, profile in profiles.PROFILES.items():
        assert not learned & set(dataclasses.asdict(profile)), f"{name}: a hyperparameter in profiles.yaml"
        assert profile.recipe in ("hub", "offline"), name
    assert profiles.PROFILES["local"].recipe == profiles.PROFILES["hub"].recipe  # one model, one recipe


def test_no_code_asks_which_profile_runs():
    """Notebooks, scripts and the package read a profile's values and switches, never its name."""
    root = Path(__file__).resolve().parents[1]
    sources = [*root.glob("course_utils/*.py"), *root.glob("2_preference_alignment/**/*.py")]
    sources += [*root.glob("benchmarks/*.py"), *root.glob("tools/*.py")]
    branch = re.compile(r"\bprofile\.name\s*(?:==|!=|in\b)|\.name\s*==\s*[\"'](?:offline|local|hub)[\"']")
    texts = {path: path.read_text(encoding="utf-8") for path in sources}
    for path in (root / "2_preference_alignment" / "notebooks").glob("*.ipynb"):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts[path] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    found = [f"{path.relative_to(root)}: {m[0]}" for path, text in texts.items() for m in branch.finditer(text)]
    assert not found, "read a named setting instead:\n" + "\n".join(found)
    assert branch.search('if profile.name == "offline":')  # the pattern finds what it looks for


CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}\n"


@pytest.mark.parametrize(
    ("extra", "native"),
    [("avx512_bf16 avx512_vnni", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False), ("", False)],
)
def test_cpu_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch, tmp_path, extra, native):
    # AVX512 without the BF16 extension only emulates bf16 (PyTorch's mkldnn check says True there too): no autocast.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert profiles.cpu_has_native_bf16(cpuinfo) is native
    monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(profiles.torch.backends.mps, "is_available", lambda: False)
    assert profiles.device_settings() == {"device": "cpu", "use_cpu": True, "bf16": native, "fp16": False}
    assert profiles.device_settings(cpu_bf16=False)["bf16"] is False  # the offline profile keeps fp32


def test_no_cpuinfo_means_no_cpu_autocast(tmp_path):
    assert profiles.cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), (False, True)), ((8, 0), (True, False)), ((9, 0), (True, False))]
)
def test_gpus_get_bf16_from_ampere_on_and_fp16_before(monkeypatch, capability, expected):
    # A Colab T4 (7.5) emulates bf16, and torch.cuda.is_bf16_supported() says True there: the choice must not trust it.
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(profiles.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(profiles.torch.cuda, "get_device_capability", lambda *a: capability)
    settings = profiles.device_settings()
    assert (settings["bf16"], settings["fp16"]) == expected and settings["device"] == "cuda"
