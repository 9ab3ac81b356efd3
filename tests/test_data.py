"""course_utils.data: HH-RLHF transcripts, UltraFeedback rows and your own columns, bad input included."""

import pytest
from datasets import Dataset, DatasetDict

from course_utils.data import (
    drop_long_prompts,
    format_hh_rlhf,
    hh_rlhf_to_preference,
    load_bundled,
    parse_turns,
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


HI = hh("H:hi", "A:x")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (None, "an HH-RLHF row must be a dict with 'chosen' and 'rejected' transcripts, got None"),
        ([HI, HI], "must be a dict .* got list"),
        ({}, r"missing column\(s\) \['chosen', 'rejected'\]; the row has \[\]"),
        ({"chosen": HI, "text": "x"}, r"missing column\(s\) \['rejected'\]; the row has \['chosen', 'text'\]"),
        ({"chosen": 3, "rejected": HI}, "'chosen' must be a transcript string, got int"),
        ({"chosen": HI, "rejected": None}, "'rejected' must be a transcript string, got None"),
        ({"chosen": "Human: hi\r\n\r\nAssistant: x", "rejected": HI}, "'chosen' must start with"),
    ],
)
def test_hh_rlhf_input_of_the_wrong_shape_raises_value_error(row, message):
    with pytest.raises(ValueError, match=message):
        hh_rlhf_to_preference(row)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_hh_rlhf_windows_and_old_mac_line_endings_are_normalised(newline):
    turns = ["H:What is 2+2?", "A:4.\nReally.", "H:And 3+3?"]
    row = {"chosen": hh(*turns, "A:6.\nSure."), "rejected": hh(*turns, "A:Seven.")}
    crlf = {k: v.replace("\n", newline) for k, v in row.items()}
    assert "\n" not in crlf["chosen"].replace(newline, "")  # the input really uses the other line ending
    assert hh_rlhf_to_preference(crlf) == hh_rlhf_to_preference(row)


def test_hh_rlhf_mixed_line_endings_in_one_row_still_share_their_prompt():
    row = {"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:Bye")}
    mixed = {"chosen": row["chosen"].replace("\n", "\r\n"), "rejected": row["rejected"]}
    assert hh_rlhf_to_preference(mixed) == hh_rlhf_to_preference(row)


@pytest.mark.parametrize(("text", "kind"), [(None, "None"), (3, "int"), (["\n\nHuman: hi"], "list")])
def test_parse_turns_refuses_a_non_string(text, kind):
    with pytest.raises(ValueError, match=f"the transcript must be a string, got {kind}$"):
        parse_turns(text)


def test_parse_turns_accepts_crlf_and_still_refuses_a_bad_start():
    assert parse_turns("\r\n\r\nHuman: hi\r\n\r\nAssistant: yo") == parse_turns("\n\nHuman: hi\n\nAssistant: yo")
    with pytest.raises(ValueError, match="must start with"):
        parse_turns("Human: hi\r\n\r\nAssistant: yo")


def test_format_hh_rlhf_names_the_dropped_rows(capsys):
    good = {"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:Bye")}
    empty = {"chosen": hh("H:Hi", "A:"), "rejected": hh("H:Hi", "A:Bye")}
    same = {"chosen": hh("H:Hi", "A:X"), "rejected": hh("H:Hi", "A:X")}
    rows = [good, empty, same, good, good, empty] + [same] * 6
    kept, dropped = format_hh_rlhf(Dataset.from_list(rows))
    out = capsys.readouterr().out
    assert out.startswith("kept 3 of 12 rows\n")
    assert "dropped 2: the chosen reply is empty (rows 1, 5)" in out
    assert "dropped 7: chosen and rejected are identical (rows 2, 6, 7, 8, 9, …)" in out
    assert dropped == {"the chosen reply is empty": 2, "chosen and rejected are identical": 7} and len(kept) == 3


