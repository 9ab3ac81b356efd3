"""What a training step costs: SFT, DPO (plain, precomputed reference, LoRA) and ORPO on the same batches.

    python benchmarks/bench.py                     # tiny model on a CPU; SmolLM2-135M's shapes on a GPU
    python benchmarks/bench.py --arch smollm2-135m # choose the shapes yourself
    python benchmarks/bench.py --steps 1 --out /tmp/bench  # a quick smoke run

Every variant trains the same randomly initialised model (built from a config: no download) on the same synthetic
pairs, whose lengths follow HH-RLHF's, for the same optimizer steps. It reports the median time per optimizer step,
tokens per second, peak memory, and each of them as a ratio to the recommended recipe, all measured in one run. The
results go to `benchmarks/results/<arch>-<device>.json`, with a chart beside it (`.png`). `make bench` runs this, then
`python tools/figures.py --tables`, which rewrites the lesson table that quotes the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository: course_utils

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402

from course_utils import cost, sources  # noqa: E402
from course_utils.profiles import PROFILES, device_settings  # noqa: E402

# The batch the hub recipe trains with: train.py's config, which the tests hold equal to the DPO notebook's hub row.
CONFIG = yaml.safe_load((ROOT / "2_preference_alignment" / "scripts" / "configs" / "dpo_hub.yaml").read_text())
BATCH = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "warmup_steps")
HUB_BATCH = {key: CONFIG[key] for key in (*BATCH, "activation_checkpointing")}

RESULTS = ROOT / "benchmarks" / "results"
# The original module's DPO batch and length (smol-course, 2_preference_alignment/notebooks/dpo_finetuning_example.ipynb
# at 1082595e2a7c46d185643166236a63c9223d65e8): what the benchmark compares the recipe (`HUB_BATCH`) with. That notebook
# loads fp32 weights and sets `bf16=True` on every device; `variants` adds that precision.
ORIGINAL_BATCH = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "max_length": 1536,
    "warmup_steps": 0.1,
    "activation_checkpointing": True,
}
ARCHS = {
    "tiny": sources.SIZES["tiny"],  # the offline profile's model
    # HuggingFaceTB/SmolLM2-135M's config.json: the same shapes, random weights.
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "rope_theta": 100000.0,
    },
}
# Token lengths like HH-RLHF's: log-normal, with the median and spread of 200 harmless-base rows (characters / 4).
LENGTHS = {"prompt": (90, 0.87), "chosen": (26, 0.95), "rejected": (38, 0.73)}
PAIRS_PER_UPDATE = 16  # every variant: 16 pairs per optimizer step, as in the hub recipes
LORA = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")


def build_model(arch: str, out_dir: Path) -> Path:
    """Save a randomly initialised Llama model with the shapes of `arch` (and the course tokenizer) to `out_dir`."""
    tokenizer = AutoTokenizer.from_pretrained(sources.TOKENIZER_DIR)
    shapes = {"vocab_size": len(tokenizer), **ARCHS[arch]}  # SmolLM2's vocabulary is larger: its ids cover ours
    config = LlamaConfig(
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shapes,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def synthetic_pairs(tokenizer, n: int, seed: int = 0) -> Dataset:
    """`n` prompt/chosen/rejected rows of random tokens whose lengths follow `LENGTHS` (1 to 1400 tokens)."""
    rng = random.Random(seed)
    first = len(tokenizer.added_tokens_decoder)  # never emit the special tokens (ids 0 to 2)

    def text(part: str) -> str:
        median, sigma = LENGTHS[part]
        length = min(1400, max(1, round(rng.lognormvariate(math.log(median), sigma))))
        return tokenizer.decode([rng.randrange(first, len(tokenizer)) for _ in range(length)])

    return Dataset.from_list([{part: text(part) for part in LENGTHS} for _ in range(n)])


def variants(precision: dict) -> dict[str, dict]:
    """Each variant: the trainer, its settings, and extra trainer arguments; the recipe is the hub profile's."""
    recipe = {**HUB_BATCH, **precision}
    # The original module: fp32 weights with bf16 autocast wherever it runs (emulated on a T4 or a CPU without bf16).
    original = {**ORIGINAL_BATCH, "bf16": True, "fp16": False}
    return {
        "dpo (recipe)": {"trainer": "dpo", "settings": recipe},
        "dpo (original settings)": {"trainer": "dpo", "settings": original},
        "dpo, no checkpointing": {"trainer": "dpo", "settings": {**recipe, "activation_checkpointing": False}},
        "dpo, precomputed reference": {"trainer": "dpo", "settings": {**recipe, "precompute_ref_log_probs": True}},
        "dpo, LoRA r=16": {"trainer": "dpo", "settings": recipe, "peft_config": LORA},
        "orpo": {"trainer": "orpo", "settings": recipe},
        "sft (chosen replies)": {"trainer": "sft", "settings": recipe},
    }


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, and when the first one began."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.first_step_at: float | None = None
        self._start = 0.0

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self._now()
        self.first_step_at = self.first_step_at or self._start

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self._now() - self._start)


