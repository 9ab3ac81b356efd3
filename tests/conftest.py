"""Fixtures the tests share: the tiny model, the bundled pairs, and each notebook executed once per session.

The notebooks run from `notebook_run`, into a temporary folder, the first time a test asks for them: a plain
`pytest` never reads the runs a learner (or an earlier session) left in `notebooks/runs/`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils.data import format_hh_rlhf, load_bundled
from course_utils.tiny_model import build_tiny_model
from tools.run_notebook import execute

# TRL's ORPO lives in trl.experimental and warns on import; every test (and every subprocess it starts) runs silenced.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# How each profile runs under test: offline in full; local (real SmolLM2, real pairs) capped to a couple of steps.
PROFILE_ENV = {
    "offline": {"COURSE_PROFILE": "offline", "COURSE_SMOKE": ""},
    "local": {"COURSE_PROFILE": "local", "COURSE_SMOKE": "1", "HF_HUB_OFFLINE": "1"},
}


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
def notebook_run(tmp_path_factory):
    """`notebook_run("dpo", "offline")`: the notebook executed once per session; its metrics and run folder.

    A notebook that fails is not executed again for the next test that asks: its error is raised again.
    """
    done: dict[tuple[str, str], tuple[dict, Path] | Exception] = {}

    def run(name: str, profile: str) -> tuple[dict, Path]:
        key = (name, profile)
        if key not in done:
            root = tmp_path_factory.mktemp(f"{name}-{profile}")
            try:
                done[key] = (execute(name, root, env=PROFILE_ENV[profile], echo=False), root / f"{name}-{profile}")
            except Exception as error:  # kept, and raised again for every test that asks
                done[key] = error
        if isinstance(done[key], Exception):
            raise done[key]
        return done[key]

    return run


# Keys whose values depend on the machine or the moment, not on what a run computes: times, memory, where it ran.
VARYING_KEYS = ("memory_kind", "hardware")


def metric_differences(a, b, rel: float = 1e-3, abs: float = 5e-4, path: str = "") -> list[str]:
    """Where two metrics structures differ, as `path: a != b` lines (empty when they agree).

    Floats agree within `rel`/`abs` (training on another machine or library build rounds differently); ints, strings,
    bools and None must be equal. Keys ending in `_s` or `_mb` and those in `VARYING_KEYS` are not compared.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in {**a, **b} if not k.endswith(("_s", "_mb")) and k not in VARYING_KEYS]
        found = []
        for key in keys:
            if key not in a or key not in b:
                found.append(f"{path}.{key}: only in {'the first' if key in a else 'the second'}")
            else:
                found += metric_differences(a[key], b[key], rel, abs, f"{path}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in metric_differences(x, y, rel, abs, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        if isinstance(a, float) or isinstance(b, float):
            agree = math.isclose(a, b, rel_tol=rel, abs_tol=abs)
        else:
            agree = a == b
    else:
        agree = type(a) is type(b) and a == b
    return [] if agree else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture(scope="session")
def differences():
    """`metric_differences`: compare metrics of two runs with a tolerance on floats, ignoring times and memory."""
    return metric_differences
