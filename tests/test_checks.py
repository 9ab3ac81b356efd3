"""The exercise checks: each passes on the notebook's own solution and fails, saying why, on a wrong answer."""

from __future__ import annotations

import json
import math
import re
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from course_utils import checks
from tools import learner

SOURCES = {path.stem.split("_")[0]: path for path in sorted(learner.SOURCE_DIR.glob("*.ipynb"))}


def solution(notebook: str, defines: str, **namespace) -> dict:
    """Run the notebook's solution cell that defines `defines` (markers and all) and return its namespace."""
    cells = [c for c in json.loads(SOURCES[notebook].read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    source = next(
        s for s in sources if re.search(rf"^(def {defines}\b|{defines} =)", s, re.M) and "BEGIN SOLUTION" in s
    )
    exec(compile(source, f"{notebook}:{defines}", "exec"), namespace)
    return namespace


def not_implemented(*args, **kwargs):
    raise NotImplementedError


@pytest.fixture(scope="module")
def dpo_trainer(tiny_model_dir, bundled_pairs, tmp_path_factory):
    """A DPO trainer whose policy has moved away from its reference (at the start the loss is log 2 whatever)."""
    out = str(tmp_path_factory.mktemp("dpo"))
    args = DPOConfig(out, per_device_train_batch_size=4, max_length=128, use_cpu=True, bf16=False, report_to="none")
    pairs, tokenizer = bundled_pairs.select(range(8)), AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(model=str(tiny_model_dir), args=args, train_dataset=pairs, processing_class=tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return trainer


@pytest.fixture(scope="module")
def dpo_solution():
    return solution("dpo", "sequence_logps")


def test_dpo_check_passes_on_the_solution(dpo_solution, dpo_trainer, capsys):
    assert checks.dpo_loss_by_hand(dpo_solution["sequence_logps"], dpo_solution["dpo_loss"], dpo_trainer)
    assert "log 2" in capsys.readouterr().out


def averaged(logits, ids, mask):
    token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (token * mask[:, 1:]).sum(-1) / mask[:, 1:].sum(-1)


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda lg, ids, m: (lg.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1) * m).sum(-1), r"t\+1"),
        (averaged, "averaged"),
        (lambda lg, ids, m: averaged(lg, ids, torch.ones_like(m)) * (ids.shape[1] - 1), "prompt too"),
    ],
    ids=["off-by-one", "mean-not-sum", "prompt-scored"],
)
def test_dpo_check_catches_wrong_log_probs(dpo_solution, dpo_trainer, wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.dpo_loss_by_hand(wrong, dpo_solution["dpo_loss"], dpo_trainer)


def crashes(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * (torch.cat([c, r[:1]]) - r)).mean()  # a shape error inside the learner's code


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda c, r, rc, rr, beta: -F.logsigmoid(-beta * ((c - rc) - (r - rr))).mean(), "sign is flipped"),
        (lambda c, r, rc, rr, beta: -F.logsigmoid(beta * ((r - rr) - (c - rc))).mean(), "sign is flipped"),  # swapped
        (lambda c, r, rc, rr, beta: -F.logsigmoid(beta * (c - r)).mean(), "TRL"),  # no reference
        (lambda c, r, rc, rr, beta: -F.logsigmoid(0.1 * ((c - rc) - (r - rr))).mean(), "ignores `beta`"),
        (lambda c, r, rc, rr, beta: -F.logsigmoid(beta * ((c - rc) - (r - rr))), r"shape \(4,\): return one number"),
        (lambda c, r, rc, rr, beta: -F.logsigmoid(beta * ((c - rc) - (r - rr))).sum(), "TRL"),  # summed
        (crashes, "`crashes` raised"),
    ],
    ids=["flipped-beta", "swapped-pair", "no-reference", "constant-beta", "per-pair", "summed", "crashes"],
)
def test_dpo_check_catches_wrong_losses(dpo_solution, dpo_trainer, wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.dpo_loss_by_hand(dpo_solution["sequence_logps"], wrong, dpo_trainer)


def test_an_unsolved_exercise_is_reported_not_failed(dpo_trainer, capsys):
    assert checks.dpo_loss_by_hand(not_implemented, not_implemented, dpo_trainer) is False
    assert checks.orpo_loss_by_hand(not_implemented, not_implemented) is False
    assert checks.sign_test(not_implemented) is False
    assert capsys.readouterr().out.count("Not solved yet") == 3


def test_beta_check(capsys):
    as_expected, opposite = {0.05: 0.3, 0.5: 0.1}, {0.05: 0.1, 0.5: 0.3}
    beta = partial(checks.beta_prediction, low=0.05, high=0.5)
    assert beta(solution("dpo", "PREDICTION")["PREDICTION"], drift=as_expected)
    said = capsys.readouterr().out
    assert said.startswith("✅") and "0.3000 at β = 0.05 and 0.1000 at β = 0.5" in said and "⚠️" not in said
    wrong_answers = [(0.5, r"β = 0.05 lets the policy drift further.*0.3000 at β = 0.05"), (0.1, "one of the two")]
    wrong_answers += [(wrong, "answer with a number") for wrong in ("0.05", None, [0.05], True)]
    for wrong, says in wrong_answers:
        with pytest.raises(AssertionError, match=says):
            beta(wrong, drift=as_expected)
    # A run that measured the opposite: the right answer passes, not with a plain ✅, and the learner reads why.
    assert beta(0.05, drift=opposite)
    said = capsys.readouterr().out
    assert "⚠️ the run disagrees" in said and "β = 0.5 drifted further, the opposite" in said and "Adam" in said
    with pytest.raises(AssertionError, match="the opposite of what the loss says"):  # a wrong answer hears it too
        beta(0.5, drift=opposite)


def fake_generate(model, tokenizer, conversations, max_new_tokens=48):
    """A model that complies with every request but the first, which it declines."""
    replies = [f"Sure! Here is how: {c[-1]['content']}" for c in conversations]
    return ["I'm sorry, but I can't help with that."] + replies[1:]


@pytest.fixture(scope="module")
def own_data():
    """The notebook's solution rows, with a model that declines the first request (REPLY_TOKENS: the notebook's)."""
    model = {"load_model": str, "model_path": "m", "tokenizer": None, "REPLY_TOKENS": 16}
    return solution("dpo", "my_rows", evaluation=SimpleNamespace(generate=fake_generate), **model)


def my_pairs(ns: dict, rows: list | None = None, behaviour=None, prompts: list | None = None):
    """checks.my_pairs on the solution, with one of its arguments replaced."""
    rows, prompts = ns["my_rows"] if rows is None else rows, ns["my_test_prompts"] if prompts is None else prompts
    columns = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    return checks.my_pairs(rows, behaviour or ns["shows_behaviour"], prompts, **columns)


def test_own_pairs_check_passes_on_the_solution_and_catches_mistakes(own_data):
    pairs = my_pairs(own_data)
    assert len(pairs) == 31 and pairs.column_names == ["prompt", "chosen", "rejected"]  # the declined request left out
    rows, question = own_data["my_rows"], own_data["my_rows"][0]["question"]
    shouted = {**rows[0], "question": "  " + question.upper() + " "}  # a copy that differs in case and spacing only
    wrong = [
        ({"rows": rows[:19]}, AssertionError, "at least 20"),
        ({"rows": [{**r, "good": r["bad"], "bad": r["good"]} for r in rows]}, AssertionError, "does not show the"),
        ({"behaviour": lambda reply: True}, AssertionError, "shows the behaviour too"),
        ({"rows": rows[:3] + [{**rows[3], "bad": ""}] + rows[4:]}, ValueError, "row 3"),
        ({"rows": [rows[0]] * 20}, AssertionError, "rows 0 and 1 ask the same prompt"),
        ({"rows": rows + [shouted]}, AssertionError, "same prompt"),
    ]
    for copy in (question, question + " ", question.lower(), question.rstrip("?.")):  # a test prompt trained on
        wrong.append(({"prompts": [*own_data["my_test_prompts"], copy]}, AssertionError, "also training prompts"))
    for replaced, error, says in wrong:
        with pytest.raises(error, match=says):
            my_pairs(own_data, **replaced)


@pytest.fixture(scope="module")
def ultrafeedback(bundled_pairs):
    """30 rows laid out as UltraFeedback's: whole conversations in chosen and rejected."""
    rows = bundled_pairs.select(range(30))
    return rows.map(lambda r: {side: r["prompt"] + r[side] for side in ("chosen", "rejected")}, remove_columns="prompt")


def boom(row: dict) -> dict:
    return {"prompt": row["messages"]}  # a KeyError inside the learner's code


def test_ultrafeedback_check(ultrafeedback, bundled_pairs):
    ns = solution("dpo", "convert", ultrafeedback=ultrafeedback, json=json)
    assert checks.ultrafeedback(ns["convert"], ultrafeedback, ns["uf_train"], ns["uf_test"])
    for wrong in (  # the reply left in the prompt; strings, not messages
        lambda r: {"prompt": r["chosen"], "chosen": r["chosen"][-1:], "rejected": r["rejected"][-1:]},
        lambda r: {"prompt": r["chosen"][:-1], "chosen": r["chosen"][-1]["content"], "rejected": r["rejected"][-1]},
    ):
        with pytest.raises(AssertionError, match="two-turn example"):
            checks.ultrafeedback(wrong, ultrafeedback, ns["uf_train"], ns["uf_test"])
    pairs = ultrafeedback.map(ns["convert"], remove_columns=ultrafeedback.column_names)
    split = pairs.train_test_split(test_size=0.5, seed=0)  # by row: a prompt with two pairs lands on both sides
    with pytest.raises(AssertionError, match="in both train and test"):
        checks.ultrafeedback(ns["convert"], ultrafeedback, split["train"], split["test"])
    with pytest.raises(AssertionError, match="not the 30 you converted"):  # one row each
        checks.ultrafeedback(ns["convert"], ultrafeedback, ns["uf_train"].select([0]), ns["uf_test"].select([0]))
    hh_rlhf = bundled_pairs.select(range(30, 50)), bundled_pairs.select(range(50, 60))  # not UltraFeedback's pairs
    with pytest.raises(AssertionError, match="not the 30 you converted"):
        checks.ultrafeedback(ns["convert"], ultrafeedback, *hh_rlhf)
    with pytest.raises(AssertionError, match="`boom` raised KeyError"):
        checks.ultrafeedback(boom, ultrafeedback, ns["uf_train"], ns["uf_test"])


def test_orpo_check():
    ns = solution("orpo", "log_odds")
    assert checks.orpo_loss_by_hand(ns["log_odds"], ns["orpo_loss"])
    with pytest.raises(AssertionError, match="log-probability"):
        checks.orpo_loss_by_hand(lambda logp: logp, ns["orpo_loss"])

    def term(c, r):
        return F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r))

    catalogue = [
        (lambda nll, c, r, lam: nll - lam * F.logsigmoid(c - r).mean(), "compared probabilities"),
        (lambda nll, c, r, lam: nll - lam * term(r, c).mean(), "swapped"),
        (lambda nll, c, r, lam: nll + lam * term(c, r).mean(), "sign of the odds-ratio term is flipped"),
        (lambda nll, c, r, lam: nll - lam * term(c, r).sum(), "summed over the pairs"),
        (lambda nll, c, r, lam: -lam * term(c, r).mean(), "NLL term is missing"),
        (lambda nll, c, r, lam: lam * nll - term(c, r).mean(), "λ weighs the odds-ratio term"),
        (lambda nll, c, r, lam: nll - lam * term(c, r), r"shape \(6,\): return one number"),
        # right at 0.1 only: checked at λ values the notebook does not use
        (lambda nll, c, r, lam: nll - 0.1 * term(c, r).mean(), r"λ = 0.25: .* NLL \+ λ"),
    ]
    for wrong, says in catalogue:
        with pytest.raises(AssertionError, match=says):
            checks.orpo_loss_by_hand(ns["log_odds"], wrong)
    with pytest.raises(AssertionError, match="`log_odds` raised"):

        def log_odds(logp):
            return logp - (1 - logp.exp()).log_()[None, None].squeeze(3)

        checks.orpo_loss_by_hand(log_odds, ns["orpo_loss"])


