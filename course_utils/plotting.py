"""Training curves from `trainer.state.log_history`, shared by the notebooks."""

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
    "log_odds_ratio": "Log odds ratio (chosen vs rejected)",
}


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
