"""The offline notebooks' targets: what a full offline run must show, on any x86 CPU and for any seed.

Each threshold sits beyond the worst of twelve runs, seeds 42, 1 and 2 on two CPU code paths (`tools/seeds.py`,
2_preference_alignment/images/seeds.json), and above what an untrained or broken run gives.

`misses(name, metrics)` lists the targets a run's metrics.json misses (empty: all met). The tests check the runs
`make notebooks` wrote; `tools/seeds.py` checks runs with other seeds and CPU code paths.
"""

from __future__ import annotations


def _dpo(m: dict) -> dict[str, bool]:
    full, lora = m["full_vs_lora"]["full"], m["full_vs_lora"]["lora"]
    gain = m["judged_score_after"] - m["judged_score_before"]
    return {
        "DPO ranks the chosen reply first on >= 90% of held-out pairs": m["preference_accuracy_after"] >= 0.90,
        "DPO raises the judged score by >= 0.15": gain >= 0.15,
        "LoRA trains < 1/4 of the parameters": lora["trainable_params"] < full["trainable_params"] / 4,
        "LoRA ranks >= 90% of held-out pairs right": lora["preference_accuracy_after"] >= 0.90,
        "LoRA raises the judged score by >= 0.25": lora["judged_score_after"] - m["judged_score_before"] >= 0.25,
    }


def _orpo(m: dict) -> dict[str, bool]:
    sweep = {point["lambda"]: point for point in m["sweep"]}
    comparison = m["comparison"]
    lead = comparison["orpo"]["judged_score"] - comparison["sft_dpo"]["judged_score"]
    return {
        "random weights say nothing right before training": m["judged_score_before"] == 0.0,
        "ORPO's judged score after one stage >= 0.45": m["judged_score_after"] >= 0.45,
        "ORPO raises preference accuracy by >= 0.15": m["preference_accuracy_after"] - m["preference_accuracy_before"]
        >= 0.15,
        "the sweep has 3 values of λ or more, the main run's among them": len(sweep) >= 3
        and sweep.get(0.1, {}).get("judged_score") == m["judged_score_after"],
        "the largest λ has a higher held-out NLL than the smallest": sweep[max(sweep)]["nll"]
        > sweep[min(sweep)]["nll"],
        "ORPO makes 1 forward pass per step, SFT→DPO 2": comparison["orpo"]["forward_passes_per_step"] == 1
        and comparison["sft_dpo"]["forward_passes_per_step"] == 2,
        "SFT→DPO judged at least as well as ORPO, give or take 0.10": lead <= 0.10,
    }


TARGETS = {"dpo": _dpo, "orpo": _orpo}


def misses(name: str, metrics: dict) -> list[str]:
    """The targets of notebook `name` (`dpo`, `orpo`) an offline run's metrics miss."""
    if metrics.get("profile") != "offline":
        return [f"an offline run (this one is {metrics.get('profile')!r})"]
    return [target for target, met in TARGETS[name](metrics).items() if not met]
