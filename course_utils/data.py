"""Preference data in the shape TRL's trainers expect: conversational prompt / chosen / rejected.

Three sources lead here: Anthropic HH-RLHF transcripts (`hh_rlhf_to_preference`), UltraFeedback-binarized rows
(`ultrafeedback_to_preference`), and any dataset with prompt/chosen/rejected-like columns (`to_preference`,
the "your own data" path). Bad rows raise `ValueError` naming the row and the problem; `format_hh_rlhf` drops
the rows that cannot be converted and reports how many and why.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from datasets import Dataset, DatasetDict, Features, Value, load_dataset

from course_utils import sources
from course_utils.profiles import Profile
from course_utils.world import DATA_DIR

Messages = list[dict[str, str]]
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
TURN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}
MESSAGES = [{"role": Value("string"), "content": Value("string")}]
PREFERENCE_FEATURES = Features({"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES})


def parse_turns(text: str) -> Messages:
    """Split an HH-RLHF transcript into chat messages, merging consecutive turns of the same role."""
    if not text.startswith(HUMAN):
        raise ValueError(f"the transcript must start with {HUMAN!r}, it starts with {text[:30]!r}")
    parts = TURN.split(text)[1:]  # [role, text, role, text, ...]
    messages: Messages = []
    for speaker, content in zip(parts[::2], parts[1::2], strict=True):
        role, content = ROLES[speaker], content.strip()
        if not content:
            raise ValueError(f"an empty {speaker} turn in the prompt")
        if messages and messages[-1]["role"] == role:  # chat templates reject two turns of one role in a row
            messages[-1]["content"] += "\n\n" + content
        else:
            messages.append({"role": role, "content": content})
    return messages


def hh_rlhf_to_preference(example: dict) -> dict[str, Messages]:
    """Turn one HH-RLHF row (`chosen`/`rejected` transcripts) into an explicit prompt with two replies.

    The prompt is what both transcripts share up to their last common `Assistant:` marker; each reply is the rest of
    its transcript, kept whole even if it contains text that looks like a turn marker.
    """
    chosen, rejected = example["chosen"], example["rejected"]
    if chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(ASSISTANT)
    if cut == -1:
        raise ValueError("the transcripts share no assistant turn to answer")
    prompt = parse_turns(chosen[:cut])
    if prompt[-1]["role"] != "user":
        raise ValueError("the final reply follows another assistant turn: the prompt does not end with the user")
    replies = {}
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        reply = text[cut + len(ASSISTANT) :].strip()
        if not reply:
            raise ValueError(f"the {name} reply is empty")
        replies[name] = [{"role": "assistant", "content": reply}]
    return {"prompt": prompt, **replies}


def _try_hh(example: dict) -> dict:
    """`hh_rlhf_to_preference`, with the failure reason in `error` instead of an exception."""
    try:
        return {**hh_rlhf_to_preference(example), "error": ""}
    except ValueError as e:
        return {"prompt": [], "chosen": [], "rejected": [], "error": str(e)}


def format_hh_rlhf(dataset: Dataset, verbose: bool = True) -> tuple[Dataset, Counter]:
    """Convert a whole HH-RLHF split; drop the rows that cannot be converted and return the reasons counted."""
    features = Features({**PREFERENCE_FEATURES, "error": Value("string")})
    converted = dataset.map(_try_hh, remove_columns=dataset.column_names, features=features, desc="Formatting HH-RLHF")
    dropped = Counter(e for e in converted["error"] if e)
    kept = converted.filter(lambda row: not row["error"]).remove_columns("error")
    if verbose:
        print(
            f"kept {len(kept)} of {len(dataset)} rows"
            + "".join(f"\n  dropped {n}: {why}" for why, n in dropped.most_common())
        )
    return kept, dropped


def _as_messages(value: object, role: str, column: str) -> Messages:
    """A column value (a string, or a list of chat messages) as a list of messages; raise on anything else."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{column!r} is an empty string")
        return [{"role": role, "content": value}]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in value)
    ):
        if any(not isinstance(m["content"], str) or not m["content"].strip() for m in value):
            raise ValueError(f"{column!r} holds a message with empty or non-text content")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(
        f"{column!r} must be a non-empty string or a list of {{'role', 'content'}} messages, got {type(value).__name__}"
    )


