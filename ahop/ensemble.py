"""TabM-mini ensembles (Gorishniy et al. 2024, "TabM: Advancing tabular deep learning with
parameter-efficient ensembling"): ``k`` members that share every weight but one random-sign
scaling of their input and their linear head. Built on the ``tabm`` package's layers.

A network ends with ``MemberViews`` -> shared blocks (any layers that act on the last dimension)
-> :func:`member_head`, which gives ``(B, k, C)`` logits; training averages the members' losses,
prediction averages their probabilities (:func:`mean_probability_logits`).
"""

from __future__ import annotations

import math

import torch
from tabm import ElementwiseAffine, LinearEnsemble
from torch import Tensor, nn

from ahop.checks import check_int


class MemberViews(nn.Module):
    """``(B, d)`` -> ``(B, k, d)``: one view of the input per member, each scaled elementwise by
    its own vector (initialised to random signs, trained; TabM-mini's only member-specific layer
    before the head). ``k = 1``: the input itself, unscaled (no parameter)."""

    def __init__(self, k: int, width: int) -> None:
        super().__init__()
        check_int(k, "ensemble_size", minimum=1)
        self.k = k
        self.scaling = (
            ElementwiseAffine((k, width), bias=False, scaling_init="random-signs")
            if k > 1
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        views = x.unsqueeze(-2)
        return views if self.scaling is None else self.scaling(views.expand(-1, self.k, -1))


def member_head(width: int, num_classes: int, k: int) -> nn.Sequential:
    """``LayerNorm -> ReLU -> Linear`` over ``(B, k, width)``: one linear layer per member when
    ``k > 1`` (``tabm.LinearEnsemble``), a plain ``nn.Linear`` when ``k = 1``."""
    linear = nn.Linear(width, num_classes) if k == 1 else LinearEnsemble(width, num_classes, k=k)
    return nn.Sequential(nn.LayerNorm(width), nn.ReLU(), linear)


def mean_probability_logits(member_logits: Tensor) -> Tensor:
    """``(B, k, C)`` member logits -> ``(B, C)`` logits of the members' mean probabilities
    (``log mean_j softmax(z_j)``; softmax of the result is that mean). ``k = 1``: the member's
    own logits."""
    if member_logits.shape[-2] == 1:
        return member_logits.squeeze(-2)
    k = member_logits.shape[-2]
    return torch.logsumexp(torch.log_softmax(member_logits, dim=-1), dim=-2) - math.log(k)


def member_mean_loss(member_logits: Tensor, target: Tensor, criterion: nn.Module) -> Tensor:
    """The mean over members of ``criterion(member logits, target)`` (TabM trains its members
    with their own losses, not with the loss of their mean)."""
    k = member_logits.shape[-2]
    return criterion(member_logits.flatten(0, 1), target.repeat_interleave(k))


class BinaryDeepEnsemble(nn.Module):
    """``k`` independently initialised copies of a one-logit network (a deep ensemble,
    Lakshminarayanan et al. 2017, trained together: each member on its own loss).

    ``forward`` gives the logit of the members' mean probability; :meth:`member_logits` the
    members' own logits ``(..., k)`` for the training loss.

    Args:
        members: the networks, same inputs, each returning logits ``(...)``.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a deep ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def member_logits(self, *inputs: Tensor) -> Tensor:
        """Every member's logits, stacked last: ``(..., k)``."""
        return torch.stack([member(*inputs) for member in self.members], dim=-1)

    def forward(self, *inputs: Tensor) -> Tensor:
        return mean_probability_logit(self.member_logits(*inputs))


def mean_probability_logit(member_logits: Tensor) -> Tensor:
    """``(..., k)`` binary logits -> ``(...)`` the logit of the members' mean probability,
    ``log mean sigmoid(z) - log mean sigmoid(-z)`` (stable for large logits)."""
    positive = torch.logsumexp(nn.functional.logsigmoid(member_logits), dim=-1)
    negative = torch.logsumexp(nn.functional.logsigmoid(-member_logits), dim=-1)
    return positive - negative


class TabularDeepEnsemble(nn.Module):
    """``k`` independently initialised tabular networks trained together, each on its own loss
    (a deep ensemble, Lakshminarayanan et al. 2017); prediction is the members' mean probability.

    Unlike the TabM-mini members of one retrieval network (``ensemble_size``), which share the
    encoder and therefore the retrieved context, every member here has its own embedding,
    encoder, keys and context, so the members disagree where the neighbourhoods do. The memory
    interface of :class:`~ahop.tabular_retrieval.TabularRetrievalClassifier` (``prepare``,
    ``refresh_memory``, ``bake_memory`` ...) is forwarded to every member; each stores its own
    copy of the training rows (``k`` times the memory of one network).

    Args:
        members: the networks (at least 2), same inputs, each returning logits ``(B, C)``
            (``member_logits`` ``(B, m, C)`` when a member has its own TabM-mini members).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a deep ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    # -- the memory interface, per member -------------------------------------------------------
    @property
    def memory_rows(self) -> int:
        """Rows in each member's memory (AttributeError for members without one)."""
        return self.members[0].memory_rows

    @property
    def memory_refresh(self) -> str:
        return self.members[0].memory_refresh

    @property
    def refresh_log(self) -> list[float]:
        """Memory refreshes and their seconds, summed over the members."""
        logs = [member.refresh_log for member in self.members]
        return [sum(log[0] for log in logs), sum(log[1] for log in logs)]

    @property
    def fitted(self) -> bool:
        """Whether every member's feature embedding is fitted (bins from the training rows)."""
        return all(member.embed.fitted for member in self.members)

    def prepare(self, features: Tensor, labels: Tensor) -> None:
        for member in self.members:
            member.prepare(features, labels)

    def refresh_memory(self) -> None:
        for member in self.members:
            member.refresh_memory()

    def reset_refresh_log(self) -> None:
        for member in self.members:
            member.reset_refresh_log()

    def bake_memory(self) -> list[tuple[Tensor, Tensor]]:
        """Every member's evaluation encodings (keys, first value layer), baked for export."""
        return [member.bake_memory() for member in self.members]

    # -- prediction -----------------------------------------------------------------------------
    def member_logits(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """Every member's logits ``(B, k * m, C)`` (``m`` TabM-mini members each, usually 1)."""
        outputs = []
        for member in self.members:
            if hasattr(member, "member_logits"):
                outputs.append(member.member_logits(features, labels))
            else:
                outputs.append(member(features, labels).unsqueeze(-2))
        return torch.cat(outputs, dim=-2)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, F)`` rows -> ``(B, C)`` logits of the members' mean probability."""
        return mean_probability_logits(self.member_logits(features, labels))
