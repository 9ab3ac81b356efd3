"""The scale-out script, 2_preference_alignment/scripts/train.py: it trains offline on one process and on two CPU
processes, its configs say what course_utils.profiles says, and its accelerate configs load."""

import importlib.util
import json
import math
import os
import re
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


# A run here takes 10 to 60 s; a run that has not exited after this long has hung (a rank that never exits).
HANG_S = 150


def train(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run train.py from its folder, offline, and return the finished process with its output.

    A run that outlives `HANG_S` fails the test with what hung, and every process it started is killed: the launcher
    starts each rank in a session of its own, so killing the launcher alone would leave them running.
    """
    command = [*(launcher or [sys.executable]), "train.py", *args]
    process = subprocess.Popen(command, cwd=SCRIPTS, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(process.pid).children(recursive=True), process]:
            child.kill()
        stdout, stderr = process.communicate()
        finished = "trained and saved, then did not exit" if "final metrics: " in stdout else "did not finish training"
        pytest.fail(f"{' '.join(command)} hung: {finished} within {HANG_S} s. Its last output:\n{stdout[-1500:]}")
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def final_metrics(stdout: str) -> dict:
    """The metrics train.py prints after training."""
    lines = [line for line in stdout.splitlines() if line.startswith("final metrics: ")]
    assert len(lines) == 1, stdout[-2000:]
    return json.loads(lines[0].removeprefix("final metrics: "))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_trains_offline_with_overrides(method, tmp_path, bundled_pairs):
    out = tmp_path / method
    overrides = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", str(out)]
    result = train([method, "--config", f"configs/{method}_offline.yaml", *overrides])
    assert "rank 0 of 1 " in result.stdout
    metrics = final_metrics(result.stdout)
    assert math.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0
    assert metrics["epoch"] == pytest.approx(2 / math.ceil(len(bundled_pairs) / 4))  # two steps of four pairs
    args = torch.load(out / "training_args.bin", weights_only=False)  # the command line won over the config
    assert (args.max_steps, args.per_device_train_batch_size) == (2, 4)
    config = {"dpo": "DPOConfig", "orpo": "ORPOConfig"}[method]
    notebook = f"{method}_finetuning_example.ipynb"
    assert args.learning_rate == recipes.settings(notebook, config)["offline"]["learning_rate"]
    model = AutoModelForCausalLM.from_pretrained(out)  # the trained model was saved whole
    assert model.num_parameters() > 0 and (out / "tokenizer.json").exists()


@pytest.mark.slow
def test_two_cpu_processes(tmp_path, bundled_pairs):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "accelerate/multi_cpu.yaml"]
    args = ["dpo", "--config", "configs/dpo_offline.yaml", "--use_cpu", "true", "--max_steps", "2"]
    result = train([*args, "--output_dir", str(tmp_path)], launcher)
    # Two processes share one stdout: their lines may interleave, so find each rank anywhere in it.
    ranks = re.findall(r"rank (\d+) of (\d+) \(DistributedType\.(\w+)\)", result.stdout)
    assert sorted(ranks) == [("0", "2", "MULTI_CPU"), ("1", "2", "MULTI_CPU")], result.stdout[-2000:]
    metrics = final_metrics(result.stdout)
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
    spec = importlib.util.spec_from_file_location("train_script", SCRIPTS / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["train.py", "orpo", "--config", "configs/orpo_offline.yaml"]
    assert script.pop_method(argv) == "orpo" and argv == ["train.py", "--config", "configs/orpo_offline.yaml"]
    for argv, got in ((["train.py", "ppo", "--config", "x.yaml"], "'ppo'"), (["train.py"], "nothing")):
        with pytest.raises(SystemExit, match=re.escape(f"must be one of ['dpo', 'orpo'], got {got}")):
            script.pop_method(argv)
