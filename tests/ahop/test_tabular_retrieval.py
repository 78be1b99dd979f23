"""Retrieval over the training rows: no row retrieves itself in training, the candidate stage with
m = N equals full retrieval, memory refresh modes, state dicts, errors."""

from __future__ import annotations

import pytest
import torch

from ahop.candidates import faiss_available
from ahop.functional import associate
from ahop.tabular_retrieval import (
    MEMORY_REFRESH,
    TabularRetrievalClassifier,
    pooled_relu_difference,
)


def toy(rows: int = 60, features: int = 4, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y.clamp_max(classes - 1)


def network(**kwargs) -> TabularRetrievalClassifier:
    torch.manual_seed(0)
    options = {"embedding_dim": 16, "dropout": 0.0, "context_dropout": 0.0, **kwargs}
    return TabularRetrievalClassifier(4, 3, **options)


def test_a_training_row_never_retrieves_itself() -> None:
    x, y = toy()
    x[10], y[10] = x[11], y[11]  # an exact duplicate pair: each may see the other copy, not both
    net = network(context_size=59)
    net.prepare(x, y)
    net.train()
    context = net.context(x, y)
    assert context.shape == (60, 59)
    hits = (context == torch.arange(60).unsqueeze(-1)).nonzero()[:, 0].tolist()
    assert set(hits) <= {10, 11}  # only a twin may see "itself": an identical copy of the other
    for row in (10, 11):  # each of the twins sees exactly one copy of its (features, label)
        assert ((context[row] == 10) | (context[row] == 11)).sum() == 1
    # a training row's output is what a memory without that row gives it
    net = network(context_size=20)
    net.prepare(x, y)
    net.train()
    out = net(x[:1], y[:1])
    net.prepare(x[1:], y[1:])
    torch.testing.assert_close(net(x[:1], y[:1]), out)
    # ... while in evaluation a row is a memory like any other: its nearest is itself
    net.prepare(x, y)
    net.eval()
    assert (net.context(x[:5]) == torch.arange(5).unsqueeze(-1)).any(-1).all()


def reference_logits(net, x, exclude):
    """Full retrieval over all N memories (no candidate stage), own rows masked."""
    keys = net.keys_of(net.encode(net.memory_features))
    state = net.encode(x)
    query = net.keys_of(state)
    mask = torch.zeros(len(x), net.memory_rows, dtype=torch.bool)
    if exclude is not None:
        mask[torch.arange(len(x)), exclude] = True
    weights = associate(
        query.unsqueeze(-2), keys, net.similarity, net.separation, mask.unsqueeze(-2)
    )
    weights = weights.squeeze(-2)  # (B, N)
    labels = net.label_embedding(net.memory_labels)  # (N, d)
    hidden = torch.relu(net.value_in(query).unsqueeze(1) - (keys @ net.value_in.weight.T))
    pooled = (weights.unsqueeze(1) @ hidden).squeeze(1)
    state = state + weights @ labels + net.value_out(pooled)
    for block in net.predictor:
        state = state + block(state)
    return net.head(state)


@pytest.mark.parametrize("similarity", ["euclidean", "dot", "adaptive"])
def test_candidate_stage_with_m_equal_n_is_full_retrieval(similarity: str) -> None:
    x, y = toy()
    net = network(context_size=60, similarity=similarity)
    net.prepare(x, y)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x[:7]), reference_logits(net, x[:7], None))
    net.train()  # m = N - 1 in training: every memory but the row itself
    with torch.no_grad():
        want = reference_logits(net, x[:7], torch.arange(7))
        torch.testing.assert_close(net(x[:7], y[:7]), want, rtol=1e-5, atol=1e-5)


def test_smaller_context_keeps_the_nearest_memories() -> None:
    x, y = toy(rows=200)
    net = network(context_size=8)
    net.prepare(x, y)
    net.eval()
    with torch.no_grad():
        context = net.context(x[:5])
        keys = net.keys_of(net.encode(x))
        want = torch.cdist(keys[:5], keys).topk(8, largest=False).indices
    assert torch.equal(context.sort(-1).values, want.sort(-1).values)


