"""The learners' notebooks: generated from the course notebooks, solutions out, checks and revealable solutions in."""

from __future__ import annotations

import copy
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

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
def test_every_exercise_has_a_statement_a_cell_a_check_and_a_solution(source):
    nb = cells(learner.LEARNER_DIR / source.name)
    todo = [i for i, c in enumerate(nb) if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
    assert todo
    for i in todo:
        before = "\n".join(c.source for c in nb[max(0, i - 3) : i] if c.cell_type == "markdown")
        assert HEADING.search(before), f"cell {i}: no exercise statement just before it"
        check = next(j for j in range(i + 1, len(nb)) if nb[j].cell_type == "code" and "checks." in nb[j].source)
        assert nb[check + 1].source.startswith("<details><summary><b>Solution</b>"), (
            f"cell {check}: no solution after it"
        )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_one_exercise_at_each_level_numbered_in_order(source):
    found = HEADING.findall("\n".join(c.source for c in cells(source) if c.cell_type == "markdown"))
    assert {level for level, _ in found} == {"🐢", "🐕", "🦁"}
    assert [int(n) for _, n in found] == list(range(1, len(found) + 1))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_learner_badge_opens_the_learner_notebook(source):
    first = cells(learner.LEARNER_DIR / source.name)[0].source
    assert f'{learner.REPO_PATH}exercises/{source.name}"' in first
    assert f"({learner.COLAB_URL}{source.name})" in first  # the link to the version with solutions is kept


def test_a_region_becomes_a_placeholder_at_its_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\n\nY = f(1)\n"
    todo = 'raise checks.NotSolved("Exercise 9: write your code here, then run the cell again")'
    assert (
        learner.without_solution(source, "Exercise 9") == f"def f(x):\n    # YOUR CODE HERE\n    {todo}\n\n\nY = f(1)\n"
    )


def test_the_placeholder_names_the_exercise_it_belongs_to():
    nb = nbformat.read(learner.LEARNER_DIR / SOURCES[0].name, as_version=4)
    named = re.findall(r'NotSolved\("(Exercise \d+):', "\n".join(c.source for c in nb.cells))
    assert named and named == sorted(named, key=lambda e: int(e.split()[1]))  # in order, none unnamed


def test_a_solution_without_a_check_is_refused():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"),
        ]
    )
    with pytest.raises(ValueError, match="no check cell"):
        learner.learner_version(nb, "t.ipynb")


def test_an_unsolved_exercise_shows_a_reminder_not_a_traceback():
    reminder = checks.NotSolved("Exercise 2: write your code here, then run the cell again")
    assert isinstance(reminder, NotImplementedError)  # what the checks catch as "not solved yet"
    shown = reminder._render_traceback_()
    assert shown == ["⏳ Not solved yet: Exercise 2: write your code here, then run the cell again"]


SOLUTION_CODE = re.compile(r"```python\n(.*)\n```", re.S)


def drill(notebook: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[tuple[int, int | None, int, int]]]:
    """The learner notebook with each exercise run twice: as the learner gets it, then solved (from its Solution block).

    Returns the notebook and, per exercise, the indices of (unsolved cell, its check or None, solved cell, check).
    The check runs after the unsolved cell only where the placeholders sit inside functions: a placeholder at the top
    level stops the cell, as it should, before it defines what the check reads.
    """
    cells, exercises, pending = [], [], []
    for cell in notebook.cells:
        if cell.cell_type == "code" and "# YOUR CODE HERE" in cell.source:
            pending.append(cell)
            continue
        if cell.cell_type == "code" and pending and "checks." in cell.source:
            continue  # placed with its exercise below, once the solution is known
        if cell.cell_type == "markdown" and cell.source.startswith("<details><summary><b>Solution</b>") and pending:
            unsolved = pending.pop(0)
            check = next(c for c in notebook.cells[notebook.cells.index(unsolved) + 1 :] if "checks." in c.source)
            top_level = re.search(r"^raise checks\.NotSolved", unsolved.source, re.M)
            first = len(cells)
            cells.append(nbformat.v4.new_code_cell(unsolved.source))
            if not top_level:
                cells.append(nbformat.v4.new_code_cell(check.source))
            cells.append(nbformat.v4.new_code_cell(SOLUTION_CODE.search(cell.source)[1]))
            cells.append(nbformat.v4.new_code_cell(check.source))
            exercises.append((first, None if top_level else first + 1, len(cells) - 2, len(cells) - 1))
            continue
        cells.append(cell)
    assert not pending, "an exercise without its Solution block"
    out = copy.deepcopy(notebook)
    out.cells = cells
    return out, exercises


def stdout(cell) -> str:
    outputs = cell.get("outputs", [])
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")


def errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_learner_copy_reminds_while_unsolved_and_runs_once_solved(source, tmp_path):
    """The learner's copy on the local profile, capped: each exercise first as given (a reminder, never a traceback),
    then with the solution its Solution block shows (the check passes), and the notebook runs to its end."""
    nb, exercises = drill(nbformat.read(learner.LEARNER_DIR / source.name, as_version=4))
    assert len(exercises) >= 3
    # local: real SmolLM2 writes real replies (the offline model, two steps into training, answers with nothing).
    env = {**os.environ, "COURSE_PROFILE": "local", "COURSE_SMOKE": "1", "COURSE_RUN_DIR": str(tmp_path)}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TRL_EXPERIMENTAL_SILENCE="1")
    # The runner's first cells, as in every notebook run of the tests: two optimizer steps, deprecations as errors.
    drilled = len(nb.cells)
    offset = len(run_notebook.with_run_cells(nb, {**env, "COURSE_WARNINGS": "error"}).cells) - drilled
    exercises = [tuple(None if i is None else i + offset for i in exercise) for exercise in exercises]
    client = NotebookClient(
        nb, timeout=None, allow_errors=True, resources={"metadata": {"path": str(learner.LEARNER_DIR)}}
    )
    client.execute(env=env)
    unsolved_cells = set()
    for unsolved, first_check, solved, check in exercises:
        unsolved_cells |= {unsolved, first_check}
        if first_check is None:  # the cell itself stops with the reminder
            (error,) = errors(nb.cells[unsolved])
            assert error.ename == "NotSolved" and len(error.traceback) == 1, error.traceback
            assert error.traceback[0].startswith("⏳ Not solved yet: Exercise ")
        else:  # the functions are defined; calling them is what reminds
            assert not errors(nb.cells[unsolved]) and not errors(nb.cells[first_check])
            assert "⏳ Not solved yet" in stdout(nb.cells[first_check])
        failed = errors(nb.cells[solved]) + errors(nb.cells[check])
        assert not failed, [(e.ename, e.evalue) for e in failed]
        # A prediction graded by the learner's own measurement may be ❌ after two steps; the rest must say ✅.
        assert "✅" in stdout(nb.cells[check]) or "❌ Not this time" in stdout(nb.cells[check])
    crashed = [(i, e.ename, e.evalue) for i, c in enumerate(nb.cells) if i not in unsolved_cells for e in errors(c)]
    assert not crashed
    assert list(tmp_path.glob("*/metrics.json")), "the learner notebook did not run to its end"


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