def _trainer(variant: dict, model_path: Path, pairs: Dataset, steps: int, out_dir: Path, tokenizer):
    """The variant's trainer, configured for `steps` optimizer steps of `PAIRS_PER_UPDATE` pairs."""
    device = device_settings()
    settings = dict(variant["settings"])
    common = {
        "output_dir": str(out_dir),
        "max_steps": steps,
        "learning_rate": 1e-6,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
        "use_cpu": device["use_cpu"],
        "include_num_input_tokens_seen": "non_padding",
        **settings,
    }
    assert common["per_device_train_batch_size"] * common["gradient_accumulation_steps"] == PAIRS_PER_UPDATE
    model = LlamaForCausalLM.from_pretrained(model_path)  # fp32 weights; bf16/fp16 only as autocast
    if variant["trainer"] == "sft":  # the same prompts, trained on the chosen reply only
        sft_rows = pairs.rename_column("chosen", "completion").remove_columns("rejected")
        return SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=sft_rows, processing_class=tokenizer)
    if variant["trainer"] == "orpo":
        return ORPOTrainer(model=model, args=ORPOConfig(**common), train_dataset=pairs, processing_class=tokenizer)
    return DPOTrainer(
        model=model,
        args=DPOConfig(**common),
        train_dataset=pairs,
        processing_class=tokenizer,
        peft_config=variant.get("peft_config"),
    )


def tokens_per_pair(tokenizer, pairs: Dataset, trainer: str, max_length: int) -> list[int]:
    """Real (non-padding) tokens each pair puts through the policy: prompt + reply, both replies for DPO and ORPO."""
    replies = ["chosen"] if trainer == "sft" else ["chosen", "rejected"]
    lengths = {k: [len(ids) for ids in tokenizer(list(pairs[k]))["input_ids"]] for k in ["prompt", *replies]}
    return [
        sum(min(lengths["prompt"][i] + lengths[k][i] + 1, max_length) for k in replies)  # + 1: the EOS TRL appends
        for i in range(len(pairs))
    ]


def run_variant(variant: dict, model_path: Path, pairs: Dataset, steps: int, out_dir: Path, tokenizer) -> dict:
    """Train one variant for `steps` + 1 optimizer steps (the first is warm-up) and measure it."""
    set_seed(0)
    timer = StepTimer()
    with cost.measure() as measured:
        started = time.perf_counter()
        trainer = _trainer(variant, model_path, pairs, steps + 1, out_dir, tokenizer)
        trainer.add_callback(timer)
        trainer.train()
    timed = timer.times[1:]  # skip the warm-up step: allocator, kernels and caches settle there
    tokens = sum(tokens_per_pair(tokenizer, pairs, variant["trainer"], trainer.args.max_length))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    step_s = statistics.median(timed)
    return {
        "settings": {**variant["settings"], "lora": "peft_config" in variant},
        "step_s": step_s,
        "tokens_per_step": tokens / (steps + 1),
        "tokens_per_s": tokens / (steps + 1) / step_s,
        "peak_memory_mb": measured["peak_memory_mb"],
        "setup_s": timer.first_step_at - started,  # loading, tokenizing, and the reference pass when precomputed
        "forward_passes_per_step": measured["forward_passes"] / (steps + 1),
        "trainable_params": trainable,
        "tokens_seen_by_trainer": trainer.state.num_input_tokens_seen or None,  # where TRL's batches let it count
        "loss": next(h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h),
    }


