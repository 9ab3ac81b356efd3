"""Profile choice: an explicit COURSE_PROFILE wins; otherwise never hang, fall back to offline."""

import socket
import time

import pytest
from standin_hub import serve

from course_utils import profiles


def test_course_profile_overrides_and_an_unknown_one_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "hub")
    profile, reason = profiles.choose_profile()
    assert profile.name == "hub" and "COURSE_PROFILE" in reason
    monkeypatch.setenv("COURSE_PROFILE", "Offline ")
    assert profiles.choose_profile()[0].name == "offline"
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


def test_a_silent_hub_or_a_slow_name_lookup_does_not_hang(monkeypatch):
    # A loopback server that accepts connections and never answers: only the timeout ends the probe.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        start = time.monotonic()
        assert profiles.hub_reachable(timeout=0.5) is False and time.monotonic() - start < 1.5
    # urllib's timeout does not cover the name lookup: a resolver that takes 5 s must not make the probe take 5 s.
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(5) or [])
    start = time.monotonic()
    assert profiles.hub_reachable(timeout=0.5) is False and time.monotonic() - start < 1.5


def test_the_probe_asks_hf_endpoint(monkeypatch, tmp_path):
    # A mirror (or the stand-in Hub) in HF_ENDPOINT is the Hub the libraries will use: it is the one to ask.
    (model := tmp_path / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct").mkdir(parents=True)
    (model / "config.json").write_text("{}")
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


CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}\n"


@pytest.mark.parametrize(
    ("extra", "native"),
    [
        ("avx512_bf16 avx512_vnni", True),
        ("amx_bf16 amx_tile", True),
        ("avx512_vnni", False),
        ("", False),
        (None, False),
    ],
)
def test_cpu_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch, tmp_path, extra, native):
    # AVX512 without the BF16 extension only emulates bf16 (PyTorch's mkldnn check says True there too): no autocast.
    cpuinfo = tmp_path / "cpuinfo"
    if extra is not None:  # None: no /proc/cpuinfo to read
        cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert profiles.cpu_has_native_bf16(cpuinfo) is native
    monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(profiles.torch.backends.mps, "is_available", lambda: False)
    assert profiles.device_settings() == {"device": "cpu", "use_cpu": True, "bf16": native, "fp16": False}
    assert profiles.device_settings(cpu_bf16=False)["bf16"] is False  # the offline profile keeps fp32


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
