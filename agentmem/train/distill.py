"""Context distillation (`agentmem train --distill-weight W`): the memory stands in for the context.

The teacher is the frozen backbone with the episode's whole history in its prompt; the student is
the memory-reading model in the view it is trained on (memory only, or memory + a short window),
after the same history was written. Along the answer's tokens (and its end-of-turn marker) the
student's next-token distribution should be the teacher's:

    distill_loss = mean over answer tokens of KL(p_teacher ‖ p_student)

restricted to the teacher's ``top_k`` tokens (renormalised), so that a teacher row costs K numbers
and is computed once per episode (`teacher_row`, cached by the training loop). Labels come from the
frozen model, so any conversation with a question is training data; the answer cross-entropy stays
beside it, because this backbone's teacher is often wrong (docs/training.md#extra-training-terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.prompts import ReadPrompt, read_prompt
from agentmem.model.scoring import answer_logprobs, reply_batch, reply_logprobs
from agentmem.model.state import MemoryState

TOP_K = 64


@dataclass(frozen=True)
class TeacherRow:
    """The frozen full-context model at one episode's answer positions: top-K token ids and
    log-probabilities, [n, K] each."""

    ids: Tensor
    logp: Tensor


@torch.no_grad()
def teacher_row(dm: DeltaMemModel, tokenizer: Any, episode: Any, top_k: int = TOP_K) -> TeacherRow:
    """The teacher at ``episode``'s answer positions: the frozen model (memory off) with the whole
    history, the question and the answer in its prompt."""
    prompt = read_prompt("full-context", episode.history, episode.question)
    ids, attn, tmask = reply_batch(tokenizer, [(prompt.messages, episode.answer)])
    logp = reply_logprobs(dm, ids, attn, tmask, None)  # [n, V]
    top = logp.topk(min(top_k, logp.shape[-1]), dim=-1)
    return TeacherRow(top.indices.cpu(), top.values.cpu())


def distill_kl(student: Tensor, teachers: list[TeacherRow]) -> Tensor:
    """Mean over answer positions of KL(teacher top-K ‖ student), from the student's
    log-distributions [N, V] at the teachers' positions, in the same order."""
    return distill_kl_positions(student, teachers).mean()


def distill_kl_positions(student: Tensor, teachers: list[TeacherRow]) -> Tensor:
    """KL(teacher top-K ‖ student) per answer position, [N] (see `distill_kl`)."""
    t_ids = torch.cat([t.ids for t in teachers]).to(student.device)
    t_logp = torch.cat([t.logp for t in teachers]).to(student.device)
    if t_ids.shape[0] != student.shape[0]:
        raise ValueError(f"teacher has {t_ids.shape[0]} answer positions, student "
                         f"{student.shape[0]}: the answers did not tokenize alike")
    t = torch.log_softmax(t_logp, dim=-1)  # renormalised over the top K
    return (t.exp() * (t - student.gather(-1, t_ids))).sum(-1)


def distill_loss(dm: DeltaMemModel, tokenizer: Any, prompts: list[ReadPrompt], answers: list[str],
                 teachers: list[TeacherRow], state: MemoryState) -> Tensor:
    """`distill_kl` of the student reading row b of ``state`` with prompt b (with autograd into
    the δ-mem parameters)."""
    student, _, _ = answer_logprobs(dm, tokenizer, prompts, answers, state)
    return distill_kl(student, teachers)
