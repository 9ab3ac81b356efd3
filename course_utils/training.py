"""Plumbing the notebooks share but do not teach: the trainers' common arguments and a supervised fine-tuning stage."""

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


def sft(model_path: str, dataset: Dataset, output_dir: str | Path, settings: dict, seed: int = 0) -> tuple[str, dict]:
    """Supervised fine-tuning on prompt/completion data; saves model and tokenizer, returns their folder and metrics.

    The DPO notebook's offline warm start (standing in for the instruction tuning SmolLM2-135M-Instruct already had)
    and the first stage of SFT→DPO in the ORPO notebook.
    """
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    args = SFTConfig(**{**common_args(output_dir, seed), "logging_steps": 50}, **settings)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.save_model(str(output_dir))
    return str(output_dir), {**metrics, "global_step": trainer.state.global_step}
