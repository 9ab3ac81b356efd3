"""The benchmark: it runs every variant on the same batches, and its ratios and token counts add up."""

from __future__ import annotations

import json
import sys

import pytest

from course_utils import profiles
from tools import figures

sys.path.insert(0, str(figures.ROOT / "benchmarks"))
import bench  # noqa: E402

RESULTS = sorted(figures.BENCHMARKS.glob("*.json"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One quick run: the recipe, LoRA, ORPO and SFT, one timed step each."""
    out = tmp_path_factory.mktemp("bench")
    only = ["dpo, LoRA r=16", "orpo", "sft (chosen replies)"]
    path = bench.main(["--steps", "1", "--out", str(out), "--no-lesson", "--only", *only])
    return json.loads(path.read_text()), out


def test_every_chosen_variant_runs_and_writes_json_table_and_chart(smoke):
    results, out = smoke
    assert list(results["variants"]) == ["dpo (recipe)", "dpo, LoRA r=16", "orpo", "sft (chosen replies)"]
    stem = f"{results['arch']}-{results['device']}"
    assert {p.name for p in out.iterdir()} == {f"{stem}.json", f"{stem}.md", f"{stem}.png"}
    assert (out / f"{stem}.md").read_text().strip() == figures.cost_table(results)
    for row in results["variants"].values():
        assert row["step_s"] > 0 and row["tokens_per_s"] > 0 and row["loss"] > 0


def test_ratios_are_to_the_recipe_measured_in_the_same_run(smoke):
    rows = smoke[0]["variants"]
    recipe = rows["dpo (recipe)"]
    assert recipe["step_time_ratio"] == recipe["tokens_per_s_ratio"] == 1.0
    for row in rows.values():
        assert row["tokens_per_s"] == pytest.approx(row["tokens_per_step"] / row["step_s"])
        assert row["tokens_per_s_ratio"] == pytest.approx(row["tokens_per_s"] / recipe["tokens_per_s"])
        assert row["memory_ratio"] == pytest.approx(row["peak_memory_mb"] / recipe["peak_memory_mb"])


def test_our_token_count_is_the_trainers_own(smoke):
    # TRL's DPO and SFT batches let the Trainer count non-padding tokens; ORPO's do not, so we count for all.
    rows = smoke[0]["variants"]
    for name in ["dpo (recipe)", "dpo, LoRA r=16", "sft (chosen replies)"]:
        assert rows[name]["tokens_per_step"] * 2 == rows[name]["tokens_seen_by_trainer"], name  # 2 steps
    sft, dpo = rows["sft (chosen replies)"], rows["dpo (recipe)"]
    assert sft["tokens_per_step"] < dpo["tokens_per_step"] / 2 + 16  # the chosen side only


def test_lora_trains_adapters_only_and_orpo_needs_no_reference_pass(smoke):
    rows = smoke[0]["variants"]
    assert rows["dpo, LoRA r=16"]["trainable_params"] < rows["dpo (recipe)"]["trainable_params"] / 4
    # Forward passes of whole models per optimizer step: DPO runs policy and reference on each of 4 micro-batches.
    assert rows["dpo (recipe)"]["forward_passes_per_step"] == 8
    assert rows["orpo"]["forward_passes_per_step"] == 4


def test_synthetic_pairs_follow_hh_rlhf_lengths():
    tokenizer = bench.tiny_model.train_tokenizer()
    pairs = bench.synthetic_pairs(tokenizer, 400)
    lengths = sorted(len(tokenizer(p)["input_ids"]) for p in pairs["prompt"])
    median = lengths[len(lengths) // 2]
    assert 0.7 * bench.LENGTHS["prompt"][0] < median < 1.4 * bench.LENGTHS["prompt"][0]
    assert pairs[0] == bench.synthetic_pairs(tokenizer, 400)[0]  # same seed, same rows


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_committed_results_are_of_the_current_recipe(path):
    results = json.loads(path.read_text())
    rows = results["variants"]
    assert list(rows) == list(bench.variants({})), "run `python benchmarks/bench.py` with every variant"
    recipe = {k: v for k, v in rows["dpo (recipe)"]["settings"].items() if k in profiles.HUB_BATCH}
    original = {k: v for k, v in rows["dpo (original settings)"]["settings"].items() if k in bench.ORIGINAL_BATCH}
    assert recipe == profiles.HUB_BATCH, f"{path.name} measured another recipe: run the benchmark again"
    assert original == bench.ORIGINAL_BATCH
    assert results["hardware"] and results["timed_steps"] >= 5


def test_original_settings_keep_sixteen_pairs_per_update_and_are_longer_than_the_recipe():
    for batch in (profiles.HUB_BATCH, bench.ORIGINAL_BATCH):
        assert batch["per_device_train_batch_size"] * batch["gradient_accumulation_steps"] == 16
    assert profiles.HUB_BATCH["max_length"] < bench.ORIGINAL_BATCH["max_length"]


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_cost_chart_draws_each_ratio_one_bar_per_variant(path, tmp_path):
    results = json.loads(path.read_text())
    fig = bench.plot_cost(results, path=tmp_path / "cost.png")
    panels = ["tokens per second vs recipe", "peak memory vs recipe"]
    if any(r["memory_ratio"] is None for r in results["variants"].values()):
        panels = panels[:1]  # no memory measured: no memory panel
    assert [ax.get_title() for ax in fig.axes] == panels
    names = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert names == list(results["variants"])[::-1]  # the first variant on top
    bars = [bar.get_width() for bar in fig.axes[0].patches]
    assert bars == [results["variants"][n]["tokens_per_s_ratio"] for n in names]
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_exist_for_the_lessons():
    assert any(p.stem.endswith("-cpu") for p in RESULTS), "the lessons quote a CPU run of the benchmark"
