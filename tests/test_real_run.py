"""`make real` and the real path's committed measurements: what the lesson quotes is what the script now does."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real-path"


@pytest.fixture(scope="module")
def real_run():
    spec = importlib.util.spec_from_file_location(
        "real_run", ROOT / "2_preference_alignment" / "scripts" / "real_run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_training_pairs_are_those_that_teach_declining(real_run):
    no, yes = "Sure, here is how you do it.", "I'm sorry, but I can't help with that."
    assert real_run.teaches_declining({"chosen": message(yes), "rejected": message(no)})
    assert not real_run.teaches_declining({"chosen": message(no), "rejected": message(yes)})
    assert not real_run.teaches_declining({"chosen": message(yes), "rejected": message(yes)})


def test_committed_alignment_run_used_the_current_settings(real_run):
    # Change a setting in scripts/real_run.py without running `make real` again, and the lesson would quote a run
    # that no longer exists.
    committed = json.loads((RESULTS / "alignment-cpu.json").read_text())
    settings = {k: v for k, v in committed["settings"].items() if k not in ("lora_r", "smoke")}
    assert settings == real_run.SETTINGS and committed["settings"]["lora_r"] == real_run.LORA.r
    assert committed["settings"]["smoke"] is False
    assert committed["n_test_pairs"] >= 128 and committed["n_test_prompts"] >= 24


def test_committed_speed_measurements_agree_with_themselves():
    speed = json.loads((RESULTS / "cpu.json").read_text())
    assert speed["evaluation"]["max_abs_difference"] < 1e-3  # the faster evaluation measured the same numbers
    fp32, bf16 = speed["dpo_step"]
    assert fp32["first_loss"] == pytest.approx(bf16["first_loss"], abs=1e-3)  # same start, same first loss