def to_preference(
    example: dict, prompt: str = "prompt", chosen: str = "chosen", rejected: str = "rejected"
) -> dict[str, Messages]:
    """One row with prompt/chosen/rejected-like columns (names given) in conversational form, validated."""
    missing = [c for c in (prompt, chosen, rejected) if c not in example]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the row has {sorted(example)}")
    row = {
        "prompt": _as_messages(example[prompt], "user", prompt),
        "chosen": _as_messages(example[chosen], "assistant", chosen),
        "rejected": _as_messages(example[rejected], "assistant", rejected),
    }
    if row["prompt"][-1]["role"] != "user":
        raise ValueError(f"{prompt!r} must end with a user turn")
    if row["chosen"] == row["rejected"]:
        raise ValueError(f"{chosen!r} and {rejected!r} are identical")
    return row


def ultrafeedback_to_preference(example: dict) -> dict[str, Messages]:
    """One UltraFeedback-binarized row (full chosen/rejected conversations) with the shared prompt split off."""
    for column in ("chosen", "rejected"):
        turns = example.get(column)
        if not isinstance(turns, list) or len(turns) < 2 or turns[-1].get("role") != "assistant":
            raise ValueError(f"{column!r} must be a conversation ending with an assistant reply")
    if example["chosen"][:-1] != example["rejected"][:-1]:
        raise ValueError("chosen and rejected do not share the same prompt turns")
    return to_preference(
        {"prompt": example["chosen"][:-1], "chosen": example["chosen"][-1:], "rejected": example["rejected"][-1:]}
    )


def validate_preference(
    dataset: Dataset, prompt: str = "prompt", chosen: str = "chosen", rejected: str = "rejected", max_errors: int = 10
) -> Dataset:
    """Check and convert a whole dataset with `to_preference`; raise one error that names every bad row."""
    errors = []
    for i, example in enumerate(dataset):
        try:
            to_preference(example, prompt, chosen, rejected)
        except ValueError as e:
            errors.append(f"row {i}: {e}")
    if errors:
        shown = "\n  ".join(errors[:max_errors])
        more = f"\n  … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise ValueError(f"{len(errors)} of {len(dataset)} rows are not valid preference pairs:\n  {shown}{more}")
    return dataset.map(
        to_preference,
        fn_kwargs={"prompt": prompt, "chosen": chosen, "rejected": rejected},
        remove_columns=dataset.column_names,
        features=PREFERENCE_FEATURES,
        desc="Validating preference pairs",
    )


def load_bundled(name: str) -> Dataset:
    """One split of the offline world's bundled data (`preference_train`, `preference_test`, `instruction_train`)."""
    return load_dataset("json", data_files=str(DATA_DIR / f"{name}.jsonl"), split="train")


def load_hh_rlhf(profile: Profile) -> DatasetDict:
    """Raw HH-RLHF-format train/test splits: harmless-base from the Hub or the course (`local`), or the world."""
    if profile.dataset == "bundled":
        raw = DatasetDict(train=load_bundled("preference_train"), test=load_bundled("preference_test"))
    elif profile.dataset == sources.HARMLESS_BASE:
        raw = sources.harmless_base()
    else:
        raw = load_dataset(profile.dataset, data_dir="harmless-base")
    for split, rows in (("train", profile.train_rows), ("test", profile.test_rows)):
        if rows is not None and rows < len(raw[split]):
            raw[split] = raw[split].shuffle(seed=0).select(range(rows))
    return raw
