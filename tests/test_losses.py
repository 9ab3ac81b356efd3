"""The ORPO loss: accurate where p is close to 1, and the same value as TRL's trainer on the same batch.

The DPO loss is checked against TRL's trainer by the DPO exercise's check (test_checks.py)."""

import pytest
import torch
from transformers import AutoTokenizer

from course_utils.losses import orpo_loss, sequence_logps

TOL = 1e-5
# Float32 on the CPU everywhere, so TRL's forward and ours do the same arithmetic.
TRAINER_ARGS = dict(bf16=False, use_cpu=True, activation_checkpointing=False, per_device_train_batch_size=4)
TRAINER_ARGS |= dict(max_length=128, report_to="none", save_strategy="no", disable_tqdm=True, seed=0)


def test_orpo_loss_is_accurate_when_p_is_close_to_one():
    # p = exp(-1e-8) rounds to 1.0 in float32, so the naive log(1 - p) is -inf and that pair's OR loss 0 (exact: 0.29)
    chosen, rejected = torch.tensor([-1e-8, -1e-5, -0.3]), torch.tensor([-3e-8, -3e-5, -0.9])
    c, r = chosen.double(), rejected.double()
    exact_log_odds_ratio = (c - r) - (torch.log(-torch.expm1(c)) - torch.log(-torch.expm1(r)))
    exact = -torch.nn.functional.logsigmoid(exact_log_odds_ratio).mean().item()
    assert orpo_loss(torch.tensor(0.0), chosen, rejected, lam=1.0).item() == pytest.approx(exact, rel=1e-5)


@pytest.fixture(scope="module", params=[0.0, 0.1, 1.0], ids=lambda lam: f"lam={lam}")
def orpo(request, tiny_model_dir, bundled_pairs, tmp_path_factory):
    """An ORPO trainer with λ (TRL's `beta`) set, and one of its batches."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(output_dir=str(tmp_path_factory.mktemp("orpo")), beta=request.param, **TRAINER_ARGS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = ORPOTrainer(
        model=str(tiny_model_dir), args=args, train_dataset=bundled_pairs.select(range(8)), processing_class=tokenizer
    )
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


def test_orpo_loss_matches_trl_whose_nll_includes_the_prompt(orpo):
    trainer, batch = orpo
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
    nll, reply_nll, chosen, rejected = our_orpo_parts(trainer, batch)
    ours = orpo_loss(nll, chosen, rejected, lam=trainer.beta).item()
    print(f"ORPO lam={trainer.beta}: TRL {trl_loss:.7f}, ours {ours:.7f}, |diff| {abs(ours - trl_loss):.2e}")
    assert (chosen - rejected).abs().max() > 1e-2, "log odds ratio ~0: a trivial check"
    assert abs(ours - trl_loss) < TOL, (ours, trl_loss)
    if trainer.beta == 0.0:
        assert abs(trl_loss - nll.item()) < TOL
    else:
        assert trl_loss - nll.item() > 0.5 * trainer.beta  # the OR term, about λ·log 2 here, is in TRL's loss too
    reply_only = orpo_loss(reply_nll, chosen, rejected, lam=trainer.beta).item()
    assert abs(reply_only - trl_loss) > 1e-2, "a reply-only NLL matches TRL too?"
