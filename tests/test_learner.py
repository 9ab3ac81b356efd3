"""The learners' notebooks: generated from the course notebooks, solutions out, checks and revealable solutions in."""

from __future__ import annotations

import re

import nbformat
import pytest

from course_utils import checks
from tools import learner, run_notebook

SOURCES = sorted(learner.SOURCE_DIR.glob("*.ipynb"))
HEADING = re.compile(r"^### (🐢|🐕|🦁) Exercise (\d+):", re.M)


def cells(path):
    return nbformat.read(path, as_version=4).cells


def test_learner_notebooks_are_what_the_sources_give():
    assert learner.main(["--check"]) == 0, "run `python tools/learner.py` and commit the result"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_solution_line_reaches_the_learner(source):
    code = [c.source for c in cells(source) if c.cell_type == "code"]
    regions = [m[0] for c in code for m in learner.REGION.finditer(c)]
    outside = {line.strip() for c in code for line in learner.REGION.sub("", c).splitlines()}
    lines = {line.strip() for r in regions for line in r.splitlines()[1:-1]} - outside  # lines only a solution has
    lines = {line for line in lines if len(line) > 3 and not line.startswith("#")}
    assert len(regions) >= 3 and lines
    learner_code = "\n".join(c.source for c in cells(learner.LEARNER_DIR / source.name) if c.cell_type == "code")
    assert not [line for line in lines if line in learner_code]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_exercise_has_a_level_a_statement_a_cell_a_check_and_a_solution(source):
    found = HEADING.findall("\n".join(c.source for c in cells(source) if c.cell_type == "markdown"))
    assert {level for level, _ in found} == {"🐢", "🐕", "🦁"}
    assert [int(n) for _, n in found] == list(range(1, len(found) + 1))
    nb = cells(learner.LEARNER_DIR / source.name)
    assert f'{learner.REPO_PATH}exercises/{source.name}"' in nb[0].source  # the badge opens the learner's copy
    assert f"({learner.COLAB_URL}{source.name})" in nb[0].source  # and links to the version with solutions
    named = re.findall(r'NotSolved\("(Exercise \d+):', "\n".join(c.source for c in nb))
    assert named and named == sorted(named, key=lambda e: int(e.split()[1]))  # in order, none unnamed
    todo = [i for i, c in enumerate(nb) if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
    assert todo
    for i in todo:
        before = "\n".join(c.source for c in nb[max(0, i - 3) : i] if c.cell_type == "markdown")
        assert HEADING.search(before), f"cell {i}: no exercise statement just before it"
        check = next(j for j in range(i + 1, len(nb)) if nb[j].cell_type == "code" and "checks." in nb[j].source)
        assert nb[check + 1].source.startswith("<details><summary><b>Solution</b>"), f"cell {check}: no solution"


def test_a_region_becomes_a_placeholder_at_its_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\n\nY = f(1)\n"
    todo = 'raise checks.NotSolved("Exercise 9: write your code here, then run the cell again")'
    assert (
        learner.without_solution(source, "Exercise 9") == f"def f(x):\n    # YOUR CODE HERE\n    {todo}\n\n\nY = f(1)\n"
    )


def test_an_unsolved_exercise_shows_a_reminder_not_a_traceback():
    reminder = checks.NotSolved("Exercise 2: write your code here, then run the cell again")
    assert isinstance(reminder, NotImplementedError)  # what the checks catch as "not solved yet"
    shown = reminder._render_traceback_()
    assert shown == ["⏳ Not solved yet: Exercise 2: write your code here, then run the cell again"]


@pytest.mark.slow
def test_make_exercise_runs_the_learner_copy_and_names_what_is_unsolved(tmp_path, monkeypatch):
    """`make exercise` (run_notebook --learner) runs the copy in exercises/ to its end: an unsolved exercise is a
    reminder, a cell that needs its answer says so, and only a failure before any unsolved exercise is an error."""
    folder = tmp_path / "notebooks"
    (folder / "exercises").mkdir(parents=True)
    write_metrics = (
        'run = pathlib.Path(os.environ["COURSE_RUN_DIR"]) / "dpo-offline"\nrun.mkdir()\n'
        '(run / "metrics.json").write_text(json.dumps({"profile": "offline", "model": "tiny"}))'
    )
    source = [
        "import json, os, pathlib\nfrom course_utils import checks",
        learner.without_solution("### BEGIN SOLUTION\nANSWER = 1\n### END SOLUTION\n", "Exercise 1"),
        "print(ANSWER)",  # needs exercise 1's answer
        write_metrics,
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in source])
    nbformat.write(nb, folder / "exercises" / run_notebook.NOTEBOOKS["dpo"])
    monkeypatch.setattr(run_notebook, "NOTEBOOK_DIR", folder)
    result = run_notebook.execute("dpo", tmp_path / "runs", echo=False, learner=True)
    assert result["profile"] == "offline"  # it ran to its end
    assert result["unsolved"][0].startswith("cell 1: ⏳ Not solved yet: Exercise 1: write your code here")
    assert result["unsolved"][1] == "cell 2: NameError: name 'ANSWER' is not defined (it needs an exercise above)"
    assert "⏳ Not solved yet: Exercise 1" in run_notebook.headline(result)
    nb.cells.insert(1, nbformat.v4.new_code_cell("1 / 0"))  # broken before any exercise: an error, not a reminder
    nbformat.write(nb, folder / "exercises" / run_notebook.NOTEBOOKS["dpo"])
    with pytest.raises(RuntimeError, match="before any unsolved exercise:\ncell 1: ZeroDivisionError"):
        run_notebook.execute("dpo", tmp_path / "runs2", echo=False, learner=True)
