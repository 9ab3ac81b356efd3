"""Plumbing the notebooks share but do not teach: the offline warm start and the trainers' common arguments."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from course_utils.profiles import device_settings


def common_args(output_dir: str | Path, seed: int = 0) -> dict:
    """Arguments every trainer in the course shares: device and precision, seed, quiet logging, no checkpoints."""
    device = {k: v for k, v in device_settings().items() if k != "device"}
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 5,
        "lr_scheduler_type": "cosine",
        "disable_tqdm": True,
        **device,
    }


def warm_start(model_path: str, dataset: Dataset, output_dir: str | Path, settings: dict, seed: int = 0) -> str:
    """Supervised fine-tuning on prompt/completion data; saves the model and tokenizer and returns their folder.

    In the offline profile this stands in for the instruction tuning SmolLM2-135M-Instruct already had.
    """
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    args = SFTConfig(**{**common_args(output_dir, seed), "logging_steps": 50}, **settings)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(output_dir))
    return str(output_dir)
