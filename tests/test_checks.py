"""The exercise checks: each passes on the notebook's own solution and fails, saying why, on a wrong answer."""

from __future__ import annotations

import json
import math
import re
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
    source = next(
        "".join(c["source"])
        for c in cells
        if re.search(rf"^(def {defines}\b|{defines} =)", "".join(c["source"]), re.M)
        and "BEGIN SOLUTION" in "".join(c["source"])
    )
    exec(compile(source, f"{notebook}:{defines}", "exec"), namespace)
    return namespace


def not_implemented(*args, **kwargs):
    raise NotImplementedError


# --- DPO exercise 1: the loss by hand ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo_trainer(tiny_model_dir, bundled_pairs, tmp_path_factory):
    """A DPO trainer whose policy has moved away from its reference (at the start the loss is log 2 whatever)."""
    args = DPOConfig(
        output_dir=str(tmp_path_factory.mktemp("dpo")),
        per_device_train_batch_size=4,
        max_length=128,
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(
        model=str(tiny_model_dir), args=args, train_dataset=bundled_pairs.select(range(8)), processing_class=tokenizer
    )
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


def unshifted(logits, ids, mask):
    return (torch.log_softmax(logits.float(), -1).gather(-1, ids[..., None]).squeeze(-1) * mask).sum(-1)


def averaged(logits, ids, mask):
    token = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (token * mask[:, 1:]).sum(-1) / mask[:, 1:].sum(-1)


def unmasked(logits, ids, mask):
    return averaged(logits, ids, torch.ones_like(mask)) * (ids.shape[1] - 1)


@pytest.mark.parametrize(
    ("wrong", "says"),
    [(unshifted, r"t\+1"), (averaged, "averaged"), (unmasked, "prompt too")],
    ids=["off-by-one", "mean-not-sum", "prompt-scored"],
)
def test_dpo_check_catches_wrong_log_probs(dpo_solution, dpo_trainer, wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.dpo_loss_by_hand(wrong, dpo_solution["dpo_loss"], dpo_trainer)


def flipped_beta(c, r, rc, rr, beta):
    return -F.logsigmoid(-beta * ((c - rc) - (r - rr))).mean()


def no_reference(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * (c - r)).mean()


def constant_beta(c, r, rc, rr, beta):
    return -F.logsigmoid(0.1 * ((c - rc) - (r - rr))).mean()


def per_pair(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * ((c - rc) - (r - rr)))


def summed(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * ((c - rc) - (r - rr))).sum()


def crashes(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * (torch.cat([c, r[:1]]) - r)).mean()  # a shape error inside the learner's code


def swapped_pair(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * ((r - rr) - (c - rc))).mean()


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (flipped_beta, "sign is flipped"),
        (swapped_pair, "sign is flipped"),  # swapping chosen and rejected flips the margin's sign
        (no_reference, "TRL"),
        (constant_beta, "ignores `beta`"),
        (per_pair, r"shape \(4,\): return one number"),
        (summed, "TRL"),
        (crashes, "`crashes` raised"),
    ],
)
def test_dpo_check_catches_wrong_losses(dpo_solution, dpo_trainer, wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.dpo_loss_by_hand(dpo_solution["sequence_logps"], wrong, dpo_trainer)


def test_an_unsolved_exercise_is_reported_not_failed(dpo_trainer, capsys):
    assert checks.dpo_loss_by_hand(not_implemented, not_implemented, dpo_trainer) is False
    assert checks.orpo_loss_by_hand(not_implemented, not_implemented) is False
    assert checks.sign_test(not_implemented) is False
    assert capsys.readouterr().out.count("Not solved yet") == 3


# --- DPO exercise 2: β ------------------------------------------------------------------------------------------


def test_beta_check(capsys):
    prediction = solution("dpo", "PREDICTION")["PREDICTION"]
    assert checks.beta_prediction(prediction, low=0.05, high=0.5, drift={0.05: 0.3, 0.5: 0.1})
    said = capsys.readouterr().out
    assert said.startswith("✅") and "0.3000 at β = 0.05 and 0.1000 at β = 0.5" in said and "⚠️" not in said
    with pytest.raises(AssertionError, match=r"β = 0.05 lets the policy drift further.*0.3000 at β = 0.05"):
        checks.beta_prediction(0.5, low=0.05, high=0.5, drift={0.05: 0.3, 0.5: 0.1})
    with pytest.raises(AssertionError, match="one of the two"):
        checks.beta_prediction(0.1, low=0.05, high=0.5, drift={0.05: 0.3, 0.5: 0.1})
    for wrong in ("0.05", None, [0.05], True):  # a string, nothing, a list, a boolean
        with pytest.raises(AssertionError, match="answer with a number"):
            checks.beta_prediction(wrong, low=0.05, high=0.5, drift={0.05: 0.3, 0.5: 0.1})


def test_beta_check_says_plainly_when_the_run_measured_the_opposite(capsys):
    # The right answer still passes, but not with a plain ✅: the learner reads that the run disagrees, and why.
    assert checks.beta_prediction(0.05, low=0.05, high=0.5, drift={0.05: 0.1, 0.5: 0.3})
    said = capsys.readouterr().out
    assert "⚠️ the run disagrees" in said and "β = 0.5 drifted further, the opposite" in said and "Adam" in said
    with pytest.raises(AssertionError, match="the opposite of what the loss says"):  # a wrong answer hears it too
        checks.beta_prediction(0.5, low=0.05, high=0.5, drift={0.05: 0.1, 0.5: 0.3})


# --- DPO exercise 3: your own pairs -----------------------------------------------------------------------------


def fake_generate(model, tokenizer, conversations, max_new_tokens=48):
    """A model that complies with every request but the first, which it declines."""
    replies = [f"Sure! Here is how: {c[-1]['content']}" for c in conversations]
    return ["I'm sorry, but I can't help with that."] + replies[1:]


@pytest.fixture(scope="module")
def own_data():
    namespace = {
        "load_model": str,
        "model_path": "m",
        "tokenizer": None,
        "evaluation": SimpleNamespace(generate=fake_generate),
        "REPLY_TOKENS": 16,  # the notebook's reply length (profile.max_new_tokens)
    }
    return solution("dpo", "my_rows", **namespace)


def my_pairs(ns, rows=None, behaviour=None, prompts=None):
    return checks.my_pairs(
        ns["my_rows"] if rows is None else rows,
        behaviour or ns["shows_behaviour"],
        ns["my_test_prompts"] if prompts is None else prompts,
        prompt="question",
        chosen="good",
        rejected="bad",
    )


def test_own_pairs_check_passes_on_the_solution(own_data):
    pairs = my_pairs(own_data)
    assert len(pairs) == 31 and pairs.column_names == ["prompt", "chosen", "rejected"]  # the declined request left out


def test_own_pairs_check_catches_mistakes(own_data):
    rows = own_data["my_rows"]
    with pytest.raises(AssertionError, match="at least 20"):
        my_pairs(own_data, rows=rows[:19])
    swapped = [{**r, "good": r["bad"], "bad": r["good"]} for r in rows]
    with pytest.raises(AssertionError, match="does not show the behaviour"):
        my_pairs(own_data, rows=swapped)
    with pytest.raises(AssertionError, match="shows the behaviour too"):
        my_pairs(own_data, behaviour=lambda reply: True)
    with pytest.raises(AssertionError, match="also training prompts"):
        my_pairs(own_data, prompts=own_data["my_test_prompts"] + [rows[0]["question"]])
    with pytest.raises(ValueError, match="row 3"):
        my_pairs(own_data, rows=rows[:3] + [{**rows[3], "bad": ""}] + rows[4:])
    with pytest.raises(AssertionError, match="rows 0 and 1 ask the same prompt"):
        my_pairs(own_data, rows=[rows[0]] * 20)
    with pytest.raises(AssertionError, match="same prompt"):  # a copy that differs only in case and spacing
        my_pairs(own_data, rows=rows + [{**rows[0], "question": "  " + rows[0]["question"].upper() + " "}])
    for near_copy in (rows[0]["question"] + " ", rows[0]["question"].lower(), rows[0]["question"].rstrip("?.")):
        with pytest.raises(AssertionError, match="also training prompts"):
            my_pairs(own_data, prompts=own_data["my_test_prompts"] + [near_copy])


# --- DPO exercise 4: UltraFeedback ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ultrafeedback(bundled_pairs):
    rows = bundled_pairs.select(range(30))
    return rows.map(
        lambda r: {"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]},
        remove_columns=["prompt"],
    )


def test_ultrafeedback_check(ultrafeedback, bundled_pairs):
    ns = solution("dpo", "convert", ultrafeedback=ultrafeedback, json=json)
    assert checks.ultrafeedback(ns["convert"], ultrafeedback, ns["uf_train"], ns["uf_test"])

    def reply_in_prompt(row):
        return {"prompt": row["chosen"], "chosen": row["chosen"][-1:], "rejected": row["rejected"][-1:]}

    def strings(row):
        return {"prompt": row["chosen"][:-1], "chosen": row["chosen"][-1]["content"], "rejected": row["rejected"][-1]}

    for wrong in (reply_in_prompt, strings):
        with pytest.raises(AssertionError, match="two-turn example"):
            checks.ultrafeedback(wrong, ultrafeedback, ns["uf_train"], ns["uf_test"])
    pairs = ultrafeedback.map(ns["convert"], remove_columns=ultrafeedback.column_names)
    split = pairs.train_test_split(test_size=0.5, seed=0)  # by row: a prompt with two pairs lands on both sides
    with pytest.raises(AssertionError, match="in both train and test"):
        checks.ultrafeedback(ns["convert"], ultrafeedback, split["train"], split["test"])
    with pytest.raises(AssertionError, match="not the 30 you converted"):  # one row each
        checks.ultrafeedback(ns["convert"], ultrafeedback, ns["uf_train"].select([0]), ns["uf_test"].select([0]))
    with pytest.raises(AssertionError, match="not the 30 you converted"):  # the HH-RLHF pairs, not UltraFeedback's
        checks.ultrafeedback(
            ns["convert"], ultrafeedback, bundled_pairs.select(range(30, 50)), bundled_pairs.select(range(50, 60))
        )
    with pytest.raises(AssertionError, match="`boom` raised KeyError"):

        def boom(row):
            return {"prompt": row["messages"]}

        checks.ultrafeedback(boom, ultrafeedback, ns["uf_train"], ns["uf_test"])


# --- ORPO exercise 1: the loss by hand --------------------------------------------------------------------------


def test_orpo_check():
    ns = solution("orpo", "log_odds")
    assert checks.orpo_loss_by_hand(ns["log_odds"], ns["orpo_loss"])
    with pytest.raises(AssertionError, match="log-probability"):
        checks.orpo_loss_by_hand(lambda logp: logp, ns["orpo_loss"])

    def probability_ratio(nll, c, r, lam):
        return nll - lam * F.logsigmoid(c - r).mean()

    def flipped(nll, c, r, lam):
        return nll - lam * F.logsigmoid(ns["log_odds"](r) - ns["log_odds"](c)).mean()

    def lam_on_nll(nll, c, r, lam):
        return lam * nll - F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r)).mean()

    def sign(nll, c, r, lam):
        return nll + lam * F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r)).mean()

    def summed(nll, c, r, lam):
        return nll - lam * F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r)).sum()

    def no_nll(nll, c, r, lam):
        return -lam * F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r)).mean()

    def per_pair(nll, c, r, lam):
        return nll - lam * F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r))

    def constant_lam(nll, c, r, lam):
        return nll - 0.1 * F.logsigmoid(ns["log_odds"](c) - ns["log_odds"](r)).mean()

    catalogue = [
        (probability_ratio, "compared probabilities"),
        (flipped, "swapped"),
        (sign, "sign of the odds-ratio term is flipped"),
        (summed, "summed over the pairs"),
        (no_nll, "NLL term is missing"),
        (lam_on_nll, "λ weighs the odds-ratio term"),
        (per_pair, r"shape \(6,\): return one number"),
        (constant_lam, r"λ = 0.25: .* NLL \+ λ"),  # right at 0.1 only: checked at λ values the notebook does not use
    ]
    for wrong, says in catalogue:
        with pytest.raises(AssertionError, match=says):
            checks.orpo_loss_by_hand(ns["log_odds"], wrong)
    with pytest.raises(AssertionError, match="`log_odds` raised"):

        def log_odds(logp):
            return logp - (1 - logp.exp()).log_()[None, None].squeeze(3)

        checks.orpo_loss_by_hand(log_odds, ns["orpo_loss"])


