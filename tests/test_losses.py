"""The lesson's losses: their shape on toy numbers, and the same value as TRL's trainers on the same batch."""

import math

import pytest
import torch
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from course_utils.losses import dpo_loss, orpo_loss, sequence_logps

TOL = 1e-5
# Float32 on the CPU everywhere, so TRL's forward and ours do the same arithmetic.
TRAINER_ARGS = {
    "bf16": False,
    "use_cpu": True,
    "activation_checkpointing": False,
    "per_device_train_batch_size": 4,
    "max_length": 128,
    "report_to": "none",
    "save_strategy": "no",
    "disable_tqdm": True,
    "seed": 0,
}


# --- the formulas on toy numbers -------------------------------------------------------------------------------


def test_sequence_logps_shifts_and_masks():
    vocab = 8
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    logits = torch.zeros(1, 5, vocab)  # uniform: every predicted token has log-prob -log 8
    logits[0, 1, 4] = 100.0  # position 1 predicts token 2 (a 4) with certainty
    mask = torch.tensor([[1, 0, 1, 1, 0]])  # the first token is never predicted, so its mask is ignored
    expected = [0.0, -math.log(vocab)]  # tokens 2 and 3 are scored
    assert sequence_logps(logits, ids, mask).item() == pytest.approx(sum(expected), abs=1e-6)
    assert sequence_logps(logits, ids, mask, average=True).item() == pytest.approx(sum(expected) / 2, abs=1e-6)


