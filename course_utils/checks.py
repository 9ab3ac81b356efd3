"""The notebooks' exercise checks: each says whether your answer is right and, when it is not, what went wrong.

Right: ✅ and True; unsolved (`NotImplementedError`): a reminder and False; wrong: `AssertionError` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from datasets import Dataset

from course_utils import data, losses


class NotSolved(NotImplementedError):
    """An exercise still to write. Raised in a notebook cell, it shows as a one-line reminder, not a traceback."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (Jupyter, Colab) shows in place of a traceback."""
        return [f"⏳ Not solved yet: {self}"]


def _call(function: Callable, *args, **kwargs):
    """`function(*args, **kwargs)`: NotImplementedError becomes NotSolved, any other error a sentence that names it."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError as err:
        raise NotSolved from err
    except Exception as err:  # the learner's code crashed: say where, not a traceback from inside the check
        name = getattr(function, "__name__", "your function")
        raise AssertionError(
            f"`{name}` raised {type(err).__name__}: {err}. Run it on a small example to see why."
        ) from err


def _number(value, what: str) -> float:
    """`value` as a float, or a sentence saying why it is not the single number `what` should be."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise AssertionError(
            f"{what} returned a tensor of shape {tuple(value.shape)}: return one number, the batch mean."
        )
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{what} returned {type(value).__name__} {value!r}: return one number.") from err


def _not_solved(what: str) -> bool:
    print(f"⏳ Not solved yet: {what}, then run this cell again.")
    return False


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    """Same shape and the same values, relative and absolute tolerance `tol`."""
    a, b = torch.as_tensor(a).detach().double().cpu(), torch.as_tensor(b).detach().double().cpu()
    return a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol)


# --- DPO ---------------------------------------------------------------------------------------------------------


