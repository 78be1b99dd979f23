"""TabM-mini members (ahop.ensemble) and the retrieval classifier's ``ensemble_size``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ahop.ensemble import MemberViews, mean_probability_logits, member_head, member_mean_loss
from ahop.tabular_retrieval import TabularRetrievalClassifier


def test_member_views_scale_each_member_by_its_own_signs() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    views = MemberViews(4, 8)
    out = views(x)
    assert out.shape == (5, 4, 8)
    signs = views.scaling.weight
    assert set(signs.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(out, x.unsqueeze(1) * signs)
    assert not torch.equal(out[:, 0], out[:, 1])  # the members see different inputs
    single = MemberViews(1, 8)
    assert single.scaling is None and list(single.parameters()) == []
    torch.testing.assert_close(single(x), x.unsqueeze(1))


def test_member_views_reject_a_bad_size() -> None:
    with pytest.raises(ValueError, match="ensemble_size"):
        MemberViews(0, 8)


def test_member_head_has_one_linear_layer_per_member() -> None:
    torch.manual_seed(0)
    head = member_head(6, 3, k=4)
    x = torch.randn(2, 4, 6)
    out = head(x)
    assert out.shape == (2, 4, 3)
    alone = head(x[:, :1].expand(-1, 4, -1))  # the same input to every member
    assert not torch.allclose(alone[:, 0], alone[:, 1])
    assert isinstance(member_head(6, 3, k=1)[-1], nn.Linear)


def test_mean_probability_logits_average_the_members_probabilities() -> None:
    torch.manual_seed(0)
    logits = torch.randn(7, 5, 3)
    combined = mean_probability_logits(logits)
    torch.testing.assert_close(combined.softmax(-1), logits.softmax(-1).mean(1))
    torch.testing.assert_close(mean_probability_logits(logits[:, :1]), logits[:, 0])


def test_member_mean_loss_is_the_mean_of_the_members_losses() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(6, 3, 4), torch.randint(0, 4, (6,))
    criterion = nn.CrossEntropyLoss()
    want = torch.stack([criterion(logits[:, j], target) for j in range(3)]).mean()
    torch.testing.assert_close(member_mean_loss(logits, target, criterion), want)
    # not the loss of the mean: the members are trained one by one
    assert not torch.isclose(want, criterion(mean_probability_logits(logits), target))


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(120, 5, generator=generator)
    return features, (features[:, 0] + features[:, 1] > 0).long()


def test_retrieval_members_combine_into_the_forward_logits() -> None:
    torch.manual_seed(0)
    features, labels = _rows()
    model = TabularRetrievalClassifier(5, 2, embedding_dim=16, context_size=8, ensemble_size=4)
    model.prepare(features, labels)
    model.eval()
    members = model.member_logits(features[:10])
    assert members.shape == (10, 4, 2)
    torch.testing.assert_close(model(features[:10]), mean_probability_logits(members))
    assert "ensemble_size=4" in repr(model)


def test_a_single_member_keeps_the_plain_predictor_state() -> None:
    names = set(TabularRetrievalClassifier(5, 2, embedding_dim=16).state_dict())
    assert {"head.2.weight", "head.2.bias", "predictor.0.1.weight"} <= names
    assert not any(name.startswith("members.") for name in names)


def test_members_learn_a_separable_rule() -> None:
    torch.manual_seed(0)
    features, labels = _rows()
    model = TabularRetrievalClassifier(5, 2, embedding_dim=16, context_size=8, ensemble_size=4)
    model.prepare(features, labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss()
    for _ in range(30):
        model.train()
        model.refresh_memory()
        loss = member_mean_loss(model.member_logits(features, labels), labels, criterion)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    accuracy = (model(features).argmax(-1) == labels).float().mean()
    assert accuracy > 0.9


def _retrieval(seed: int) -> TabularRetrievalClassifier:
    torch.manual_seed(seed)
    return TabularRetrievalClassifier(6, 3, embedding_dim=8, context_size=4)


def test_deep_ensemble_predicts_the_members_mean_probability() -> None:
    """Independently initialised members, each with its own memory and context; the ensemble's
    logits are the log of the members' mean probabilities, and training sees every member's."""
    from ahop.ensemble import TabularDeepEnsemble

    generator = torch.Generator().manual_seed(0)
    rows, labels = torch.randn(40, 6, generator=generator), torch.randint(0, 3, (40,))
    ensemble = TabularDeepEnsemble([_retrieval(1), _retrieval(2)])
    ensemble.prepare(rows, labels)
    assert ensemble.memory_rows == 40 and ensemble.fitted
    ensemble.eval()
    queries = torch.randn(5, 6, generator=generator)
    with torch.no_grad():
        probabilities = [member(queries).softmax(-1) for member in ensemble.members]
        torch.testing.assert_close(
            ensemble(queries).softmax(-1), (probabilities[0] + probabilities[1]) / 2
        )
        assert not torch.allclose(probabilities[0], probabilities[1])  # not copies
    ensemble.train()
    ensemble.refresh_memory()
    assert ensemble.refresh_log[0] == 2  # one refresh per member
    assert ensemble.member_logits(rows[:5], labels[:5]).shape == (5, 2, 3)
    assert len(ensemble.bake_memory()) == 2
    with pytest.raises(ValueError, match="at least 2 members"):
        TabularDeepEnsemble([_retrieval(1)])
