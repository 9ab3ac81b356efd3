"""Profile choice: an explicit COURSE_PROFILE wins; otherwise never hang, fall back to offline."""

import dataclasses
import socket
import time

import pytest

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


def test_every_profile_has_the_same_setting_keys():
    # The notebooks read settings["key"] for every hyperparameter they show: a key missing in one profile breaks it.
    for method in ("dpo", "sft", "orpo"):
        keys = {name: sorted(getattr(p, method)) for name, p in profiles.PROFILES.items()}
        assert len({tuple(k) for k in keys.values()}) == 1, (method, keys)


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_smoke_caps_steps_and_rows_and_keeps_every_other_setting(monkeypatch, name):
    monkeypatch.setenv("COURSE_PROFILE", name)
    monkeypatch.setenv("COURSE_SMOKE", "1")
    profile, reason = profiles.choose_profile()
    assert "COURSE_SMOKE" in reason
    full = profiles.PROFILES[name]
    for method in ("dpo", "sft", "orpo"):  # the caps win; every other hyperparameter is the profile's own
        assert getattr(profile, method) == {**getattr(full, method), **profiles.SMOKE_STEPS}, method
    assert {key: getattr(profile, key) for key in profiles.SMOKE_ROWS} == profiles.SMOKE_ROWS
    uncapped = dataclasses.replace(profile, dpo=full.dpo, sft=full.sft, orpo=full.orpo)
    assert dataclasses.replace(uncapped, train_rows=full.train_rows, test_rows=full.test_rows) == full
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert profiles.choose_profile()[0] == full


def test_silent_hub_does_not_hang(monkeypatch):
    # A loopback server that accepts connections and never answers: only the timeout ends the probe.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(profiles, "HUB_PROBE", f"http://127.0.0.1:{server.getsockname()[1]}/")
        start = time.monotonic()
        assert profiles.hub_reachable(timeout=0.5) is False
        assert time.monotonic() - start < 3


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


def test_the_hub_recipes_train_the_batch_the_benchmark_measures():
    # benchmarks/bench.py measures HUB_BATCH as "the recipe": a hub setting that overrides it trains something else.
    for method in ("dpo", "sft", "orpo"):
        settings = getattr(profiles.PROFILES["hub"], method)
        assert {key: settings[key] for key in profiles.HUB_BATCH} == profiles.HUB_BATCH, method