def _sequence_logps_hint(theirs: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> str:
    """Why `theirs` differs from the summed completion log-probs: the usual mistakes, recognised."""
    unshifted = (torch.log_softmax(logits.float(), -1).gather(-1, ids[..., None]).squeeze(-1) * mask).sum(-1)
    if _close(theirs, unshifted):
        return "the logits at position t predict token t+1: compare logits[:, :-1] with input_ids[:, 1:]"
    if _close(theirs, losses.sequence_logps(logits, ids, mask, average=True)):
        return "you averaged over the reply's tokens; DPO sums them (the log-probability of the whole reply)"
    if _close(theirs, losses.sequence_logps(logits, ids, torch.ones_like(mask))):
        return "you scored the prompt too: multiply by the completion mask so only the reply's tokens count"
    return "the log-probability of a reply is the sum of log softmax(logits) at each reply token"


def dpo_loss_by_hand(sequence_logps: Callable, dpo_loss: Callable, trainer) -> bool:
    """Your `sequence_logps` and `dpo_loss` on one batch of `trainer`'s data, against TRL's own loss on it."""
    batch = next(iter(trainer.get_train_dataloader()))
    ids, attention, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    trainer.model.eval()
    with torch.no_grad():
        logits, ref_logits = (
            m(input_ids=ids, attention_mask=attention).logits for m in (trainer.model, trainer.ref_model)
        )
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        right, ref = losses.sequence_logps(logits, ids, mask), losses.sequence_logps(ref_logits, ids, mask)
        try:
            theirs = _call(sequence_logps, logits, ids, mask)
            assert _close(theirs, right), f"sequence_logps: {_sequence_logps_hint(theirs, logits, ids, mask)}."
            loss = _number(_call(dpo_loss, *right.chunk(2), *ref.chunk(2), beta=trainer.beta), "dpo_loss")
            at_start = _number(_call(dpo_loss, *ref.chunk(2), *ref.chunk(2), beta=trainer.beta), "dpo_loss")
            betas = (0.05, 0.5, 2.0)  # β values the notebook does not train with
            others = {b: _number(_call(dpo_loss, *right.chunk(2), *ref.chunk(2), beta=b), "dpo_loss") for b in betas}
        except NotSolved:
            return _not_solved("write `sequence_logps` and `dpo_loss` above")
    flipped = losses.dpo_loss(*right.chunk(2), *ref.chunk(2), beta=-trainer.beta).item()
    hint = (
        "the sign is flipped: the margin is β·(chosen log-ratio − rejected log-ratio), and the loss is −log σ(margin)"
        if math.isclose(loss, flipped, rel_tol=1e-4)
        else "the loss is −log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]), averaged"
    )
    assert math.isclose(loss, trl_loss, rel_tol=1e-3, abs_tol=1e-5), (
        f"dpo_loss: {loss:.6f}, TRL: {trl_loss:.6f}; {hint}."
    )
    assert math.isclose(at_start, math.log(2), rel_tol=1e-5), f"with the policy equal to the reference: {at_start:.6f}."
    for beta, other in others.items():
        expected = losses.dpo_loss(*right.chunk(2), *ref.chunk(2), beta=beta).item()
        assert math.isclose(other, expected, rel_tol=1e-4, abs_tol=1e-6), (
            f"dpo_loss with beta={beta}: {other:.6f} instead of {expected:.6f}"
            + ("; it ignores `beta`: use the argument, not a constant." if math.isclose(other, loss) else ".")
        )
    print(f"✅ Your loss on this batch: {loss:.6f}. TRL's: {trl_loss:.6f}.")
    print(
        f"   With the policy equal to its reference (the first step) your loss is {at_start:.4f} = log 2: every "
        "log-ratio is 0, so every margin is 0, and −log σ(0) = log 2."
    )
    return True


def beta_prediction(prediction: float, low: float, high: float, drift: dict[float, float]) -> bool:
    """Your answer to "which β lets the policy drift further from its reference?", beside what this run measured."""
    assert isinstance(prediction, int | float) and not isinstance(prediction, bool), (
        f"PREDICTION = {prediction!r}: answer with a number, {low} or {high} (not {type(prediction).__name__})."
    )
    assert prediction in (low, high), f"answer with one of the two values you trained: {low} or {high}."
    further = max(drift, key=drift.get)
    measured = (
        f"This run measured a mean drift of {drift[low]:.4f} at β = {low} and {drift[high]:.4f} at β = {high}: "
        f"β = {further} drifted further"
    )
    if further == low:
        measured += ", as the loss says it should."
    else:
        measured += (
            ", the opposite of what the loss says. Adam scales each update by the gradient's recent size, so at first "
            "both runs move by about the learning rate per step whatever β is; β makes a difference once the pairs "
            "of the high-β run saturate σ and stop pulling. With this few updates they had not: train longer "
            "(num_train_epochs) and measure again."
        )
    assert prediction == low, (
        f"β = {low} lets the policy drift further. β multiplies the log-ratios inside σ: a large β pulls harder at "
        "first, but a small move away from the reference already saturates σ and the pair stops pulling; a small β "
        f"keeps pulling until the policy has moved much further. {measured}"
    )
    mark = "✅" if further == low else "✅ Your prediction follows the loss, but ⚠️ the run disagrees."
    print(f"{mark} β = {low} lets the policy drift further. {measured}")
    return True


def _norm(text: str) -> str:
    """A prompt as a reader compares it: case, spacing and a trailing full stop or question mark ignored."""
    return " ".join(str(text).casefold().split()).rstrip(" .?!")


def my_pairs(
    rows: Sequence[dict], shows_behaviour: Callable[[str], bool], test_prompts: Sequence[str], **columns: str
) -> Dataset:
    """Your 20+ valid pairs (chosen shows the behaviour, rejected not) and 5+ unseen test prompts, as pairs."""
    assert len(rows) >= 20, f"{len(rows)} pairs: write at least 20, so the model sees the behaviour more than once."
    pairs = data.validate_preference(Dataset.from_list(list(rows)), **columns)  # names every bad row
    prompt, chosen, rejected = (columns.get(k, k) for k in ("prompt", "chosen", "rejected"))
    first: dict[str, int] = {}  # each prompt, as a reader compares it, and the first row that asks it
    repeats = []
    for i, row in enumerate(rows):
        key = _norm(row[prompt])
        if key in first:
            repeats.append((first[key], i))
        first.setdefault(key, i)
    assert not repeats, (
        f"rows {repeats[0][0]} and {repeats[0][1]} ask the same prompt ({len(repeats)} repeats): each pair needs its "
        "own prompt, or the model learns one answer, not a behaviour."
    )
    missing = [i for i, row in enumerate(rows) if not shows_behaviour(row[chosen])]
    present = [i for i, row in enumerate(rows) if shows_behaviour(row[rejected])]
    assert not missing, f"rows {missing[:10]}: the chosen reply does not show the behaviour (`shows_behaviour`)."
    assert not present, f"rows {present[:10]}: the rejected reply shows the behaviour too, so it teaches nothing."
    assert len(test_prompts) >= 5, f"{len(test_prompts)} held-out prompts: write at least 5."
    leaked = [p for p in test_prompts if _norm(p) in first]
    assert not leaked, (
        f"held-out prompts that are also training prompts: {leaked[:3]}. Held out means never trained on."
    )
    print(f"✅ {len(pairs)} pairs that teach one behaviour, and {len(test_prompts)} prompts held out to measure it.")
    return pairs


def ultrafeedback(convert: Callable[[dict], dict], rows: Dataset, train: Dataset, test: Dataset) -> bool:
    """Your UltraFeedback conversion against `data.ultrafeedback_to_preference`, and your split: no shared prompt."""
    multi_turn = {  # a second turn: the prompt is every message but the last
        "chosen": [
            {"role": "user", "content": "Name a fruit."},
            {"role": "assistant", "content": "A lime."},
            {"role": "user", "content": "What color is it?"},
            {"role": "assistant", "content": "Green."},
        ],
    }
    multi_turn["rejected"] = multi_turn["chosen"][:3] + [{"role": "assistant", "content": "Purple."}]
    try:
        for i, row in enumerate([multi_turn, *rows]):
            theirs, right = _call(convert, dict(row)), data.ultrafeedback_to_preference(dict(row))
            if theirs != right:
                where = "the two-turn example" if i == 0 else f"row {i - 1}"
                hint = next(
                    (
                        f"`{k}` should be {right[k]!r}, not {theirs.get(k)!r}"
                        for k in right
                        if theirs.get(k) != right[k]
                    ),
                    f"return exactly the keys prompt, chosen and rejected, not {sorted(theirs)}",
                )
                raise AssertionError(
                    f"{where}: {hint}. The prompt is every message but the last; each reply is a list."
                )
    except NotSolved:
        return _not_solved("write `convert` and the split above")
    converted = sorted(str(data.ultrafeedback_to_preference(dict(row))) for row in rows)
    split = sorted(str({k: row[k] for k in ("prompt", "chosen", "rejected")}) for part in (train, test) for row in part)
    assert split == converted, (
        f"train and test hold {len(split)} pairs, not the {len(converted)} you converted from these UltraFeedback "
        "rows: split the converted rows themselves, every one into train or test."
    )
    shared = {str(p) for p in train["prompt"]} & {str(p) for p in test["prompt"]}
    assert len(train) and len(test), f"train has {len(train)} pairs and test {len(test)}: both need some."
    assert not shared, f"{len(shared)} prompts are in both train and test: split by prompt, so test stays held out."
    print(f"✅ Conversion right on {len(rows) + 1} rows; {len(train)} training and {len(test)} held-out pairs.")
    return True


# --- ORPO --------------------------------------------------------------------------------------------------------


def orpo_loss_by_hand(log_odds: Callable, orpo_loss: Callable) -> bool:
    """Your `log_odds` and `orpo_loss` on a grid of probabilities, against `course_utils.losses` (TRL's formula)."""
    p = torch.tensor([0.05, 0.2, 0.5, 0.7, 0.9, 0.95], dtype=torch.float64)
    chosen = p.log()  # mean log-probs: the chosen reply sometimes ahead, sometimes behind
    rejected = torch.tensor([0.3, 0.1, 0.6, 0.2, 0.5, 0.9], dtype=torch.float64).log()
    nll = torch.tensor(1.3, dtype=torch.float64)
    try:
        theirs = _call(log_odds, chosen)
        right = (p / (1 - p)).log()
        if not _close(theirs, right, 1e-6):
            hint = "that is log p, the log-probability" if _close(theirs, chosen) else "log odds = log p − log(1 − p)"
            raise AssertionError(f"log_odds({p.tolist()}) gave {theirs.tolist()}: {hint}.")
        for lam in (0.1, 0.25, 1.0):
            loss = _number(_call(orpo_loss, nll, chosen, rejected, lam), "orpo_loss")
            expected = losses.orpo_loss(nll, chosen, rejected, lam=lam).item()
            ratio = right - (rejected.exp() / (1 - rejected.exp())).log()  # log odds(y_w) − log odds(y_l)
            term = -torch.nn.functional.logsigmoid(ratio)  # the odds-ratio term, per pair
            mistakes = {
                "you compared probabilities; ORPO compares odds, p / (1 − p)": nll
                - lam * torch.nn.functional.logsigmoid(chosen - rejected).mean(),
                "chosen and rejected are swapped: the odds of the chosen reply go first": nll
                - lam * torch.nn.functional.logsigmoid(-ratio).mean(),
                "the sign of the odds-ratio term is flipped: it is −log σ(…), which is positive": nll
                - lam * term.mean(),
                "you summed over the pairs; average them": nll + lam * term.sum(),
                "the NLL term is missing: ORPO adds the odds-ratio term to SFT's loss": lam * term.mean(),
                "λ weighs the odds-ratio term, not the NLL": lam * nll + term.mean(),
            }
            hint = next(
                (say for say, value in mistakes.items() if math.isclose(loss, value.item(), rel_tol=1e-6)),
                "L = NLL + λ · mean(−log σ(log odds(y_w) − log odds(y_l)))",
            )
            assert math.isclose(loss, expected, rel_tol=1e-6), (
                f"λ = {lam}: {loss:.6f} instead of {expected:.6f}; {hint}."
            )
    except NotSolved:
        return _not_solved("write `log_odds` and `orpo_loss` above")
    print("✅ log_odds and orpo_loss match the ORPO paper's formula, the one TRL's ORPOTrainer computes.")
    return True


def lambdas(values: Sequence[float], prediction: str) -> bool:
    """Your λ values for the sweep, and a prediction in the right form (the sweep then measures it)."""
    assert isinstance(values, Sequence) and not isinstance(values, str), (
        f"LAMBDAS = {values!r}: a list of numbers, such as [0.0, 0.1, 1.0]."
    )
    wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)]
    assert not wrong, f"LAMBDAS holds {wrong!r}: each λ is a number (0.1, not '0.1')."
    assert len(values) >= 3, f"{list(values)}: choose at least three values, to see a trend."
    assert all(v >= 0 for v in values), f"{list(values)}: λ weighs a loss term, so it is 0 or more."
    assert 0 in values, f"{list(values)}: include 0, the NLL term alone, as the baseline."
    assert len(set(values)) == len(values), f"{list(values)}: each value once."
    assert prediction in ("rises", "falls"), f"PREDICTION = {prediction!r}: answer 'rises' or 'falls'."
    print(f"✅ λ in {sorted(values)}; you predict the held-out NLL at your largest λ {prediction} against λ = 0.")
    print("Run the sweep to see.")
    return True


