"""Fixtures the tests share: the tiny model, the bundled pairs, and what the nbval runs of `make notebooks` measured."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils.data import format_hh_rlhf, load_bundled
from course_utils.sources import build_tiny_model

RUNS = Path(__file__).resolve().parents[1] / "build" / "runs"  # COURSE_RUN_DIR of the notebook runs

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL's ORPO warns on import; tests and their subprocesses not


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The untrained 1M-parameter offline model, saved once (do not modify it: build your own copy for that)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """The untrained tiny model in eval mode and its tokenizer, loaded once (read them; do not train them)."""
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def bundled_pairs() -> Dataset:
    """The offline world's training pairs in conversational prompt/chosen/rejected form."""
    return format_hh_rlhf(load_bundled("preference_train"), verbose=False)[0]


@pytest.fixture(scope="session")
def held_out_pairs() -> Dataset:
    """The offline world's held-out pairs in conversational form."""
    return format_hh_rlhf(load_bundled("preference_test"), verbose=False)[0]


@pytest.fixture(scope="session")
def notebook_run():
    """`notebook_run("dpo", "offline")`: the metrics and run folder of that notebook's latest `make notebooks` run."""

    def run(name: str, profile: str) -> tuple[dict, Path]:
        folder = RUNS / f"hub-{name}" if profile == "hub" else RUNS  # each hub run has its stand-in Hub's log
        metrics = folder / f"{name}-{profile}" / "metrics.json"
        if not metrics.is_file():
            pytest.fail(f"no {name} run in the {profile} profile under {folder}: `make notebooks` executes them")
        return json.loads(metrics.read_text(encoding="utf-8")), metrics.parent

    return run
