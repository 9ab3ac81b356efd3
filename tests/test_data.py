"""course_utils.data: HH-RLHF transcripts, UltraFeedback rows and your own columns, bad input included."""

import pytest
from datasets import Dataset, DatasetDict

from course_utils.data import (
    drop_long_prompts,
    format_hh_rlhf,
    hh_rlhf_to_preference,
    load_bundled,
    load_hh_rlhf,
    to_preference,
    ultrafeedback_to_preference,
    validate_preference,
)


def hh(*turns: str) -> str:
    """A transcript from alternating 'H:'/'A:'-prefixed turns, written as HH-RLHF writes them."""
    return "".join(f"\n\n{'Human' if t[0] == 'H' else 'Assistant'}: {t[2:]}" for t in turns)


def words(text: str) -> list[str]:
    """The words of a transcript or of messages, turn markers aside."""
    return text.replace("Human:", " ").replace("Assistant:", " ").split()


def user(content: str) -> dict:
    """A user message."""
    return {"role": "user", "content": content}


def assistant(content: str) -> dict:
    """An assistant message."""
    return {"role": "assistant", "content": content}


HI = hh("H:Hi", "A:Hello")
HI_ROW = {"chosen": HI, "rejected": hh("H:Hi", "A:Bye")}  # a good row


def test_single_turn_row():
    row = {"chosen": hh("H:Hi there", "A:Hello!"), "rejected": hh("H:Hi there", "A:Go away.")}
    expected = {"prompt": [user("Hi there")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go away.")]}
    assert hh_rlhf_to_preference(row) == expected


def test_multi_turn_prompt_is_the_shared_part_and_replies_sharing_their_first_words_stay_whole():
    turns = ["H:What is 2+2?", "A:4.", "H:And 3+3?"]
    out = hh_rlhf_to_preference({"chosen": hh(*turns, "A:I can: 6."), "rejected": hh(*turns, "A:I cannot.")})
    assert out["prompt"] == [user("What is 2+2?"), assistant("4."), user("And 3+3?")]
    assert out["chosen"] == [assistant("I can: 6.")] and out["rejected"] == [assistant("I cannot.")]


def test_reply_containing_turn_markers_stays_one_reply():
    # Real rows do this: the rated reply itself holds "Human:" and a "\n\nAssistant:" marker.
    shared = ["H:Are drag queens men?", "A:Usually.", "H:Isn't that drag kings?"]
    chosen_reply = "No.  Human: Then why the name?\n\nAssistant:  I think because"
    row = {"chosen": hh(*shared, "A:" + chosen_reply), "rejected": hh(*shared, "A:A drag king is the opposite.")}
    out = hh_rlhf_to_preference(row)
    assert out["chosen"][0]["content"] == chosen_reply and len(out["prompt"]) == 3
    assert words(" ".join(m["content"] for m in out["prompt"] + out["chosen"])) == words(row["chosen"])


def test_consecutive_turns_of_one_role_are_merged():
    turns = ["H:First part.", "H:Second part.", "A:Ok.", "A:More.", "H:Go on."]
    out = hh_rlhf_to_preference({"chosen": hh(*turns, "A:Done."), "rejected": hh(*turns, "A:No.")})
    assert out["prompt"] == [user("First part.\n\nSecond part."), assistant("Ok.\n\nMore."), user("Go on.")]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"chosen": hh("H:Hi", "A:"), "rejected": HI}, "chosen reply is empty"),
        ({"chosen": HI, "rejected": hh("H:Hi", "A:   ")}, "rejected reply is empty"),
        ({"chosen": HI, "rejected": HI}, "identical"),
        ({"chosen": hh("H:Hi"), "rejected": hh("H:Ho")}, "share no assistant turn"),
        ({"chosen": "Hi\n\nAssistant: a", "rejected": "Hi\n\nAssistant: b"}, "must start with"),
        ({"chosen": hh("H:Hi", "A:Hey", "A:Yes"), "rejected": hh("H:Hi", "A:Hey", "A:No")}, "not end with the user"),
        ({"chosen": hh("H:", "A:Yes"), "rejected": hh("H:", "A:No")}, "empty Human turn"),
        (None, "an HH-RLHF row must be a dict with 'chosen' and 'rejected' transcripts, got None"),
        ([HI, HI], "must be a dict .* got list"),
        ({}, r"missing column\(s\) \['chosen', 'rejected'\]; the row has \[\]"),
        ({"chosen": HI, "text": "x"}, r"missing column\(s\) \['rejected'\]; the row has \['chosen', 'text'\]"),
        ({"chosen": 3, "rejected": HI}, "'chosen' must be a transcript string, got int"),
        ({"chosen": HI, "rejected": None}, "'rejected' must be a transcript string, got None"),
        ({"chosen": "Human: hi\r\n\r\nAssistant: x", "rejected": HI}, "'chosen' must start with"),
    ],
)
def test_bad_hh_rlhf_rows_raise_a_clear_error(row, message):
    with pytest.raises(ValueError, match=message):
        hh_rlhf_to_preference(row)


