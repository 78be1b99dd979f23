"""Query corruptions ("variants"): noisy, masked or biased versions of stored patterns.

Every variant maps a batch of flattened patterns ``x`` of shape ``(B, D)`` with values in
``data_range`` (default ``[0, 1]``) to a corrupted batch of the same shape and dtype, never in
place: ``variant(x, generator=None)``. Randomness comes only from ``generator`` (a
``torch.Generator``), so a seed fixes the corruption. Image-aware variants take
``image_shape`` = ``(H, W)`` or ``(C, H, W)`` to interpret ``D``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ahop.registry import Registry

VARIANTS: Registry[object] = Registry("variant")


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _check_batch(x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"variants take flattened patterns (B, D), got shape {tuple(x.shape)}")


def _grid(shape: Sequence[int] | None, dim: int) -> tuple[int, int, int]:
    """``(C, H, W)`` for a pattern of ``dim`` features (a single row when no shape is given)."""
    if shape is None:
        return 1, 1, dim
    shape = tuple(shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != dim:
        raise ValueError(f"image_shape {shape} does not match patterns of {dim} features")
    return shape  # type: ignore[return-value]


class Variant:
    """Base class of query corruptions; subclasses implement :meth:`corrupt`."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x)
        return self.corrupt(x, generator)

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


@VARIANTS.register("identity")
class Identity(Variant):
    """No corruption (a copy of the queries)."""

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return x.clone()


@VARIANTS.register("noise")
class GaussianNoise(Variant):
    """Additive Gaussian noise ``N(0, sigma²)`` per feature, clamped to ``data_range``."""

    def __init__(
        self, sigma: float = 0.1, clamp: bool = True, data_range: tuple[float, float] = (0.0, 1.0)
    ) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma, self.clamp, self.data_range = float(sigma), clamp, tuple(data_range)

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = x + self.sigma * noise
        return out.clamp(*self.data_range) if self.clamp else out


def _mask_top(fraction: float, grid: tuple[int, int, int], x: Tensor, _: object) -> Tensor:
    channels, height, width = grid
    rows = round(fraction * height) if height > 1 else 0
    mask = torch.zeros(channels, height, width, dtype=torch.bool, device=x.device)
    if height > 1:
        mask[:, :rows] = True
    else:  # plain vectors: the first `fraction` of the features
        mask[..., : round(fraction * width)] = True
    return mask.reshape(1, -1).expand_as(x)


def _mask_bottom(fraction: float, grid: tuple[int, int, int], x: Tensor, _: object) -> Tensor:
    return _mask_top(fraction, grid, x.flip(-1), None).flip(-1)


def _mask_random(
    fraction: float, grid: tuple[int, int, int], x: Tensor, generator: torch.Generator | None
) -> Tensor:
    # exactly round(fraction * pixels) pixels per image, all channels of a pixel together
    channels, height, width = grid
    pixels = height * width
    scores = torch.rand(x.shape[0], pixels, generator=generator, device=x.device)
    chosen = scores.argsort(dim=-1)[:, : round(fraction * pixels)]
    mask = torch.zeros(x.shape[0], pixels, dtype=torch.bool, device=x.device)
    mask.scatter_(1, chosen, True)
    return mask.unsqueeze(1).expand(-1, channels, -1).reshape(x.shape)


def _mask_center(fraction: float, grid: tuple[int, int, int], x: Tensor, _: object) -> Tensor:
    # a central square covering `fraction` of the image area (inpainting)
    channels, height, width = grid
    side_h, side_w = round(height * math.sqrt(fraction)), round(width * math.sqrt(fraction))
    top, left = (height - side_h) // 2, (width - side_w) // 2
    mask = torch.zeros(channels, height, width, dtype=torch.bool, device=x.device)
    mask[:, top : top + side_h, left : left + side_w] = True
    return mask.reshape(1, -1).expand_as(x)


def _mask_border(fraction: float, grid: tuple[int, int, int], x: Tensor, _: object) -> Tensor:
    # everything outside a central square keeping (1 - fraction) of the area
    return ~_mask_center(1.0 - fraction, grid, x, None)


MASK_MODES = {
    "top": _mask_top,
    "bottom": _mask_bottom,
    "random": _mask_random,
    "center": _mask_center,
    "border": _mask_border,
}