def with_ratios(rows: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Add each row's time per step, tokens per second and peak memory as ratios to the `baseline` row."""
    base = rows[baseline]
    for row in rows.values():
        row["step_time_ratio"] = row["step_s"] / base["step_s"]
        row["tokens_per_s_ratio"] = row["tokens_per_s"] / base["tokens_per_s"]
        row["memory_ratio"] = (
            row["peak_memory_mb"] / base["peak_memory_mb"] if base["peak_memory_mb"] is not None else None
        )
    return rows


def benchmark(arch: str, steps: int, only: list[str] | None = None) -> dict:
    """Run every variant (or those named in `only`, plus the recipe) side by side; results with ratios to the recipe."""
    # The tiny model computes as the offline profile does: bf16 autocast does not pay on 1M parameters, even on a CPU
    # with bf16 instructions (the profile's `cpu_bf16`). SmolLM2's shapes get it wherever it is native.
    device = device_settings(cpu_bf16=PROFILES["offline"].cpu_bf16 if arch == "tiny" else True)
    precision = {"bf16": device["bf16"], "fp16": device["fp16"]}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = build_model(arch, Path(tmp) / "model")
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        pairs = synthetic_pairs(tokenizer, PAIRS_PER_UPDATE * (steps + 1))
        params = LlamaForCausalLM.from_pretrained(model_path).num_parameters()
        chosen = {k: v for k, v in variants(precision).items() if not only or k in only or k == "dpo (recipe)"}
        # One discarded run first: the first in a process also pays for caches of kernels and shapes.
        run_variant(chosen["dpo (recipe)"], model_path, pairs, 1, Path(tmp) / "out", tokenizer)
        rows = {}
        for name, variant in chosen.items():
            print(f"{name} ...", flush=True)
            rows[name] = run_variant(variant, model_path, pairs, steps, Path(tmp) / "out", tokenizer)
            print(f"  {rows[name]['step_s']:.3f} s/step, {rows[name]['tokens_per_s']:.0f} tokens/s", flush=True)
    return {
        "hardware": cost.hardware(),
        "device": device["device"],
        "precision": "bf16 autocast" if device["bf16"] else "fp16 autocast" if device["fp16"] else "fp32",
        "memory": cost.memory_kind(),
        "arch": arch,
        "parameters": params,
        "timed_steps": steps,
        "pairs_per_step": PAIRS_PER_UPDATE,
        "torch": torch.__version__,
        "variants": with_ratios(rows, "dpo (recipe)"),
    }


def plot_cost(bench: dict, path: str | Path | None = None) -> plt.Figure:
    """The benchmark's variants as horizontal bars: tokens per second and peak memory, as ratios to the recipe."""
    names = list(bench["variants"])[::-1]  # first variant on top
    panels = {"tokens_per_s_ratio": "tokens per second vs recipe", "memory_ratio": "peak memory vs recipe"}
    panels = {k: v for k, v in panels.items() if all(bench["variants"][n][k] is not None for n in names)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 0.45 * len(names) + 1.4), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels.items(), strict=True):
        bars = ax.barh(names, [bench["variants"][n][key] for n in names], color="tab:blue")
        ax.bar_label(bars, fmt="%.2f×", fontsize=8)
        ax.axvline(1.0, color="grey", linewidth=0.8)
        ax.set_title(label, fontsize=10)
        ax.margins(x=0.2)
    for ax in axes.flat[1:]:
        ax.set_yticklabels([])
    fig.suptitle(f"{bench['arch']} model, {bench['precision']}, one run on {bench['hardware']}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark and write its JSON and chart; `tools/figures.py --tables` renders the lesson table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_arch = "smollm2-135m" if torch.cuda.is_available() else "tiny"
    parser.add_argument("--arch", choices=sorted(ARCHS), default=default_arch)
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per variant (after one warm-up)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="+", choices=list(variants({})), help="run these variants (and the recipe)")
    args = parser.parse_args(argv)
    results = benchmark(args.arch, args.steps, args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.arch}-{results['device']}"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_cost(results, path=args.out / f"{stem}.png")
    print(path)
    return path


if __name__ == "__main__":
    main()
