"""An optional training signal for what to write (`agentmem train --gate-weight W`).

With message-level writes every message is written with its own gate β (per layer, state and key
dimension; the delta rule's step size). An adapter that gives every message about the same gate
returns, on a read, the asked fact's value mixed with everything else written: replies and small
talk push out and blur the facts. Episodes whose statements are known (``meta["statement_turns"]``,
which the synthetic builder records: every user turn that is not a filler sentence) give a
direct target for each written message's gates: ``gate_beta`` for a statement, 0 for anything
else, as the mean squared difference over the message's gates, then over messages and rows.
Other episodes (bAbI, LoCoMo) add nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agentmem.train.match import first_written


def statement_messages(episode: Any, written: int) -> list[bool] | None:
    """Per written message (the last ``written`` of the history; a token budget drops the oldest),
    whether it states a fact; None for an episode whose statements are not known (no
    ``meta["statement_turns"]``, e.g. bAbI, LoCoMo, or a synthetic file built before agentmem 0.2:
    rebuild it)."""
    if "statement_turns" not in episode.meta:
        return None
    statements = set(episode.meta["statement_turns"])
    first = first_written(episode, written)
    return [first + m in statements for m in range(written)]


def gate_loss(betas: list[Tensor | None], labels: list[list[bool] | None], gate_beta: float
              ) -> tuple[Tensor, dict[str, float]]:
    """Mean over rows with labels of the mean over their messages of mean((β − target)²), the
    target ``gate_beta`` for statements and 0 otherwise; and, for the log, the mean gate of the
    statements and of the other messages.

    Args:
        betas: per row, the written messages' gates [M_b, L, N, r] (`write_histories_grad`'s
            ``betas_out``; None for a row that wrote nothing).
        labels: per row, `statement_messages` (None to skip the row).
        gate_beta: the statements' target gate, in (0, 1].

    Returns (0, {}) when no row has labels.
    """
    losses, said, other = gate_terms(betas, labels, gate_beta)
    if not losses.numel():
        zero = next((b for b in betas if b is not None), torch.zeros(()))
        return zero.new_zeros(()), {}
    stats = {name: values.mean().item() for name, values in
             (("beta_statement", said), ("beta_other", other)) if values.numel()}
    return losses.mean(), stats


def gate_terms(betas: list[Tensor | None], labels: list[list[bool] | None], gate_beta: float
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Per row with labels, its gate term (with autograd), [n]; and the mean gates of every
    statement and of every other message of those rows (no autograd) (see `gate_loss`)."""
    losses, said, other = [], [], []
    for beta, label in zip(betas, labels, strict=True):
        if beta is None or label is None:
            continue
        is_statement = torch.tensor(label, device=beta.device)
        gates = beta.flatten(1)  # [M, L·N·r]: every message has as many gates
        mean = gates.mean(1)
        target = is_statement.to(beta.dtype) * gate_beta
        losses.append(((gates - target[:, None]) ** 2).mean())
        said.append(mean[is_statement].detach())
        other.append(mean[~is_statement].detach())
    if not losses:
        zero = next((b for b in betas if b is not None), torch.zeros(()))
        return zero.new_zeros(0), zero.new_zeros(0), zero.new_zeros(0)
    return torch.stack(losses), torch.cat(said), torch.cat(other)
