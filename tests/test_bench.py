"""The benchmark: it runs every variant on the same batches, and its ratios and token counts add up."""

from __future__ import annotations

import json
import sys

import pytest

from tools import figures

sys.path.insert(0, str(figures.ROOT / "benchmarks"))
import bench  # noqa: E402

RESULTS = sorted(figures.BENCHMARKS.glob("*.json"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One quick run: the recipe, LoRA, ORPO and SFT, one timed step each."""
    out = tmp_path_factory.mktemp("bench")
    only = ["dpo, LoRA r=16", "orpo", "sft (chosen replies)"]
    path = bench.main(["--steps", "1", "--out", str(out), "--only", *only])
    return json.loads(path.read_text()), out


@pytest.mark.slow
def test_every_chosen_variant_runs_and_writes_only_json_and_chart(smoke):
    results, out = smoke
    assert list(results["variants"]) == ["dpo (recipe)", "dpo, LoRA r=16", "orpo", "sft (chosen replies)"]
    stem = f"{results['arch']}-{results['device']}"
    assert {p.name for p in out.iterdir()} == {f"{stem}.json", f"{stem}.png"}  # tables: `tools/figures.py --tables`


@pytest.mark.slow
def test_our_token_count_is_the_trainers_own(smoke):
    # TRL's DPO and SFT batches let the Trainer count non-padding tokens; ORPO's do not, so we count for all.
    results = smoke[0]
    rows, steps = results["variants"], results["timed_steps"] + 1  # the timed steps and the warm-up step
    for name in ["dpo (recipe)", "dpo, LoRA r=16", "sft (chosen replies)"]:
        assert rows[name]["tokens_per_step"] * steps == pytest.approx(rows[name]["tokens_seen_by_trainer"]), name
    sft, dpo = rows["sft (chosen replies)"], rows["dpo (recipe)"]
    assert sft["tokens_per_step"] < dpo["tokens_per_step"] / 2 + 16  # the chosen side only


@pytest.mark.slow
def test_lora_trains_adapters_only_and_orpo_needs_no_reference_pass(smoke):
    rows = smoke[0]["variants"]
    micro_batches = bench.HUB_BATCH["gradient_accumulation_steps"]
    assert rows["dpo, LoRA r=16"]["trainable_params"] < rows["dpo (recipe)"]["trainable_params"] / 4
    # Forward passes of whole models per optimizer step: DPO runs policy and reference on each micro-batch.
    assert rows["dpo (recipe)"]["forward_passes_per_step"] == 2 * micro_batches
    assert rows["orpo"]["forward_passes_per_step"] == micro_batches


def row(step_s: float, tokens_per_s: float, peak_memory_mb: float | None) -> dict:
    return {"step_s": step_s, "tokens_per_s": tokens_per_s, "peak_memory_mb": peak_memory_mb}


def test_ratios_are_to_the_named_baseline_row():
    # The baseline is found by its name, not by its place: here it is the second row.
    rows = bench.with_ratios({"sft": row(0.5, 3000.0, 50.0), "dpo (recipe)": row(2.0, 1000.0, 200.0)}, "dpo (recipe)")
    recipe, sft = rows["dpo (recipe)"], rows["sft"]
    assert (recipe["step_time_ratio"], recipe["tokens_per_s_ratio"], recipe["memory_ratio"]) == (1.0, 1.0, 1.0)
    assert (sft["step_time_ratio"], sft["tokens_per_s_ratio"], sft["memory_ratio"]) == (0.25, 3.0, 0.25)


def test_unmeasured_memory_has_no_ratio_and_the_table_says_so():
    rows = bench.with_ratios({"orpo": row(1.0, 800.0, None), "dpo (recipe)": row(2.0, 1000.0, None)}, "dpo (recipe)")
    assert [r["memory_ratio"] for r in rows.values()] == [None, None]
    for r, params in zip(rows.values(), (1_115_264, 188_416), strict=True):
        r["trainable_params"] = params
    results = {
        "arch": "tiny",
        "parameters": 1_115_264,
        "precision": "fp32",
        "hardware": "arm64 CPU, 8 cores",
        "memory": "not measured on this platform",
        "variants": rows,
    }
    table = figures.cost_table(results).splitlines()
    assert table[0].startswith("| tiny model (1.1M parameters), fp32, one run on arm64 CPU, 8 cores; memory: not")
    assert table[2:] == [
        "| orpo | 1.000 | 800 | — | 0.50× | 0.80× | — | 1.12M |",
        "| dpo (recipe) | 2.000 | 1000 | — | 1.00× | 1.00× | — | 0.19M |",
    ]
    fig = bench.plot_cost(results)
    assert [ax.get_title() for ax in fig.axes] == ["tokens per second vs recipe"]  # no memory panel


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
    recipe = {k: v for k, v in rows["dpo (recipe)"]["settings"].items() if k in bench.HUB_BATCH}
    original = {k: v for k, v in rows["dpo (original settings)"]["settings"].items() if k in bench.ORIGINAL_BATCH}
    assert recipe == bench.HUB_BATCH, f"{path.name} measured another recipe: run the benchmark again"
    assert original == bench.ORIGINAL_BATCH
    assert results["hardware"] and results["timed_steps"] >= 5


def test_every_variant_trains_on_the_same_pairs_per_update():
    # `_trainer` refuses any other batch, after minutes of benchmarking: a recipe edit that breaks this fails here.
    for name, variant in bench.variants({}).items():
        settings = variant["settings"]
        pairs = settings["per_device_train_batch_size"] * settings["gradient_accumulation_steps"]
        assert pairs == bench.PAIRS_PER_UPDATE, name


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
