"""course_utils.data: HH-RLHF transcripts, UltraFeedback rows and your own columns, bad input included."""

import pytest
from datasets import Dataset

from course_utils.data import (
    format_hh_rlhf,
    hh_rlhf_to_preference,
    load_bundled,
    to_preference,
    ultrafeedback_to_preference,
    validate_preference,
)


def hh(*turns: str) -> str:
    """A transcript from alternating 'H:'/'A:'-prefixed turns, written as HH-RLHF writes them."""
    return "".join(f"\n\n{'Human' if t[0] == 'H' else 'Assistant'}: {t[2:]}" for t in turns)


def words(text: str) -> list[str]:
    return text.replace("Human:", " ").replace("Assistant:", " ").split()


def test_single_turn_row():
    row = {"chosen": hh("H:Hi there", "A:Hello!"), "rejected": hh("H:Hi there", "A:Go away.")}
    assert hh_rlhf_to_preference(row) == {
        "prompt": [{"role": "user", "content": "Hi there"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }


def test_multi_turn_prompt_is_the_shared_part():
    turns = ["H:What is 2+2?", "A:4.", "H:And 3+3?"]
    row = {"chosen": hh(*turns, "A:6."), "rejected": hh(*turns, "A:Seven.")}
    out = hh_rlhf_to_preference(row)
    assert [m["role"] for m in out["prompt"]] == ["user", "assistant", "user"]
    assert out["prompt"][-1]["content"] == "And 3+3?"
    assert out["chosen"][0]["content"] == "6." and out["rejected"][0]["content"] == "Seven."


def test_replies_sharing_their_first_words_are_kept_whole():
    row = {"chosen": hh("H:Help?", "A:I can help."), "rejected": hh("H:Help?", "A:I cannot.")}
    out = hh_rlhf_to_preference(row)
    assert out["chosen"][0]["content"] == "I can help." and out["rejected"][0]["content"] == "I cannot."


def test_reply_containing_turn_markers_stays_one_reply():
    # Real rows do this: the rated reply itself holds "Human:" and a "\n\nAssistant:" marker.
    shared = ["H:Are drag queens men?", "A:Usually.", "H:Isn't that drag kings?"]
    chosen_reply = "No.  Human: Then why the name?\n\nAssistant:  I think because"
    row = {"chosen": hh(*shared, "A:" + chosen_reply), "rejected": hh(*shared, "A:A drag king is the opposite.")}
    out = hh_rlhf_to_preference(row)
    assert out["chosen"][0]["content"] == chosen_reply
    assert len(out["prompt"]) == 3
    rebuilt = " ".join(m["content"] for m in out["prompt"] + out["chosen"])
    assert words(rebuilt) == words(row["chosen"])


def test_consecutive_turns_of_one_role_are_merged():
    row = {
        "chosen": hh("H:First part.", "H:Second part.", "A:Ok.", "A:More.", "H:Go on.", "A:Done."),
        "rejected": hh("H:First part.", "H:Second part.", "A:Ok.", "A:More.", "H:Go on.", "A:No."),
    }
    out = hh_rlhf_to_preference(row)
    roles = [m["role"] for m in out["prompt"]]
    assert roles == ["user", "assistant", "user"]
    assert out["prompt"][0]["content"] == "First part.\n\nSecond part."
    assert out["prompt"][1]["content"] == "Ok.\n\nMore."


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"chosen": hh("H:Hi", "A:"), "rejected": hh("H:Hi", "A:Hello")}, "chosen reply is empty"),
        ({"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:   ")}, "rejected reply is empty"),
        ({"chosen": hh("H:Hi", "A:Same"), "rejected": hh("H:Hi", "A:Same")}, "identical"),
        ({"chosen": hh("H:Hi"), "rejected": hh("H:Ho")}, "share no assistant turn"),
        ({"chosen": "Hi\n\nAssistant: a", "rejected": "Hi\n\nAssistant: b"}, "must start with"),
        ({"chosen": hh("H:Hi", "A:Hey", "A:Yes"), "rejected": hh("H:Hi", "A:Hey", "A:No")}, "not end with the user"),
        ({"chosen": hh("H:", "A:Yes"), "rejected": hh("H:", "A:No")}, "empty Human turn"),
    ],
)
def test_bad_rows_raise_a_clear_error(row, message):
    with pytest.raises(ValueError, match=message):
        hh_rlhf_to_preference(row)


