"""Write the learners' notebooks: each course notebook with its exercise solutions taken out, checks kept.

    python tools/learner.py            # (re)writes 2_preference_alignment/notebooks/exercises/*.ipynb
    python tools/learner.py --check    # exits 1 when a learner notebook is not what the source gives

The notebooks in `2_preference_alignment/notebooks/` are the one source: they run top to bottom with the solutions,
each written between `### BEGIN SOLUTION` and `### END SOLUTION`. In the learner's copy that region becomes
`# YOUR CODE HERE` and `raise checks.NotSolved(...)`, a NotImplementedError that Jupyter shows as a one-line
reminder rather than a traceback (and the checks report as "not solved yet"). The check cell that follows stays, and
after it a collapsed "Solution" block shows the cell as the source has it.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "2_preference_alignment" / "notebooks"
LEARNER_DIR = SOURCE_DIR / "exercises"
REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.M | re.S)
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION\n?", re.M)
CHECK = "checks."
EXERCISE = re.compile(r"^### \S+ (Exercise \d+):", re.M)  # the statement's heading: "### 🐢 Exercise 1: ..."
REPO_PATH = "2_preference_alignment/notebooks/"
COLAB_URL = f"https://colab.research.google.com/github/smol-course/smol-preference-alignment/blob/main/{REPO_PATH}"
# Told at the top of each learner copy: what "Run all" does at an exercise not yet solved.
RUN_ALL = (
    "**Solving the exercises.** Write your code where a cell says `# YOUR CODE HERE`, then run the check below it. "
    "*Run all* stops at the first exercise you have not solved, with a one-line ⏳ reminder: solve it, then carry on "
    "with *Run → Run selected cell and all below*."
)


def is_exercise(cell: dict) -> bool:
    """True for a code cell that holds a solution region."""
    return cell["cell_type"] == "code" and "### BEGIN SOLUTION" in cell["source"]


def without_solution(source: str, exercise: str = "this exercise") -> str:
    """The cell as the learner gets it: each solution region replaced by a placeholder at its indentation."""
    todo = f'raise checks.NotSolved("{exercise}: write your code here, then run the cell again")'
    return REGION.sub(lambda m: f"{m[1]}# YOUR CODE HERE\n{m[1]}{todo}\n", source)


def solution_block(source: str) -> str:
    """A collapsed Markdown block that shows the solution cell, without its markers."""
    code = MARKER.sub("", source).rstrip()
    summary = "<summary><b>Solution</b> (open it once you have tried)</summary>"
    return f"<details>{summary}\n\n```python\n{code}\n```\n\n</details>"


def learner_version(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """`notebook` with every solution taken out, and revealed after the check that follows it."""
    out = copy.deepcopy(notebook)
    cells, pending, exercise = [], [], "this exercise"
    for cell in out.cells:
        if cell["cell_type"] == "markdown" and (heading := EXERCISE.search(cell["source"])):
            exercise = heading[1]
        if cell["cell_type"] == "code" and pending and CHECK in cell["source"]:
            cells.append(cell)
            cells += [nbformat.v4.new_markdown_cell(solution_block(s)) for s in pending]
            pending = []
            continue
        if is_exercise(cell):
            pending.append(cell["source"])
            cell["source"] = without_solution(cell["source"], exercise)
        cells.append(cell)
    if pending:
        raise ValueError(f"{name}: a solution cell has no check cell after it")
    for i, cell in enumerate(cells):  # ids that stay the same from one generation to the next
        cell["id"] = f"{name[:4]}-{i:03d}"
    out.cells = cells
    first = out.cells[0]
    first["source"] = first["source"].replace(f'{REPO_PATH}{name}"', f'{REPO_PATH}exercises/{name}"')  # the badge
    first["source"] = first["source"].rstrip("\n") + "\n\n" + RUN_ALL
    return out


def render(source: Path) -> str:
    """The learner notebook of `source`, as the text it is stored in."""
    return nbformat.writes(learner_version(nbformat.read(source, as_version=4), source.name)) + "\n"


def main(argv: list[str] | None = None, source_dir: Path = SOURCE_DIR) -> int:
    """Write (or with --check, compare) the learner copy of each notebook of `source_dir`, in its `exercises/`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale learner notebooks instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(source_dir.glob("*.ipynb")):
        target = source_dir / LEARNER_DIR.name / source.name
        text = render(source)
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.as_posix())
        else:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print("stale learner notebooks (run `python tools/learner.py`): " + ", ".join(stale), file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
