"""The plugin of the nbval runs (`pytest -p tests.nbval_course --nbval-lax ...`, see the Makefile). It adds:
- the kernels' startup file (`notebook_startup.py`);
- with COURSE_PROFILE=hub, the stand-in Hub on 127.0.0.1 for the session; what it was asked for goes to
  `$COURSE_RUN_DIR/standin-hub.json`;
- in a learners' copy, the cell an unsolved exercise stops and each failing cell after it as expected failures.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REMINDER = "⏳ Not solved yet"
_stack = ExitStack()
_hub = []
_unsolved: dict[Path, str] = {}  # learner notebook -> the first unsolved exercise's reminder


def pytest_configure(config: pytest.Config) -> None:
    """Point the kernels at the startup file; serve the stand-in Hub to a hub run."""
    os.environ["PYTHONSTARTUP"] = str(HERE / "notebook_startup.py")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL's ORPO warns on import that it is experimental
    if os.environ.get("COURSE_PROFILE") == "hub" and not os.environ.get("HF_ENDPOINT"):
        from tests.standin_hub import course_hub, serve

        root = Path(_stack.enter_context(tempfile.TemporaryDirectory(prefix="standin-hub-")))
        hub = _stack.enter_context(serve(course_hub(root / "hub")))
        _hub.append(hub)
        os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(root / "hf-home"), HF_HUB_OFFLINE="0")
        os.environ["CI"] = ""  # what a learner's machine sets: TRL then reports its use to the (stand-in) Hub


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the stand-in Hub and write down what it was asked for."""
    for hub in _hub:
        log = Path(os.environ.get("COURSE_RUN_DIR", ".")) / "standin-hub.json"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(json.dumps({"requests": hub.requests, "unserved": hub.unserved}, indent=1))
    _stack.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In a learners' copy, a cell stopped by an unsolved exercise, or failing after one, is an expected failure."""
    outcome = yield
    report = outcome.get_result()
    notebook = Path(str(item.path))
    if report.when != "call" or not report.failed or notebook.parent.name != "exercises":
        return
    text = str(report.longrepr)
    if REMINDER in text:
        _unsolved.setdefault(notebook, text[text.index(REMINDER) :].splitlines()[0])
    if notebook in _unsolved:
        report.outcome, report.wasxfail = "skipped", f"needs an exercise not solved yet ({_unsolved[notebook]})"
