"""The offline model: loads like a Hub model, renders ChatML, and is the same for the same seed."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from course_utils.tiny_model import build_tiny_model


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
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n_params < 2e6


def test_same_seed_same_weights_other_seed_other_weights(tiny_model_dir, tmp_path):
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b", seed=0)).state_dict()
    c = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "c", seed=1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "b" / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


def test_the_larger_size_is_larger_and_an_unknown_one_is_refused(tmp_path):
    small = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "small", size="small"))
    assert 4e6 < small.num_parameters() < 6e6  # the 🦁 size knob of the DPO notebook
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        build_tiny_model(tmp_path / "huge", size="huge")