def test_format_hh_rlhf_drops_and_reports(capsys):
    good = {"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:Bye")}
    empty = {"chosen": hh("H:Hi", "A:"), "rejected": hh("H:Hi", "A:Bye")}
    same = {"chosen": hh("H:Hi", "A:X"), "rejected": hh("H:Hi", "A:X")}
    kept, dropped = format_hh_rlhf(Dataset.from_list([good, empty, same, good]))
    assert len(kept) == 2 and kept.column_names == ["prompt", "chosen", "rejected"]
    assert dropped == {"the chosen reply is empty": 1, "chosen and rejected are identical": 1}
    assert "kept 2 of 4 rows" in capsys.readouterr().out


def test_format_hh_rlhf_when_the_first_rows_all_fail():
    bad = {"chosen": hh("H:Hi", "A:"), "rejected": hh("H:Hi", "A:Bye")}
    good = {"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:Bye")}
    kept, dropped = format_hh_rlhf(Dataset.from_list([bad] * 3 + [good]), verbose=False)
    assert len(kept) == 1 and sum(dropped.values()) == 3


def test_every_bundled_row_converts_and_rebuilds_its_transcript():
    for split in ("preference_train", "preference_test"):
        raw = load_bundled(split)
        for row in raw:
            out = hh_rlhf_to_preference(row)
            roles = [m["role"] for m in out["prompt"]]
            assert roles[0] == roles[-1] == "user" and all(a != b for a, b in zip(roles, roles[1:], strict=False))
            rebuilt = " ".join(m["content"] for m in out["prompt"] + out["chosen"])
            assert words(rebuilt) == words(row["chosen"])


def test_to_preference_accepts_strings_and_messages():
    out = to_preference({"question": "Hi?", "good": "Hello.", "bad": "No."}, "question", "good", "bad")
    assert out["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert out["chosen"] == [{"role": "assistant", "content": "Hello."}]
    msgs = {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hello.", "rejected": "No."}
    assert to_preference(msgs)["prompt"] == msgs["prompt"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "Hi", "chosen": "A"}, "missing column"),
        ({"prompt": "", "chosen": "A", "rejected": "B"}, "'prompt' is an empty string"),
        ({"prompt": "Hi", "chosen": "  ", "rejected": "B"}, "'chosen' is an empty string"),
        ({"prompt": "Hi", "chosen": "Same", "rejected": "Same"}, "identical"),
        ({"prompt": "Hi", "chosen": 3, "rejected": "B"}, "'chosen' must be .* got int"),
        ({"prompt": [{"role": "user"}], "chosen": "A", "rejected": "B"}, "'prompt' must be"),
        ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "A", "rejected": "B"}, "end with a user turn"),
    ],
)
def test_to_preference_rejects_bad_rows(row, message):
    with pytest.raises(ValueError, match=message):
        to_preference(row)


def test_validate_preference_names_every_bad_row():
    rows = [
        {"q": "Hi", "good": "Hello", "bad": "Bye"},
        {"q": "Hi", "good": "", "bad": "Bye"},
        {"q": "Hi", "good": "Same", "bad": "Same"},
    ]
    with pytest.raises(ValueError) as err:
        validate_preference(Dataset.from_list(rows), "q", "good", "bad")
    text = str(err.value)
    assert "2 of 3 rows" in text and "row 1: 'good' is an empty string" in text and "row 2:" in text
    assert "row 0" not in text


def test_validate_preference_converts_a_clean_dataset():
    rows = [{"q": "Hi", "good": "Hello", "bad": "Bye"}, {"q": "Yo", "good": "Hey", "bad": "Meh"}]
    out = validate_preference(Dataset.from_list(rows), "q", "good", "bad")
    assert out.column_names == ["prompt", "chosen", "rejected"] and out[1]["chosen"][0]["content"] == "Hey"


def test_ultrafeedback_row():
    user = {"role": "user", "content": "Name a colour."}
    row = {
        "prompt": "Name a colour.",
        "chosen": [user, {"role": "assistant", "content": "Blue."}],
        "rejected": [user, {"role": "assistant", "content": "Seven."}],
    }
    assert ultrafeedback_to_preference(row) == {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Seven."}],
    }


def test_ultrafeedback_rows_with_different_prompts_are_refused():
    row = {
        "chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "x"}],
        "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "y"}],
    }
    with pytest.raises(ValueError, match="same prompt"):
        ultrafeedback_to_preference(row)
    with pytest.raises(ValueError, match="ending with an assistant reply"):
        ultrafeedback_to_preference({"chosen": row["chosen"][:1], "rejected": row["rejected"]})
