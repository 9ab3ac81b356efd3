"""Do the offline notebooks' targets hold for other seeds and CPU code paths? Runs each and prints a table.

    python tools/seeds.py                         # seeds 42 (the notebooks'), 1 and 2, each on both code paths
    python tools/seeds.py --seeds 42 --notebooks dpo

A code path is what PyTorch's own kernels compute with: the widest vector instructions this CPU has (the default), or
plain C++ (`ATEN_CPU_CAPABILITY=default`), which rounds otherwise. Each run is the notebook with its `SEED = 42` line
changed, executed in a fresh kernel on one thread, two at a time. Runs go to build/seeds/; the table's numbers to
2_preference_alignment/images/seeds.json, which the lessons quote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebook import NOTEBOOK_DIR, NOTEBOOKS  # noqa: E402
from targets import misses  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "2_preference_alignment" / "images" / "seeds.json"
CODE_PATHS = {"widest": {}, "plain C++": {"ATEN_CPU_CAPABILITY": "default"}}
SEED_LINE = re.compile(r"^SEED = 42\b", re.M)


def run(name: str, seed: int, path: str, out: Path) -> dict:
    """One offline run of notebook `name` with `seed` on code path `path`; returns its metrics."""
    nb = nbformat.read(NOTEBOOK_DIR / NOTEBOOKS[name], as_version=4)
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and SEED_LINE.search(cell.source)]
    if len(cells) != 1:
        raise ValueError(f"{NOTEBOOKS[name]}: expected one `SEED = 42` line, found {len(cells)}")
    cells[0].source = SEED_LINE.sub(f"SEED = {seed}", cells[0].source)
    folder = out / f"{name}-seed{seed}-{path.replace(' ', '-').replace('+', 'p')}"
    env = {**os.environ, "COURSE_PROFILE": "offline", "COURSE_RUN_DIR": str(folder), "OMP_NUM_THREADS": "1"}
    env.update(CODE_PATHS[path], TRANSFORMERS_VERBOSITY="error", TRL_EXPERIMENTAL_SILENCE="1")
    NotebookClient(nb, timeout=None, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute(env=env)
    return json.loads((folder / f"{name}-offline" / "metrics.json").read_text())


def measures(name: str, m: dict) -> dict:
    """The numbers the targets read, rounded as the lessons print them."""
    if name == "dpo":
        lora = m["full_vs_lora"]["lora"]
        picked = {
            "preference_accuracy_after": m["preference_accuracy_after"],
            "judged_score_before": m["judged_score_before"],
            "judged_score_after": m["judged_score_after"],
            "lora_preference_accuracy_after": lora["preference_accuracy_after"],
            "lora_judged_score_after": lora["judged_score_after"],
        }
    else:
        picked = {
            "preference_accuracy_before": m["preference_accuracy_before"],
            "preference_accuracy_after": m["preference_accuracy_after"],
            "judged_score_after": m["judged_score_after"],
            "sft_dpo_judged_score": m["comparison"]["sft_dpo"]["judged_score"],
            **{f"nll_lambda_{p['lambda']:g}": p["nll"] for p in m["sweep"]},
        }
    return {key: round(value, 3) for key, value in picked.items()}


def record(results: list[tuple[tuple[str, int, str], dict]], hardware: str) -> dict:
    """The experiment as images/seeds.json holds it: one row per run, with the targets it missed."""
    rows = []
    for (name, seed, path), m in results:
        missed = [m["error"]] if "error" in m else misses(name, m)
        rows.append({"notebook": name, "seed": seed, "code_path": path, "missed": missed, **measures(name, m)})
    return {"hardware": hardware, "code_paths": CODE_PATHS, "runs": rows}


def attempt(job: tuple[str, int, str], out: Path) -> dict:
    """`run(*job)`, or {"error": ...} if the notebook failed (the other runs go on)."""
    try:
        return run(*job, out)
    except Exception as err:  # a failed run is a row of the table, not the end of the experiment
        return {"error": f"{type(err).__name__}: {str(err)[-300:]}"}


def main(argv: list[str] | None = None) -> int:
    """Run every (notebook, seed, code path), two at a time, and print one Markdown row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--notebooks", nargs="+", default=["orpo", "dpo"], choices=sorted(NOTEBOOKS))
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "seeds")
    args = parser.parse_args(argv)
    jobs = [(n, s, p) for n in args.notebooks for s in args.seeds for p in CODE_PATHS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: (job, attempt(job, args.out)), jobs))
    from course_utils.cost import hardware

    result = record(results, hardware())
    RESULT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print("| notebook | seed | code path | targets missed | measures |\n|---|---|---|---|---|")
    for row in result["runs"]:
        numbers = ", ".join(f"{k} {v}" for k, v in row.items() if isinstance(v, float))
        missed = "; ".join(row["missed"]) or "none"
        print(f"| {row['notebook']} | {row['seed']} | {row['code_path']} | {missed} | {numbers} |")
    return 1 if any(row["missed"] for row in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
