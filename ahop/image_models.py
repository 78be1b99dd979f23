"""Hopfield image classifier: patch tokens -> Hopfield encoder layers -> Hopfield pooling head.

The network is a small vision transformer whose attention is a :class:`~ahop.layers.Hopfield`
self-association with a swappable similarity (``dot``, ``manhattan``, ``adaptive`` ...), and whose
``[CLS]`` token is replaced by :class:`~ahop.layers.HopfieldPooling`: a learned state pattern
retrieves from the patch tokens, and the retrieval is classified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ahop.layers import Hopfield, HopfieldPooling


class PatchEmbedding(nn.Module):
    """Non-overlapping ``patch_size`` x ``patch_size`` patches, linearly embedded (one strided conv).

    Shapes:
        images (B, C, H, W) -> tokens (B, (H / p) * (W / p), embedding_dim).
    """

    def __init__(self, in_channels: int, embedding_dim: int, patch_size: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(in_channels, embedding_dim, patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        return self.project(images).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """Two 3x3 convolutions (local features, as in hybrid ViTs) before the patch embedding.

    Shapes:
        images (B, C, H, W) -> tokens (B, (H / p) * (W / p), embedding_dim).
    """

    def __init__(self, in_channels: int, embedding_dim: int, patch_size: int) -> None:
        super().__init__()
        width = max(embedding_dim // 2, 16)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.GELU(),
        )
        self.patches = PatchEmbedding(width, embedding_dim, patch_size)

    def forward(self, images: Tensor) -> Tensor:
        return self.patches(self.features(images))


#: stems by name: ``(in_channels, embedding_dim, patch_size) -> module``, images -> tokens
STEMS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "patch": PatchEmbedding,
    "conv": ConvStem,
}


class HopfieldEncoderLayer(nn.Module):
    """Pre-norm transformer block with Hopfield self-association in place of attention.

    ``x = x + Hopfield(LayerNorm(x)); x = x + MLP(LayerNorm(x))``. The Hopfield layer's own input
    normalisations are off (the block's LayerNorm already normalises its input).

    Args:
        dim: token size.
        num_heads: association heads (``dim`` must be divisible by it).
        mlp_ratio: hidden size of the MLP as a multiple of ``dim``.
        similarity, separation, scaling, similarity_kwargs: the retrieval's parts, see
            :class:`~ahop.layers.Hopfield`.
        dropout: dropout on the association weights, the MLP and the residual branches.

    Shapes:
        tokens (B, T, dim) -> (B, T, dim).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        similarity: str = "dot",
        separation: str = "softmax",
        scaling: float | None = None,
        dropout: float = 0.0,
        similarity_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.norm_hopfield = nn.LayerNorm(dim)
        self.hopfield = Hopfield(
            input_size=dim,
            hidden_size=dim // num_heads,
            num_heads=num_heads,
            scaling=scaling,
            normalize_stored_pattern=False,
            normalize_state_pattern=False,
            normalize_pattern_projection=False,
            similarity=similarity,
            separation=separation,
            similarity_kwargs=similarity_kwargs,
            dropout=dropout,
        )
        hidden = max(1, round(dim * mlp_ratio))
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens + self.dropout(self.hopfield(self.norm_hopfield(tokens)))
        return tokens + self.dropout(self.mlp(self.norm_mlp(tokens)))


class HopfieldImageClassifier(nn.Module):
    """Images -> class logits: stem -> Hopfield encoder layers -> Hopfield pooling -> linear.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` must be multiples of ``patch_size``.
        num_classes: classes ``K``.
        patch_size: side of the square patches that become tokens.
        stem: ``"patch"`` (a strided conv, as in ViT) or ``"conv"`` (two 3x3 convs first).
        embedding_dim: token size ``D`` (divisible by ``num_heads``).
        num_heads: association heads of every Hopfield layer.
        num_layers: Hopfield encoder layers (0 = pool the embedded patches directly).
        mlp_ratio: MLP hidden size of the encoder layers as a multiple of ``D``.
        pooling_quantity: learned state patterns of the pooling head (their retrievals are
            concatenated before the linear classifier).
        similarity, separation, scaling, similarity_kwargs: the parts of every retrieval (encoder
            and pooling head), see :class:`~ahop.layers.Hopfield`; ``adaptive`` learns one
            A-Hop similarity per layer.
        dropout: dropout in the encoder and before the classifier.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        patch_size: int = 4,
        stem: str = "patch",
        embedding_dim: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        mlp_ratio: float = 2.0,
        pooling_quantity: int = 1,
        similarity: str = "dot",
        separation: str = "softmax",
        scaling: float | None = None,
        dropout: float = 0.0,
        similarity_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) of positive sizes, got {image_shape}")
        channels, height, width = (int(s) for s in image_shape)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide the image height and width ({height}x{width})"
            )
        if embedding_dim < 1 or num_heads < 1 or embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be divisible by num_heads={num_heads}"
            )
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; allowed values: {', '.join(STEMS)}")
        self.image_shape = (channels, height, width)
        num_tokens = (height // patch_size) * (width // patch_size)
        self.stem = STEMS[stem](channels, embedding_dim, patch_size)
        self.position = nn.Parameter(torch.randn(1, num_tokens, embedding_dim) * 0.02)
        parts = {
            "similarity": similarity,
            "separation": separation,
            "scaling": scaling,
            "similarity_kwargs": similarity_kwargs,
        }
        self.layers = nn.ModuleList(
            HopfieldEncoderLayer(
                embedding_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout, **parts
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embedding_dim)
        # tokens are already normalised; the learned pooling queries need no normalisation
        self.pooling = HopfieldPooling(
            embedding_dim,
            quantity=pooling_quantity,
            hidden_size=embedding_dim // num_heads,
            num_heads=num_heads,
            normalize_stored_pattern=False,
            normalize_state_pattern=False,
            normalize_pattern_projection=False,
            **parts,
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(pooling_quantity * embedding_dim, num_classes)
        )

    def tokens(self, images: Tensor) -> Tensor:
        """Encoded patch tokens ``(B, T, D)`` of images ``(B, C, H, W)`` (before pooling)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(images.shape)}"
            )
        tokens = self.stem(images) + self.position
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm(tokens)

    def forward(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> class logits ``(B, K)``."""
        return self.head(self.pooling(self.tokens(images)))
