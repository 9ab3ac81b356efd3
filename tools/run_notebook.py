"""Execute a course notebook top to bottom, as a learner would, and show its progress in the terminal.

    python tools/run_notebook.py dpo orpo --learner   # what `make exercise` runs: the copies learners solve
    python tools/run_notebook.py dpo orpo          # what `make solutions` runs: the notebooks with their solutions
    python tools/run_notebook.py dpo --quiet       # no progress, only the measures at the end
    python tools/run_notebook.py dpo orpo --run-dir build/measure   # what `make measure` runs: the lessons' numbers

Each notebook runs in a fresh kernel from the notebooks folder. As it runs, the terminal shows which section is
executing, what the cells print (not their warnings), and the trainers' own progress (step, time left, logged
losses), read from the progress table transformers draws in a notebook. The executed copy and the run's outputs
go to the run folder (`COURSE_RUN_DIR`, default `2_preference_alignment/notebooks/runs`). The tests execute the
notebooks with nbval instead (`make notebooks`), each cell a test item.

With `--learner` it runs the copies in `notebooks/exercises/` as they stand: every cell runs, an exercise not solved
yet is reported as a reminder, and a cell that fails because it needs an unsolved exercise's answer is named as such.
A failure before any unsolved exercise is an error.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "2_preference_alignment" / "notebooks"
NOTEBOOKS = {"dpo": "dpo_finetuning_example.ipynb", "orpo": "orpo_finetuning_example.ipynb"}
# The headline measures `make exercise` prints from each run's metrics.json.
HEADLINE = ("preference_accuracy", "judged_score", "decline_rate", "repetition_rate")

BAR = re.compile(r"<progress value='(\d+)' max='(\d+)'[^>]*></progress>\s*(.*?)\s*</div>", re.S)
ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
CELL = re.compile(r"<t[hd]>(.*?)</t[hd]>", re.S)


def _table(html_code: str) -> tuple[list[str], list[str]] | None:
    """The header and the last row of the logged-metrics table under a trainer's progress bar, if there is one."""
    rows = [[html.unescape(c).strip() for c in CELL.findall(r)] for r in ROW.findall(html_code)]
    rows = [r for r in rows if r]
    return (rows[0], rows[-1]) if len(rows) >= 2 else None


class ProgressClient(NotebookClient):
    """An nbclient that echoes section titles, printed text and training progress while it executes."""

    def __init__(self, *args, echo: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.echo, self._last_bar, self._last_row, self._started = echo, 0.0, None, time.perf_counter()

    def _say(self, text: str) -> None:
        """Print to the terminal now (not buffered)."""
        if self.echo:
            sys.stdout.write(text)
            sys.stdout.flush()

    def process_message(self, msg: dict, cell, cell_index: int):
        """Echo what a learner would see, then record the output as nbclient does."""
        content, kind = msg["content"], msg["msg_type"]
        if kind == "stream" and content["name"] == "stdout":  # stderr holds progress bars of data steps, warnings
            self._say(content["text"])
        elif kind in ("display_data", "update_display_data", "execute_result"):
            self._progress(content.get("data", {}).get("text/html", ""))
        return super().process_message(msg, cell, cell_index)

    def _progress(self, html_code: str) -> None:
        """One line per logged row, and the bar's label (step, time left) at most every 10 s."""
        bar = BAR.search(html_code)
        if not bar:
            return
        value, total, label = int(bar[1]), int(bar[2]), html.unescape(re.sub(r"<[^>]+>", "", bar[3])).strip()
        table = _table(html_code)
        if table and table[1] != self._last_row:
            self._last_row = table[1]
            self._say("    " + "  ".join(f"{k} {v}" for k, v in zip(*table, strict=False)) + "\n")
        now = time.perf_counter()
        if value == total or now - self._last_bar >= 10:
            self._last_bar = now
            self._say(f"    {label}\n")

    async def async_execute_cell(self, cell, cell_index: int, execution_count=None, store_history: bool = True):
        """Announce each section's title before its first cell runs."""
        if cell.cell_type == "markdown":
            title = next((line for line in cell.source.splitlines() if line.startswith("#")), None)
            if title:
                self._say(f"[{time.perf_counter() - self._started:6.0f} s] {title.lstrip('#').strip()}\n")
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)