def test_lambda_check(capsys):
    ns = solution("orpo", "LAMBDAS", LAMBDA=0.25)
    assert checks.lambdas(ns["LAMBDAS"], ns["PREDICTION"])
    assert "Run the sweep" in capsys.readouterr().out
    assert checks.lambdas([0.0, 0.1, 1.0], "falls")  # the prediction is judged after the sweep, not before
    assert "rose" not in capsys.readouterr().out  # and nothing gives the answer away before it runs
    wrong_lambdas = [([0.1, 0.5, 1.0], "include 0"), ([0.0, -0.1, 1.0], "0 or more"), ([0.0, 1.0], "three")]
    wrong_lambdas += [(["0", "0.1", "1"], "each λ is a number"), ("0, 0.1, 1", "a list of numbers")]
    wrong_lambdas += [([0.0, 0.1, 0.1], "each value once"), ([0.0, True, 1.0], "each λ is a number")]
    for values, says in wrong_lambdas:
        with pytest.raises(AssertionError, match=says):
            checks.lambdas(values, "rises")
    for wrong in ("up", "Rises", None, 1):
        with pytest.raises(AssertionError, match="'rises' or 'falls'"):
            checks.lambdas([0.0, 0.1, 1.0], wrong)


def sweep_of(nlls: dict[float, float]) -> list[dict]:
    return [{"lambda": lam, "nll": nll, "preference_accuracy": 0.8, "judged_score": 0.5} for lam, nll in nlls.items()]