@pytest.mark.parametrize("newlines", [("\r\n", "\r\n"), ("\r", "\r"), ("\r\n", "\n")], ids=["crlf", "cr", "mixed"])
def test_windows_old_mac_and_mixed_line_endings_are_normalised(newlines):
    turns = ["H:What is 2+2?", "A:4.\nReally.", "H:And 3+3?"]
    row = {"chosen": hh(*turns, "A:6.\nSure."), "rejected": hh(*turns, "A:Seven.")}
    other = {key: row[key].replace("\n", newline) for key, newline in zip(row, newlines, strict=True)}
    assert "\n" not in other["chosen"].replace(newlines[0], "")  # the input really uses the other line ending
    assert hh_rlhf_to_preference(other) == hh_rlhf_to_preference(row)


def test_every_bundled_row_converts_and_rebuilds_its_transcript():
    for row in [*load_bundled("preference_train"), *load_bundled("preference_test")]:
        out = hh_rlhf_to_preference(row)
        roles = [m["role"] for m in out["prompt"]]
        assert roles[0] == roles[-1] == "user" and all(a != b for a, b in zip(roles, roles[1:], strict=False))
        assert words(" ".join(m["content"] for m in out["prompt"] + out["chosen"])) == words(row["chosen"])


def test_format_hh_rlhf_keeps_the_good_rows_and_names_the_dropped_ones(capsys):
    empty, same = {"chosen": hh("H:Hi", "A:"), "rejected": HI}, {"chosen": HI, "rejected": HI}
    kept, dropped = format_hh_rlhf(Dataset.from_list([HI_ROW, empty, same, HI_ROW, HI_ROW, empty] + [same] * 6))
    out = capsys.readouterr().out
    assert out.startswith("kept 3 of 12 rows\n")
    assert "dropped 2: the chosen reply is empty (rows 1, 5)" in out
    assert "dropped 7: chosen and rejected are identical (rows 2, 6, 7, 8, 9, …)" in out
    assert dropped == {"the chosen reply is empty": 2, "chosen and rejected are identical": 7} and len(kept) == 3
    assert kept.column_names == ["prompt", "chosen", "rejected"]


def test_training_rows_that_open_like_a_test_row_are_left_out_and_counted(monkeypatch, capsys):
    # HH-RLHF on the Hub repeats some openings across its splits: no test prompt may be trained on.
    rows = [{"chosen": hh(f"H:Question {i}?", "A:Yes."), "rejected": hh(f"H:Question {i}?", "A:No.")} for i in range(6)]
    hub = DatasetDict(train=Dataset.from_list(rows[:4]), test=Dataset.from_list(rows[2:]))
    monkeypatch.setattr("course_utils.data._hub_harmless_base", lambda repo: hub)
    raw = load_hh_rlhf("Anthropic/hh-rlhf", train_rows=1, test_rows=4)
    assert len(raw["test"]) == 4 and raw["train"]["chosen"][0] in (rows[0]["chosen"], rows[1]["chosen"])
    assert len(raw["train"]) == 1
    assert "left out 2 training rows that open with the same request as a test row" in capsys.readouterr().out


def test_to_preference_accepts_strings_and_messages():
    out = to_preference({"question": "Hi?", "good": "Hello.", "bad": "No."}, "question", "good", "bad")
    assert out["prompt"] == [user("Hi?")] and out["chosen"] == [assistant("Hello.")]
    msgs = {"prompt": [user("Hi?")], "chosen": "Hello.", "rejected": "No."}
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
        ({"prompt": [assistant("x")], "chosen": "A", "rejected": "B"}, "end with a user turn"),
        (None, "a preference row must be a dict with 'prompt', 'chosen' and 'rejected' columns, got None"),
        ("Hi", "must be a dict .* got str"),
        ([("prompt", "Hi")], "must be a dict .* got list"),
    ],
)
def test_to_preference_rejects_bad_rows(row, message):
    with pytest.raises(ValueError, match=message):
        to_preference(row)


