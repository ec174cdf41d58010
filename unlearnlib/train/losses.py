"""The unlearning objectives, one small function each, next to its equation.

Notation: a batch holds answers y_i to prompts x_i; labels are -100 over the prompt, so only
the answer tokens (and the final end-of-turn token) count. ``log pi(y|x)`` is the SUM of the
answer tokens' log-probabilities (not length-normalised) unless a docstring says otherwise,
and NLL is the mean token cross-entropy over every answer token of the batch (what
``model(**batch).loss`` returns, and what open-unlearning's GA / GradDiff / retain terms use).

The trainer in `unlearnlib.train.unlearn` combines them as

    total = gamma * L_forget + alpha * NLL(retain)

with L_forget one of `gradient_ascent_loss`, `npo_loss`, `simnpo_loss`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from unlearnlib.data.formatting import IGNORE_INDEX


def answer_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy -log p(y_t | x, y_<t), shape (batch, seq - 1); 0 off the answer.

    Position t predicts label t + 1 (causal shift). fp16/bf16 logits are upcast to float32, as
    the transformers loss does, so mixed-precision training sums log-probs in full precision.
    """
    shifted_logits = logits[:, :-1, :].to(torch.promote_types(logits.dtype, torch.float32))
    shifted_labels = labels[:, 1:]
    nll = F.cross_entropy(shifted_logits.transpose(1, 2), shifted_labels,
                          ignore_index=IGNORE_INDEX, reduction="none")
    return nll * (shifted_labels != IGNORE_INDEX)


def answer_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits from the position before the batch's first answer token on, and the labels
    cut to match: what every loss here needs, as (logits, labels).

    The prompt's positions carry no loss, so the LM head and its softmax skip them
    (`logits_to_keep`). On TOFU chats the prompt is most of the sequence: this saves about a
    third of a tiny model's training time, and on Llama-3.2-1B the fp32 logits of its 128k
    vocabulary over the prompt (gigabytes at batch 8).
    """
    labels = batch["labels"]
    answer_positions = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    start = max(int(answer_positions[0]) - 1, 0) if len(answer_positions) else 0
    keep = torch.arange(start, labels.shape[1], device=labels.device)
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep)
    return output.logits, labels[:, start:]


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """|y_i|: the number of answer tokens that carry loss in each row, shape (batch,)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(dim=-1)


def sequence_log_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) = sum_t log p(y_t | x, y_<t) over the answer tokens, shape (batch,)."""
    return -answer_token_nll(logits, labels).sum(dim=-1)


def nll_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NLL = sum_i sum_t -log p(y_it | ...) / sum_i |y_i|: the mean over every answer token."""
    return answer_token_nll(logits, labels).sum() / answer_lengths(labels).sum().clamp(min=1)


def gradient_ascent_loss(forget_nll: torch.Tensor) -> torch.Tensor:
    """Gradient ascent (GA): L = -NLL(forget). Minimising it pushes the forget answers' likelihood
    down without bound, which is why GA collapses the model (Zhang et al. 2024, section 3).
    GradDiff is this term plus the retain NLL: L = -NLL(forget) + NLL(retain).
    """
    return -forget_nll


def npo_loss(log_pi: torch.Tensor, log_pi_ref: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO's forget term (Zhang et al. 2024, eq. 3), from per-sample sums of answer log-probs:

        L_NPO = -(2 / beta) * mean_i log sigmoid(-beta * (log pi(y_i|x_i) - log pi_ref(y_i|x_i)))
              =  (2 / beta) * mean_i log(1 + (pi / pi_ref)^beta)

    Per sample its gradient is gradient ascent's, weighted:

        grad L_NPO,i = w_i * grad log pi(y_i|x_i),   w_i = 2 pi^beta / (pi^beta + pi_ref^beta)

    (grad log pi = -grad NLL_i, the summed NLL). The weight starts at 1 (pi = pi_ref) and
    falls towards 0 as the answer becomes unlikely, so NPO slows down where GA runs away; as
    beta -> 0, w_i -> 1 and NPO becomes gradient ascent on the summed log-likelihood.
    At pi = pi_ref the loss is (2 / beta) log 2.
    """
    log_ratio = log_pi - log_pi_ref
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo_loss(log_pi: torch.Tensor, lengths: torch.Tensor, beta: float = 4.5,
                delta: float = 0.0) -> torch.Tensor:
    """SimNPO's forget term (Fan et al. 2024): NPO without a reference, length-normalised:

        L_SimNPO = -(2 / beta) * mean_i log sigmoid(-(beta / |y_i|) log pi(y_i|x_i) - beta delta)

    as open-unlearning computes it (its margin is beta * delta; delta = 0 by default).
    """
    average_nll = -log_pi / lengths.clamp(min=1)
    return -(2.0 / beta) * F.logsigmoid(beta * (average_nll - delta)).mean()