def test_nll_prediction_is_graded_by_the_learners_own_sweep(capsys):
    ns = solution("orpo", "LAMBDAS", LAMBDA=0.25)
    rising = sweep_of({0.0: 1.0, 0.25: 1.05, 1.0: 1.2})
    assert checks.nll_prediction(ns["PREDICTION"], rising) is True
    said = capsys.readouterr().out
    assert said.startswith("✅") and "1.000 at λ = 0 and 1.200 at λ = 1: it rose" in said
    assert checks.nll_prediction("falls", rising) is False
    assert capsys.readouterr().out.startswith("❌ Not this time")
    # The offline sweep's shape: the lowest NLL at a small λ, named; from 0 to the largest λ, a rise.
    assert checks.nll_prediction("rises", sweep_of({1.0: 1.148, 0.0: 1.015, 0.1: 0.938})) is True
    assert "lowest, 0.938, at λ = 0.1 in between" in capsys.readouterr().out
    # A sweep that fell: "falls" is right and "rises" wrong, whatever the loss suggests.
    falling = sweep_of({0.0: 1.2, 0.25: 1.1, 1.0: 1.0})
    assert checks.nll_prediction("falls", falling) is True and checks.nll_prediction("rises", falling) is False
    with pytest.raises(AssertionError, match="'rises' or 'falls'"):
        checks.nll_prediction("higher", rising)


