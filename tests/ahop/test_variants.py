"""Query corruptions: shapes, ranges, determinism, exact semantics, errors."""

from __future__ import annotations

import pytest
import torch

from ahop.variants import (
    VARIANTS,
    Bias,
    Compose,
    GaussianNoise,
    Mask,
    MixedDifficulty,
    build_variant,
)

IMAGE = (1, 8, 8)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", VARIANTS.names())
def test_every_variant_keeps_shape_range_and_input(name: str, images: torch.Tensor) -> None:
    variant = build_variant(name, image_shape=IMAGE)
    before = images.clone()
    out = variant(images, seeded(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(images, before)
    torch.testing.assert_close(variant(images, seeded(0)), out)


def test_noise_is_seeded_and_clamped(images: torch.Tensor) -> None:
    noise = GaussianNoise(0.3)
    assert not torch.equal(noise(images, seeded(0)), noise(images, seeded(1)))
    raw = GaussianNoise(0.3, clamp=False)(images, seeded(0))
    assert raw.min() < 0 or raw.max() > 1
    assert (GaussianNoise(0.01, clamp=False)(images, seeded(0)) - images).std() < 0.02


def test_top_mask_zeroes_the_top_rows(images: torch.Tensor) -> None:
    out = Mask(0.5, "top", IMAGE)(images).reshape(-1, 8, 8)
    assert torch.all(out[:, :4] == 0)
    torch.testing.assert_close(out[:, 4:], images.reshape(-1, 8, 8)[:, 4:])
    bottom = Mask(0.25, "bottom", IMAGE)(images).reshape(-1, 8, 8)
    assert torch.all(bottom[:, 6:] == 0) and torch.all(bottom[:, :6] > 0)


@pytest.mark.parametrize("mode", ["random", "center", "border"])
def test_masks_hide_the_requested_fraction(mode: str, images: torch.Tensor) -> None:
    mask = Mask(0.25, mode, IMAGE).mask(images, seeded(0))
    assert mask.float().mean(dim=1).sub(0.25).abs().max() <= 0.05


def test_random_mask_differs_per_image(images: torch.Tensor) -> None:
    mask = Mask(0.5, "random", IMAGE).mask(images, seeded(0))
    assert not torch.equal(mask[0], mask[1])


def test_mask_without_shape_hides_leading_features(images: torch.Tensor) -> None:
    out = Mask(0.25)(images)
    assert torch.all(out[:, :16] == 0) and torch.equal(out[:, 16:], images[:, 16:])


def test_bias_shift_is_exact_before_clamping(images: torch.Tensor) -> None:
    torch.testing.assert_close(Bias(0.05, clamp=False)(images), images + 0.05)
    assert Bias(2.0)(images).eq(1.0).all()


def test_mixed_difficulty_zero_is_identity_and_grows(images: torch.Tensor) -> None:
    torch.testing.assert_close(MixedDifficulty(0.0, image_shape=IMAGE)(images, seeded(0)), images)
    small = (MixedDifficulty(0.2, image_shape=IMAGE)(images, seeded(0)) - images).abs().mean()
    large = (MixedDifficulty(1.0, image_shape=IMAGE)(images, seeded(0)) - images).abs().mean()
    assert large > small > 0


def test_compose_applies_in_order(images: torch.Tensor) -> None:
    out = Compose([Bias(0.05, clamp=False), Mask(0.5)])(images)
    assert torch.all(out[:, :32] == 0)
    torch.testing.assert_close(out[:, 32:], images[:, 32:] + 0.05)


def test_bad_arguments_raise(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="allowed values"):
        build_variant("blur")
    with pytest.raises(ValueError, match="allowed values"):
        Mask(0.5, "diagonal")
    with pytest.raises(ValueError):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError):
        Mask(1.5)
    with pytest.raises(ValueError, match="image_shape"):
        Mask(0.5, "top", (3, 3))(images)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        GaussianNoise()(images.reshape(6, 8, 8))


def test_mixed_difficulty_all_applies_noise_bias_and_mask_to_every_query() -> None:
    x = torch.full((50, 64), 0.5)
    # a wide data range: no clamping, so only the mask makes zeros
    wide = {"image_shape": IMAGE, "data_range": (-10.0, 10.0)}
    out = MixedDifficulty(0.5, combine="all", **wide)(x, seeded(1))
    masked = out == 0
    # every query: exactly round(0.5 * 0.8 * 64) = 26 masked pixels ...
    assert masked.sum(-1).eq(26).all()
    # ... and on the others noise around a shift of +-0.25 (so never a one-corruption query)
    shift = (out.masked_fill(masked, float("nan")).nanmean(-1) - 0.5).abs()
    assert ((shift - 0.25).abs() < 0.15).all()
    one = MixedDifficulty(0.5, **wide)(x, seeded(1))
    assert (one == 0).sum(-1).eq(0).any()  # "one": most queries have no masked pixel
    torch.testing.assert_close(
        MixedDifficulty(0.0, image_shape=IMAGE, combine="all")(x, seeded(0)), x
    )
    with pytest.raises(ValueError, match="unknown combine 'both'; allowed values: one, all"):
        MixedDifficulty(combine="both")
