"""Profile choice: an explicit COURSE_PROFILE wins; otherwise never hang, fall back to offline."""

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


def test_offline_without_gpu_or_hub(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: False)
    assert profiles.choose_profile()[0].name == "offline"
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(profiles, "hub_reachable", lambda: False)
    profile, reason = profiles.choose_profile()
    assert profile.name == "offline" and "did not answer" in reason
    monkeypatch.setattr(profiles, "hub_reachable", lambda: True)
    assert profiles.choose_profile()[0].name == "hub"


def test_silent_hub_does_not_hang(monkeypatch):
    # A loopback server that accepts connections and never answers: only the timeout ends the probe.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(profiles, "HUB_PROBE", f"http://127.0.0.1:{server.getsockname()[1]}/")
        start = time.monotonic()
        assert profiles.hub_reachable(timeout=0.5) is False
        assert time.monotonic() - start < 3


def test_cpu_settings_never_ask_for_bf16(monkeypatch):
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(profiles.torch.backends.mps, "is_available", lambda: False)
    assert profiles.device_settings() == {"device": "cpu", "use_cpu": True, "bf16": False, "fp16": False}


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, (True, False)), (False, (False, True))])
def test_gpus_get_bf16_or_else_fp16_autocast(monkeypatch, bf16_supported, expected):
    # A Colab T4 has no bf16: it must get fp16 mixed precision, not fp32 (the recipe's speed) and never bf16 (fails).
    monkeypatch.setattr(profiles.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(profiles.torch.cuda, "is_bf16_supported", lambda: bf16_supported)
    settings = profiles.device_settings()
    assert (settings["bf16"], settings["fp16"]) == expected and settings["device"] == "cuda"


def test_recipe_keeps_sixteen_pairs_per_update_and_shortens_the_original():
    for batch in (profiles.HUB_BATCH, profiles.ORIGINAL_BATCH):
        assert batch["per_device_train_batch_size"] * batch["gradient_accumulation_steps"] == 16
    assert profiles.HUB_BATCH["max_length"] < profiles.ORIGINAL_BATCH["max_length"]
    assert all(profiles.PROFILES["hub"].dpo[k] == v for k, v in profiles.HUB_BATCH.items())
