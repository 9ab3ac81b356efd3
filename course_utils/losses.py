"""The DPO and ORPO losses written from the papers' formulas in plain PyTorch.

`tests/test_losses.py` checks that they give the same numbers as TRL's trainers on the same batch.
"""

import math

import torch
import torch.nn.functional as F


def sequence_logps(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """Log-probability of each sequence's masked tokens: summed, or averaged per token when `average`."""
    # The logits at position t predict token t+1, so shift here: the caller passes the model's logits [B, T, V],
    # the unshifted input_ids [B, T] and a mask [B, T] that is 1 on the tokens to score (the completion).
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # in float32: bf16 would lose digits here
    token_logps = logps.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = mask[:, 1:].to(token_logps.dtype)
    total = (token_logps * mask).sum(-1)
    return total / mask.sum(-1) if average else total


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO loss (Rafailov et al. 2023, eq. 7) from summed completion log-probs, averaged over the batch."""
    chosen_rewards = beta * (chosen_logps - ref_chosen_logps)  # implicit reward β·log(π/π_ref)
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps)
    # -log σ(margin): log 2 when the policy equals the reference, towards 0 as the chosen reply pulls ahead
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without the cancellation of the naive formula."""
    # log1p(-exp(x)) is accurate when exp(x) < 1/2, log(-expm1(x)) above it (Mächler 2012); TRL does the same.
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(
    chosen_nll: torch.Tensor, chosen_mean_logps: torch.Tensor, rejected_mean_logps: torch.Tensor, lam: float = 0.1
) -> torch.Tensor:
    """ORPO loss (Hong et al. 2024): NLL of the chosen reply plus λ times the odds-ratio loss."""
    # chosen_nll is the SFT term, one scalar (TRL averages it over every token of the chosen sequences, prompt too).
    # p(y|x) is the per-token average probability, so the other inputs are mean log-probs, not sums.
    # log odds(y) = log p - log(1 - p), and the odds-ratio loss is -log σ(log odds(y_w) - log odds(y_l)).
    log_odds_ratio = (chosen_mean_logps - rejected_mean_logps) - (
        _log1mexp(chosen_mean_logps) - _log1mexp(rejected_mean_logps)
    )
    return chosen_nll - lam * F.logsigmoid(log_odds_ratio).mean()
