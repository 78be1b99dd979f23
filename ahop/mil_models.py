"""Multiple-instance learning with Hopfield pooling (Ramsauer et al. 2020, "Hopfield Networks is
All You Need", MIL experiments): embed every instance, pool the bag with learned state patterns
that retrieve from its instances, classify the pooled vector."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ahop.layers import HopfieldPooling


class HopfieldMILNetwork(nn.Module):
    """Instance MLP -> :class:`~ahop.layers.HopfieldPooling` over the bag -> one logit per bag.

    Padded instances (mask ``True``) are excluded from the pooling, so a bag's output does not
    depend on how much padding its batch added.

    Args:
        num_features: instance features ``F``.
        embedding_dim: instance embedding size ``D`` (divisible by ``num_heads``).
        num_embedding_layers: Linear + ReLU + dropout layers of the instance MLP (>= 1).
        num_heads: association heads of the pooling.
        hidden_size: association-space size per head (default ``D / num_heads``).
        quantity: learned state patterns (pooling queries); their retrievals are concatenated.
        similarity, separation, scaling, similarity_kwargs: the pooling's retrieval parts, see
            :class:`~ahop.layers.Hopfield` (``adaptive``: the A-Hop learned similarity).
        dropout: dropout in the instance MLP, on the association weights and before the
            classifier.
        instance_dropout: in training, each instance of a bag is left out of the pooling with
            this probability (every bag keeps at least one): the classifier cannot rely on any
            single instance, a bag-level augmentation for data sets of a few hundred bags.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int = 64,
        num_embedding_layers: int = 2,
        num_heads: int = 4,
        hidden_size: int | None = None,
        quantity: int = 1,
        similarity: str = "dot",
        separation: str = "softmax",
        scaling: float | None = None,
        dropout: float = 0.0,
        similarity_kwargs: dict[str, Any] | None = None,
        instance_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= instance_dropout < 1.0:
            raise ValueError(f"instance_dropout must be in [0, 1), got {instance_dropout}")
        self.instance_dropout = instance_dropout
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_embedding_layers < 1:
            raise ValueError(f"num_embedding_layers must be >= 1, got {num_embedding_layers}")
        if embedding_dim < 1 or num_heads < 1 or embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be divisible by num_heads={num_heads}"
            )
        layers: list[nn.Module] = []
        size = num_features
        for _ in range(num_embedding_layers):
            layers += [nn.Linear(size, embedding_dim), nn.ReLU(), nn.Dropout(dropout)]
            size = embedding_dim
        self.embed = nn.Sequential(*layers)
        self.pooling = HopfieldPooling(
            embedding_dim,
            quantity=quantity,
            hidden_size=hidden_size or embedding_dim // num_heads,
            num_heads=num_heads,
            scaling=scaling,
            similarity=similarity,
            separation=separation,
            similarity_kwargs=similarity_kwargs,
            dropout=dropout,
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(quantity * embedding_dim, 1))

    def forward(self, instances: Tensor, mask: Tensor | None = None) -> Tensor:
        """Bag logits ``(B,)``.

        Args:
            instances: ``(B, L, F)`` instances, padded to the longest bag.
            mask: bool ``(B, L)``, ``True`` at padding (``None``: no padding).
        """
        if instances.dim() != 3:
            raise ValueError(
                f"instances must be (batch, bag length, features), got {tuple(instances.shape)}"
            )
        if mask is not None:
            if mask.shape != instances.shape[:2]:
                raise ValueError(
                    f"mask must be (batch, bag length) = {tuple(instances.shape[:2])}, "
                    f"got {tuple(mask.shape)}"
                )
            mask = mask.to(dtype=bool)
            empty = mask.all(dim=1)
            # a data-dependent check: eager only (exported graphs cannot branch on values)
            if not torch.compiler.is_compiling() and empty.any():
                bags = empty.nonzero().flatten().tolist()
                raise ValueError(f"bags at batch positions {bags} are all padding (empty bags)")
        if self.training and self.instance_dropout > 0:
            mask = self._drop_instances(instances, mask)
        pooled = self.pooling(self.embed(instances), stored_pattern_padding_mask=mask)
        return self.classifier(pooled).squeeze(-1)

    def _drop_instances(self, instances: Tensor, mask: Tensor | None) -> Tensor:
        """The padding mask with random instances added (True = left out); a bag that would
        lose every instance keeps all of its own."""
        padding = (
            torch.zeros(instances.shape[:2], dtype=torch.bool, device=instances.device)
            if mask is None
            else mask
        )
        drop = torch.rand(padding.shape, device=instances.device) < self.instance_dropout
        dropped = padding | drop
        emptied = dropped.all(dim=1, keepdim=True)
        return torch.where(emptied, padding, dropped)
