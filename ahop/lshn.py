"""Latent Structured Hopfield Network (LSHN, arXiv 2506.01303), in pure PyTorch.

An autoencoder with a continuous-attractor Hopfield network in its latent space:

    image x (B, D) in [-1, 1] --encoder--> latent z (B, N) in (-1, 1)
    cue latent I --attractor (v <- clamp(v + dt (W_ih I + W_hh v)), v0 = I)--> v*
    sign(v*) --decoder--> retrieved image (B, D) in (-1, 1)

The details follow the official code (github.com/fudan-birlab/LSHN, ``model.py`` / ``train.py``
/ ``evaluation.ipynb``):

* encoder ``Linear(D, H) -> GELU -> Linear(H, N) -> Tanh`` and the mirrored decoder, with
  ``H = floor(sqrt(D * N))``, Xavier-uniform weights and zero biases;
* attractor without bias, ``W_hh`` initialised to zero and symmetrised after every optimizer
  step (:meth:`LSHN.symmetrize_`), ``W_ih`` initialised like ``nn.RNNCell`` (U(±1/sqrt(N)));
* the initial state is the cue latent itself (``v0 = I``), for training and for retrieval;
* training unrolls 11 steps with ``dt = 1`` and detaches the state before every step (one-step
  truncated back-propagation; the cue input and the clean target still receive gradients);
* retrieval uses ``dt = 0.1`` for up to 1000 steps (the official code always runs 1000; here
  each sample stops once ``max |dv| < tol``), then takes the sign and decodes;
* loss = scale * (w_bin * binarization + attractor + 5 * (reconstruction(clean) +
  reconstruction(cue))), where the official code reconstructs the *corrupted* input from its own
  latent (``cue_reconstruction="autoencode"``); ``"retrieve"`` instead decodes the attractor's final
  state and compares it with the clean image (not in the official code);
* schedule "official": every 500 steps ``w_bin`` doubles (1, 2, 4, ... capped at 20) and the
  overall scale decays by 0.9 (with AdamW the scale barely matters: Adam is scale invariant);
* Hebbian ablation: ``W_hh = Z^T Z / (P N)`` from the clean latents Z (P, N), as in the
  official evaluation; ``binarize`` / ``zero_diagonal`` give the classical variant.

Cues: :func:`half_mask` and :func:`pixel_noise` reproduce the official corruptions and
:func:`training_cues` the per-step training cues; :func:`fit` is the official full-batch training
loop in plain PyTorch (``tasks.lshn.LSHNTask`` runs the same step under Lightning).

Images live in [-1, 1] inside the model; use :func:`scale_to_pm1` / :func:`scale_to_unit` to
convert from / to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ahop.checks import check_int
from ahop.objectives import REDUCTIONS
from ahop.objectives import fraction_correctly_retrieved as unit_fraction_correctly_retrieved
from ahop.registry import Registry

# Defaults of the official training / evaluation scripts.
TRAIN_DT = 1.0
TRAIN_UNROLL_STEPS = 11
RETRIEVE_DT = 0.1
RETRIEVE_MAX_STEPS = 1000
RETRIEVE_TOL = 1e-5
RECONSTRUCTION_WEIGHT = 5.0
OPTIMIZER_DEFAULTS: dict[str, object] = {"lr": 1e-4, "betas": (0.9, 0.95), "weight_decay": 1e-2}


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_dt(dt: float) -> None:
    if (
        not isinstance(dt, (int, float))
        or isinstance(dt, bool)
        or not (dt > 0 and math.isfinite(dt))
    ):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")


def _check_batch(x: Tensor, dim: int, name: str) -> None:
    """Require a finite floating tensor of shape (B, dim) with B >= 1."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (batch, {dim}) (flatten images first), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_images(x: Tensor, name: str = "images") -> None:
    """Require a finite floating (B, D) tensor of any D."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (batch, D) tensor (flatten images first), got {shape}")
    _check_batch(x, x.shape[1], name)


# --------------------------------------------------------------------------------------------
# Image scaling
# --------------------------------------------------------------------------------------------


def scale_to_pm1(x: Tensor) -> Tensor:
    """Map images from [0, 1] to the model's range [-1, 1]: ``2 x - 1``."""
    return x * 2.0 - 1.0