def test_sign_test_check():
    ns = solution("orpo", "p_value")
    assert checks.sign_test(ns["p_value"])
    assert ns["p_value"](8, 1) == pytest.approx(20 / 512)  # 2·(1 + 9)/2⁹

    def tail(a, b, k):
        return 2 * sum(math.comb(a + b, i) for i in range(k + 1)) / 2 ** (a + b)

    def no_empty_case(a, b):
        return min(1.0, tail(a, b, min(a, b))) / (a + b)

    catalogue = [
        (lambda a, b: ns["p_value"](a, b) / 2 if ns["p_value"](a, b) < 1 else 1.0, "one-sided"),
        (lambda a, b: math.exp(-abs(a - b)), "Binomial"),
        (lambda a, b: tail(a, b, min(a, b)) if a + b else 1.0, "min\\(1"),  # uncapped: 1.375 for a 2–2 split
        (lambda a, b: min(1.0, tail(a, b, min(a, b) - 1)) if a + b else 1.0, "off by one"),
        (lambda a, b: min(1.0, tail(a, b, max(a, b))) if a + b else 1.0, "Binomial"),  # max, not min
        (no_empty_case, "`no_empty_case` raised ZeroDivisionError"),
        (lambda a, b: "0.05", "Binomial"),
        (lambda a, b: [0.5], "return one number"),
    ]
    for wrong, says in catalogue:
        with pytest.raises(AssertionError, match=says):
            checks.sign_test(wrong)