@VARIANTS.register("mask")
class Mask(Variant):
    """Set part of each pattern to ``fill``.

    Modes: ``"top"`` masks the top ``fraction`` of image rows (without ``image_shape``, the first
    ``fraction`` of the features), ``"bottom"`` the bottom rows (``fraction=0.5`` is UHN's
    half-masked image: its code zeros rows ``H/2 ... H``, the top half stays visible; LSHN's
    official cue keeps the top half too), ``"random"`` a random ``fraction`` of the pixels of
    each image, ``"center"`` a central square of that area (inpainting), ``"border"`` everything
    but a central square keeping ``1 - fraction`` of the area.
    """

    def __init__(
        self,
        fraction: float = 0.5,
        mode: str = "top",
        image_shape: Sequence[int] | None = None,
        fill: float = 0.0,
    ) -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"unknown mask mode {mode!r}; allowed values: {', '.join(MASK_MODES)}")
        self.fraction = _check_fraction("fraction", fraction)
        self.mode, self.fill = mode, float(fill)
        self.image_shape = None if image_shape is None else tuple(image_shape)

    def mask(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The boolean mask (``True`` = hidden) for a batch ``x``."""
        _check_batch(x)
        return MASK_MODES[self.mode](
            self.fraction, _grid(self.image_shape, x.shape[1]), x, generator
        )

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return x.masked_fill(self.mask(x, generator), self.fill)


@VARIANTS.register("bias")
class Bias(Variant):
    """Additive constant shift ``x + amount`` (the A-Hop paper's biased variant), clamped."""

    def __init__(
        self, amount: float = 0.2, clamp: bool = True, data_range: tuple[float, float] = (0.0, 1.0)
    ) -> None:
        self.amount, self.clamp, self.data_range = float(amount), clamp, tuple(data_range)

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        out = x + self.amount
        return out.clamp(*self.data_range) if self.clamp else out


def _one_of(x: Tensor, parts: tuple[Tensor, Tensor, Tensor], generator) -> Tensor:
    # one corruption per query, chosen uniformly
    noisy, masked, biased = parts
    kind = torch.randint(0, 3, (x.shape[0], 1), generator=generator, device=x.device)
    return torch.where(kind == 0, noisy, torch.where(kind == 1, masked, biased))


#: how :class:`MixedDifficulty` combines its corruptions, by name
MIXES = {"one": "one corruption per query", "all": "noise, bias and mask on every query"}


@VARIANTS.register("mixed")
class MixedDifficulty(Variant):
    """Noise, masking and bias with one strength knob ``difficulty``.

    With ``d = difficulty`` in ``[0, 1]``: noise ``sigma = d * max_sigma``, random-pixel mask of
    fraction ``d * max_mask`` (set to 0), bias ``± d * max_bias`` (sign drawn per query), values
    clamped to ``data_range``. ``combine="one"`` (default, this library's construction) gives each
    query ONE of the three, chosen at random; ``combine="all"`` applies all three to every query
    (noise, then bias, clamp, then the mask), as the A-Hop paper's mixed variants have them
    together (its strength schedule is not published; these maxima are ours). ``d = 0`` returns
    the queries unchanged.
    """

    def __init__(
        self,
        difficulty: float = 0.5,
        max_sigma: float = 0.5,
        max_mask: float = 0.8,
        max_bias: float = 0.5,
        image_shape: Sequence[int] | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        combine: str = "one",
    ) -> None:
        if combine not in MIXES:
            raise ValueError(f"unknown combine {combine!r}; allowed values: {', '.join(MIXES)}")
        self.difficulty = _check_fraction("difficulty", difficulty)
        self.max_sigma, self.max_mask, self.max_bias = (
            float(max_sigma),
            float(max_mask),
            float(max_bias),
        )
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.data_range = tuple(data_range)
        self.combine = combine

    def _bias(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        sign = torch.randint(0, 2, (x.shape[0], 1), generator=generator, device=x.device) * 2 - 1
        return (x + sign.to(x.dtype) * self.difficulty * self.max_bias).clamp(*self.data_range)

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        d = self.difficulty
        noise = GaussianNoise(d * self.max_sigma, data_range=self.data_range)
        mask = Mask(min(1.0, d * self.max_mask), "random", self.image_shape)
        if self.combine == "all":
            return mask(self._bias(noise(x, generator), generator), generator)
        noisy = noise(x, generator)
        masked = mask(x, generator)
        return _one_of(x, (noisy, masked, self._bias(x, generator)), generator)


class Compose(Variant):
    """Apply several variants in order."""

    def __init__(self, variants: Sequence[Variant]) -> None:
        self.variants = list(variants)

    def corrupt(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        for variant in self.variants:
            x = variant(x, generator)
        return x


def build_variant(name: str, **kwargs: object) -> Variant:
    """A variant from its registered name (``identity``, ``noise``, ``mask``, ``bias``, ``mixed``).

    Options the chosen variant does not take are ignored (e.g. ``image_shape`` for ``noise``).
    """
    return VARIANTS.build(name, **kwargs)  # type: ignore[return-value]
