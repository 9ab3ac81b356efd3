"""course_utils.plotting draws what was logged and nothing else."""

import pytest

from course_utils.plotting import plot_training, series

HISTORY = [
    {"loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.5, "step": 5},
    {"loss": 0.40, "rewards/margins": 1.2, "rewards/accuracies": 0.9, "step": 10},
    {"eval_loss": 0.45, "eval_rewards/margins": 1.0, "step": 10},
    {"train_runtime": 3.0, "step": 10},
]


def test_series_reads_train_and_eval_values():
    assert series(HISTORY, "loss") == ([5, 10], [0.69, 0.40])
    assert series(HISTORY, "eval_rewards/margins") == ([10], [1.0])
    assert series(HISTORY, "nll_loss") == ([], [])


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
