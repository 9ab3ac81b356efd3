"""Measures taken before and after training: held-out preference accuracy, greedy generations, the rule judge."""

from __future__ import annotations

import json

import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_utils import world

Messages = list[dict[str, str]]


def _completion_ids(tokenizer: PreTrainedTokenizerBase, prompt: Messages, completion: Messages) -> tuple[list, int]:
    """Token ids of prompt + completion rendered with the chat template, and where the completion starts."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template renders the prompt differently inside the full conversation")
    return full_ids, len(prompt_ids)


@torch.no_grad()
def mean_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    completions: list[Messages],
    batch_size: int = 16,
) -> list[float]:
    """Mean log-probability per completion token of each completion given its prompt."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    out = []
    for start in range(0, len(prompts), batch_size):
        pairs = [
            _completion_ids(tokenizer, p, c)
            for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True)
        ]
        width = max(len(ids) for ids, _ in pairs)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in pairs], device=device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in pairs], device=device)
        mask = torch.tensor(
            [[0] * cut + [1] * (len(ids) - cut) + [0] * (width - len(ids)) for ids, cut in pairs], device=device
        )
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = logits.log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        mask = mask[:, 1:]
        out += ((token_logps * mask).sum(-1) / mask.sum(-1)).tolist()
    return out


def preference_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 16
) -> float:
    """Share of pairs whose chosen reply has a higher mean per-token log-prob than the rejected one (no reference)."""
    chosen = mean_logprobs(model, tokenizer, dataset["prompt"], dataset["chosen"], batch_size)
    rejected = mean_logprobs(model, tokenizer, dataset["prompt"], dataset["rejected"], batch_size)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


@torch.no_grad()
def generate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Messages], max_new_tokens: int = 48
) -> list[str]:
    """Greedy replies to each prompt (deterministic, so before/after comparisons are fair)."""
    model.eval()
    device = next(model.parameters()).device
    replies = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(device)
        output = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        replies.append(tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return replies


def side_by_side(prompts: list[Messages], before: list[str], after: list[str]) -> pd.DataFrame:
    """A table of the last user turn with the replies before and after training."""
    return pd.DataFrame({"prompt": [p[-1]["content"] for p in prompts], "before": before, "after": after})


def judged_score(prompts: list[Messages], replies: list[str]) -> float:
    """Share of replies the offline world's rule prefers (refuse harmful requests, answer benign ones correctly)."""
    return sum(world.judge(p[-1]["content"], r) for p, r in zip(prompts, replies, strict=True)) / len(replies)


def unique_prompts(dataset: Dataset) -> list[Messages]:
    """The distinct prompts of a preference dataset, in order of first appearance."""
    return list({json.dumps(p): p for p in dataset["prompt"]}.values())


def scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, prompts: list[Messages], judged: bool
) -> dict:
    """Preference accuracy on `dataset`, greedy replies to `prompts`, and their judged score when `judged` (offline)."""
    replies = generate(model, tokenizer, prompts)
    return {
        "preference_accuracy": preference_accuracy(model, tokenizer, dataset),
        "judged_score": judged_score(prompts, replies) if judged else None,
        "replies": replies,
    }
