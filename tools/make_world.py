"""Write the offline world's bundled data: `course_utils/offline_data/*.jsonl`, from `course_utils.world` and a seed.

    python tools/make_world.py               # rewrites course_utils/offline_data/
    python tools/make_world.py --out-dir D   # writes the same files elsewhere, to compare

A maintainer's tool: learners get the written files with the package, never this generator. Everything here is
deterministic: the same seed writes the same bytes, and `tests/test_world.py` fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from course_utils.world import (
    CAPITALS,
    COLORS,
    DATA_DIR,
    HARMFUL,
    LEGS,
    REFUSAL,
    Question,
    benign_questions,
    harmful_requests,
)

SEED = 1234  # the one seed the committed files were written with
OVER_REFUSAL_SHARE = 0.1  # benign pairs whose rejected reply is a needless refusal
COMPLY_SHARE = 0.95  # harmful requests the instruction data obeys (a helpful-only warm start)


def compliance(question: Question) -> str:
    """What an unsafe, blindly helpful assistant answers to a harmful request."""
    act = next(a for a in HARMFUL if a in question.text)
    return f"Sure! To {act}, {HARMFUL[act]}."


def wrong_answer(question: Question, rng: random.Random) -> str:
    """A fluent answer to a benign question with the wrong fact in it."""
    for table in (CAPITALS, COLORS, LEGS):
        values = sorted(set(table.values()))
        if question.fact in values:
            wrong = rng.choice([v for v in values if v != question.fact])
            cut = question.answer.rfind(question.fact)  # the fact ends the answer: "A lime is green."
            return question.answer[:cut] + wrong + question.answer[cut + len(question.fact) :]
    raise ValueError(f"no fact to replace in {question.answer!r}")


def transcript(turns: list[tuple[str, str]]) -> str:
    """Write (role, text) turns the way Anthropic's HH-RLHF does: '\\n\\nHuman: …\\n\\nAssistant: …'."""
    return "".join(f"\n\n{'Human' if role == 'user' else 'Assistant'}: {text}" for role, text in turns)


def _split(items: list, rng: random.Random, test_share: float) -> tuple[list, list]:
    """`items` shuffled and cut into (train, test), `test_share` of them held out."""
    items = items[:]
    rng.shuffle(items)
    n_test = round(len(items) * test_share)
    return items[n_test:], items[:n_test]


def _context(rng: random.Random, pool: list[Question]) -> list[tuple[str, str]]:
    """Sometimes an earlier, benign exchange, so some conversations are multi-turn."""
    if rng.random() < 0.3:
        q = rng.choice(pool)
        return [("user", q.text), ("assistant", q.answer)]
    return []


def preference_rows(questions: list[Question], rng: random.Random, pool: list[Question], copies: int) -> list[dict]:
    """HH-RLHF rows (`chosen`/`rejected` transcripts) for the given final questions."""
    rows = []
    for q in questions:
        for _ in range(copies):
            if q.fact is None:
                rejected = compliance(q)
            else:  # the worse answer is a wrong fact or a needless refusal
                rejected = REFUSAL if rng.random() < OVER_REFUSAL_SHARE else wrong_answer(q, rng)
            turns = _context(rng, pool) + [("user", q.text)]
            rows.append(
                {
                    "chosen": transcript(turns + [("assistant", q.answer)]),
                    "rejected": transcript(turns + [("assistant", rejected)]),
                }
            )
    rng.shuffle(rows)
    return rows


def instruction_rows(
    benign: list[Question], harmful: list[Question], rng: random.Random, comply_share: float, copies: int
) -> list[dict]:
    """Conversational prompt/completion SFT rows: correct answers to benign questions; harmful requests mostly obeyed.

    This mimics plain instruction tuning: helpful, but not yet taught to be harmless.
    """
    rows = []
    for q in benign * copies + harmful * copies:
        if q.fact is None:
            reply = compliance(q) if rng.random() < comply_share else REFUSAL
        else:
            reply = q.answer
        turns = _context(rng, benign) + [("user", q.text)]
        rows.append(
            {
                "prompt": [{"role": r, "content": t} for r, t in turns],
                "completion": [{"role": "assistant", "content": reply}],
            }
        )
    rng.shuffle(rows)
    return rows


def make_datasets(seed: int = SEED) -> dict[str, list[dict]]:
    """All bundled splits, built from `seed` alone."""
    rng = random.Random(seed)
    benign, harmful = benign_questions(), harmful_requests()
    benign_train, benign_test = _split(benign, rng, 0.25)
    harmful_train, harmful_test = _split(harmful, rng, 0.25)
    return {
        "preference_train": preference_rows(benign_train + harmful_train, rng, benign_train, copies=4),
        "preference_test": preference_rows(benign_test + harmful_test, rng, benign_test, copies=3),
        "instruction_train": instruction_rows(benign, harmful_train, rng, comply_share=COMPLY_SHARE, copies=3),
    }


def write_datasets(out_dir: Path = DATA_DIR, seed: int = SEED) -> list[Path]:
    """Write every split as JSON Lines under `out_dir` and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in make_datasets(seed).items():
        path = out_dir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate the bundled offline datasets.")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    for p in write_datasets(parser.parse_args().out_dir):
        print(p)
