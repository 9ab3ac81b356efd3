"""course_utils.plotting draws what was logged and nothing else."""

import pytest

from course_utils import plotting
from course_utils.plotting import plot_training

HISTORY = [
    {"loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.5, "step": 5},
    {"loss": 0.40, "rewards/margins": 1.2, "rewards/accuracies": 0.9, "step": 10},
    {"eval_loss": 0.45, "eval_rewards/margins": 1.0, "step": 10},
    {"train_runtime": 3.0, "step": 10},
]


def test_one_panel_per_logged_metric_and_png_saved(tmp_path):
    path = tmp_path / "curves.png"
    fig = plot_training(HISTORY, title="DPO", path=path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Loss", "Reward margin (chosen - rejected)", "Reward accuracy (chosen > rejected)"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["train", "eval"]


def test_nothing_to_plot_is_an_error():
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_training([{"train_runtime": 1.0, "step": 1}])


def test_sweep_plot_labels_every_lambda(tmp_path):
    sweep = [
        {"lambda": lam, "preference_accuracy": 0.5 + lam / 4, "judged_score": 0.4, "nll": 1 + lam}
        for lam in (0.0, 0.1, 1.0)
    ]
    fig = plotting.plot_sweep(sweep, path=tmp_path / "sweep.png")
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == sorted(["λ=0", "λ=0.1", "λ=1"] * 2)  # one per point, both measures
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_comparison_plot_skips_measures_a_method_lacks(tmp_path):
    comparison = {
        "orpo": {"train_runtime_s": 10.0, "step_time_s": 0.1, "peak_memory_mb": None, "judged_score": 0.7},
        "sft_dpo": {"train_runtime_s": 12.0, "step_time_s": 0.2, "peak_memory_mb": 5.0, "judged_score": 0.8},
    }
    fig = plotting.plot_comparison(comparison, path=tmp_path / "cmp.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Total training time (s)", "Time per optimizer step (s)", "Judged score"]
    assert [b.get_height() for b in fig.axes[1].patches] == [0.1, 0.2]
