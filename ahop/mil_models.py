"""Multiple-instance learning: embed every instance, pool the bag, classify the pooled vector.

Three poolings share the instance MLP, the padding rules and the bag-level augmentation, so a
comparison between them measures the pooling alone (registry :data:`MIL_NETWORKS`):

- ``hopfield``: :class:`HopfieldMILNetwork`, learned state patterns that retrieve from the bag's
  instances (Ramsauer et al. 2020, "Hopfield Networks is All You Need", MIL experiments);
- ``attention``: :class:`AttentionMILNetwork`, gated attention pooling (Ilse et al. 2018,
  "Attention-based Deep Multiple Instance Learning"), the usual deep-MIL baseline;
- ``mean``: :class:`MeanMILNetwork`, the mean of the instance embeddings (deep sets): what any
  learned pooling must beat.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ahop.checks import check_positive_ints
from ahop.layers import HopfieldPooling


def instance_mlp(
    num_features: int, embedding_dim: int, num_layers: int, dropout: float
) -> nn.Sequential:
    """``num_layers`` x (Linear + ReLU + Dropout) from ``num_features`` to ``embedding_dim``."""
    check_positive_ints(
        num_features=num_features, embedding_dim=embedding_dim, num_embedding_layers=num_layers
    )
    layers: list[nn.Module] = []
    size = num_features
    for _ in range(num_layers):
        layers += [nn.Linear(size, embedding_dim), nn.ReLU(), nn.Dropout(dropout)]
        size = embedding_dim
    return nn.Sequential(*layers)


class BagNetwork(nn.Module):
    """Instance MLP -> :meth:`pool` over each bag -> one logit per bag (the shared frame).

    Padded instances (mask ``True``) are excluded from the pooling, so a bag's output does not
    depend on how much padding its batch added. Subclasses implement
    :meth:`pool` and call :meth:`_build_classifier` with the pooled size.

    Args:
        num_features: instance features ``F``.
        embedding_dim: instance embedding size ``D``.
        num_embedding_layers: Linear + ReLU + dropout layers of the instance MLP (>= 1).
        dropout: dropout in the instance MLP and before the classifier.
        instance_dropout: in training, each instance of a bag is left out of the pooling with
            this probability (every bag keeps at least one): the classifier cannot rely on any
            single instance, a bag-level augmentation for data sets of a few hundred bags.
        input_dropout: dropout on the instance features before the MLP (training only): with
            hundreds of features and tens of bags, the first layer otherwise memorises the bags.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int = 64,
        num_embedding_layers: int = 2,
        dropout: float = 0.0,
        instance_dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dropout", dropout),
            ("instance_dropout", instance_dropout),
            ("input_dropout", input_dropout),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.instance_dropout = instance_dropout
        self.dropout = dropout
        self.input_dropout = nn.Dropout(input_dropout)
        self.embed = instance_mlp(num_features, embedding_dim, num_embedding_layers, dropout)
        self.pooled_linear: nn.Linear | None = None

    def _add_pooled_linear(self, num_features: int) -> None:
        """A linear term of the bag's mean and maximum raw instance features added to the
        logit: the pooled logistic-regression baselines inside the network."""
        self.pooled_linear = nn.Linear(2 * num_features, 1)

    def _build_classifier(self, pool_size: int) -> None:
        self.classifier = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(pool_size, 1))

    def pool(self, embedded: Tensor, mask: Tensor | None) -> Tensor:
        """``(B, L, D)`` instance embeddings (``mask`` True = padding) -> ``(B, P)`` pooled."""
        raise NotImplementedError

    def forward(self, instances: Tensor, mask: Tensor | None = None) -> Tensor:
        """Bag logits ``(B,)``.

        Args:
            instances: ``(B, L, F)`` instances, padded to the longest bag.
            mask: bool ``(B, L)``, ``True`` at padding (``None``: no padding).
        """
        mask = _check_bags(instances, mask)
        if self.training and self.instance_dropout > 0:
            mask = self._drop_instances(instances, mask)
        pooled = self.pool(self.embed(self.input_dropout(instances)), mask)
        logits = self.classifier(pooled).squeeze(-1)
        if self.pooled_linear is not None:  # pooled logistic regression, learned with the rest
            raw = torch.cat([masked_mean(instances, mask), masked_max(instances, mask)], dim=-1)
            logits = logits + self.pooled_linear(raw).squeeze(-1)
        return logits

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


def _check_bags(instances: Tensor, mask: Tensor | None) -> Tensor | None:
    """One-line errors for a wrongly shaped batch or an all-padding bag; the mask as bool."""
    if instances.dim() != 3:
        raise ValueError(
            f"instances must be (batch, bag length, features), got {tuple(instances.shape)}"
        )
    if mask is None:
        return None
    if mask.shape != instances.shape[:2]:
        raise ValueError(
            f"mask must be (batch, bag length) = {tuple(instances.shape[:2])}, "
            f"got {tuple(mask.shape)}"
        )
    mask = mask.to(dtype=bool)
    # a data-dependent check: eager only (exported graphs cannot branch on values)
    if not torch.compiler.is_compiling():
        empty = mask.all(dim=1)
        if empty.any():
            bags = empty.nonzero().flatten().tolist()
            raise ValueError(f"bags at batch positions {bags} are all padding (empty bags)")
    return mask


