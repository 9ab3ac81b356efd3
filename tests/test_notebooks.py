"""The notebooks: stored clean, at home in Colab, and the measures of their runs (`make notebooks`) on target."""

import json
import math
import re
from pathlib import Path

import nbformat
import pytest
from standin_hub import MINIATURE  # pytest puts tests/ (no __init__.py) on sys.path

from tools import targets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "2_preference_alignment" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
REPO = "smol-course/smol-preference-alignment"
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/([^\s\"')]+\.ipynb)")
# Markdown links; in Colab a relative link leads nowhere, so links to the course go to GitHub.
LINK = re.compile(r"\]\(([^)\s]+)\)")
GITHUB_FILE = re.compile(rf"https://github\.com/{REPO}/blob/main/([^#?]+)")


def markdown(path: Path) -> str:
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown")


def source(path: Path) -> str:
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_clean_and_at_home_in_colab(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "clear outputs before committing"
    text = source(path)
    assert "login(" not in text and "input(" not in text and "notebook_login" not in text
    badges = BADGE.findall(text)  # the badge first, then the links to both versions of the notebook
    assert badges[0] == (REPO, path.relative_to(ROOT).as_posix())
    assert all(repo == REPO and (ROOT / target).is_file() for repo, target in badges), badges
    assert f"git+https://github.com/{REPO}" in text  # the Colab-only install cell
    assert nb.metadata.get("accelerator") == "GPU" and nb.metadata["colab"].get("gpuType") == "T4"


def course_links(text: str) -> list[str]:
    """Every link in the text that is not to another website: each must be an absolute GitHub link to this repo."""
    return [target for target in LINK.findall(text) if not target.startswith(("https://", "http://", "#"))] + [
        target for target in LINK.findall(text) if target.startswith(f"https://github.com/{REPO}/")
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_work_when_opened_in_colab(path):
    links = course_links(markdown(path))
    assert links, "the notebook links to its lessons"
    for target in links:
        found = GITHUB_FILE.match(target)
        assert found, f"{target}: a relative link breaks in Colab; link to https://github.com/{REPO}/blob/main/…"
        assert (ROOT / found[1]).is_file(), f"{target} points at a file that does not exist"


# The notebook runs: what nbval executed (`make notebooks`), offline in full, hub capped to a couple of steps.


@pytest.mark.runs
@pytest.mark.parametrize("name", ["dpo", "orpo"])
def test_offline_runs_meet_their_targets(name, notebook_run):
    """The targets of tools/targets.py, which hold for three seeds on two CPU code paths (tools/seeds.py)."""
    assert targets.misses(name, notebook_run(name, "offline")[0]) == []


def test_the_targets_catch_a_run_that_misses_them():
    measured = json.loads((ROOT / "2_preference_alignment" / "images" / "measured.json").read_text())
    assert targets.misses("dpo", measured["dpo"]) == [] and targets.misses("orpo", measured["orpo"]) == []
    worse = json.loads(json.dumps(measured["orpo"]))
    worse["comparison"]["sft_dpo"]["judged_score"] = worse["judged_score_after"] - 0.5
    worse["sweep"][-1]["nll"] = 0.0
    assert len(targets.misses("orpo", worse)) == 2
    assert targets.misses("dpo", {**measured["dpo"], "profile": "hub"}) == ["an offline run (this one is 'hub')"]


HUB_MODELS = {"dpo": "HuggingFaceTB/SmolLM2-135M-Instruct", "orpo": "HuggingFaceTB/SmolLM2-135M"}


@pytest.mark.runs
@pytest.mark.parametrize("name", ["dpo", "orpo"])
def test_hub_path_runs_end_to_end_from_the_hub(name, notebook_run):
    """What Colab learners run, through the libraries' own download code, capped: SmolLM2's tokenizer (ORPO's: the
    base model's, without pad token or chat template), a bf16 checkpoint saved back in fp32, the data files."""
    m, run_dir = notebook_run(name, "hub")
    assert m["profile"] == "hub" and m["model"] == HUB_MODELS[name]
    for key in ("preference_accuracy", "decline_rate", "repetition_rate"):
        for when in ("before", "after"):
            assert 0 <= m[f"{key}_{when}"] <= 1, (key, when)
    if name == "orpo":  # every reply kept something to learn from: TRL's ORPO never shortens a long prompt
        assert math.isfinite(m["eval_nll_loss"]) and m["eval_nll_loss"] > 0
    config = json.loads((run_dir / "model" / "config.json").read_text())
    served_shape = ("llama", MINIATURE["num_hidden_layers"], "float32")
    assert (config["model_type"], config["num_hidden_layers"], config["dtype"]) == served_shape
    hub = json.loads((run_dir.parent / "standin-hub.json").read_text())  # what the stand-in Hub was asked for
    served = "\n".join(hub["requests"])  # downloaded, not found somewhere on this machine
    assert re.search(rf"^GET /{HUB_MODELS[name]}/resolve/[^/]+/model\.safetensors$", served, re.M)
    assert re.search(r"^GET /datasets/Anthropic/hh-rlhf/resolve/[^/]+/harmless-base/train\.jsonl\.gz$", served, re.M)
    assert not hub["unserved"], "the libraries asked for something the stand-in does not serve"


@pytest.mark.runs
def test_dpo_hub_smoke_is_capped_and_measures_what_it_says(notebook_run):
    m, run_dir = notebook_run("dpo", "hub")
    assert m["n_test_pairs"] == 4 and 1 <= m["n_test_prompts"] <= 4
    assert 0 <= m["eval_rewards_accuracies"] <= 1
    assert m["full_vs_lora"]["lora"]["trainable_params"] < m["full_vs_lora"]["full"]["trainable_params"] / 4
    served = "\n".join(json.loads((run_dir.parent / "standin-hub.json").read_text())["requests"])
    ultrafeedback = r"^GET /datasets/HuggingFaceH4/ultrafeedback_binarized/resolve/[^/]+/data/train_prefs"
    assert re.search(ultrafeedback, served, re.M)  # UltraFeedback from the Hub, capped like everything else