def scale_to_unit(x: Tensor) -> Tensor:
    """Map images from [-1, 1] back to [0, 1]: ``(x + 1) / 2``."""
    return (x + 1.0) / 2.0


# --------------------------------------------------------------------------------------------
# Cues (corrupted stored images), as in the official training and evaluation scripts
# --------------------------------------------------------------------------------------------

#: noise levels of the official evaluation (``evaluation.ipynb``), in [0, 1] pixel units
EVAL_NOISE_SIGMAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)


def _half_keep_mask(dim: int, image_shape: tuple[int, ...] | None, device: torch.device) -> Tensor:
    """Bool (D,) in the images' (C, H, W) layout, True for the first half in (H, W, C) order."""
    if image_shape is None:
        image_shape = (1, 1, dim)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != dim:
        raise ValueError(f"image_shape {tuple(image_shape)} does not match images of {dim} pixels")
    c, h, w = shape
    # position of element (c, h, w) in the HWC-flattened image the official code masks
    hwc = (torch.arange(h * w, device=device).view(1, h, w) * c) + torch.arange(
        c, device=device
    ).view(c, 1, 1)
    return (hwc < dim // 2).reshape(-1)


def half_mask(images: Tensor, image_shape: tuple[int, ...] | None = None) -> Tensor:
    """Official half mask: keep the first half of the image, set the rest to 0 (grey).

    The official ``generate_mask`` keeps the first ``D // 2`` entries of the image flattened in
    (H, W, C) order, i.e. the top half of the rows (for even H), and multiplies the rest by 0;
    in the model's [-1, 1] range 0 is mid-grey (0.5 in [0, 1] units).

    Args:
        images: (B, D) in [-1, 1], flattened in (C, H, W) order (torchvision / datamodules).
        image_shape: (C, H, W) or (H, W); ``None`` = plain vectors (first half kept).
    """
    _check_images(images)
    keep = _half_keep_mask(images.shape[1], image_shape, images.device)
    return images * keep.to(images.dtype)


def pixel_noise(
    images: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Official Gaussian cue: ``clamp(|x01 + sigma * eps|, 0, 1)`` in [0, 1] units, back to [-1, 1].

    Args:
        images: (B, D) in [-1, 1].
        sigma: noise standard deviation in [0, 1] pixel units, a number or a tensor broadcastable
            to (B, D) (training draws one sigma ~ U(0, 1) per pixel).
        generator: source of the noise (``None`` = torch's global generator).
    """
    _check_images(images)
    if isinstance(sigma, Tensor):
        if bool((sigma < 0).any()):
            raise ValueError("sigma must be >= 0 everywhere")
    elif not (isinstance(sigma, (int, float)) and sigma >= 0):
        raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
    eps = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return scale_to_pm1(torch.clamp((scale_to_unit(images) + sigma * eps).abs(), 0.0, 1.0))


def training_cues(
    clean: Tensor,
    image_shape: tuple[int, ...] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The official training cues: ``cat([half_mask(clean), pixel_noise(clean, U(0, 1))])``.

    Every pixel of the noisy copy gets its own sigma ~ U(0, 1) (``torch.rand_like``), so each
    step mixes light and heavy noise. (B, D) in [-1, 1] -> (2 B, D); row ``B + b`` is the
    noisy copy of ``clean[b]`` (the layout :meth:`LSHN.training_loss` expects).
    """
    sigma = torch.rand(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    return torch.cat([half_mask(clean, image_shape), pixel_noise(clean, sigma, generator)])


# --------------------------------------------------------------------------------------------
# Latent attractor
# --------------------------------------------------------------------------------------------

# Attractor kind -> how W_hh is held: a trained parameter, or a buffer set by store_hebbian.
ATTRACTORS: Registry[None] = Registry("attractor")


@ATTRACTORS.register("learned")
def _hold_learned(module: nn.Module, weight: Tensor) -> None:
    module.weight_hh = nn.Parameter(weight)


@ATTRACTORS.register("hebbian")
def _hold_hebbian(module: nn.Module, weight: Tensor) -> None:
    module.register_buffer("weight_hh", weight)


class LatentAttractor(nn.Module):
    """Continuous-attractor Hopfield network on ``[-1, 1]^N`` driven by a constant input.

    ``v <- clamp(v + dt * (I W_ih^T + v W_hh^T), -1, 1)`` with ``v0 = I`` unless given.

    Args:
        latent_dim: N, the number of units (and the size of the input I).
        attractor: ``"learned"`` (W_hh is an ``nn.Parameter``, zero at start) or ``"hebbian"``
            (W_hh is a buffer, zero until :meth:`store_hebbian`, never trained).
    """

    def __init__(self, latent_dim: int, attractor: str = "learned") -> None:
        super().__init__()
        check_int(latent_dim, "latent_dim")
        hold_weight_hh = ATTRACTORS.get(attractor)
        self.latent_dim = latent_dim
        self.attractor = attractor
        bound = 1.0 / math.sqrt(latent_dim)  # nn.RNNCell's default, as in the official code
        self.weight_ih = nn.Parameter(torch.empty(latent_dim, latent_dim).uniform_(-bound, bound))
        hold_weight_hh(self, torch.zeros(latent_dim, latent_dim))

    def drive(self, cue_latent: Tensor) -> Tensor:
        """Constant external input ``I W_ih^T``: (B, N) -> (B, N)."""
        return cue_latent @ self.weight_ih.t()

    def step(self, v: Tensor, drive: Tensor, dt: float) -> Tensor:
        """One Euler step from state ``v`` (B, N) with precomputed ``drive`` (B, N)."""
        return torch.clamp(v + dt * (drive + v @ self.weight_hh.t()), -1.0, 1.0)

    def unroll(
        self,
        cue_latent: Tensor,
        steps: int,
        dt: float,
        return_trajectory: bool = False,
        *,
        v0: Tensor | None = None,
        detach_state: bool = False,
    ) -> Tensor:
        """Run ``steps`` updates from ``v0`` (default: the cue) with the cue as constant input.

        Args:
            cue_latent: I, shape (B, N).
            steps: number of updates (>= 0).
            dt: step size (> 0).
            return_trajectory: return all states, shape (steps + 1, B, N), index 0 = v0.
            v0: initial state (B, N); default ``cue_latent`` (official code).
            detach_state: detach the state before every step (official training: one-step
                truncated BPTT, gradients still reach W_ih, W_hh and the cue through the input).

        Returns:
            Final state (B, N), or the trajectory (steps + 1, B, N).
        """
        _check_batch(cue_latent, self.latent_dim, "cue_latent")
        check_int(steps, "steps", minimum=0)
        _check_dt(dt)
        v = cue_latent if v0 is None else v0
        if v0 is not None:
            _check_batch(v0, self.latent_dim, "v0")
            if v0.shape != cue_latent.shape:
                raise ValueError(
                    f"v0 shape {tuple(v0.shape)} must match cue_latent {tuple(cue_latent.shape)}"
                )
        v = torch.clamp(v, -1.0, 1.0)
        drive = self.drive(cue_latent)
        states = [v]
        for _ in range(steps):
            v = self.step(v.detach() if detach_state else v, drive, dt)
            states.append(v)
        return torch.stack(states) if return_trajectory else v

    @torch.no_grad()
    def settle(
        self,
        cue_latent: Tensor,
        dt: float = RETRIEVE_DT,
        max_steps: int = RETRIEVE_MAX_STEPS,
        tol: float = RETRIEVE_TOL,
    ) -> tuple[Tensor, Tensor]:
        """Run until every sample has ``max_i |dv_i| < tol`` or ``max_steps`` is reached.

        Converged samples are frozen (only the rest are updated), so the result for each sample
        equals running it alone.

        Returns:
            ``(state, steps)``: final continuous state (B, N) and updates used per sample (B,),
            int64; a sample that converged counts the update whose change fell below ``tol``.
        """
        _check_batch(cue_latent, self.latent_dim, "cue_latent")
        _check_dt(dt)
        check_int(max_steps, "max_steps")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        v = torch.clamp(cue_latent, -1.0, 1.0).clone()
        drive = self.drive(cue_latent)
        steps = torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        active = torch.arange(v.shape[0], device=v.device)
        for _ in range(max_steps):
            old = v[active]
            new = self.step(old, drive[active], dt)
            v[active] = new
            steps[active] += 1
            moving = (new - old).abs().amax(dim=1) >= tol
            active = active[moving]
            if active.numel() == 0:
                break
        return v, steps

    def energy(self, v: Tensor, cue_latent: Tensor) -> Tensor:
        """``E(v) = -1/2 v^T W_hh v - v^T W_ih I`` per sample: (B, N), (B, N) -> (B,).

        For symmetric W_hh the update is projected gradient descent on E over the box
        ``[-1, 1]^N``, so E never increases along a trajectory when ``dt < 2 / ||W_hh||_2``
        (a Lyapunov function). For non-symmetric W_hh or larger dt it is only a diagnostic.
        """
        _check_batch(v, self.latent_dim, "v")
        _check_batch(cue_latent, self.latent_dim, "cue_latent")
        return -0.5 * ((v @ self.weight_hh.t()) * v).sum(-1) - (self.drive(cue_latent) * v).sum(-1)

    @torch.no_grad()
    def symmetrize_(self) -> None:
        """``W_hh <- (W_hh + W_hh^T) / 2`` in place; call after every optimizer step."""
        self.weight_hh.copy_((self.weight_hh + self.weight_hh.t()) / 2.0)

    @torch.no_grad()
    def store_hebbian(
        self, clean_latents: Tensor, *, binarize: bool = False, zero_diagonal: bool = False
    ) -> None:
        """Overwrite W_hh with the Hebbian matrix ``Z^T Z / (P N)`` of the latents Z (P, N).

        Defaults follow the official ablation (continuous latents, diagonal kept); works for
        either attractor kind (for ``"learned"`` it replaces the trained weights).

        Args:
            clean_latents: Z, shape (P, N), the encoded clean patterns.
            binarize: use ``sign(Z)`` instead of Z.
            zero_diagonal: set the self-connections to zero (classical Hopfield).
        """
        _check_batch(clean_latents, self.latent_dim, "clean_latents")
        z = torch.sign(clean_latents) if binarize else clean_latents
        w = z.t() @ z / (z.shape[0] * z.shape[1])
        if zero_diagonal:
            w.fill_diagonal_(0.0)
        self.weight_hh.copy_(w)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, attractor={self.attractor!r}"


# --------------------------------------------------------------------------------------------
# Losses and schedule
# --------------------------------------------------------------------------------------------


def binarization_loss(latents: Tensor) -> Tensor:
    """Push clean latents to ±1: ``-mean|z| - mean_rows(min_i |z_i|)``; (B, N) -> scalar."""
    a = latents.abs()
    return -a.mean() - a.amin(dim=-1).mean()


def attractor_loss(
    attractor: LatentAttractor,
    cue_latent: Tensor,
    target_latent: Tensor,
    steps: int = TRAIN_UNROLL_STEPS,
    dt: float = TRAIN_DT,
) -> tuple[Tensor, Tensor]:
    """MSE + L1 between every unrolled state and the clean target, averaged over steps.

    Unrolls from ``v0 = cue_latent`` with the state detached before each step (official code);
    the target is not detached, so the clean latents are also pulled towards the attractor.

    Args:
        attractor: the latent attractor.
        cue_latent: encoded corrupted inputs (B, N).
        target_latent: encoded clean inputs (B, N).
        steps: number of unrolled updates (>= 1).
        dt: step size.

    Returns:
        ``(loss, final_state)``: scalar loss and the last state (B, N).
    """
    check_int(steps, "steps")
    if target_latent.shape != cue_latent.shape:
        raise ValueError(
            f"target_latent shape {tuple(target_latent.shape)} must match cue_latent "
            f"{tuple(cue_latent.shape)}"
        )
    states = attractor.unroll(cue_latent, steps, dt, return_trajectory=True, detach_state=True)
    states = states[1:]
    target = target_latent.unsqueeze(0).expand_as(states)
    per_step = (states - target).pow(2).mean(dim=(1, 2)) + (states - target).abs().mean(dim=(1, 2))
    return per_step.mean(), states[-1]


def reconstruction_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """L1 + MSE (means over all elements); (B, D), (B, D) -> scalar."""
    return F.l1_loss(prediction, target) + F.mse_loss(prediction, target)


class LossWeights(NamedTuple):
    """Weights of the LSHN loss at one training step."""

    binarization: float
    scale: float


SCHEDULES: Registry[LossWeights] = Registry("schedule")


@SCHEDULES.register("official")
def _official_schedule(
    step: int, total_steps: int, binarization_max: float, period: int, warmup_fraction: float
) -> LossWeights:
    # train.py: every `period` steps the binarisation weight doubles (cap) and the scale *= 0.9.
    k = (step + 1) // period
    return LossWeights(min(2.0 ** min(k, 64), binarization_max), 0.9**k)


@SCHEDULES.register("linear")
def _linear_schedule(
    step: int, total_steps: int, binarization_max: float, period: int, warmup_fraction: float
) -> LossWeights:
    warmup = warmup_fraction * total_steps
    ramp = 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)
    return LossWeights(binarization_max * ramp, 1.0)


@SCHEDULES.register("constant")
def _constant_schedule(
    step: int, total_steps: int, binarization_max: float, period: int, warmup_fraction: float
) -> LossWeights:
    return LossWeights(binarization_max, 1.0)


def loss_weights(
    step: int,
    total_steps: int,
    schedule: str = "official",
    *,
    binarization_max: float = 20.0,
    period: int = 500,
    warmup_fraction: float = 0.25,
) -> LossWeights:
    """Binarisation weight and overall loss scale at 0-based ``step`` of ``total_steps``.

    Schedules: ``"official"`` (weight 1 doubling every ``period`` steps up to
    ``binarization_max``; scale 0.9 per period), ``"linear"`` (weight ramps from ~0 to
    ``binarization_max`` over the first ``warmup_fraction`` of training; scale 1),
    ``"constant"`` (``binarization_max``; scale 1).
    """
    fn = SCHEDULES.get(schedule)
    check_int(step, "step", minimum=0)
    check_int(total_steps, "total_steps")
    check_int(period, "period")
    if not binarization_max >= 0:
        raise ValueError(f"binarization_max must be >= 0, got {binarization_max!r}")
    if not 0 <= warmup_fraction <= 1:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction!r}")
    return fn(step, total_steps, binarization_max, period, warmup_fraction)


def make_optimizer(model: nn.Module, **overrides: object) -> torch.optim.AdamW:
    """AdamW over all trainable parameters with :data:`OPTIMIZER_DEFAULTS` (official values)."""
    kwargs = {**OPTIMIZER_DEFAULTS, **overrides}
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **kwargs)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class LSHNRetrieval(NamedTuple):
    """Result of :meth:`LSHN.retrieve`.

    Attributes:
        images: decoded images (B, D) in [-1, 1] (use :func:`scale_to_unit` for [0, 1]).
        latents: ``sign`` of the final attractor state (B, N), entries in {-1, 0, 1}.
        states: final continuous attractor state (B, N).
        steps: attractor updates used per sample (B,), int64.
    """

    images: Tensor
    latents: Tensor
    states: Tensor
    steps: Tensor


def _mlp(sizes: tuple[int, int, int]) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.GELU(), nn.Linear(sizes[1], sizes[2]))
    net.append(nn.Tanh())
    for layer in (net[0], net[2]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return net


CUE_RECONSTRUCTIONS: Registry[Tensor] = Registry("cue_reconstruction")


@CUE_RECONSTRUCTIONS.register("autoencode")
def _cue_recon_autoencode(
    model: LSHN, clean: Tensor, cues: Tensor, cue_latent: Tensor, final_state: Tensor
) -> Tensor:
    # Official: the corrupted input is reconstructed from its own latent.
    return reconstruction_loss(model.decode(cue_latent), cues)


@CUE_RECONSTRUCTIONS.register("retrieve")
def _cue_recon_retrieve(
    model: LSHN, clean: Tensor, cues: Tensor, cue_latent: Tensor, final_state: Tensor
) -> Tensor:
    # Alternative: decode where the attractor went and ask for the clean image.
    return reconstruction_loss(model.decode(final_state), clean)


class LSHN(nn.Module):
    """Latent Structured Hopfield Network: encoder -> latent attractor -> decoder.

    Args:
        input_dim: D, flattened image size (images in [-1, 1]).
        latent_dim: N, latent / attractor size (the paper uses 128 ... 1024).
        hidden_dim: H of the encoder and decoder; default ``floor(sqrt(D * N))``.
        attractor: ``"learned"`` or ``"hebbian"`` (see :class:`LatentAttractor`).
        train_steps: attractor updates unrolled in the training loss (official: 11).
        train_dt: step size in the training loss (official: 1.0).
        reconstruction_weight: weight of the two reconstruction terms (official: 5).
        schedule, binarization_max, schedule_period, warmup_fraction: see :func:`loss_weights`.
        cue_reconstruction: ``"autoencode"`` (official: decode(encode(cue)) vs cue) or
            ``"retrieve"`` (decode the unrolled attractor state vs the clean image).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 128,
        hidden_dim: int | None = None,
        attractor: str = "learned",
        train_steps: int = TRAIN_UNROLL_STEPS,
        train_dt: float = TRAIN_DT,
        reconstruction_weight: float = RECONSTRUCTION_WEIGHT,
        schedule: str = "official",
        binarization_max: float = 20.0,
        schedule_period: int = 500,
        warmup_fraction: float = 0.25,
        cue_reconstruction: str = "autoencode",
    ) -> None:
        super().__init__()
        check_int(input_dim, "input_dim")
        check_int(latent_dim, "latent_dim")
        if hidden_dim is None:
            hidden_dim = math.isqrt(input_dim * latent_dim)
        check_int(hidden_dim, "hidden_dim")
        check_int(train_steps, "train_steps")
        _check_dt(train_dt)
        if not reconstruction_weight >= 0:
            raise ValueError(f"reconstruction_weight must be >= 0, got {reconstruction_weight!r}")
        CUE_RECONSTRUCTIONS.get(cue_reconstruction)
        # Validate schedule arguments once, up front.
        loss_weights(
            0,
            1,
            schedule,
            binarization_max=binarization_max,
            period=schedule_period,
            warmup_fraction=warmup_fraction,
        )
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.train_steps = train_steps
        self.train_dt = train_dt
        self.reconstruction_weight = reconstruction_weight
        self.schedule = schedule
        self.binarization_max = binarization_max
        self.schedule_period = schedule_period
        self.warmup_fraction = warmup_fraction
        self.cue_reconstruction = cue_reconstruction

        self.encoder = _mlp((input_dim, hidden_dim, latent_dim))
        self.attractor = LatentAttractor(latent_dim, attractor)
        self.decoder = _mlp((latent_dim, hidden_dim, input_dim))

    def encode(self, images: Tensor) -> Tensor:
        """Images (B, D) in [-1, 1] -> latents (B, N) in (-1, 1)."""
        _check_batch(images, self.input_dim, "images")
        return self.encoder(images)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents (B, N) -> images (B, D) in (-1, 1)."""
        _check_batch(latents, self.latent_dim, "latents")
        return self.decoder(latents)

    def unroll(
        self,
        cue_latent: Tensor,
        steps: int,
        dt: float,
        return_trajectory: bool = False,
        **kwargs: object,
    ) -> Tensor:
        """Attractor dynamics from the cue latent; see :meth:`LatentAttractor.unroll`."""
        return self.attractor.unroll(cue_latent, steps, dt, return_trajectory, **kwargs)

    @torch.no_grad()
    def retrieve(
        self,
        cue_images: Tensor,
        dt: float = RETRIEVE_DT,
        max_steps: int = RETRIEVE_MAX_STEPS,
        tol: float = RETRIEVE_TOL,
    ) -> LSHNRetrieval:
        """Encode cues (B, D), settle the attractor, take the sign, decode (no gradients)."""
        cue_latent = self.encode(cue_images)
        states, steps = self.attractor.settle(cue_latent, dt=dt, max_steps=max_steps, tol=tol)
        latents = torch.sign(states)
        return LSHNRetrieval(self.decode(latents), latents, states, steps)

    def forward(self, cue_images: Tensor) -> LSHNRetrieval:
        """Same as :meth:`retrieve` with default settings."""
        return self.retrieve(cue_images)

    def energy(self, v: Tensor, cue_latent: Tensor) -> Tensor:
        """Attractor energy per sample; see :meth:`LatentAttractor.energy`."""
        return self.attractor.energy(v, cue_latent)

    def symmetrize_(self) -> None:
        """Make W_hh symmetric; call after every ``optimizer.step()``."""
        self.attractor.symmetrize_()

    def store_hebbian(self, clean_latents: Tensor, **kwargs: bool) -> None:
        """Set W_hh from clean latents (P, N); see :meth:`LatentAttractor.store_hebbian`."""
        self.attractor.store_hebbian(clean_latents, **kwargs)

    @torch.no_grad()
    def prepare_attractor_(self, clean: Tensor) -> None:
        """Before a training step or an evaluation: for the ``"hebbian"`` attractor set W_hh from
        the current clean latents of the stored images (P, D); the learned attractor is left
        alone. Keeps the Hebbian weights in step with the encoder as it trains."""
        if self.attractor.attractor == "hebbian":
            self.store_hebbian(self.encode(clean))

    def loss_weights(self, step: int, total_steps: int) -> LossWeights:
        """Loss weights of this model's schedule at ``step``."""
        return loss_weights(
            step,
            total_steps,
            self.schedule,
            binarization_max=self.binarization_max,
            period=self.schedule_period,
            warmup_fraction=self.warmup_fraction,
        )

    def training_loss(
        self, clean: Tensor, cues: Tensor, step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The LSHN training objective for one (full) batch.

        Args:
            clean: clean images (B, D) in [-1, 1].
            cues: corrupted images (k B, D); several corruption kinds may be stacked along the
                batch (``torch.cat([masked, noisy])``), row ``j B + b`` belonging to ``clean[b]``.
            step: 0-based global step (for the schedule).
            total_steps: total number of training steps.

        Returns:
            ``(loss, parts)``; ``parts`` holds detached scalars ``binarization``, ``attractor``,
            ``reconstruction``, ``cue_reconstruction``, ``binarization_weight``, ``loss_scale``.
        """
        _check_batch(clean, self.input_dim, "clean")
        _check_batch(cues, self.input_dim, "cues")
        if cues.shape[0] % clean.shape[0] != 0:
            raise ValueError(
                f"cues batch ({cues.shape[0]}) must be a multiple of the clean batch "
                f"({clean.shape[0]})"
            )
        weights = self.loss_weights(step, total_steps)
        repeats = cues.shape[0] // clean.shape[0]

        clean_latent = self.encoder(clean)
        cue_latent = self.encoder(cues)
        target_latent = clean_latent.repeat(repeats, 1)
        clean_repeated = clean.repeat(repeats, 1)

        l_bin = binarization_loss(clean_latent)
        l_attr, final_state = attractor_loss(
            self.attractor, cue_latent, target_latent, self.train_steps, self.train_dt
        )
        l_rec = reconstruction_loss(self.decoder(clean_latent), clean)
        l_cue = CUE_RECONSTRUCTIONS.get(self.cue_reconstruction)(
            self, clean_repeated, cues, cue_latent, final_state
        )
        loss = weights.scale * (
            weights.binarization * l_bin + l_attr + self.reconstruction_weight * (l_rec + l_cue)
        )
        parts = {
            "binarization": l_bin.detach(),
            "attractor": l_attr.detach(),
            "reconstruction": l_rec.detach(),
            "cue_reconstruction": l_cue.detach(),
            "binarization_weight": torch.tensor(weights.binarization),
            "loss_scale": torch.tensor(weights.scale),
        }
        return loss, parts

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, latent_dim={self.latent_dim}, "
            f"hidden_dim={self.hidden_dim}"
        )


# --------------------------------------------------------------------------------------------
# Training loop (pure PyTorch; the Lightning task tasks.lshn.LSHNTask does the same per step)
# --------------------------------------------------------------------------------------------


def fit(
    model: LSHN,
    clean: Tensor,
    steps: int,
    *,
    image_shape: tuple[int, ...] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    start_step: int = 0,
    total_steps: int | None = None,
    callback: Callable[[int, Tensor, dict[str, Tensor]], None] | None = None,
) -> torch.optim.Optimizer:
    """The official training loop: full batch of all stored images, fresh cues every step.

    Each step: (Hebbian attractor: refresh W_hh from the clean latents), draw
    :func:`training_cues`, one optimizer step on :meth:`LSHN.training_loss`, symmetrise W_hh.

    Args:
        model: the LSHN to train (in place).
        clean: the P stored images (P, D) in [-1, 1].
        steps: optimizer steps to take now.
        image_shape: (C, H, W) for the half mask (``None``: plain vectors).
        optimizer: default :func:`make_optimizer` (AdamW lr 1e-4, betas (0.9, 0.95), wd 1e-2);
            pass the returned one back to continue training.
        generator: source of the cue noise.
        start_step: global step of the first step taken (the schedule's position).
        total_steps: the schedule's total (default ``start_step + steps``).
        callback: called as ``callback(step, loss, parts)`` after every step.

    Returns:
        The optimizer (its state lets a later call continue where this one stopped).
    """
    check_int(steps, "steps", minimum=0)
    check_int(start_step, "start_step", minimum=0)
    _check_batch(clean, model.input_dim, "clean")
    total = start_step + steps if total_steps is None else total_steps
    check_int(total, "total_steps")
    optimizer = make_optimizer(model) if optimizer is None else optimizer
    model.train()
    for step in range(start_step, start_step + steps):
        model.prepare_attractor_(clean)
        cues = training_cues(clean, image_shape, generator)
        loss, parts = model.training_loss(clean, cues, step, total)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"LSHN loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.symmetrize_()
        if callback is not None:
            callback(step, loss.detach(), parts)
    model.eval()
    return optimizer


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def fraction_correctly_retrieved(
    prediction: Tensor, target: Tensor, threshold: float = 50.0, reduction: str = "mean"
) -> Tensor:
    """UHN criterion for images in [-1, 1]: summed squared error in [0, 1] pixel units <= threshold.

    The model's images live in [-1, 1]; they are mapped to [0, 1] (official evaluation:
    ``((pred - target) / 2) ** 2`` summed) and scored by
    :func:`ahop.objectives.fraction_correctly_retrieved`.

    Args:
        prediction, target: images (B, D) in [-1, 1].
        threshold: maximal summed squared error per image.
        reduction: ``"mean"`` (fraction, scalar) or ``"none"`` (per-image 0/1 floats, (B,)).
    """
    return unit_fraction_correctly_retrieved(
        scale_to_unit(prediction), scale_to_unit(target), threshold, reduction
    )


def latent_bit_accuracy(prediction: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Fraction of latent units whose sign matches: ``mean(1 - |sign(p) - sign(t)| / 2)``.

    A zero in either counts as half right (official evaluation). (B, N), (B, N) -> scalar or
    (B,) with ``reduction="none"``.
    """
    reduce = REDUCTIONS.get(reduction)
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(
            f"prediction and target must both have shape (batch, N), got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    acc = 1.0 - (torch.sign(prediction) - torch.sign(target)).abs() / 2.0
    return reduce(acc.mean(dim=-1))
