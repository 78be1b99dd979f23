"""Tests for the LSHN model (ahop.lshn)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ahop.lshn import (
    LSHN,
    OPTIMIZER_DEFAULTS,
    LatentAttractor,
    attractor_loss,
    binarization_loss,
    fit,
    fraction_correctly_retrieved,
    half_mask,
    latent_bit_accuracy,
    loss_weights,
    make_optimizer,
    pixel_noise,
    reconstruction_loss,
    scale_to_pm1,
    scale_to_unit,
    training_cues,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_patterns(p: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (p, n), generator=g).float() * 2 - 1


def _flip(z: torch.Tensor, fraction: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    flips = torch.rand(z.shape, generator=g) < fraction
    return torch.where(flips, -z, z)


def _hebbian_attractor(patterns: torch.Tensor) -> LatentAttractor:
    att = LatentAttractor(patterns.shape[1], attractor="hebbian")
    att.store_hebbian(patterns)
    with torch.no_grad():
        att.weight_ih.zero_()  # isolate the recurrent dynamics
    return att


# ------------------------------------------------------------------------- shapes, init


def test_shapes_and_ranges():
    torch.manual_seed(0)
    model = LSHN(64, 32)
    x = torch.rand(5, 64) * 2 - 1
    z = model.encode(x)
    assert z.shape == (5, 32) and z.abs().max() < 1
    assert model.decode(z).shape == (5, 64)
    traj = model.unroll(z, 3, 0.5, return_trajectory=True)
    assert traj.shape == (4, 5, 32)
    assert torch.equal(traj[0], z)  # v0 = cue latent
    assert model.unroll(z, 3, 0.5).shape == (5, 32)
    out = model.retrieve(x, max_steps=20)
    assert out.images.shape == (5, 64) and out.images.abs().max() <= 1
    assert out.latents.shape == out.states.shape == (5, 32)
    assert set(out.latents.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert out.steps.shape == (5,) and out.steps.dtype == torch.long
    assert torch.equal(model(x).latents, model.retrieve(x).latents)


@pytest.mark.parametrize(("d", "n"), [(784, 128), (64, 64), (3072, 1024)])
def test_hidden_size_formula(d, n):
    model = LSHN(d, n)
    h = int(math.sqrt(d * n))
    assert model.hidden_dim == h
    assert tuple(model.encoder[0].weight.shape) == (h, d)
    assert tuple(model.encoder[2].weight.shape) == (n, h)
    assert tuple(model.decoder[0].weight.shape) == (h, n)
    assert tuple(model.decoder[2].weight.shape) == (d, h)
    assert LSHN(d, n, hidden_dim=7).encoder[0].out_features == 7


def test_image_scaling_round_trip():
    x = torch.rand(3, 10)
    assert scale_to_pm1(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    torch.testing.assert_close(scale_to_unit(scale_to_pm1(x)), x)


def test_clamp_keeps_state_in_box():
    torch.manual_seed(0)
    att = LatentAttractor(16)
    with torch.no_grad():
        att.weight_hh.copy_(torch.randn(16, 16) * 5)
        att.weight_ih.copy_(torch.randn(16, 16) * 5)
    traj = att.unroll(torch.rand(8, 16) * 2 - 1, 10, dt=3.0, return_trajectory=True)
    assert traj.abs().max() <= 1.0
    assert (traj[-1].abs() == 1.0).float().mean() > 0.5  # the clamp is actually active


def test_hidden_weights_start_at_zero_and_stay_symmetric():
    torch.manual_seed(0)
    model = LSHN(32, 16)
    assert torch.count_nonzero(model.attractor.weight_hh) == 0
    assert model.attractor.weight_hh.requires_grad
    opt = make_optimizer(model, lr=1e-2)
    clean = torch.rand(6, 32) * 2 - 1
    cues = clean.clone()
    cues[:, 16:] = 0
    loss, _ = model.training_loss(clean, cues, 0, 10)
    loss.backward()
    opt.step()
    w = model.attractor.weight_hh
    assert torch.count_nonzero(w) > 0
    assert not torch.allclose(w, w.t())  # the optimizer step breaks symmetry ...
    model.symmetrize_()
    assert torch.count_nonzero(w) > 0
    torch.testing.assert_close(w, w.t(), rtol=0, atol=0)  # ... and symmetrize_ restores it


def test_optimizer_defaults():
    model = LSHN(8, 4, attractor="hebbian")
    opt = make_optimizer(model)
    group = opt.param_groups[0]
    assert group["lr"] == OPTIMIZER_DEFAULTS["lr"] == 1e-4
    assert group["betas"] == (0.9, 0.95) and group["weight_decay"] == 1e-2
    params = {id(p) for p in group["params"]}
    assert id(model.attractor.weight_ih) in params
    assert id(model.attractor.weight_hh) not in params  # Hebbian W_hh is a buffer


def test_learned_and_hebbian_state_dicts_are_interchangeable():
    learned = LSHN(12, 6)
    hebbian = LSHN(12, 6, attractor="hebbian")
    assert "attractor.weight_hh" in dict(learned.named_parameters())
    assert "attractor.weight_hh" in dict(hebbian.named_buffers())
    hebbian.load_state_dict(learned.state_dict())
    torch.testing.assert_close(hebbian.encode(torch.ones(1, 12)), learned.encode(torch.ones(1, 12)))


# ------------------------------------------------------------------------- dynamics


def test_hebbian_attractor_recovers_stored_patterns():
    patterns = _random_patterns(5, 128)
    att = _hebbian_attractor(patterns)
    w = att.weight_hh
    torch.testing.assert_close(w, patterns.t() @ patterns / (5 * 128))
    cues = _flip(patterns, 0.15)
    assert (torch.sign(cues) != patterns).any()
    state, steps = att.settle(cues, dt=0.1, max_steps=1000)
    assert torch.equal(torch.sign(state), patterns)
    assert (steps < 1000).all()


def test_store_hebbian_options():
    z = torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.3, -0.7]])
    att = LatentAttractor(3, attractor="hebbian")
    att.store_hebbian(z, binarize=True, zero_diagonal=True)
    s = torch.sign(z)
    expected = s.t() @ s / 6
    expected.fill_diagonal_(0)
    torch.testing.assert_close(att.weight_hh, expected)
    learned = LatentAttractor(3)
    learned.store_hebbian(z)  # replaces trained weights (official ablation)
    torch.testing.assert_close(learned.weight_hh.detach(), z.t() @ z / 6)


def test_settle_stops_early_per_sample():
    patterns = _random_patterns(4, 96, seed=3)
    att = _hebbian_attractor(patterns)
    cues = torch.cat([patterns[:1], _flip(patterns, 0.05, seed=4), _flip(patterns, 0.2, seed=5)])
    state, steps = att.settle(cues, dt=0.1, max_steps=500, tol=1e-5)
    assert (steps < 500).all()
    assert steps.unique().numel() > 1  # samples stop at different times
    for i in range(cues.shape[0]):  # batched early stop == running each sample alone
        s_i, n_i = att.settle(cues[i : i + 1], dt=0.1, max_steps=500, tol=1e-5)
        assert n_i.item() == steps[i].item()
        torch.testing.assert_close(s_i[0], state[i])
    _, steps_strict = att.settle(cues, dt=0.1, max_steps=30, tol=0.0)
    assert (steps_strict == 30).all()  # tol=0 never counts as converged


def test_retrieve_stops_at_once_when_nothing_moves():
    model = LSHN(20, 8)
    with torch.no_grad():
        model.attractor.weight_ih.zero_()
    out = model.retrieve(torch.rand(4, 20) * 2 - 1, max_steps=1000)
    assert out.steps.tolist() == [1, 1, 1, 1]


def test_energy_never_increases_for_symmetric_weights_and_small_dt():
    torch.manual_seed(0)
    att = LatentAttractor(32)
    with torch.no_grad():
        a = torch.randn(32, 32)
        att.weight_hh.copy_(a + a.t())
    att.symmetrize_()
    dt = 1.5 / torch.linalg.matrix_norm(att.weight_hh.detach(), ord=2).item()
    cue = torch.rand(6, 32) * 2 - 1
    traj = att.unroll(cue, 60, dt, return_trajectory=True).detach()
    energies = torch.stack([att.energy(v, cue) for v in traj]).detach()
    assert (energies[1:] - energies[:-1] <= 1e-4).all()
    assert energies[-1].sum() < energies[0].sum() - 1.0


# ------------------------------------------------------------------------- losses


def test_binarization_loss_value():
    z = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    torch.testing.assert_close(binarization_loss(z), torch.tensor(-(0.625 + 0.5)))


def test_reconstruction_loss_value():
    pred, target = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    torch.testing.assert_close(reconstruction_loss(pred, target), torch.tensor(0.75 + 1.25))


def test_attractor_loss_matches_truncated_bptt_reference():
    torch.manual_seed(0)
    att = LatentAttractor(8)
    with torch.no_grad():
        att.weight_hh.copy_(torch.randn(8, 8) * 0.3)
    cue = (torch.rand(3, 8) * 2 - 1).requires_grad_()
    target = (torch.rand(3, 8) * 2 - 1).requires_grad_()
    loss, final = attractor_loss(att, cue, target, steps=4, dt=1.0)
    loss.backward()
    got = [t.grad.clone() for t in (cue, target, att.weight_ih, att.weight_hh)]
    for t in (cue, target, att.weight_ih, att.weight_hh):
        t.grad = None

    # Reference: the official cell, state detached before every step.
    v, ref = cue.clamp(-1, 1), 0.0
    for _ in range(4):
        v = v.detach()
        v = torch.clamp(v + cue @ att.weight_ih.t() + v @ att.weight_hh.t(), -1, 1)
        ref = ref + torch.nn.functional.mse_loss(v, target) + torch.nn.functional.l1_loss(v, target)
    ref = ref / 4
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(final, v)
    for g, t in zip(got, (cue, target, att.weight_ih, att.weight_hh)):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, t.grad)


def test_official_schedule():
    w = [loss_weights(s, 20000) for s in (0, 498, 499, 999, 2499, 19999)]
    assert [x.binarization for x in w] == [1.0, 1.0, 2.0, 4.0, 20.0, 20.0]
    assert w[0].scale == 1.0
    assert math.isclose(w[2].scale, 0.9) and math.isclose(w[4].scale, 0.9**5)


def test_linear_schedule_rises_to_max():
    w = [
        loss_weights(s, 100, "linear", binarization_max=4.0, warmup_fraction=0.5).binarization
        for s in range(100)
    ]
    assert w[0] < 0.2 and w[49] == 4.0 and w[-1] == 4.0
    assert all(b >= a for a, b in itertools.pairwise(w))
    assert loss_weights(3, 10, "constant", binarization_max=2.0) == (2.0, 1.0)


def test_training_loss_parts_and_stacked_cues():
    torch.manual_seed(0)
    model = LSHN(16, 8, schedule_period=5)
    clean = torch.rand(4, 16) * 2 - 1
    cues = torch.cat([clean * 0.5, clean.flip(1)])
    loss, parts = model.training_loss(clean, cues, 9, 100)
    assert loss.ndim == 0 and torch.isfinite(loss)
    expected_keys = {
        "binarization",
        "attractor",
        "reconstruction",
        "cue_reconstruction",
        "binarization_weight",
        "loss_scale",
    }
    assert set(parts) == expected_keys
    assert parts["binarization_weight"].item() == 4.0
    total = parts["loss_scale"] * (
        parts["binarization_weight"] * parts["binarization"]
        + parts["attractor"]
        + 5.0 * (parts["reconstruction"] + parts["cue_reconstruction"])
    )
    torch.testing.assert_close(loss.detach(), total)


def test_retrieve_variant_of_cue_reconstruction_trains_the_attractor_through_the_decoder():
    torch.manual_seed(0)
    model = LSHN(16, 8, cue_reconstruction="retrieve", reconstruction_weight=1.0)
    clean = torch.rand(4, 16) * 2 - 1
    _, parts = model.training_loss(clean, clean * 0.3, 0, 10)
    final = model.unroll(model.encode(clean * 0.3), 11, 1.0)
    expected = reconstruction_loss(model.decode(final), clean)
    torch.testing.assert_close(parts["cue_reconstruction"], expected.detach())


# ------------------------------------------------------------------------- training


def _digits(p: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().data[:p], dtype=torch.float32) / 16.0  # (P, 64) in [0, 1]


def test_tiny_training_run_learns_to_complete_half_masked_digits():
    torch.manual_seed(0)
    unit = _digits(10)
    clean = scale_to_pm1(unit)
    masked = clean.clone()
    masked[:, 32:] = 0.0  # bottom half -> grey, as the official half mask
    model = LSHN(64, 64, schedule_period=50)
    opt = make_optimizer(model, lr=3e-3)

    def evaluate() -> tuple[float, float, float, float]:
        with torch.no_grad():
            target, cue = model.encode(clean), model.encode(masked)
            l_attr, _ = attractor_loss(model.attractor, cue, target)
        out = model.retrieve(masked)
        # 64-pixel images: threshold 1.0 (the UHN 50 is meant for 784+ pixels).
        frac = fraction_correctly_retrieved(out.images, clean, threshold=1.0)
        bits = latent_bit_accuracy(out.latents, target).item()
        return l_attr.item(), frac.item(), bits, latent_bit_accuracy(cue, target).item()

    attr0, frac0, bits0, _ = evaluate()
    for step in range(150):
        loss, _ = model.training_loss(clean, masked, step, 150)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.symmetrize_()
    attr1, frac1, bits1, cue_bits1 = evaluate()
    assert attr1 < 0.1 * attr0
    assert frac0 <= 0.1 and frac1 >= 0.9
    assert bits1 >= 0.95 and bits1 > bits0 + 0.3
    assert bits1 > cue_bits1 + 0.1  # the attractor corrects bits the encoder got wrong
    w = model.attractor.weight_hh
    assert torch.count_nonzero(w) > 0
    torch.testing.assert_close(w, w.t(), rtol=0, atol=0)


# ------------------------------------------------------------------------- metrics


def test_fraction_correctly_retrieved():
    target = -torch.ones(3, 100)
    pred = target.clone()
    pred[1, :10] = 1.0  # 10 pixels off by 1 in [0, 1] units -> error 10
    pred[2, :60] = 1.0  # error 60 > 50
    per = fraction_correctly_retrieved(pred, target, reduction="none")
    assert per.tolist() == [1.0, 1.0, 0.0]
    assert fraction_correctly_retrieved(pred, target).item() == pytest.approx(2 / 3)
    assert fraction_correctly_retrieved(pred, target, threshold=5.0).item() == pytest.approx(1 / 3)


def test_latent_bit_accuracy():
    pred = torch.tensor([[1.0, -1.0, 1.0, 0.0], [0.3, 0.2, -0.1, -0.9]])
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0]])
    per = latent_bit_accuracy(pred, target, reduction="none")
    torch.testing.assert_close(per, torch.tensor([2.5 / 4, 3 / 4]))
    torch.testing.assert_close(latent_bit_accuracy(pred, target), per.mean())


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LSHN(0, 8), "input_dim"),
        (lambda: LSHN(8, 0), "latent_dim"),
        (lambda: LSHN(8, 4, hidden_dim=0), "hidden_dim"),
        (lambda: LSHN(8, 4, attractor="dense"), "allowed values: hebbian, learned"),
        (lambda: LSHN(8, 4, schedule="cosine"), "schedule"),
        (lambda: LSHN(8, 4, cue_reconstruction="x"), "cue_reconstruction"),
        (lambda: LSHN(8, 4, train_dt=0.0), "dt"),
        (lambda: LSHN(8, 4, train_steps=0), "train_steps"),
        (lambda: LSHN(8, 4, schedule_period=0), "period"),
        (lambda: LatentAttractor(-1), "latent_dim"),
        (lambda: loss_weights(-1, 10), "step"),
        (lambda: loss_weights(0, 0), "total_steps"),
        (lambda: loss_weights(0, 10, "linear", warmup_fraction=2.0), "warmup_fraction"),
    ],
)
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.encode(torch.zeros(2, 7)), r"shape \(batch, 8\)"),
        (lambda m: m.encode(torch.zeros(8)), r"shape \(batch, 8\)"),
        (lambda m: m.encode(torch.zeros(2, 1, 8)), r"shape \(batch, 8\)"),
        (lambda m: m.encode(torch.zeros(2, 8, dtype=torch.long)), "floating"),
        (lambda m: m.encode(torch.full((2, 8), float("nan"))), "NaN"),
        (lambda m: m.decode(torch.zeros(2, 8)), r"shape \(batch, 4\)"),
        (lambda m: m.unroll(torch.zeros(2, 4), 3, 0.0), "dt"),
        (lambda m: m.unroll(torch.zeros(2, 4), 3, -1.0), "dt"),
        (lambda m: m.unroll(torch.zeros(2, 4), -1, 0.1), "steps"),
        (lambda m: m.unroll(torch.zeros(2, 4), 2, 0.1, v0=torch.zeros(3, 4)), "v0"),
        (lambda m: m.retrieve(torch.zeros(2, 8), max_steps=0), "max_steps"),
        (lambda m: m.retrieve(torch.zeros(2, 8), tol=-1.0), "tol"),
        (lambda m: m.retrieve(torch.zeros(2, 8), dt=0), "dt"),
        (lambda m: m.training_loss(torch.zeros(3, 8), torch.zeros(4, 8), 0, 10), "multiple"),
        (lambda m: m.training_loss(torch.zeros(3, 8), torch.zeros(3, 5), 0, 10), "cues"),
        (lambda m: m.store_hebbian(torch.zeros(3, 5)), "clean_latents"),
        (lambda m: m.energy(torch.zeros(2, 4), torch.zeros(2, 3)), "cue_latent"),
        (lambda m: attractor_loss(m.attractor, torch.zeros(2, 4), torch.zeros(3, 4)), "target"),
        (lambda m: fraction_correctly_retrieved(torch.zeros(2, 3), torch.zeros(2, 4)), "shape"),
        (lambda m: latent_bit_accuracy(torch.zeros(2, 3), torch.zeros(2, 3), "sum"), "reduction"),
    ],
)
def test_call_errors(call, match):
    model = LSHN(8, 4)
    with pytest.raises(ValueError, match=match):
        call(model)


# ------------------------------------------------------------------------- cues and fit


def test_half_mask_keeps_the_first_half_in_hwc_order():
    x = torch.ones(2, 3 * 4 * 2)  # (C, H, W) = (3, 4, 2), flattened C-major
    out = half_mask(x, (3, 4, 2)).view(2, 3, 4, 2)
    # official: first D/2 entries of the HWC-flattened image = the top 2 of 4 rows, all channels
    assert out[:, :, :2].eq(1).all() and out[:, :, 2:].eq(0).all()
    gray = half_mask(torch.ones(1, 64), (1, 8, 8))
    assert gray[0, :32].eq(1).all() and gray[0, 32:].eq(0).all()  # 0 = grey in [-1, 1]
    plain = half_mask(torch.ones(1, 5))  # plain vectors: first floor(D/2) kept
    assert plain.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]]


def test_pixel_noise_matches_the_official_formula():
    x = scale_to_pm1(torch.rand(3, 20, generator=torch.Generator().manual_seed(0)))
    out = pixel_noise(x, 0.3, torch.Generator().manual_seed(1))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    expected = torch.clamp((scale_to_unit(x) + 0.3 * eps).abs(), 0, 1) * 2 - 1
    torch.testing.assert_close(out, expected)
    assert pixel_noise(x, 0.0).equal(x)
    sigma = torch.zeros(3, 20)
    sigma[0] = 0.5  # per-pixel sigma: only row 0 changes
    out = pixel_noise(x, sigma, torch.Generator().manual_seed(2))
    assert not out[0].equal(x[0]) and out[1:].equal(x[1:])


def test_training_cues_layout():
    clean = scale_to_pm1(_digits(5))
    cues = training_cues(clean, (1, 8, 8), torch.Generator().manual_seed(0))
    assert cues.shape == (10, 64)
    assert cues[:5].equal(half_mask(clean, (1, 8, 8)))
    assert cues.min() >= -1 and cues.max() <= 1 and not cues[5:].equal(clean)


def test_fit_continues_and_refreshes_hebbian_weights():
    torch.manual_seed(0)
    clean = scale_to_pm1(_digits(6))
    model = LSHN(64, 16)
    losses = []
    opt = fit(model, clean, 3, image_shape=(1, 8, 8), callback=lambda s, loss, p: losses.append(s))
    fit(model, clean, 2, image_shape=(1, 8, 8), optimizer=opt, start_step=3)
    assert losses == [0, 1, 2] and opt.state_dict()["state"][0]["step"] == 5
    w = model.attractor.weight_hh
    torch.testing.assert_close(w, w.t(), rtol=0, atol=0)

    hebb = LSHN(64, 16, attractor="hebbian")
    fit(hebb, clean, 2, image_shape=(1, 8, 8))
    hebb.prepare_attractor_(clean)
    z = hebb.encode(clean).detach()
    torch.testing.assert_close(hebb.attractor.weight_hh, z.t() @ z / (6 * 16))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: half_mask(torch.zeros(2, 10), (1, 3, 3)), "image_shape"),
        (lambda: half_mask(torch.zeros(10)), r"\(batch, D\)"),
        (lambda: pixel_noise(torch.zeros(2, 4), -0.1), "sigma"),
        (lambda: pixel_noise(torch.zeros(2, 4), torch.tensor(-1.0)), "sigma"),
        (lambda: fit(LSHN(8, 4), torch.zeros(2, 8), -1), "steps"),
        (lambda: fit(LSHN(8, 4), torch.zeros(2, 7), 1), "clean"),
    ],
)
def test_cue_and_fit_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