def nll_prediction(prediction: str, sweep: Sequence[dict]) -> bool:
    """Your prediction of the held-out NLL at your largest λ against λ = 0, graded by what your sweep measured."""
    assert prediction in ("rises", "falls"), f"PREDICTION = {prediction!r}: answer 'rises' or 'falls'."
    points = sorted((row["lambda"], row["nll"]) for row in sweep)
    (lam_0, nll_0), (lam_max, nll_max) = points[0], points[-1]
    trend = "rises" if nll_max > nll_0 else "falls"
    measured = (
        f"Your sweep measured a held-out NLL of {nll_0:.3f} at λ = {lam_0:g} and {nll_max:.3f} at λ = {lam_max:g}"
    )
    measured += f": it {'rose' if trend == 'rises' else 'fell'}"
    lowest = min(points, key=lambda point: point[1])
    if lowest[0] not in (lam_0, lam_max):
        measured += f", with its lowest, {lowest[1]:.3f}, at λ = {lowest[0]:g} in between"
    why = (
        "The loss keeps the NLL's weight at 1 and adds λ times the odds-ratio term, so the larger λ, the smaller the "
        "NLL's share of each update: that tends to cost fit. But the odds-ratio term also pushes the chosen replies "
        "up, and held-out replies are not the training ones, so the loss alone does not fix which way it goes."
    )
    if prediction != trend:
        print(f"❌ Not this time. {measured}. {why}")
        return False
    print(f"✅ {measured}, as you predicted. {why}")
    return True