@pytest.mark.parametrize("refresh", MEMORY_REFRESH)
def test_every_memory_refresh_learns(refresh: str) -> None:
    x, y = toy(rows=120)
    net = network(context_size=16, memory_refresh=refresh, update_steps=2)
    net.prepare(x, y)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(12):
        net.train()
        net.refresh_memory()
        for batch in torch.randperm(120).split(40):
            loss = torch.nn.functional.cross_entropy(net(x[batch], y[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    x_new, y_new = toy(rows=100, seed=1)
    with torch.no_grad():
        accuracy = (net(x_new).argmax(-1) == y_new).float().mean()
    assert accuracy > 0.8, accuracy


def test_memory_gradients_follow_the_refresh_mode() -> None:
    # right after a refresh every mode computes the same outputs; the gradients differ only in
    # whether they also flow through the memory's encodings (all but "frozen")
    x, y = toy()
    outputs, grads = {}, {}
    for refresh in MEMORY_REFRESH:
        net = network(context_size=10, memory_refresh=refresh)
        net.prepare(x, y)
        net.train()
        net.refresh_memory()
        outputs[refresh] = net(x[:4], y[:4])
        outputs[refresh].sum().backward()
        grads[refresh] = net.embed.mix[0].weight.grad
    for refresh in MEMORY_REFRESH:
        torch.testing.assert_close(outputs[refresh], outputs["full"])
    for refresh in ("batch", "epoch"):
        torch.testing.assert_close(grads[refresh], grads["full"])
    assert not torch.allclose(grads["frozen"], grads["full"])


def test_evaluation_memory_follows_the_parameters() -> None:
    x, y = toy()
    net = network(context_size=10)
    net.prepare(x, y)
    net.eval()
    first = net(x[:3])
    assert net.memory_keys is not None
    with torch.no_grad():
        net.key.weight.mul_(2.0)  # in-place, as an optimizer step would
    second = net(x[:3])
    fresh = network(context_size=10)
    fresh.load_state_dict(net.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh(x[:3]), second)
    assert not torch.allclose(first, second)


def test_state_dict_carries_the_memory_of_any_size() -> None:
    x, y = toy(rows=77)
    net = network(context_size=10)
    net.prepare(x, y)
    empty = network(context_size=10)
    empty.load_state_dict(net.state_dict())
    assert empty.memory_rows == 77
    net.eval(), empty.eval()
    torch.testing.assert_close(empty(x[:4]), net(x[:4]))


def test_errors_name_what_to_change() -> None:
    x, y = toy()
    with pytest.raises(ValueError, match="context_size must be an integer >= 1, got 0"):
        network(context_size=0)
    with pytest.raises(ValueError, match="allowed: full, batch, epoch, frozen"):
        network(memory_refresh="sometimes")
    net = network(max_memory_rows=50)
    with pytest.raises(ValueError, match="more than max_memory_rows=50: raise max_memory_rows"):
        net.prepare(x, y)
    net = network()
    with pytest.raises(RuntimeError, match=r"memory is empty: call prepare"):
        net.eval()(x[:2])
    net.prepare(x, y)
    with pytest.raises(ValueError, match="training needs the batch's labels"):
        net.train()(x[:2])
    with pytest.raises(ValueError, match=r"integer classes in \[0, 3\)"):
        net.prepare(x, y + 3)
    with pytest.raises(ValueError, match=r"expected rows of shape \(batch, 4\)"):
        net.eval()(x[:, :3])
    with pytest.raises(ValueError, match="unknown similarity 'bogus'"):
        network(similarity="bogus")


def test_pooled_relu_difference_matches_autograd() -> None:
    torch.manual_seed(0)
    queries = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    table = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 9, (5, 4))
    weights = torch.rand(5, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(pooled_relu_difference, (queries, table, rows, weights))
    want = (weights.unsqueeze(1) @ torch.relu(queries.unsqueeze(1) - table[rows])).squeeze(1)
    torch.testing.assert_close(pooled_relu_difference(queries, table, rows, weights), want)


def _no_dropout_training_logits(net: TabularRetrievalClassifier, x: torch.Tensor) -> torch.Tensor:
    """What a training step computes for rows that are not in the memory (dropout off)."""
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():
        return net(x, torch.zeros(len(x), dtype=torch.long))


def test_frozen_evaluation_retrieves_from_the_memory_training_used() -> None:
    # the mid-size collapse: with the "frozen" refresh the query side trains for a whole epoch
    # against the memory encoded at the epoch's start; an evaluation that re-encodes the memory
    # with the end-of-epoch parameters scores a model that was never trained (on adult: -8
    # points). Evaluation must compute exactly what training computes.
    x, y = toy(rows=200)
    net = network(context_size=8, dropout=0.2, context_dropout=0.2)
    net.prepare(x, y)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-2)
    net.train()
    net.refresh_memory()
    for batch in torch.randperm(200).split(8):  # 25 steps after the refresh: parameters drift
        loss = torch.nn.functional.cross_entropy(net(x[batch], y[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert net.has_snapshot
    x_new, _ = toy(rows=50, seed=3)
    trained = _no_dropout_training_logits(net, x_new)
    net.eval()
    with torch.no_grad():
        evaluated = net(x_new)
        drift = (net.snapshot_keys - net._encode_memory()).norm() / net.snapshot_keys.norm()
    assert drift > 0.05  # the parameters did move: a re-encoded memory would differ
    torch.testing.assert_close(evaluated, trained)
    # the snapshot travels in the state dict: a loaded model evaluates the same
    loaded = network(context_size=8, dropout=0.2, context_dropout=0.2)
    loaded.load_state_dict(net.state_dict())
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_new), evaluated)
    # new training rows drop the snapshot (it encodes other rows)
    net.prepare(x[:100], y[:100])
    assert not net.has_snapshot


def test_other_refresh_modes_evaluate_with_fresh_encodings() -> None:
    x, y = toy()
    for refresh in ("full", "batch", "epoch"):
        net = network(context_size=10, memory_refresh=refresh)
        net.prepare(x, y)
        net.train()
        net.refresh_memory()
        assert not net.has_snapshot and net.snapshot_keys.shape[0] == 0


def test_refresh_log_counts_refreshes_and_seconds() -> None:
    x, y = toy()
    net = network(context_size=10)
    net.prepare(x, y)
    net.reset_refresh_log()
    net.refresh_memory()
    net.refresh_memory()
    assert net.refresh_log[0] == 2 and net.refresh_log[1] >= 0


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_ivf_search_from_the_threshold_keeps_training_and_evaluation_working() -> None:
    x, y = toy(rows=400)
    net = network(context_size=8, candidate_search="auto", ivf_min_memories=300)
    net.prepare(x, y)
    net.train()
    net.refresh_memory()
    context = net.context(x[:20], y[:20])
    assert net.candidate_index(net._epoch_keys).kind == "ivf"
    own = net.own_rows(x[:20], y[:20])
    assert not (context == own.unsqueeze(-1)).any()  # still never its own row
    net.eval()
    assert net(x[:5]).shape == (5, 3)
    small = network(context_size=8, ivf_min_memories=1000)
    small.prepare(x, y)
    small.eval()
    small(x[:2])
    assert small._index.kind == "exact"