def test_format_hh_rlhf_names_a_single_dropped_row_and_keeps_crlf_rows(capsys):
    good = {"chosen": hh("H:Hi", "A:Hello"), "rejected": hh("H:Hi", "A:Bye")}
    crlf = {k: v.replace("\n", "\r\n") for k, v in good.items()}
    bad = {"chosen": None, "rejected": hh("H:Hi", "A:Bye")}
    kept, dropped = format_hh_rlhf(Dataset.from_list([good, crlf, bad]))
    assert "dropped 1: 'chosen' must be a transcript string, got None (row 2)" in capsys.readouterr().out
    assert len(kept) == 2 and kept[0] == kept[1]


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ([{"chosen": HI, "rejected": HI}], "got list; wrap a list of dicts with Dataset.from_list"),
        (None, "expected a datasets.Dataset, got None"),
        (DatasetDict(train=Dataset.from_list([{"chosen": HI}])), r"got a DatasetDict with \['train'\]"),
        (Dataset.from_list([{"text": HI}]), r"the dataset has no columns 'chosen', 'rejected'; it has \['text'\]"),
    ],
)
def test_format_hh_rlhf_refuses_what_is_not_an_hh_rlhf_dataset(dataset, message):
    with pytest.raises(ValueError, match=message):
        format_hh_rlhf(dataset, verbose=False)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (None, "a preference row must be a dict with 'prompt', 'chosen' and 'rejected' columns, got None"),
        ("Hi", "must be a dict .* got str"),
        ([("prompt", "Hi")], "must be a dict .* got list"),
    ],
)
def test_to_preference_refuses_a_row_that_is_not_a_dict(row, message):
    with pytest.raises(ValueError, match=message):
        to_preference(row)


UF_USER, UF_REPLY = {"role": "user", "content": "A?"}, {"role": "assistant", "content": "x"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (None, "an UltraFeedback row must be a dict with 'chosen' and 'rejected' conversations, got None"),
        (["chosen", "rejected"], "must be a dict .* got list"),
        ({"chosen": [UF_USER, UF_REPLY]}, r"missing column\(s\) \['rejected'\]; the row has \['chosen'\]"),
        ({"chosen": [UF_USER, "x"], "rejected": [UF_USER, UF_REPLY]}, "'chosen' message 1 must be a .* got str"),
        ({"chosen": [UF_USER, UF_REPLY], "rejected": [None, UF_REPLY]}, "'rejected' message 0 must be .* got None"),
        ({"chosen": "A? x", "rejected": [UF_USER, UF_REPLY]}, r"'chosen' must be a conversation \(a list .* got str"),
        ({"chosen": [UF_USER, UF_REPLY], "rejected": None}, "'rejected' must be a conversation .* got None"),
    ],
)
def test_ultrafeedback_input_of_the_wrong_shape_raises_value_error(row, message):
    with pytest.raises(ValueError, match=message):
        ultrafeedback_to_preference(row)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ([{"q": "Hi", "good": "A", "bad": "B"}], "got list; wrap a list of dicts with Dataset.from_list"),
        (None, "expected a datasets.Dataset, got None"),
    ],
)
def test_validate_preference_refuses_what_is_not_a_dataset(dataset, message):
    with pytest.raises(ValueError, match=message):
        validate_preference(dataset, "q", "good", "bad")


def test_validate_preference_names_missing_columns_once_up_front():
    rows = [{"a": "Hi", "b": "Hello", "bad": "Bye"}] * 3
    with pytest.raises(ValueError) as err:
        validate_preference(Dataset.from_list(rows), "a", "good", "bad")
    assert str(err.value) == "the dataset has no column 'good'; it has ['a', 'b', 'bad']"
    with pytest.raises(ValueError, match="no columns 'prompt', 'chosen', 'rejected'; it has"):
        validate_preference(Dataset.from_list(rows))


def test_drop_long_prompts_keeps_the_pairs_that_leave_room_for_a_reply(tiny_model_dir, capsys):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reply = [{"role": "assistant", "content": "A lime is green."}]
    rows = [
        {"prompt": [{"role": "user", "content": "What color is a lime?"}], "chosen": reply, "rejected": reply},
        {"prompt": [{"role": "user", "content": "lime " * 200}], "chosen": reply, "rejected": reply},
    ]
    kept = drop_long_prompts(Dataset.from_list(rows), tokenizer, max_length=64)
    assert kept["prompt"] == [rows[0]["prompt"]]
    assert "kept 1 of 2 pairs; dropped row 1: their prompt alone fills 64 tokens" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Dataset.from_list"):
        drop_long_prompts(rows, tokenizer, max_length=64)
