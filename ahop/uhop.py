"""U-Hop: a learned kernel similarity, fitted to the stored memories by a separation loss.

Wu, Hu, Hsiao & Liu, "Uniform Memory Retrieval with Larger Capacity for Modern Hopfield Models"
(ICML 2024, arXiv 2404.03827; official code github.com/MAGICS-LAB/UHop). A feature map ``Phi``
induces the kernel ``K(u, v) = <Phi(u), Phi(v)>``, which replaces the dot product:

* **stage I** minimises the separation loss over the stored memories ``Xi``,
  ``L_Phi = log mean_{i<j} exp(-t ||phi_i - phi_j||²)`` with ``phi = Phi(xi) / ||Phi(xi)||``
  (the uniformity loss of Wang & Isola 2020; the code's ``uniform_loss``, ``t = 2``), which
  spreads the memories out in feature space;
* **stage II** is ordinary retrieval with the kernel, ``T(x) = Xi sep(beta K(Xi, x))``, which for
  a linear ``Phi`` is the CCCP step of the kernelised energy
  ``E_K(x) = K(x, x) / 2 - L_sep(beta K(Xi, x))`` (their Theorem 2.1; :mod:`ahop.energy`).

What we follow and where we chose (the paper's text and code differ in places):

* linear ``Phi(u) = V u / sqrt(D)`` with ``V ~ N(0, 1)`` of shape ``(D, d)``, ``D = d`` by default
  (the code: ``W = randn(d, d)``, no bias). The loss sees normalised features, so the ``1/sqrt(D)``
  changes nothing in stage I; it only puts the untrained kernel on the dot-product scale
  (``E[K(u, v)] = <u, v>``), so ``beta`` means what it means for ``dot``;
* ``mlp``: ``Phi(u) = W_2 relu(W_1 u + b_1) + W_s u + b_s`` with 200 hidden units (the code's
  ``ICNN`` class, whose two input layers collapse into one), PyTorch's default init;
* stage I as in the code's memory-retrieval scripts: full-batch SGD, ``lr = 1``, 100 epochs over
  all stored memories (one script uses half of them, the noise script all). The code divides the
  learning rate by ``sqrt(i + 1)`` *cumulatively* every epoch (after 10 epochs it is 5e-4); we use
  the inverse-square-root schedule ``lr / sqrt(i + 1)`` that this appears to intend;
* the code's ``beta`` multiplies the softmax *output* (a no-op at its default 1); here it is the
  separation's inverse temperature, as in the paper's ``Sep(beta K)``.

In :class:`ahop.layers.Hopfield` the feature map is trained by the task loss like any other
parameter (:meth:`UHopSimilarity.separation_loss` is there for the paper's bilevel schedule);
:func:`ahop.functional.retrieve` with ``similarity="uhop"`` runs stage I on the keys first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ahop.checks import check_int, check_positive_ints
from ahop.registry import Registry
from ahop.similarity import SIMILARITIES, Similarity, _score_dtype

#: feature maps ``(dim, feature_dim, hidden, generator) -> nn.Module`` of U-Hop, by name
FEATURE_MAPS: Registry[nn.Module] = Registry("U-Hop feature map")


class LinearFeatureMap(nn.Module):
    """``Phi(u) = V u / sqrt(D)``, ``V`` of shape ``(D, d)`` drawn from ``N(0, 1)``."""

    def __init__(self, dim: int, feature_dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(feature_dim, dim, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.weight.to(x.dtype).T / math.sqrt(self.weight.shape[0]))


class MLPFeatureMap(nn.Module):
    """``Phi(u) = W_2 relu(W_1 u + b_1) + W_s u + b_s`` (one hidden layer and a linear skip)."""

    def __init__(self, dim: int, feature_dim: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            self.hidden = nn.Linear(dim, hidden)
            self.out = nn.Linear(hidden, feature_dim, bias=False)
            self.skip = nn.Linear(dim, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(x))) + self.skip(x)


FEATURE_MAPS.register("linear")(
    lambda dim, feature_dim, hidden, generator: LinearFeatureMap(dim, feature_dim, generator)
)
FEATURE_MAPS.register("mlp")(MLPFeatureMap)


def separation_loss(features: Tensor, t: float = 2.0) -> Tensor:
    """U-Hop's separation loss ``log mean_{i<j} exp(-t ||phi_i - phi_j||²)`` of unit features.

    Args:
        features: ``Phi`` of the stored memories ``(N, D)`` (normalised here), ``N >= 2``.
        t: the loss's temperature (2 in the official code).

    Returns:
        a scalar; lower = memories more uniformly spread on the unit sphere (minimum near
        ``-2t`` for many well-spread points).
    """
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(
            f"the separation loss needs at least 2 memories (N, D), got {tuple(features.shape)}"
        )
    unit = F.normalize(features, dim=-1)
    squared = torch.pdist(unit, p=2).square()
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


@SIMILARITIES.register("uhop")
class UHopSimilarity(Similarity):
    """U-Hop's kernel similarity ``K(k, q) = <Phi(k), Phi(q)>`` with a learnable feature map.

    Args:
        dim: feature dimension ``d`` of keys and queries.
        feature_dim: output size ``D`` of ``Phi`` (default ``d``, as the official code).
        feature_map: ``"linear"`` (the paper's ``Phi(u) = W u``) or ``"mlp"``.
        hidden: hidden units of the ``mlp`` map.
        separation_epochs: stage-I SGD epochs run by :meth:`store` (0 = keep ``Phi`` as it is).
        separation_lr: initial stage-I learning rate (decays as ``lr / sqrt(epoch + 1)``).
        separation_t: temperature ``t`` of :func:`separation_loss`.
        seed: seed of the initial ``Phi`` (``None`` = torch's global generator).
    """

    def __init__(
        self,
        dim: int,
        feature_dim: int | None = None,
        feature_map: str = "linear",
        hidden: int = 200,
        separation_epochs: int = 100,
        separation_lr: float = 1.0,
        separation_t: float = 2.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        check_positive_ints(dim=dim, hidden=hidden)
        feature_dim = dim if feature_dim is None else feature_dim
        check_positive_ints(feature_dim=feature_dim)
        check_int(separation_epochs, "separation_epochs", minimum=0)
        if not separation_lr > 0 or not separation_t > 0:
            raise ValueError(
                f"separation_lr and separation_t must be > 0, got {separation_lr}, {separation_t}"
            )
        generator = torch.Generator()
        generator.manual_seed(int(torch.randint(2**62, (1,))) if seed is None else seed)
        self.dim, self.feature_dim, self.feature_map_name = dim, feature_dim, feature_map
        self.features = FEATURE_MAPS.get(feature_map)(dim, feature_dim, hidden, generator)
        self.separation_epochs = separation_epochs
        self.separation_lr, self.separation_t = float(separation_lr), float(separation_t)

    @property
    def is_linear(self) -> bool:
        """Whether ``Phi`` is linear (then retrieval is the CCCP step of the kernelised energy)."""
        return isinstance(self.features, LinearFeatureMap)

    def _check_dim(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"UHopSimilarity was built for dim={self.dim}, got inputs with d={x.shape[-1]}"
            )

    def phi(self, x: Tensor) -> Tensor:
        """Features ``Phi(x)``: ``(..., d) -> (..., D)`` in at least float32."""
        self._check_dim(x)
        return self.features(x.to(_score_dtype(x)))

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        self._check_dim(keys)
        return self.phi(queries) @ self.phi(keys).transpose(-1, -2)

    def separation_loss(self, memories: Tensor) -> Tensor:
        """:func:`separation_loss` of ``Phi(memories)``, memories ``(N, d)`` (or ``(..., N, d)``,
        flattened into one set)."""
        return separation_loss(
            self.phi(memories.reshape(-1, memories.shape[-1])), self.separation_t
        )

    def fit_separation(self, memories: Tensor, epochs: int | None = None) -> list[float]:
        """Stage I: full-batch SGD on :meth:`separation_loss`, in place.

        Args:
            memories: stored patterns ``(N, d)`` (``(..., N, d)`` are pooled into one set).
            epochs: SGD steps (default ``separation_epochs``).

        Returns:
            the loss before each step.
        """
        epochs = self.separation_epochs if epochs is None else epochs
        memories = memories.detach()
        params = [p for p in self.parameters() if p.requires_grad]
        if not params or epochs == 0 or memories.reshape(-1, memories.shape[-1]).shape[0] < 2:
            return []
        optimizer = torch.optim.SGD(params, lr=self.separation_lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 / math.sqrt(i + 1))
        losses = []
        with torch.enable_grad():
            for _ in range(epochs):
                loss = self.separation_loss(memories)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"U-Hop separation loss became {loss.item()}: lower separation_lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
        return losses

    def store(self, memories: Tensor) -> None:
        """U-Hop's stage I over the stored patterns (:meth:`fit_separation`)."""
        self.fit_separation(memories)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, feature_dim={self.feature_dim}, feature_map={self.feature_map_name!r}, "
            f"separation_epochs={self.separation_epochs}, separation_lr={self.separation_lr}"
        )
