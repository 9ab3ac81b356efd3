"""Fixtures the tests share: the tiny model, the bundled pairs, and each notebook executed once per session.

The notebooks run from `notebook_run`, into a temporary folder, the first time a test asks for them: a plain
`pytest` never reads the runs a learner (or an earlier session) left in `notebooks/runs/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from course_utils.data import format_hh_rlhf, load_bundled
from course_utils.tiny_model import build_tiny_model
from tools.run_notebook import execute

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
