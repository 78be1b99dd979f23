import math

import pytest
import torch
import torch.nn.functional as F

from ahop.lshn import fraction_correctly_retrieved as pm1_fraction_correctly_retrieved
from ahop.objectives import (
    SCHEDULES,
    association_cross_entropy,
    fraction_correctly_retrieved,
    retrieval_accuracy,
    train_similarity,
)
from ahop.similarity import AdaptiveSimilarity, DotSimilarity, ManhattanSimilarity
from ahop.variants import build_variant


def test_association_cross_entropy_matches_manual():
    g = torch.Generator().manual_seed(0)
    memories, queries = torch.rand(5, 7, generator=g), torch.rand(3, 7, generator=g)
    sources = torch.tensor([0, 4, 2])
    loss = association_cross_entropy(ManhattanSimilarity(), memories, queries, sources, beta=2.0)
    distances = (queries[:, None] - memories[None]).abs().sum(-1)
    expected = F.cross_entropy(-2.0 * distances, sources)
    torch.testing.assert_close(loss, expected)


def test_association_cross_entropy_uniform_and_mask():
    memories, queries = torch.zeros(4, 3), torch.zeros(2, 3)
    sources = torch.tensor([1, 2])
    # equal scores: uniform softmax, loss log(N)
    loss = association_cross_entropy(DotSimilarity(), memories, queries, sources)
    assert loss.item() == pytest.approx(math.log(4))
    mask = torch.tensor([[True, False, False, True]])  # two memories left per query
    loss = association_cross_entropy(DotSimilarity(), memories, queries, sources, mask=mask)
    assert loss.item() == pytest.approx(math.log(2))


def test_association_cross_entropy_gradient_reaches_similarity():
    sim = AdaptiveSimilarity(6)
    memories, queries = torch.rand(4, 6), torch.rand(3, 6)
    association_cross_entropy(sim, memories, queries, torch.tensor([0, 1, 3])).backward()
    assert sim.weights.grad is not None and sim.weights.grad.abs().sum() > 0
    assert sim.betas.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sources": torch.tensor([0, 5])}, "index"),
        ({"sources": torch.tensor([0.0, 1.0])}, "torch.long"),
        ({"sources": torch.tensor([0, 1, 2])}, "one memory index per query"),
        ({"beta": 0.0}, "beta"),
        ({"mask": torch.tensor([[True, False, False, False, False]])}, "source memory"),
        ({"queries": torch.rand(2, 3, 4)}, r"\(B, d\)"),
    ],
)
def test_association_cross_entropy_errors(kwargs, match):
    args = {
        "similarity": DotSimilarity(),
        "memories": torch.rand(5, 4),
        "queries": torch.rand(2, 4),
        "sources": torch.tensor([0, 1]),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        association_cross_entropy(**args)


def test_retrieval_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert retrieval_accuracy(scores, torch.tensor([1, 0, 2, 2])).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        retrieval_accuracy(torch.rand(3), torch.tensor([0, 1, 2]))


def test_fraction_correctly_retrieved_unit_range():
    target = torch.zeros(3, 100)
    output = target.clone()
    output[1, :10] = 1.0  # error 10
    output[2, :60] = 1.0  # error 60 > 50
    assert fraction_correctly_retrieved(output, target, reduction="none").tolist() == [1, 1, 0]
    assert fraction_correctly_retrieved(output, target).item() == pytest.approx(2 / 3)
    assert fraction_correctly_retrieved(output, target, threshold=5.0).item() == pytest.approx(
        1 / 3
    )
    # the LSHN version for [-1, 1] images is the same criterion after rescaling
    pm1 = pm1_fraction_correctly_retrieved(output * 2 - 1, target * 2 - 1, reduction="none")
    assert pm1.tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="shape"):
        fraction_correctly_retrieved(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        fraction_correctly_retrieved(output, target, reduction="sum")


def _digits_problem(num_memories: int = 40):
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().data[:num_memories], dtype=torch.float32) / 16.0
    variant = build_variant("mixed", difficulty=0.8, image_shape=(8, 8))

    def make_queries(generator: torch.Generator):
        sources = torch.arange(num_memories).repeat(4)
        return variant(images[sources], generator), sources

    return images, make_queries


def test_train_similarity_lowers_loss_and_is_reproducible():
    memories, make_queries = _digits_problem()
    heldout_queries, heldout_sources = make_queries(torch.Generator().manual_seed(123))

    def heldout_loss(sim):
        with torch.no_grad():
            return association_cross_entropy(sim, memories, heldout_queries, heldout_sources).item()

    sim = AdaptiveSimilarity(64, beta_dis=0.1, beta_dot=0.1)
    before = heldout_loss(sim)
    losses = train_similarity(
        sim, memories, make_queries, steps=15, lr=0.05, batch_size=64, seed=0, progress=False
    )
    assert len(losses) == 15 and all(math.isfinite(v) for v in losses)
    assert heldout_loss(sim) < 0.8 * before

    again = AdaptiveSimilarity(64, beta_dis=0.1, beta_dot=0.1)
    train_similarity(
        again, memories, make_queries, steps=15, lr=0.05, batch_size=64, seed=0, progress=False
    )
    torch.testing.assert_close(again.weights, sim.weights)


def test_train_similarity_errors():
    memories, make_queries = _digits_problem(5)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_similarity(ManhattanSimilarity(), memories, make_queries, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_similarity(AdaptiveSimilarity(64), memories, make_queries, steps=-1, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train_similarity(
            AdaptiveSimilarity(64), memories, make_queries, steps=1, batch_size=0, progress=False
        )


def test_train_similarity_cosine_schedule_anneals_the_steps():
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.05)
    schedule = SCHEDULES.get("cosine")(optimizer, 6)
    rates = []
    for _ in range(6):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] < 0.05 and rates == sorted(rates, reverse=True) and rates[-1] < 1e-12
    memories, make_queries = _digits_problem()
    runs = {}
    for name in ("constant", "cosine"):
        sim = AdaptiveSimilarity(64, beta_dis=0.1, beta_dot=0.1)
        train_similarity(
            sim, memories, make_queries, steps=6, lr=0.05, seed=0, progress=False, schedule=name
        )
        runs[name] = sim.weights.detach()
    assert not torch.allclose(runs["constant"], runs["cosine"])
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        train_similarity(sim, memories, make_queries, steps=1, schedule="linear", progress=False)