# --- ORPO exercise 2: λ -----------------------------------------------------------------------------------------


def test_lambda_check(capsys):
    ns = solution("orpo", "LAMBDAS", LAMBDA=0.25)
    assert checks.lambdas(ns["LAMBDAS"], ns["PREDICTION"])
    assert "Run the sweep" in capsys.readouterr().out
    assert checks.lambdas([0.0, 0.1, 1.0], "falls")  # the prediction is judged after the sweep, not before
    assert "rose" not in capsys.readouterr().out  # and nothing gives the answer away before it runs
    for values, says in [
        ([0.1, 0.5, 1.0], "include 0"),
        ([0.0, -0.1, 1.0], "0 or more"),
        ([0.0, 1.0], "three"),
        (["0", "0.1", "1"], "each λ is a number"),
        ("0, 0.1, 1", "a list of numbers"),
        ([0.0, 0.1, 0.1], "each value once"),
        ([0.0, True, 1.0], "each λ is a number"),
    ]:
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


# --- ORPO exercise 3: the sign test -----------------------------------------------------------------------------


def test_sign_test_check():
    ns = solution("orpo", "p_value")
    assert checks.sign_test(ns["p_value"])
    assert ns["p_value"](8, 1) == pytest.approx(20 / 512)  # 2·(1 + 9)/2⁹

    def one_sided(a, b):
        return ns["p_value"](a, b) / 2 if ns["p_value"](a, b) < 1 else 1.0

    with pytest.raises(AssertionError, match="one-sided"):
        checks.sign_test(one_sided)
    with pytest.raises(AssertionError, match="Binomial"):
        checks.sign_test(lambda a, b: math.exp(-abs(a - b)))

    def uncapped(a, b):
        n, k = a + b, min(a, b)
        return 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0

    def off_by_one(a, b):
        n, k = a + b, min(a, b)
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k)) / 2**n) if n else 1.0

    def max_not_min(a, b):
        n, k = a + b, max(a, b)
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0

    def no_empty_case(a, b):
        return min(1.0, 2 * sum(math.comb(a + b, i) for i in range(min(a, b) + 1)) / 2 ** (a + b)) / (a + b)

    catalogue = [
        (uncapped, "min\\(1"),  # 1.375 for a 2–2 split
        (off_by_one, "off by one"),
        (max_not_min, "Binomial"),
        (no_empty_case, "`no_empty_case` raised ZeroDivisionError"),
        (lambda a, b: "0.05", "Binomial"),
        (lambda a, b: [0.5], "return one number"),
    ]
    for wrong, says in catalogue:
        with pytest.raises(AssertionError, match=says):
            checks.sign_test(wrong)


def test_a_missing_column_names_the_dataset_problem():
    with pytest.raises(ValueError, match="good"):
        checks.my_pairs(
            [{"question": "q", "bad": "b"}] * 20, bool, ["x"] * 5, prompt="question", chosen="good", rejected="bad"
        )
