"""Preference data in the shape TRL's trainers expect: conversational prompt / chosen / rejected, from HH-RLHF,
UltraFeedback or your own columns. A bad row raises `ValueError` naming the row and the problem; `format_hh_rlhf`
drops such rows and reports how many, why, and which.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from datasets import Dataset, DatasetDict, Features, Value, load_dataset
from huggingface_hub import hf_hub_download
from transformers import PreTrainedTokenizerBase

from course_utils import sources
from course_utils.world import DATA_DIR

Messages = list[dict[str, str]]
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
TURN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}
MESSAGES = [{"role": Value("string"), "content": Value("string")}]
HARMLESS_BASE_FILES = {"train": "harmless-base/train.jsonl.gz", "test": "harmless-base/test.jsonl.gz"}
PREFERENCE_FEATURES = Features({"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES})


def _kind(value: object) -> str:
    """A value's type name for error messages ('None' for None)."""
    return "None" if value is None else type(value).__name__


def _require(example: object, columns: Sequence[str], expected: str) -> Mapping:
    """The row, if it is a dict holding every column; else a `ValueError` (`expected` says what a row must be)."""
    if not isinstance(example, Mapping):
        raise ValueError(f"{expected}, got {_kind(example)}")
    missing = [c for c in columns if c not in example]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the row has {sorted(example)}")
    return example


def _require_dataset(dataset: object, columns: Sequence[str]) -> None:
    """Raise a `ValueError` unless `dataset` is a `Dataset` holding every column (the missing ones named once)."""
    if isinstance(dataset, DatasetDict):
        raise ValueError(f"expected one split, got a DatasetDict with {list(dataset)}; pass e.g. dataset['train']")
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"expected a datasets.Dataset, got {_kind(dataset)}; wrap a list of dicts with Dataset.from_list"
        )
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ValueError(
            f"the dataset has no column{'s' if len(missing) > 1 else ''} {names}; it has {dataset.column_names}"
        )


