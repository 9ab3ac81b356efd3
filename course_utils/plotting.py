"""The notebooks' charts: training curves from `trainer.state.log_history`, the ORPO λ sweep, ORPO vs SFT→DPO."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

# What each panel shows, in the order a learner reads them; panels with no logged values are skipped.
PANELS = {
    "loss": "Loss",
    "rewards/chosen": "Reward of chosen replies",
    "rewards/rejected": "Reward of rejected replies",
    "rewards/margins": "Reward margin (chosen - rejected)",
    "rewards/accuracies": "Reward accuracy (chosen > rejected)",
    "nll_loss": "NLL loss (SFT part of ORPO)",
    "log_odds_chosen": "Log odds ratio (chosen vs rejected)",
    "log_odds_ratio": "log σ(log odds ratio) = -OR loss",
}


def finish(fig: plt.Figure, title: str, path: str | Path | None) -> plt.Figure:
    """Add the title, tighten the layout and save the figure as PNG when `path` is given."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def series(log_history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged metric, e.g. `series(history, "eval_rewards/margins")`."""
    points = [(h["step"], float(h[key])) for h in log_history if key in h and "step" in h]
    return [s for s, _ in points], [v for _, v in points]


def plot_training(
    log_history: list[dict], keys: list[str] | None = None, title: str = "", path: str | Path | None = None
) -> plt.Figure:
    """One panel per metric, train and eval curves together; saved as PNG when `path` is given."""
    keys = [k for k in (keys or PANELS) if series(log_history, k)[0] or series(log_history, f"eval_{k}")[0]]
    if not keys:
        raise ValueError("log_history holds none of the metrics to plot; did the trainer log anything?")
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            steps, values = series(log_history, prefix + key)
            if steps:
                ax.plot(steps, values, style, label="eval" if prefix else "train")
        ax.set_title(PANELS.get(key, key), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    return finish(fig, title, path)


def plot_sweep(sweep: list[dict], title: str = "", path: str | Path | None = None) -> plt.Figure:
    """The λ trade-off: held-out NLL against preference accuracy and judged score, one labelled point per λ."""
    fig, ax = plt.subplots(figsize=(6, 4))
    nll = [s["nll"] for s in sweep]
    for key, marker in (("preference_accuracy", "o"), ("judged_score", "s")):
        values = [s[key] for s in sweep]
        if all(v is not None for v in values):
            ax.plot(nll, values, marker, linestyle="", label=key.replace("_", " "))
            for x, y, s in zip(nll, values, sweep, strict=True):
                ax.annotate(f"λ={s['lambda']:g}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("held-out NLL of chosen replies (lower = better language model)")
    ax.set_ylabel("share of held-out pairs / prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "ORPO: the loss weight λ", fontsize=10)
    return finish(fig, "", path)


COMPARISON_PANELS = {
    "train_runtime_s": "Total training time (s)",
    "step_time_s": "Time per optimizer step (s)",
    "peak_memory_mb": "Peak memory (MB)",
    "forward_passes_per_step": "Model forward passes per step",
    "preference_accuracy": "Held-out preference accuracy",
    "judged_score": "Judged score",
}


def plot_comparison(comparison: dict[str, dict], title: str = "", path: str | Path | None = None) -> plt.Figure:
    """One bar panel per measure, one bar per method (e.g. `{"orpo": {...}, "sft_dpo": {...}}`)."""
    methods = list(comparison)
    keys = [k for k in COMPARISON_PANELS if all(comparison[m].get(k) is not None for m in methods)]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=True):
        values = [comparison[m][key] for m in methods]
        bars = ax.bar(methods, values, color=["tab:blue", "tab:orange", "tab:green"][: len(methods)])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(COMPARISON_PANELS[key], fontsize=9)
        ax.margins(y=0.2)
    return finish(fig, title, path)
