"""The notebooks' recipes are literals beside their calls, and the copies elsewhere (train.py's configs, the SFT→DPO
stage of the ORPO notebook) agree with them; train.py trains offline on one and two CPU processes."""

import json
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from transformers import AutoModelForCausalLM
from trl import DPOConfig, ModelConfig, ScriptArguments, TrlParser

from course_utils.profiles import PROFILES
from course_utils.training import common_args
from tools import recipes

SCRIPTS = Path(__file__).resolve().parents[1] / "2_preference_alignment" / "scripts"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COURSE_PROFILE": "offline"}
DPO, ORPO = "dpo_finetuning_example.ipynb", "orpo_finetuning_example.ipynb"
CALLS = [(DPO, "DPOConfig"), (DPO, "warm_start"), (ORPO, "ORPOConfig"), (ORPO, "DPOConfig"), (ORPO, "sft_settings")]
HANG_S = 150  # a run takes 10 to 60 s: one that has not exited after this has hung (a rank that never exits)


@pytest.mark.parametrize(("notebook", "call"), CALLS)
def test_every_learned_argument_is_a_literal_in_the_notebook(notebook, call):
    found = recipes.settings(notebook, call)  # raises on an argument that is not a literal or bound to one
    expected = recipes.LEARNED - {"beta"} if call.startswith(("sft", "warm")) else recipes.LEARNED  # SFT has no β
    for row, values in found.items():
        assert set(values) == expected, f"{notebook} {call} ({row}): {set(values) ^ expected}"


def test_the_orpo_notebooks_sft_dpo_trains_with_the_dpo_notebooks_recipes_and_as_many_passes_as_orpo():
    assert recipes.settings(ORPO, "DPOConfig") == recipes.settings(DPO, "DPOConfig")
    sft = recipes.settings(ORPO, "sft_settings")
    assert sft["offline"] == recipes.settings(DPO, "warm_start")["offline"]
    # benchmarks/t4_estimate.py counts the SFT stage's epochs as ORPO's: the comparison gives both the same passes.
    assert sft["hub"]["num_train_epochs"] == recipes.settings(ORPO, "ORPOConfig")["hub"]["num_train_epochs"]


def train(args: list[str], launcher: list[str] | None = None) -> tuple[str, dict]:
    """Run train.py offline: its stdout and final metrics; a hung run fails, with all its processes killed."""
    command = [*(launcher or [sys.executable]), "train.py", *args]
    process = subprocess.Popen(command, cwd=SCRIPTS, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(process.pid).children(recursive=True), process]:  # each rank: its own session
            child.kill()
        stdout, stderr = process.communicate()
        finished = "trained and saved, then did not exit" if "final metrics: " in stdout else "did not finish training"
        pytest.fail(f"{' '.join(command)} hung: {finished} within {HANG_S} s. Its last output:\n{stdout[-1500:]}")
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    lines = [line for line in stdout.splitlines() if line.startswith("final metrics: ")]
    assert len(lines) == 1, stdout[-2000:]
    return stdout, json.loads(lines[0].removeprefix("final metrics: "))


@pytest.mark.slow
def test_trains_orpo_offline_with_overrides(tmp_path, bundled_pairs):
    # DPO through train.py runs in test_two_cpu_processes.
    overrides = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path)]
    stdout, metrics = train(["orpo", "--config", "configs/orpo_offline.yaml", *overrides])
    assert "rank 0 of 1 " in stdout
    assert math.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0
    assert metrics["epoch"] == pytest.approx(2 / math.ceil(len(bundled_pairs) / 4))  # two steps of four pairs
    args = torch.load(tmp_path / "training_args.bin", weights_only=False)  # the command line won over the config
    assert (args.max_steps, args.per_device_train_batch_size) == (2, 4)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)  # the trained model was saved whole
    assert model.num_parameters() > 0 and (tmp_path / "tokenizer.json").exists()


@pytest.mark.slow
def test_two_cpu_processes(tmp_path, bundled_pairs):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "accelerate/multi_cpu.yaml"]
    args = ["dpo", "--config", "configs/dpo_offline.yaml", "--use_cpu", "true", "--max_steps", "2"]
    stdout, metrics = train([*args, "--output_dir", str(tmp_path)], launcher)
    # Two processes share one stdout: their lines may interleave, so find each rank anywhere in it.
    ranks = re.findall(r"rank (\d+) of (\d+) \(DistributedType\.(\w+)\)", stdout)
    assert sorted(ranks) == [("0", "2", "MULTI_CPU"), ("1", "2", "MULTI_CPU")], stdout[-2000:]
    assert math.isfinite(metrics["train_loss"])
    batch = 2 * yaml.safe_load((SCRIPTS / "configs" / "dpo_offline.yaml").read_text())["per_device_train_batch_size"]
    assert metrics["epoch"] == pytest.approx(2 / math.ceil(len(bundled_pairs) / batch))
    assert (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (SCRIPTS / "configs").glob("*_*.yaml")))
def test_configs_parse_as_train_py_and_hold_the_notebooks_recipes(recipe):
    """configs/ is train.py's copy of the notebooks' recipes: each parses as its trainer's config, and every value that
    changes what is learned is the notebook's, for the row of the profile it is named after."""
    from trl.experimental.orpo import ORPOConfig

    method, row = recipe.split("_")
    path = SCRIPTS / "configs" / f"{recipe}.yaml"
    raw = yaml.safe_load(path.read_text())
    config_class = {"dpo": DPOConfig, "orpo": ORPOConfig}[method]
    notebook = recipes.settings(f"{method}_finetuning_example.ipynb", config_class.__name__)[row]
    learned = {key: value for key, value in raw.items() if key in recipes.LEARNED}
    assert learned == notebook, f"{path.name} and the {method} notebook's {row} row differ"
    shared = common_args("unused")  # what every trainer in the notebooks shares
    assert {k: raw[k] for k in ("report_to", "save_strategy")} == {k: shared[k] for k in ("report_to", "save_strategy")}
    # Parse as train.py does: every key must be a field (TrlParser rejects the rest); bf16 off to parse on a CPU.
    parser = TrlParser((ScriptArguments, config_class, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(["--config", str(path), "--bf16", "false"])
    assert training_args.bf16 is False  # the command line wins over the config
    assert {key: getattr(training_args, key) for key in notebook} == notebook
    profile = PROFILES[row]
    expected_model = profile.instruct_model if method == "dpo" else profile.base_model
    assert (model_args.model_name_or_path, script_args.dataset_name) == (expected_model, profile.dataset)


@pytest.mark.parametrize("path", sorted((SCRIPTS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    config = ClusterConfig.from_yaml_file(path)  # raises on a key or value accelerate does not know
    stage = re.fullmatch(r"zero(\d)", path.stem)
    if stage:  # zero2.yaml runs ZeRO stage 2, zero3.yaml stage 3: the name the README tells readers to pick
        assert config.distributed_type == "DEEPSPEED" and config.deepspeed_config["zero_stage"] == int(stage[1])


def test_bad_method_is_named():
    pop_method = runpy.run_path(str(SCRIPTS / "train.py"))["pop_method"]
    for argv, got in ((["train.py", "ppo", "--config", "x.yaml"], "'ppo'"), (["train.py"], "nothing")):
        with pytest.raises(SystemExit, match=re.escape(f"must be one of ['dpo', 'orpo'], got {got}")):
            pop_method(argv)