def _unix_newlines(text: str) -> str:
    """`text` with Windows (`\\r\\n`) and old Mac (`\\r`) line endings turned into `\\n`."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_turns(text: str) -> Messages:
    """Split an HH-RLHF transcript (any line endings) into chat messages, merging consecutive same-role turns."""
    if not isinstance(text, str):
        raise ValueError(f"the transcript must be a string, got {_kind(text)}")
    text = _unix_newlines(text)
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


def _transcript(example: Mapping, column: str) -> str:
    """One transcript column of an HH-RLHF row, with `\\n` line endings; raise if it is not a transcript."""
    text = example[column]
    if not isinstance(text, str):
        raise ValueError(f"{column!r} must be a transcript string, got {_kind(text)}")
    text = _unix_newlines(text)
    if not text.startswith(HUMAN):
        raise ValueError(f"{column!r} must start with {HUMAN!r}, it starts with {text[:30]!r}")
    return text


def hh_rlhf_to_preference(example: dict) -> dict[str, Messages]:
    """Turn one HH-RLHF row (`chosen`/`rejected` transcripts) into an explicit prompt with two replies."""
    expected = "an HH-RLHF row must be a dict with 'chosen' and 'rejected' transcripts"
    example = _require(example, ("chosen", "rejected"), expected)
    chosen, rejected = _transcript(example, "chosen"), _transcript(example, "rejected")
    if chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    shared = os.path.commonprefix([chosen, rejected])  # the prompt: up to the last `Assistant:` both transcripts share
    cut = shared.rfind(ASSISTANT)
    if cut == -1:
        raise ValueError("the transcripts share no assistant turn to answer")
    prompt = parse_turns(chosen[:cut])
    if prompt[-1]["role"] != "user":
        raise ValueError("the final reply follows another assistant turn: the prompt does not end with the user")
    replies = {}
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        reply = text[cut + len(ASSISTANT) :].strip()  # the rest, whole, even text that looks like a turn marker
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


def _row_list(indices: list[int], shown: int = 5) -> str:
    """'row 5', 'rows 5, 17' or 'rows 1, 2, 3, 4, 5, …': the first few row indices for a report."""
    more = ", …" if len(indices) > shown else ""
    return f"row{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices[:shown]))}{more}"


def format_hh_rlhf(dataset: Dataset, verbose: bool = True) -> tuple[Dataset, Counter]:
    """Convert a whole HH-RLHF split; drop the rows that cannot be converted and return the reasons counted."""
    _require_dataset(dataset, ("chosen", "rejected"))
    features = Features({**PREFERENCE_FEATURES, "error": Value("string")})
    converted = dataset.map(_try_hh, remove_columns=dataset.column_names, features=features, desc="Formatting HH-RLHF")
    rows: dict[str, list[int]] = {}
    for i, error in enumerate(converted["error"]):
        if error:
            rows.setdefault(error, []).append(i)
    dropped = Counter({why: len(indices) for why, indices in rows.items()})
    kept = converted.filter(lambda row: not row["error"]).remove_columns("error")
    if verbose:
        print(
            f"kept {len(kept)} of {len(dataset)} rows"
            + "".join(f"\n  dropped {n}: {why} ({_row_list(rows[why])})" for why, n in dropped.most_common())
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
    expected = f"a preference row must be a dict with {prompt!r}, {chosen!r} and {rejected!r} columns"
    example = _require(example, (prompt, chosen, rejected), expected)
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


def _conversation(example: Mapping, column: str) -> list:
    """One UltraFeedback conversation column; raise unless it is a list of messages ending with an assistant reply."""
    turns = example[column]
    if not isinstance(turns, list):
        raise ValueError(f"{column!r} must be a conversation (a list of messages), got {_kind(turns)}")
    for i, message in enumerate(turns):
        if not isinstance(message, Mapping):
            raise ValueError(f"{column!r} message {i} must be a {{'role', 'content'}} dict, got {_kind(message)}")
    if len(turns) < 2 or turns[-1].get("role") != "assistant":
        raise ValueError(f"{column!r} must be a conversation ending with an assistant reply")
    return turns


def ultrafeedback_to_preference(example: dict) -> dict[str, Messages]:
    """One UltraFeedback-binarized row (full chosen/rejected conversations) with the shared prompt split off."""
    expected = "an UltraFeedback row must be a dict with 'chosen' and 'rejected' conversations"
    example = _require(example, ("chosen", "rejected"), expected)
    chosen, rejected = _conversation(example, "chosen"), _conversation(example, "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("chosen and rejected do not share the same prompt turns")
    return to_preference({"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]})


def validate_preference(
    dataset: Dataset, prompt: str = "prompt", chosen: str = "chosen", rejected: str = "rejected", max_errors: int = 10
) -> Dataset:
    """Check and convert a whole dataset with `to_preference`; raise one error that names every bad row."""
    _require_dataset(dataset, (prompt, chosen, rejected))
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


def drop_long_prompts(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """The pairs whose chat-formatted prompt is shorter than `max_length` tokens; prints how many were dropped."""
    # TRL's ORPOTrainer shortens replies, never the prompt: a prompt that fills `max_length` leaves an empty reply.
    _require_dataset(dataset, ["prompt"])
    lengths = [
        len(tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=False)) for p in dataset["prompt"]
    ]
    keep = [i for i, n in enumerate(lengths) if n < max_length]
    dropped = [i for i, n in enumerate(lengths) if n >= max_length]
    reason = f"; dropped {_row_list(dropped)}: their prompt alone fills {max_length} tokens" if dropped else ""
    print(f"kept {len(keep)} of {len(dataset)} pairs{reason}")
    return dataset.select(keep)


def load_bundled(name: str) -> Dataset:
    """One split of the offline world's bundled data (`preference_train`, `preference_test`, `instruction_train`)."""
    return load_dataset("json", data_files=str(DATA_DIR / f"{name}.jsonl"), split="train")


def _hub_harmless_base(repo: str) -> DatasetDict:
    """HH-RLHF's harmless-base files from the Hub, or from its cache under `HF_HUB_OFFLINE=1`, read as JSON lines."""
    files = {split: hf_hub_download(repo, path, repo_type="dataset") for split, path in HARMLESS_BASE_FILES.items()}
    return load_dataset("json", data_files=files)


def load_hh_rlhf(dataset: str, train_rows: int | None = None, test_rows: int | None = None) -> DatasetDict:
    """Raw HH-RLHF train/test splits of `dataset` (a Hub id, `local:...` or `bundled`) sharing no opening request."""
    if dataset == "bundled":
        raw = DatasetDict(train=load_bundled("preference_train"), test=load_bundled("preference_test"))
    elif dataset == sources.HARMLESS_BASE:
        raw = sources.harmless_base()
    else:
        raw = _hub_harmless_base(dataset)
    if test_rows is not None and test_rows < len(raw["test"]):  # drawn at random (seed 0), the test rows first
        raw["test"] = raw["test"].shuffle(seed=0).select(range(test_rows))
    held_out = {sources.opening_request(transcript) for transcript in raw["test"]["chosen"]}
    shared = [sources.opening_request(transcript) in held_out for transcript in raw["train"]["chosen"]]
    if any(shared):
        print(f"left out {sum(shared)} training rows that open with the same request as a test row")
        raw["train"] = raw["train"].select([i for i, s in enumerate(shared) if not s])
    if train_rows is not None and train_rows < len(raw["train"]):
        raw["train"] = raw["train"].shuffle(seed=0).select(range(train_rows))
    return raw