class HopfieldMILNetwork(BagNetwork):
    """Instance MLP -> :class:`~ahop.layers.HopfieldPooling` over the bag -> one logit per bag.

    Args:
        num_features, embedding_dim, num_embedding_layers, dropout, instance_dropout,
        input_dropout: see :class:`BagNetwork` (``embedding_dim`` divisible by ``num_heads``); ``dropout`` also
            acts on the association weights.
        num_heads: association heads of the pooling.
        hidden_size: association-space size per head (default ``D / num_heads``).
        quantity: learned state patterns (pooling queries); their retrievals are concatenated.
        similarity, separation, scaling, similarity_kwargs: the pooling's retrieval parts, see
            :class:`~ahop.layers.Hopfield` (``adaptive``: the A-Hop learned similarity).
        pooling_kwargs: any other option of :class:`~ahop.layers.Hopfield` for the pooling
            layer (e.g. ``{"pattern_projection_as_static": True}``).
        max_pool_skip: the classifier also sees the bag's element-wise maximum of the instance
            embeddings (the standard MIL assumption: one positive instance makes the bag), beside
            what the Hopfield pooling retrieved.
        pooled_linear: add a linear function of the bag's mean and maximum *input* features to
            the logit (mean- and max-pooled logistic regression, trained with the network), so
            the model contains the pooled baselines it is compared with.
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
        pooling_kwargs: dict[str, Any] | None = None,
        input_dropout: float = 0.0,
        max_pool_skip: bool = False,
        pooled_linear: bool = False,
    ) -> None:
        super().__init__(
            num_features,
            embedding_dim,
            num_embedding_layers,
            dropout,
            instance_dropout,
            input_dropout,
        )
        check_positive_ints(num_heads=num_heads, quantity=quantity)
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be divisible by num_heads={num_heads}"
            )
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
            **(pooling_kwargs or {}),
        )
        self.max_pool_skip = bool(max_pool_skip)
        self._build_classifier((quantity + self.max_pool_skip) * embedding_dim)
        if pooled_linear:
            self._add_pooled_linear(num_features)

    def pool(self, embedded: Tensor, mask: Tensor | None) -> Tensor:
        retrieved = self.pooling(embedded, stored_pattern_padding_mask=mask)
        if not self.max_pool_skip:
            return retrieved
        return torch.cat([retrieved, masked_max(embedded, mask)], dim=-1)


class AttentionMILNetwork(BagNetwork):
    """Instance MLP -> gated attention pooling (Ilse et al. 2018) -> one logit per bag.

    A bag's weights are ``softmax_i(w . (tanh(V h_i) * sigmoid(U h_i)))`` over its instances;
    the pooled vector is the weighted sum of the embeddings ``h_i``.

    Args:
        num_features, embedding_dim, num_embedding_layers, dropout, instance_dropout,
        input_dropout: see :class:`BagNetwork`.
        attention_dim: size of the gated attention's hidden layer.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int = 64,
        num_embedding_layers: int = 2,
        dropout: float = 0.0,
        instance_dropout: float = 0.0,
        attention_dim: int = 64,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            num_features,
            embedding_dim,
            num_embedding_layers,
            dropout,
            instance_dropout,
            input_dropout,
        )
        check_positive_ints(attention_dim=attention_dim)
        self.attention_v = nn.Linear(embedding_dim, attention_dim)
        self.attention_u = nn.Linear(embedding_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self._build_classifier(embedding_dim)

    def attention_weights(self, embedded: Tensor, mask: Tensor | None) -> Tensor:
        """``(B, L)`` pooling weights of the instances (0 at padding, each bag sums to 1)."""
        gated = torch.tanh(self.attention_v(embedded)) * torch.sigmoid(self.attention_u(embedded))
        scores = self.attention_w(gated).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        return scores.softmax(dim=-1)

    def pool(self, embedded: Tensor, mask: Tensor | None) -> Tensor:
        weights = self.attention_weights(embedded, mask)
        return torch.einsum("bl,bld->bd", weights, embedded)


def masked_max(embedded: Tensor, mask: Tensor | None) -> Tensor:
    """``(B, L, D)`` -> ``(B, D)``: the maximum over each bag's instances, padding (``mask``
    True) left out."""
    if mask is not None:
        embedded = embedded.masked_fill(mask.unsqueeze(-1), float("-inf"))
    return embedded.amax(dim=1)


class MeanMILNetwork(BagNetwork):
    """Instance MLP -> mean over the bag's instances -> one logit per bag (deep sets).

    Args: see :class:`BagNetwork`.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int = 64,
        num_embedding_layers: int = 2,
        dropout: float = 0.0,
        instance_dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            num_features,
            embedding_dim,
            num_embedding_layers,
            dropout,
            instance_dropout,
            input_dropout,
        )
        self._build_classifier(embedding_dim)

    def pool(self, embedded: Tensor, mask: Tensor | None) -> Tensor:
        return masked_mean(embedded, mask)


def masked_mean(embedded: Tensor, mask: Tensor | None) -> Tensor:
    """``(B, L, D)`` -> ``(B, D)``: the mean over each bag's instances, padding left out."""
    if mask is None:
        return embedded.mean(dim=1)
    keep = (~mask).to(embedded.dtype).unsqueeze(-1)
    return (embedded * keep).sum(dim=1) / keep.sum(dim=1)


#: pooling name -> bag network class (``MILClassifier(pooling=...)``)
MIL_NETWORKS: dict[str, type[BagNetwork]] = {
    "hopfield": HopfieldMILNetwork,
    "attention": AttentionMILNetwork,
    "mean": MeanMILNetwork,
}
