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
    assert [p.name for p in NOTEBOOKS] == ["dpo_finetuning_example.ipynb", "orpo_finetuning_example.ipynb"]


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


def test_dpo_with_lora_trains_adapters_only_and_aligns_as_well():
    m = metrics("dpo-offline")
    full, lora = m["full_vs_lora"]["full"], m["full_vs_lora"]["lora"]
    assert lora["trainable_params"] < full["trainable_params"] / 4
    assert lora["preference_accuracy_after"] >= 0.90
    assert lora["judged_score_after"] - m["judged_score_before"] >= 0.30  # aligned, from the same starting point
    assert lora["train_runtime_s"] > 0 and (lora["peak_memory_mb"] is None or lora["peak_memory_mb"] > 0)


def test_orpo_offline_learns_in_one_stage():
    m = metrics("orpo-offline")
    assert m["profile"] == "offline"
    assert m["judged_score_before"] == 0.0  # random weights: nothing it says is right
    assert m["judged_score_after"] >= 0.60
    assert m["preference_accuracy_after"] - m["preference_accuracy_before"] >= 0.15


def test_orpo_sweep_covers_lambda_and_shows_the_trade_off():
    m = metrics("orpo-offline")
    sweep = {point["lambda"]: point for point in m["sweep"]}
    assert len(sweep) >= 3 and 0.1 in sweep
    assert sweep[0.1]["judged_score"] == m["judged_score_after"]  # the main run is the sweep's λ = 0.1
    for point in sweep.values():
        assert set(point) == {"lambda", "preference_accuracy", "judged_score", "nll"}
        assert 0 <= point["preference_accuracy"] <= 1 and 0 <= point["judged_score"] <= 1 and point["nll"] > 0
    assert sweep[max(sweep)]["nll"] > sweep[min(sweep)]["nll"]  # weight on the odds ratio is taken from imitation


def test_orpo_against_sft_dpo_is_measured_and_on_target():
    comparison = metrics("orpo-offline")["comparison"]
    for method in ("orpo", "sft_dpo"):
        for key in ("train_runtime_s", "step_time_s", "peak_memory_mb"):
            assert comparison[method][key] > 0, (method, key)
    assert comparison["orpo"]["forward_passes_per_step"] == 1  # the policy, on chosen and rejected at once
    assert comparison["sft_dpo"]["forward_passes_per_step"] == 2  # the policy and the frozen reference
    assert abs(comparison["orpo"]["judged_score"] - comparison["sft_dpo"]["judged_score"]) <= 0.10


@pytest.mark.parametrize("name", ["dpo", "orpo"])
def test_real_path_ran_end_to_end_on_smollm2_and_real_pairs(name):
    # `make test` runs both notebooks with COURSE_PROFILE=local COURSE_SMOKE=1 first: a couple of steps, but the real
    # weights, tokenizer, chat template, truncation, LoRA targets and ORPO's template handling, end to end.
    m = metrics(f"{name}-local")
    assert m["profile"] == "local" and "SmolLM2-135M-Instruct" in m["model"]
    for key in ("preference_accuracy", "decline_rate", "repetition_rate"):
        for when in ("before", "after"):
            assert 0 <= m[f"{key}_{when}"] <= 1, (key, when)
    config = json.loads((NOTEBOOK_DIR / "runs" / f"{name}-local" / "model" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and config["dtype"] == "float32"


def test_dpo_local_smoke_is_capped_and_measures_what_it_says():
    m = metrics("dpo-local")
    assert m["n_test_pairs"] == 4 and 1 <= m["n_test_prompts"] <= 4
    assert 0 <= m["eval_rewards_accuracies"] <= 1
    assert m["full_vs_lora"]["lora"]["trainable_params"] < m["full_vs_lora"]["full"]["trainable_params"] / 4


def deterministic(m: dict) -> dict:
    """The measures a re-run must reproduce exactly: everything except times and memory."""
    if isinstance(m, dict):
        return {k: deterministic(v) for k, v in m.items() if not k.endswith(("_s", "_mb"))}
    if isinstance(m, list):
        return [deterministic(v) for v in m]
    return round(m, 6) if isinstance(m, float) else m


@pytest.mark.parametrize("name", ["dpo", "orpo"])
def test_rerun_gives_the_same_numbers(name, tmp_path):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}_finetuning_example.ipynb", as_version=4)
    os.environ["COURSE_RUN_DIR"] = str(tmp_path)
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
        print(f"{name} notebook re-run: {time.perf_counter() - start:.0f} s")
    finally:
        del os.environ["COURSE_RUN_DIR"]
    first, again = metrics(f"{name}-offline"), metrics(f"{name}-offline", tmp_path)
    assert deterministic(again) == deterministic(first)