def sign_test(p_value: Callable[[int, int], float]) -> bool:
    """Your two-sided sign-test p-value, against the exact binomial computation on a few cases."""
    cases = [(0, 0), (1, 0), (3, 1), (8, 1), (10, 0), (2, 7), (2, 2), (5, 5), (6, 3), (0, 12)]
    try:
        for a, b in cases:
            n, k = a + b, min(a, b)
            exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
            theirs = _number(_call(p_value, a, b), f"p_value({a}, {b})")
            one_sided = exact / 2 if exact < 1 else None
            if one_sided is not None and math.isclose(theirs, one_sided, rel_tol=1e-9):
                hint = "that is one-sided: either method could have won, so double it"
            elif theirs > 1:
                hint = "a p-value is a probability: at a tie, 2·P(X ≤ k) passes 1, so take min(1, …)"
            elif n and math.isclose(theirs, 2 * sum(math.comb(n, i) for i in range(k)) / 2**n, rel_tol=1e-9):
                hint = "off by one: P(X ≤ k) includes k itself, range(k + 1)"
            else:
                hint = "p = min(1, 2·P(X ≤ min(a, b))) for X ~ Binomial(a + b, 1/2), ties left out"
            assert math.isclose(theirs, exact, rel_tol=1e-9, abs_tol=1e-12), f"p_value({a}, {b}) = {theirs}: {hint}."
    except NotSolved:
        return _not_solved("write `p_value` above")
    print("✅ Your sign test gives the exact two-sided p-values.")
    return True
