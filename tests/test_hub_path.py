"""The `hub` profile's own code: HH-RLHF from the Hub (online, then offline from the cache), the split by opening
request, base tokenizers, and the token the notebooks push with."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from standin_hub import serve
from transformers import AutoTokenizer

from course_utils import evaluation, training
from course_utils.sources import DATA_FILE, opening_request

# Runs data.load_hh_rlhf in a fresh process (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at import).
LOAD = """
import json
from course_utils import data, sources
raw = data.load_hh_rlhf("Anthropic/hh-rlhf", train_rows=40, test_rows=10)
print(json.dumps({split: list(raw[split]["chosen"]) for split in ("train", "test")}))
"""


@pytest.fixture
def hh_rlhf_hub(tmp_path):
    """A stand-in Hub with HH-RLHF's harmless-base files, whose training rows repeat some test rows' openings."""
    rows = [json.loads(line) for line in gzip.open(DATA_FILE, "rt", encoding="utf-8")][:300]
    folder = tmp_path / "hub" / "datasets" / "Anthropic" / "hh-rlhf" / "harmless-base"
    folder.mkdir(parents=True)
    for split, part in (("train", rows[:250]), ("test", rows[200:])):  # 50 rows in both, as openings may be online
        with gzip.open(folder / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in part)
    with serve(tmp_path / "hub") as hub:
        yield hub


def load_in_subprocess(hub, hf_home, offline: bool) -> tuple[dict, str]:
    """What LOAD prints, and its stdout, with the stand-in as the Hub and `hf_home` as the cache."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1" if offline else "0",
    }
    run = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), run.stdout


@pytest.mark.slow
def test_hub_data_loads_again_offline_from_the_cache_and_no_test_opening_is_trained_on(hh_rlhf_hub, tmp_path):
    online, said = load_in_subprocess(hh_rlhf_hub, tmp_path / "hf", offline=False)
    assert len(online["train"]) == 40 and len(online["test"]) == 10
    held_out = {opening_request(t) for t in online["test"]}
    assert not held_out & {opening_request(t) for t in online["train"]}
    assert "training rows that open with the same request as a test row" in said  # counted, not silent
    asked = len(hh_rlhf_hub.requests)
    offline, _ = load_in_subprocess(hh_rlhf_hub, tmp_path / "hf", offline=True)  # a re-run without the Hub
    assert offline == online and len(hh_rlhf_hub.requests) == asked


def test_base_tokenizer_gets_chatml_and_a_pad_token(tiny_model_dir, tmp_path):
    # Saved like SmolLM2-135M's: no chat template, no pad token.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template, tokenizer.pad_token = None, None
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    ready = training.load_tokenizer(tmp_path)
    assert ready.pad_token == ready.eos_token and ready.pad_token_id is not None
    text = ready.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")


def test_evaluation_names_a_missing_pad_token(tiny, tmp_path):
    model, tokenizer = tiny
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.pad_token = None
    prompts = [[{"role": "user", "content": "What colour is a lime?"}]] * 2
    with pytest.raises(ValueError, match="no pad token"):
        evaluation.mean_logprobs(model, tokenizer, prompts, [[{"role": "assistant", "content": "Green."}]] * 2)


def test_token_comes_from_the_environment_or_colab_secrets(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert training.hf_token() is None  # not in Colab, no variable
    secrets = {"HF_TOKEN": "hf_secret"}

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    def get(name):
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    userdata = types.SimpleNamespace(
        get=get, SecretNotFoundError=SecretNotFoundError, NotebookAccessError=NotebookAccessError
    )
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    assert training.hf_token() == "hf_secret"  # Colab's secret
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert training.hf_token() == "hf_env"  # the environment first
    monkeypatch.delenv("HF_TOKEN")
    secrets.clear()
    assert training.hf_token() is None  # no such secret: no push, no error


def test_each_notebook_pushes_to_its_own_repo():

    notebooks = Path(__file__).resolve().parents[1] / "2_preference_alignment" / "notebooks"
    repos = {}
    for name in ("dpo", "orpo"):
        text = (notebooks / f"{name}_finetuning_example.ipynb").read_text(encoding="utf-8")
        repos[name] = re.findall(r'hub_model_id=\\"([^\\"]+)\\"', text)
        assert len(repos[name]) == 1, f"{name}: one hub_model_id, in the training config"
        assert "push_to_hub(token=token)" in text and "hf_token()" in text
    assert repos["dpo"] != repos["orpo"], "DPO and ORPO would overwrite each other's model"
