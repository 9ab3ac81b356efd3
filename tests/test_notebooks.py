"""The notebooks: stored clean, runnable unattended, linked correctly, and their measured results on target.

`make test` executes every notebook with nbval before these tests run (the notebooks folder comes first on the
pytest command line), so the metrics they wrote are fresh.
"""

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "2_preference_alignment" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
REPO = "smol-course/smol-preference-alignment"
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/([^\s\"')]+\.ipynb)")


def source(path: Path) -> str:
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["dpo_finetuning_example.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs_and_never_prompts(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "clear outputs before committing"
    text = source(path)
    assert "login(" not in text and "input(" not in text and "notebook_login" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_points_at_this_notebook(path):
    badges = BADGE.findall(source(path))
    assert badges == [(REPO, path.relative_to(ROOT).as_posix())]
    assert f"git+https://github.com/{REPO}" in source(path)  # the Colab-only install cell


def metrics(name: str, run_dir: Path = NOTEBOOK_DIR / "runs") -> dict:
    path = run_dir / name / "metrics.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: execute the notebook first (`make test` does, with nbval)")
    return json.loads(path.read_text())


def test_dpo_offline_metrics_meet_the_targets():
    m = metrics("dpo-offline")
    assert m["profile"] == "offline"
    assert m["preference_accuracy_after"] >= 0.90
    assert m["judged_score_after"] - m["judged_score_before"] >= 0.30


def test_dpo_rerun_gives_the_same_numbers(tmp_path):
    nb = nbformat.read(NOTEBOOK_DIR / "dpo_finetuning_example.ipynb", as_version=4)
    os.environ["COURSE_RUN_DIR"] = str(tmp_path)
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
        print(f"DPO notebook re-run: {time.perf_counter() - start:.0f} s")
    finally:
        del os.environ["COURSE_RUN_DIR"]
    first, again = metrics("dpo-offline"), metrics("dpo-offline", tmp_path)
    for key in ("preference_accuracy_before", "preference_accuracy_after", "judged_score_before", "judged_score_after"):
        assert again[key] == first[key], key
    assert again["eval_rewards_margins"] == pytest.approx(first["eval_rewards_margins"], abs=1e-6)
