"""Numbers the lessons quote in their prose are read from the measured files they come from: change a run, and each
sentence that quotes it is named here until it is updated. (Tables between `<!-- measured -->` markers are rendered
from the same files by tools/figures.py and checked in test_lessons.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "2_preference_alignment"
MEASURED = json.loads((MODULE / "images" / "measured.json").read_text(encoding="utf-8"))
RESULTS = ROOT / "benchmarks" / "results"
REAL = json.loads((RESULTS / "real-path" / "alignment-cpu.json").read_text(encoding="utf-8"))
SMOLLM2_PARAMETERS = json.loads((RESULTS / "real-path" / "t4-estimate.json").read_text(encoding="utf-8"))["parameters"]
TINY = json.loads((RESULTS / "tiny-cpu.json").read_text(encoding="utf-8"))
SEEDS = json.loads((MODULE / "images" / "seeds.json").read_text(encoding="utf-8"))["runs"]
ORPO_JUDGED = [run["judged_score_after"] for run in SEEDS if run["notebook"] == "orpo"]
SFT_DPO_JUDGED = [run["sft_dpo_judged_score"] for run in SEEDS if run["notebook"] == "orpo"]


NUMBER = r"(\d+(?:\.\d+)?)"


def agrees(quoted: str, measured: float) -> bool:
    """True when `quoted` is `measured` rounded to the digits the quote shows (82 for 82.4, 0.889 for 0.8889)."""
    decimals = len(quoted.partition(".")[2])
    return abs(float(quoted) - measured) <= 0.5 * 10**-decimals + 1e-12


MODULE_MD = "2_preference_alignment/{}.md"
DPO, ORPO, COST = (MODULE_MD.format(name) for name in ("dpo", "orpo", "cost_and_scale"))
DPO_NB = "2_preference_alignment/notebooks/dpo_finetuning_example.ipynb"
ORPO_NB = "2_preference_alignment/notebooks/orpo_finetuning_example.ipynb"
SWEEP = {row["lambda"]: row["nll"] for row in MEASURED["orpo"]["sweep"]}
LORA = MEASURED["dpo"]["full_vs_lora"]
GB_FP32, GB_BF16 = SMOLLM2_PARAMETERS * 4 / 1e9, SMOLLM2_PARAMETERS * 2 / 1e9
TINY_MB = TINY["parameters"] * 4 / 1e6
ORPO_STEP = TINY["variants"]["orpo"]["step_s"] / TINY["variants"]["dpo (recipe)"]["step_s"]
RUNTIME_MIN = {name: MEASURED[name]["notebook_runtime_s"] / 60 for name in ("dpo", "orpo")}
REWARDS_ACCURACY = MEASURED["dpo"]["eval_rewards_accuracies"]
# (file, a pattern whose group is the quoted number, the number its source gives)
QUOTES = [
    ("README.md", r"DPO notebook runs offline in about " + NUMBER + r" minutes", RUNTIME_MIN["dpo"]),
    ("README.md", r"ORPO notebook in about " + NUMBER, RUNTIME_MIN["orpo"]),
    ("README.md", r"about " + NUMBER + r" minutes on a 2-core AMD EPYC", REAL["wall_time_s"] / 60),
    (COST, r"about " + NUMBER + r" minutes on a 2-core AMD EPYC", REAL["wall_time_s"] / 60),
    (DPO, r"`eval_rewards/accuracies`, printed in the notebook, is " + NUMBER, REWARDS_ACCURACY),
    (DPO, r"declined " + NUMBER + r"% of XSTest's unsafe", REAL["unsafe_refusal_rate_after"] * 100),
    (DPO, r"unsafe requests \(" + NUMBER + r"% before\)", REAL["unsafe_refusal_rate_before"] * 100),
    (DPO, r"answered only " + NUMBER + r"% of its safe", REAL["safe_compliance_rate_after"] * 100),
    (DPO, r"\(" + NUMBER + r"% before\): over-refusal", REAL["safe_compliance_rate_before"] * 100),
    (ORPO, r"ORPO's judged score ranged from " + NUMBER, min(ORPO_JUDGED)),
    (ORPO, r"ORPO's judged score ranged from [\d.]+ to " + NUMBER, max(ORPO_JUDGED)),
    (ORPO, r"SFT→DPO's from " + NUMBER, min(SFT_DPO_JUDGED)),
    (ORPO, r"SFT→DPO's from [\d.]+ to " + NUMBER, max(SFT_DPO_JUDGED)),
    (ORPO, NUMBER + r" GB in fp32", GB_FP32),
    (ORPO, r"or " + NUMBER + r" GB in bf16", GB_BF16),
    (COST, r"a second copy: " + NUMBER + r" GB in fp32", GB_FP32),
    (COST, r"\(" + NUMBER + r" GB in bf16\)", GB_BF16),
    (COST, r"whole model is " + NUMBER + r" MB in fp32", TINY_MB),
    (COST, r"ORPO's step still takes " + NUMBER + r"× DPO's time", ORPO_STEP),
    (DPO_NB, r"`eval_rewards/accuracies` \(" + NUMBER, REWARDS_ACCURACY),
    (DPO_NB, r"against our " + NUMBER, MEASURED["dpo"]["preference_accuracy_after"]),
    (DPO_NB, r"used more memory \(" + NUMBER, LORA["lora"]["peak_memory_mb"]),
    (DPO_NB, r"used more memory \(\d+ against " + NUMBER, LORA["full"]["peak_memory_mb"]),
    (DPO_NB, r"the model is " + NUMBER + " MB in fp32", TINY_MB),
    (ORPO_NB, r"NLL fell from " + NUMBER + r" at λ = 0\b", SWEEP[0.0]),
    (ORPO_NB, r" to " + NUMBER + r" at λ = 0.1", SWEEP[0.1]),
    (ORPO_NB, r"then rose to " + NUMBER, SWEEP[1.0]),
    (ORPO_NB, r"for SmolLM2-135M, " + NUMBER + r" GB in fp32", GB_FP32),
]


def prose(file: str) -> str:
    """The file's text, or a notebook's Markdown cells, on one line (a sentence may wrap)."""
    text = (ROOT / file).read_text(encoding="utf-8")
    if file.endswith(".ipynb"):
        cells = json.loads(text)["cells"]
        text = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return " ".join(text.split())


@pytest.mark.parametrize(("file", "pattern", "expected"), QUOTES, ids=lambda v: v if "/" in str(v) else None)
def test_quoted_number_is_what_its_source_measured(file, pattern, expected):
    found = re.search(pattern, prose(file))
    assert found, f"{file} no longer says {pattern!r}: update the quote here with the sentence"
    assert agrees(found[1], expected), f"{file} quotes {found[1]} where its source now gives {expected:.4g}"


def test_the_orpo_notebook_says_how_other_seeds_ran():
    others = [run for run in SEEDS if run["notebook"] == "orpo" and run["seed"] in (1, 2)]
    assert others and all(run["nll_lambda_0"] < run["nll_lambda_0.1"] < run["nll_lambda_1"] for run in others)
    assert "on seeds 1 and 2 the NLL rose at every step" in prose(ORPO_NB)