def test_validate_preference_converts_a_clean_dataset_and_names_every_bad_row():
    rows = [{"q": "Hi", "good": "Hello", "bad": "Bye"}, {"q": "Yo", "good": "Hey", "bad": "Meh"}]
    out = validate_preference(Dataset.from_list(rows), "q", "good", "bad")
    assert out.column_names == ["prompt", "chosen", "rejected"] and out[1]["chosen"][0]["content"] == "Hey"
    rows[1:] = [{"q": "Hi", "good": "", "bad": "Bye"}, {"q": "Hi", "good": "Same", "bad": "Same"}]
    with pytest.raises(ValueError) as err:
        validate_preference(Dataset.from_list(rows), "q", "good", "bad")
    text = str(err.value)
    assert "2 of 3 rows" in text and "row 1: 'good' is an empty string" in text and "row 2:" in text
    assert "row 0" not in text


def test_validate_preference_names_missing_columns_once_up_front():
    rows = [{"a": "Hi", "b": "Hello", "bad": "Bye"}] * 3
    with pytest.raises(ValueError) as err:
        validate_preference(Dataset.from_list(rows), "a", "good", "bad")
    assert str(err.value) == "the dataset has no column 'good'; it has ['a', 'b', 'bad']"
    with pytest.raises(ValueError, match="no columns 'prompt', 'chosen', 'rejected'; it has"):
        validate_preference(Dataset.from_list(rows))


@pytest.mark.parametrize(
    ("convert", "dataset", "message"),
    [
        (format_hh_rlhf, [{"chosen": HI, "rejected": HI}], "got list; wrap a list of dicts with Dataset.from_list"),
        (format_hh_rlhf, None, "expected a datasets.Dataset, got None"),
        (format_hh_rlhf, DatasetDict(train=Dataset.from_list([{"chosen": HI}])), r"a DatasetDict with \['train'\]"),
        (format_hh_rlhf, Dataset.from_list([{"text": HI}]), r"has no columns 'chosen', 'rejected'; it has \['text'\]"),
        (validate_preference, [{"q": "Hi", "good": "A", "bad": "B"}], "got list; wrap a list of dicts with"),
        (validate_preference, None, "expected a datasets.Dataset, got None"),
    ],
)
def test_what_is_not_a_dataset_is_refused(convert, dataset, message):
    with pytest.raises(ValueError, match=message):
        convert(dataset, verbose=False) if convert is format_hh_rlhf else convert(dataset, "q", "good", "bad")


def test_ultrafeedback_row():
    row = {"prompt": "Name a colour.", "chosen": [user("Name a colour."), assistant("Blue.")]}
    row["rejected"] = [user("Name a colour."), assistant("Seven.")]
    expected = {"prompt": [user("Name a colour.")], "chosen": [assistant("Blue.")], "rejected": [assistant("Seven.")]}
    assert ultrafeedback_to_preference(row) == expected


UF_USER, UF_REPLY = user("A?"), assistant("x")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"chosen": [UF_USER, UF_REPLY], "rejected": [user("B?"), assistant("y")]}, "same prompt"),
        ({"chosen": [UF_USER], "rejected": [UF_USER, UF_REPLY]}, "ending with an assistant reply"),
        (None, "an UltraFeedback row must be a dict with 'chosen' and 'rejected' conversations, got None"),
        (["chosen", "rejected"], "must be a dict .* got list"),
        ({"chosen": [UF_USER, UF_REPLY]}, r"missing column\(s\) \['rejected'\]; the row has \['chosen'\]"),
        ({"chosen": [UF_USER, "x"], "rejected": [UF_USER, UF_REPLY]}, "'chosen' message 1 must be a .* got str"),
        ({"chosen": [UF_USER, UF_REPLY], "rejected": [None, UF_REPLY]}, "'rejected' message 0 must be .* got None"),
        ({"chosen": "A? x", "rejected": [UF_USER, UF_REPLY]}, r"'chosen' must be a conversation \(a list .* got str"),
        ({"chosen": [UF_USER, UF_REPLY], "rejected": None}, "'rejected' must be a conversation .* got None"),
    ],
)
def test_bad_ultrafeedback_rows_raise_a_clear_error(row, message):
    with pytest.raises(ValueError, match=message):
        ultrafeedback_to_preference(row)


def test_drop_long_prompts_keeps_the_pairs_that_leave_room_for_a_reply(tiny, capsys):
    reply = [assistant("A lime is green.")]
    rows = [{"prompt": [user(text)], "chosen": reply, "rejected": reply} for text in ("A lime?", "lime " * 200)]
    kept = drop_long_prompts(Dataset.from_list(rows), tiny[1], max_length=64)
    assert kept["prompt"] == [rows[0]["prompt"]]
    assert "kept 1 of 2 pairs; dropped row 1: their prompt alone fills 64 tokens" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Dataset.from_list"):
        drop_long_prompts(rows, tiny[1], max_length=64)