def test_dpo_loss_is_log2_when_the_policy_is_the_reference():
    logps = -torch.rand(4) * 50
    loss = dpo_loss(logps, logps - 3, logps, logps - 3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_dpo_loss_decreases_as_the_margin_grows():
    margins = torch.linspace(-20, 20, 41)
    zeros = torch.zeros(1)
    losses = torch.stack([dpo_loss(m.view(1), zeros, zeros, zeros) for m in margins])
    assert (losses.diff() < 0).all(), losses


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_higher_beta_makes_the_dpo_loss_steeper(beta):
    margin = torch.zeros(1, requires_grad=True)
    dpo_loss(margin, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=beta).backward()
    assert margin.grad.item() == pytest.approx(-beta / 2)  # d/dm -log σ(βm) at m = 0 is -β/2


def test_orpo_loss_with_lam_zero_is_the_nll():
    nll = torch.tensor(2.5)
    assert orpo_loss(nll, -torch.rand(4), -torch.rand(4), lam=0.0).item() == pytest.approx(2.5)


def test_orpo_log_odds_ratio_is_zero_when_chosen_equals_rejected():
    mean_logps = -torch.rand(4) * 5
    or_loss = orpo_loss(torch.tensor(0.0), mean_logps, mean_logps, lam=1.0)
    assert or_loss.item() == pytest.approx(math.log(2))  # -log σ(0)


def test_orpo_loss_is_accurate_when_p_is_close_to_one():
    # p = exp(-1e-8) rounds to 1.0 in float32, so the naive log(1 - p) is -inf and that pair's OR loss 0 (exact: 0.29)
    chosen, rejected = torch.tensor([-1e-8, -1e-5, -0.3]), torch.tensor([-3e-8, -3e-5, -0.9])
    c, r = chosen.double(), rejected.double()
    exact_log_odds_ratio = (c - r) - (torch.log(-torch.expm1(c)) - torch.log(-torch.expm1(r)))
    exact = -torch.nn.functional.logsigmoid(exact_log_odds_ratio).mean().item()
    assert orpo_loss(torch.tensor(0.0), chosen, rejected, lam=1.0).item() == pytest.approx(exact, rel=1e-5)


# --- the same batch through TRL and through the lesson's functions ----------------------------------------------


@pytest.fixture(scope="module")
def pairs(bundled_pairs):
    return bundled_pairs.select(range(8))


@pytest.fixture(scope="module", params=[0.1, 0.5], ids=lambda beta: f"beta={beta}")
def dpo(request, tiny_model_dir, pairs, tmp_path_factory):
    """A DPO trainer whose policy has moved away from its reference, and one of its batches."""
    args = DPOConfig(output_dir=str(tmp_path_factory.mktemp("dpo")), beta=request.param, **TRAINER_ARGS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(model=str(tiny_model_dir), args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.model.eval()
    torch.manual_seed(0)
    with torch.no_grad():  # at init policy = reference and the loss is log 2 whatever the formula: move the policy
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return trainer, next(iter(trainer.get_train_dataloader()))


def our_dpo_loss(trainer, batch, average: bool = False) -> float:
    """The lesson's DPO loss on a TRL batch, from our own forward passes of the policy and the reference."""
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    with torch.no_grad():
        # The batch stacks the chosen sequences, then the rejected ones; completion_mask marks the reply tokens.
        logits, ref_logits = (
            m(input_ids=ids, attention_mask=attention).logits for m in (trainer.model, trainer.ref_model)
        )
        logps, ref_logps = (sequence_logps(x, ids, completion, average=average) for x in (logits, ref_logits))
    return dpo_loss(*logps.chunk(2), *ref_logps.chunk(2), beta=trainer.beta).item()


def test_dpo_loss_matches_trl(dpo):
    trainer, batch = dpo
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
    ours = our_dpo_loss(trainer, batch)
    print(f"DPO beta={trainer.beta}: TRL {trl_loss:.7f}, ours {ours:.7f}, |diff| {abs(ours - trl_loss):.2e}")
    assert abs(trl_loss - math.log(2)) > 1e-2, "policy = reference: the comparison would prove nothing"
    assert abs(ours - trl_loss) < TOL, (ours, trl_loss)


def test_trl_dpo_sums_the_token_logps(dpo):
    trainer, batch = dpo
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
    assert abs(our_dpo_loss(trainer, batch, average=True) - trl_loss) > 1e-3, "averaged log-probs match TRL too?"


@pytest.fixture(scope="module", params=[0.0, 0.1, 1.0], ids=lambda lam: f"lam={lam}")
def orpo(request, tiny_model_dir, pairs, tmp_path_factory):
    """An ORPO trainer with λ (TRL's `beta`) set, and one of its batches."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(output_dir=str(tmp_path_factory.mktemp("orpo")), beta=request.param, **TRAINER_ARGS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = ORPOTrainer(model=str(tiny_model_dir), args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.model.eval()
    return trainer, next(iter(trainer.get_train_dataloader()))


def our_orpo_parts(trainer, batch) -> tuple[torch.Tensor, ...]:
    """From our own forward passes: TRL's NLL (prompt + reply), the reply-only NLL, and each side's mean log-prob."""
    with torch.no_grad():
        ids, rejected_ids = batch["chosen_input_ids"], batch["rejected_input_ids"]
        logits = trainer.model(input_ids=ids, attention_mask=batch["chosen_attention_mask"]).logits
        rejected_logits = trainer.model(input_ids=rejected_ids, attention_mask=batch["rejected_attention_mask"]).logits
    attention, reply = batch["chosen_attention_mask"], batch["chosen_labels"] != -100  # labels: -100 on the prompt
    # NLL averaged over all the tokens of the batch's chosen sequences, not per sequence
    nll = -sequence_logps(logits, ids, attention).sum() / attention[:, 1:].sum()
    reply_nll = -sequence_logps(logits, ids, reply).sum() / reply[:, 1:].sum()
    chosen = sequence_logps(logits, ids, reply, average=True)
    rejected = sequence_logps(rejected_logits, rejected_ids, batch["rejected_labels"] != -100, average=True)
    return nll, reply_nll, chosen, rejected


def trl_orpo_loss(trainer, batch) -> float:
    """The loss TRL's ORPOTrainer computes on the batch."""
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def test_orpo_loss_matches_trl(orpo):
    trainer, batch = orpo
    trl_loss = trl_orpo_loss(trainer, batch)
    nll, _, chosen, rejected = our_orpo_parts(trainer, batch)
    ours = orpo_loss(nll, chosen, rejected, lam=trainer.beta).item()
    print(f"ORPO lam={trainer.beta}: TRL {trl_loss:.7f}, ours {ours:.7f}, |diff| {abs(ours - trl_loss):.2e}")
    assert (chosen - rejected).abs().max() > 1e-2, "log odds ratio ~0: a trivial check"
    assert abs(ours - trl_loss) < TOL, (ours, trl_loss)
    if trainer.beta == 0.0:
        assert abs(trl_loss - nll.item()) < TOL
    else:
        assert trl_loss - nll.item() > 0.5 * trainer.beta  # the OR term, about λ·log 2 here, is in TRL's loss too


def test_trl_orpo_nll_includes_the_prompt(orpo):
    trainer, batch = orpo
    trl_loss = trl_orpo_loss(trainer, batch)
    _, reply_nll, chosen, rejected = our_orpo_parts(trainer, batch)
    ours = orpo_loss(reply_nll, chosen, rejected, lam=trainer.beta).item()
    assert abs(ours - trl_loss) > 1e-2, "a reply-only NLL matches TRL too?"
