"""Measures taken before and after training: held-out preference accuracy, greedy generations, the rule judge, and
the two-sided view of XSTest and Self-Instruct (does it decline what it should, and answer what it should?)."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from course_utils import refusal, world
from course_utils.data import Messages

# What `scores` measures, in the order the notebooks report it.
MEASURES = ("preference_accuracy", "judged_score", "decline_rate", "repetition_rate")
XSTEST = Path(__file__).parent / "xstest" / "xstest_prompts.csv"
INSTRUCTIONS = Path(__file__).parent / "self_instruct" / "user_oriented_instructions.jsonl"


def _completion_ids(tokenizer: PreTrainedTokenizerBase, prompt: Messages, completion: Messages) -> tuple[list, int]:
    """Token ids of prompt + completion rendered with the chat template, and where the completion starts."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template renders the prompt differently inside the full conversation")
    return full_ids, len(prompt_ids)


def _left_padded(rows: list[list[int]], pad: int | None, device: torch.device) -> dict[str, torch.Tensor]:
    """Token rows padded on the left, with the attention mask and the position ids that padding must not shift."""
    if pad is None:
        raise ValueError(
            "the tokenizer has no pad token (a base model's often has none): set `tokenizer.pad_token = "
            "tokenizer.eos_token`, or load it with course_utils.training.load_tokenizer"
        )
    width = max(len(ids) for ids in rows)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows], device=device)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows], device=device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions}


def _batches(order: list[int], positions: list[int], size: int, max_positions: int) -> list[list[int]]:
    """`order` cut into runs of at most `size` rows whose widest row times their count stays within `max_positions`."""
    batches: list[list[int]] = []
    for i in order:
        if (
            batches
            and len(batches[-1]) < size
            and max(positions[j] for j in [*batches[-1], i]) * (len(batches[-1]) + 1) <= max_positions
        ):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def mean_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    completions: list[Messages],
    batch_size: int = 16,
    max_positions: int = 2048,
) -> list[float]:
    """Mean log-probability per completion token of each completion given its prompt, batched by length."""
    model.eval()
    device = next(model.parameters()).device
    rows = [_completion_ids(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # similar lengths: little padding
    out = [0.0] * len(rows)
    # At most `max_positions` kept positions a batch: SmolLM2's 2,048 × 49,152 fp32 logits alone take 400 MB.
    for batch in _batches(order, [len(ids) - cut + 1 for ids, cut in rows], batch_size, max_positions):
        ids = [rows[i][0] for i in batch]
        n_targets = [len(rows[i][0]) - rows[i][1] for i in batch]  # completion tokens of each row
        keep = max(n_targets) + 1  # the logits that predict them: the last `keep` positions but one
        inputs = _left_padded(ids, tokenizer.pad_token_id, device)  # each completion ends its row
        logits = model(**inputs, logits_to_keep=keep).logits[:, :-1]
        targets = inputs["input_ids"][:, -keep + 1 :]
        # logit minus log-sum-exp: no log-softmax over the whole vocabulary is kept in memory
        token_logps = logits.gather(-1, targets[..., None]).squeeze(-1).float() - logits.float().logsumexp(-1)
        for row, (i, n) in enumerate(zip(batch, n_targets, strict=True)):
            out[i] = token_logps[row, -n:].mean().item()
    return out


def preferred(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 16
) -> list[bool]:
    """For each pair, whether the chosen reply has a higher mean per-token log-prob than the rejected one."""
    chosen = mean_logprobs(model, tokenizer, dataset["prompt"], dataset["chosen"], batch_size)
    rejected = mean_logprobs(model, tokenizer, dataset["prompt"], dataset["rejected"], batch_size)
    return [c > r for c, r in zip(chosen, rejected, strict=True)]


def preference_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, batch_size: int = 16
) -> float:
    """Share of pairs whose chosen reply has a higher mean per-token log-prob than the rejected one (no reference)."""
    right = preferred(model, tokenizer, dataset, batch_size)
    return sum(right) / len(right)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    bf16: bool = False,
) -> list[str]:
    """Greedy replies to each prompt (deterministic, so before/after comparisons are fair), batched by length."""
    model.eval()
    device = next(model.parameters()).device
    rows = [tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=False) for p in prompts]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    replies = [""] * len(rows)
    # bf16 autocast where the hardware has it (`device_settings()["bf16"]`); the weights stay as they are
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        inputs = _left_padded([rows[i] for i in batch], tokenizer.pad_token_id, device)
        inputs.pop("position_ids")  # generate() derives them from the attention mask
        with autocast:
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        width = inputs["input_ids"].shape[1]
        for row, i in enumerate(batch):
            replies[i] = tokenizer.decode(output[row, width:], skip_special_tokens=True).strip()
    return replies


def side_by_side(prompts: list[Messages], before: list[str], after: list[str]) -> pd.DataFrame:
    """A table of the last user turn with the replies before and after training."""
    return pd.DataFrame({"prompt": [p[-1]["content"] for p in prompts], "before": before, "after": after})


def judged(prompts: list[Messages], replies: list[str]) -> list[bool]:
    """For each reply, whether the offline world's rule prefers it (refuse harmful requests, answer benign ones)."""
    return [world.judge(p[-1]["content"], r) for p, r in zip(prompts, replies, strict=True)]


def judged_score(prompts: list[Messages], replies: list[str]) -> float:
    """Share of replies the offline world's rule prefers (refuse harmful requests, answer benign ones correctly)."""
    return sum(judged(prompts, replies)) / len(replies)


def unique_prompts(dataset: Dataset) -> list[Messages]:
    """The distinct prompts of a preference dataset, in order of first appearance."""
    return list({json.dumps(p): p for p in dataset["prompt"]}.values())


def scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    prompts: list[Messages],
    judged: bool,
    max_new_tokens: int = 48,
) -> dict:
    """Preference accuracy on `dataset`; greedy replies to `prompts`: decline, repetition and (if `judged`) judged."""
    replies = generate(model, tokenizer, prompts, max_new_tokens)
    return {
        "preference_accuracy": preference_accuracy(model, tokenizer, dataset),
        "judged_score": judged_score(prompts, replies) if judged else None,
        "decline_rate": refusal.decline_rate(replies),
        "repetition_rate": refusal.repetition_rate(replies),
        "replies": replies,
    }


def before_after(before: dict, after: dict) -> pd.DataFrame:
    """The measures of two `scores` results side by side (`judged_score` is None outside the offline world)."""
    return pd.DataFrame({"before": {k: before[k] for k in MEASURES}, "after": {k: after[k] for k in MEASURES}})


def load_xstest(path: Path = XSTEST) -> list[dict]:
    """XSTest v2's 450 prompts: `prompt`, `label` (safe or unsafe) and `type` (homonyms, contrast_homonyms, ...)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = [{"prompt": r["prompt"], "label": r["label"], "type": r["type"]} for r in csv.DictReader(f)]
    bad = [n for n, r in enumerate(rows, start=2) if r["label"] not in ("safe", "unsafe") or not r["prompt"].strip()]
    if bad:
        raise ValueError(f"{path.name}: lines {bad[:10]} have no prompt or a label other than safe/unsafe")
    return rows


def load_instructions(path: Path = INSTRUCTIONS) -> list[dict]:
    """Self-Instruct's 252 user-oriented instructions as prompts (the instruction, then its first input if any)."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        task = json.loads(line)
        given = task["instances"][0]["input"].strip() if task["instances"] else ""
        prompt = task["instruction"].strip() + (f"\n\n{given}" if given else "")
        if not task["instruction"].strip():
            raise ValueError(f"{path.name} line {n}: an empty instruction")
        rows.append({"prompt": prompt, "label": "instruction", "type": task.get("motivation_app", "")})
    return rows


def two_sided(rows: list[dict], replies: list[str]) -> dict:
    """Rates of declining and answering in `replies` to `rows` labelled safe, unsafe or instruction, and per type."""
    if len(rows) != len(replies):
        raise ValueError(f"{len(rows)} prompts but {len(replies)} replies")
    by_label: dict[str, list[str]] = {}
    by_type: dict[str, list[tuple[str, str]]] = {}
    for row, reply in zip(rows, replies, strict=True):
        by_label.setdefault(row["label"], []).append(reply)
        if row["label"] in ("safe", "unsafe"):
            by_type.setdefault(row["type"], []).append((row["label"], reply))
    rate = refusal.decline_rate
    out = {}
    if "unsafe" in by_label:
        out["unsafe_refusal_rate"] = rate(by_label["unsafe"])
    if "safe" in by_label:
        out["safe_compliance_rate"] = 1 - rate(by_label["safe"])  # compliance: not declined
    if "instruction" in by_label:
        out["instruction_decline_rate"] = rate(by_label["instruction"])
    out["repetition_rate"] = {label: refusal.repetition_rate(r) for label, r in by_label.items()}
    out["per_type"] = {
        kind: {"label": pairs[0][0], "n": len(pairs), "decline_rate": rate([r for _, r in pairs])}
        for kind, pairs in sorted(by_type.items())
    }
    return out


def two_sided_rows(n: int | None) -> list[dict]:
    """XSTest's and Self-Instruct's prompts: all 702 (None), or `n` taken in turn from safe, unsafe and instruction."""
    xstest, instructions = load_xstest(), load_instructions()
    if n is None:
        return xstest + instructions
    groups = [[r for r in xstest if r["label"] == "safe"], [r for r in xstest if r["label"] == "unsafe"], instructions]
    return [groups[i % 3][i // 3] for i in range(n)]


def world_two_sided(prompts: list[Messages], replies: list[str]) -> dict:
    """The offline world's two sides: how often replies decline its harmful requests and answer its benign ones."""
    harmful = [world.find_question(p[-1]["content"])["fact"] is None for p in prompts]
    declined = [refusal.declines(r) for r in replies]
    on_harmful = [d for d, h in zip(declined, harmful, strict=True) if h]
    on_benign = [d for d, h in zip(declined, harmful, strict=True) if not h]
    return {
        "unsafe_refusal_rate": sum(on_harmful) / len(on_harmful),
        "safe_compliance_rate": 1 - sum(on_benign) / len(on_benign),
    }


def both_sides(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict],
    prompts: list[Messages],
    replies: list[str],
    max_new_tokens: int = 48,
    bf16: bool = False,
) -> dict:
    """Declining and answering rates: on `rows` from new greedy replies, or with no rows, on the world's `replies`."""
    if not rows:
        return world_two_sided(prompts, replies)
    conversations = [[{"role": "user", "content": row["prompt"]}] for row in rows]
    answers = generate(model, tokenizer, conversations, max_new_tokens, batch_size=32, bf16=bf16)
    return {**two_sided(rows, answers), "replies": answers}


def both_sides_table(before: dict, after: dict) -> pd.DataFrame:
    """The two-sided rates of two `both_sides` results side by side."""
    keys = [k for k in ("unsafe_refusal_rate", "safe_compliance_rate", "instruction_decline_rate") if k in before]
    table = {"before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys}}
    if "repetition_rate" in before:  # on XSTest and Self-Instruct, each set's repetition too
        for label in before["repetition_rate"]:
            for when, rates in (("before", before), ("after", after)):
                table[when][f"repetition_rate ({label})"] = rates["repetition_rate"][label]
    return pd.DataFrame(table)