def unsolved_report(nb: nbformat.NotebookNode) -> tuple[list[str], list[str]]:
    """After a learner run: the reminders of unsolved exercises, and the errors no unsolved exercise explains."""
    reminders, errors, waiting = [], [], False
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            if output.get("output_type") == "error" and output["ename"] == "NotSolved":
                reminders.append(f"cell {index}: ⏳ Not solved yet: {output['evalue']}")
                waiting = True
            elif "⏳ Not solved yet" in text:
                reminders.append(f"cell {index}: {text.strip()}")
                waiting = True
            elif output.get("output_type") == "error":
                what = f"cell {index}: {output['ename']}: {output['evalue']}"
                (reminders if waiting else errors).append(what + (" (it needs an exercise above)" if waiting else ""))
    return reminders, errors


def execute(
    name: str, run_root: Path, env: dict[str, str] | None = None, echo: bool = True, learner: bool = False
) -> dict:
    """Execute one notebook (`dpo` or `orpo`) with its runs under `run_root`; return the metrics.json it wrote.

    `learner`: the copy in `exercises/`, run to its end whatever its unsolved exercises raise; returns the reminders
    as `{"unsolved": [...]}` beside the metrics, if the notebook got as far as writing them.

    `env` adds environment variables for the notebook's kernel only (this process's environment is left alone, so
    several notebooks can run at once from threads).
    """
    run_root = Path(run_root).resolve()
    run_root.mkdir(parents=True, exist_ok=True)
    folder = NOTEBOOK_DIR / "exercises" if learner else NOTEBOOK_DIR
    nb = nbformat.read(folder / NOTEBOOKS[name], as_version=4)
    kernel_env = {**os.environ, "COURSE_RUN_DIR": str(run_root), **(env or {})}
    resources = {"metadata": {"path": str(folder)}}
    client = ProgressClient(nb, timeout=None, resources=resources, echo=echo, allow_errors=learner)
    started = time.time()
    try:
        client.execute(env=kernel_env)
    finally:
        nbformat.write(nb, run_root / f"{name}.executed.ipynb")  # outputs up to the failing cell, if one failed
    written = [p for p in run_root.glob(f"{name}-*/metrics.json") if p.stat().st_mtime >= started]
    if learner:
        reminders, errors = unsolved_report(nb)
        if errors:
            raise RuntimeError(f"the {name} notebook failed before any unsolved exercise:\n" + "\n".join(errors))
        metrics = json.loads(written[0].read_text()) if len(written) == 1 else {}
        return {**metrics, "unsolved": reminders}
    if len(written) != 1:
        raise RuntimeError(f"the {name} notebook ran but wrote {len(written)} metrics.json under {run_root}")
    return json.loads(written[0].read_text())


def headline(metrics: dict) -> str:
    """The measures before and after training, one line each."""
    lines = list(metrics.get("unsolved", []))
    if "profile" not in metrics:
        return "\n".join(lines)
    lines.append(f"profile {metrics['profile']}, model {metrics['model']}")
    for key in HEADLINE:
        before, after = metrics.get(f"{key}_before"), metrics.get(f"{key}_after")
        if isinstance(before, float | int) and isinstance(after, float | int):
            lines.append(f"  {key:20} {before:.3f} -> {after:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the notebooks named on the command line and print their headline measures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", choices=sorted(NOTEBOOKS))
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("COURSE_RUN_DIR", NOTEBOOK_DIR / "runs")))
    parser.add_argument("--quiet", action="store_true", help="print only the measures at the end")
    parser.add_argument("--learner", action="store_true", help="run the copies in exercises/")
    args = parser.parse_args(argv)
    results = {}
    for name in args.notebooks:
        print(f"== {NOTEBOOKS[name]} ==", flush=True)
        start = time.perf_counter()
        results[name] = execute(name, args.run_dir, echo=not args.quiet, learner=args.learner)
        print(f"== {name} done in {time.perf_counter() - start:.0f} s ==\n", flush=True)
    for name, metrics in results.items():
        print(f"{name}: {headline(metrics)}")
    print(f"Executed notebooks, models and metrics: {args.run_dir}")


if __name__ == "__main__":
    main()
