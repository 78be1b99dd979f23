"""Tests for ahop.mil_models and tasks.mil (the evaluation command: tests/cli/test_cv.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchmetrics.classification import BinaryAUROC

from ahop.mil_models import MIL_NETWORKS, AttentionMILNetwork, HopfieldMILNetwork, MeanMILNetwork
from datamodules.mil import MILDataModule, make_synthetic_bags
from tasks.links import data_sizes
from tasks.mil import MILClassifier

ROOT = Path(__file__).resolve().parents[2]
SIMILARITIES = ["dot", "manhattan", "adaptive"]


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_padding_does_not_change_a_bags_output(similarity: str) -> None:
    torch.manual_seed(0)
    net = HopfieldMILNetwork(5, embedding_dim=16, num_heads=2, quantity=2, similarity=similarity)
    net.eval()
    bag = torch.randn(1, 3, 5)
    with torch.no_grad():
        alone = net(bag)  # no mask at all (the fused attention path for dot)
        for extra in (1, 6):
            junk = 100 * torch.randn(1, extra, 5)  # padding content must not matter
            padded = torch.cat([bag, junk], dim=1)
            mask = torch.zeros(1, 3 + extra, dtype=torch.bool)
            mask[:, 3:] = True
            torch.testing.assert_close(net(padded, mask), alone, rtol=0, atol=1e-5)
        # and inside a batch with a longer bag, as a DataLoader would build it
        other = torch.randn(1, 9, 5)
        batch = torch.cat([torch.cat([bag, torch.zeros(1, 6, 5)], dim=1), other])
        mask = torch.zeros(2, 9, dtype=torch.bool)
        mask[0, 3:] = True
        logits = net(batch, mask)
    assert logits.shape == (2,)
    torch.testing.assert_close(logits[:1], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1:], net(other), rtol=0, atol=1e-5)


def test_padding_gets_no_gradient() -> None:
    torch.manual_seed(0)
    net = HopfieldMILNetwork(4, embedding_dim=8, num_heads=2, similarity="adaptive")
    instances = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.tensor([[False] * 5, [False, False, True, True, True]])
    net(instances, mask).sum().backward()
    assert torch.isfinite(instances.grad).all()
    assert (instances.grad[1, 2:] == 0).all() and (instances.grad[1, :2] != 0).any()


def test_network_rejects_bad_inputs() -> None:
    net = HopfieldMILNetwork(4, embedding_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="all padding"):
        net(torch.randn(2, 3, 4), torch.tensor([[False, True, True], [True, True, True]]))
    with pytest.raises(ValueError, match="mask must be"):
        net(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="instances must be"):
        net(torch.randn(3, 4))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        HopfieldMILNetwork(4, embedding_dim=10, num_heads=4)


def test_instance_dropout_only_in_training_and_keeps_an_instance() -> None:
    torch.manual_seed(0)
    net = HopfieldMILNetwork(4, embedding_dim=8, num_heads=2, instance_dropout=0.5)
    plain = HopfieldMILNetwork(4, embedding_dim=8, num_heads=2)
    plain.load_state_dict(net.state_dict())
    instances = torch.randn(64, 3, 4)
    mask = torch.zeros(64, 3, dtype=torch.bool)
    mask[:, 2] = True  # bags of 2 real instances + 1 padding
    net.eval(), plain.eval()
    torch.testing.assert_close(net(instances, mask), plain(instances, mask))
    net.train()
    dropped = net._drop_instances(instances, mask)
    assert (dropped | ~mask)[:, 2].all() and dropped[:, 2].all()  # padding stays padding
    assert not dropped.all(dim=1).any()  # no bag loses every instance
    assert dropped[:, :2].any()  # some real instances were left out
    leaf = instances.clone().requires_grad_(True)
    torch.manual_seed(1)
    net(leaf, mask).sum().backward()
    assert (leaf.grad[:, 2] == 0).all()
    with pytest.raises(ValueError, match="instance_dropout"):
        HopfieldMILNetwork(4, embedding_dim=8, num_heads=2, instance_dropout=1.0)


def test_task_fast_dev_run_and_probabilities(tmp_path: Path, make_trainer) -> None:
    datamodule = MILDataModule(dataset="synthetic", data_dir=str(tmp_path), batch_size=4)
    task = MILClassifier(
        **data_sizes(datamodule),
        network={"embedding_dim": 16, "num_heads": 2, "similarity": "adaptive"},
    )
    assert (task.monitor, task.monitor_mode) == ("val/loss", "min")
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(task, datamodule=datamodule)
    assert task.hparams.num_features == 16
    (metrics,) = trainer.test(task, datamodule=datamodule, verbose=False)
    assert {"test/loss", "test/acc", "test/auroc", "test/f1"} <= set(metrics)
    (probs, *_) = trainer.predict(task, datamodule=datamodule)
    assert probs.shape == (4,) and ((probs >= 0) & (probs <= 1)).all()
    trainer.save_checkpoint(tmp_path / "task.ckpt")
    loaded = MILClassifier.load_from_checkpoint(tmp_path / "task.ckpt").eval()
    instances, mask = torch.randn(2, 5, 16), torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(instances, mask), task.eval()(instances, mask))


def test_task_learns_synthetic_bags() -> None:
    """The task's loss trains the network: bags of an unseen seed are ranked well afterwards."""
    torch.manual_seed(0)
    train, test = make_synthetic_bags(seed=0), make_synthetic_bags(seed=1)
    task = MILClassifier(
        num_features=16, network={"embedding_dim": 16, "num_heads": 2, "similarity": "adaptive"}
    )
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-2)
    batch = train.padded(range(len(train)))
    for _ in range(10):
        loss, _ = task.shared_step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    instances, mask, labels = test.padded(range(len(test)))
    with torch.no_grad():
        probs = task.eval().predict_step((instances, mask, labels), 0)
    assert BinaryAUROC()(probs, labels.long()) > 0.9


def test_pos_weight_validated_and_used() -> None:
    with pytest.raises(ValueError, match="pos_weight"):
        MILClassifier(num_features=3, pos_weight=0.0)
    task = MILClassifier(
        num_features=3, network={"embedding_dim": 8, "num_heads": 2}, pos_weight=3.0
    )
    assert float(task.criterion.pos_weight) == 3.0


def test_synthetic_bags_are_the_runner_default_without_files(tmp_path: Path) -> None:
    datamodule = MILDataModule(dataset="auto", data_dir=str(tmp_path))
    assert len(datamodule.load()) == len(make_synthetic_bags())


def test_weight_averaging_sees_the_network(tmp_path: Path, make_trainer) -> None:
    """EMAWeightAveraging builds its copy before the task's setup: configure_model builds first."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    datamodule = MILDataModule(dataset="synthetic", data_dir=str(tmp_path), batch_size=32)
    task = MILClassifier(**data_sizes(datamodule), network={"embedding_dim": 8, "num_heads": 2})
    ema = EMAWeightAveraging(decay=0.5)
    make_trainer(max_epochs=2, callbacks=[ema]).fit(task, datamodule=datamodule)
    averaged = dict(ema._average_model.module.named_parameters())
    assert averaged and set(averaged) == set(dict(task.named_parameters()))
    for name, param in task.named_parameters():  # the averaged weights are the final ones
        torch.testing.assert_close(param, averaged[name])


@pytest.mark.parametrize("name", list(MIL_NETWORKS))
def test_every_pooling_ignores_padding(name: str) -> None:
    torch.manual_seed(0)
    net = MIL_NETWORKS[name](5, embedding_dim=8, num_embedding_layers=1).eval()
    bag = torch.randn(1, 3, 5)
    padded = torch.cat([bag, 50 * torch.randn(1, 4, 5)], dim=1)
    mask = torch.tensor([[False] * 3 + [True] * 4])
    with torch.no_grad():
        torch.testing.assert_close(net(padded, mask), net(bag), rtol=0, atol=1e-5)


def test_max_pool_skip_adds_the_bags_maximum_and_ignores_padding() -> None:
    torch.manual_seed(0)
    net = HopfieldMILNetwork(5, embedding_dim=8, num_heads=2, max_pool_skip=True).eval()
    assert net.classifier[-1].in_features == 16  # retrieved (8) + maximum (8)
    bag = torch.randn(1, 3, 5)
    padded = torch.cat([bag, 50 * torch.randn(1, 4, 5)], dim=1)  # padding larger than any value
    mask = torch.tensor([[False] * 3 + [True] * 4])
    with torch.no_grad():
        embedded = net.embed(bag)
        pooled = net.pool(net.embed(padded), mask)
        torch.testing.assert_close(pooled[:, 8:], embedded.amax(dim=1))
        torch.testing.assert_close(pooled[:, :8], net.pool(embedded, None)[:, :8])
        torch.testing.assert_close(net(padded, mask), net(bag), rtol=0, atol=1e-5)


def test_pooled_linear_adds_a_linear_term_of_the_mean_and_max_inputs() -> None:
    torch.manual_seed(0)
    net = HopfieldMILNetwork(5, embedding_dim=8, num_heads=2, pooled_linear=True).eval()
    assert net.pooled_linear.in_features == 10  # mean (5) + maximum (5) of the raw features
    bag = torch.randn(1, 3, 5)
    padded = torch.cat([bag, 50 * torch.randn(1, 4, 5)], dim=1)
    mask = torch.tensor([[False] * 3 + [True] * 4])
    with torch.no_grad():
        linear = net.pooled_linear(torch.cat([bag.mean(dim=1), bag.amax(dim=1)], dim=-1))
        without = net.classifier(net.pool(net.embed(bag), None)).squeeze(-1)
        torch.testing.assert_close(net(bag), without + linear.squeeze(-1))
        torch.testing.assert_close(net(padded, mask), net(bag), rtol=0, atol=1e-5)
    assert HopfieldMILNetwork(5, embedding_dim=8, num_heads=2).pooled_linear is None


def test_mean_network_pools_by_the_mean_and_attention_weights_sum_to_one() -> None:
    torch.manual_seed(0)
    instances = torch.randn(2, 4, 3)
    mask = torch.tensor([[False, False, True, True], [False] * 4])
    mean = MeanMILNetwork(3, embedding_dim=6, num_embedding_layers=1).eval()
    embedded = mean.embed(instances)
    pooled = mean.pool(embedded, mask)
    torch.testing.assert_close(pooled[0], embedded[0, :2].mean(dim=0))
    attention = AttentionMILNetwork(3, embedding_dim=6, attention_dim=5).eval()
    weights = attention.attention_weights(attention.embed(instances), mask)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert (weights[0, 2:] == 0).all() and (weights[0, :2] > 0).all()


@pytest.mark.parametrize("network", ["attention", "mean"])
def test_task_builds_the_named_network_with_its_own_options(network: str) -> None:
    options = {"embedding_dim": 8} | ({"attention_dim": 6} if network == "attention" else {})
    task = MILClassifier(num_features=4, pooling=network, network=options)
    task.configure_models()
    assert isinstance(task.network, MIL_NETWORKS[network])
    assert task.network.embed[0].out_features == 8
    if network == "attention":
        assert task.network.attention_v.out_features == 6
    with pytest.raises(ValueError, match="unknown MIL pooling 'max'"):
        MILClassifier(num_features=4, pooling="max")
    # an option of another network is an error naming the allowed ones, not silently ignored
    with pytest.raises(ValueError, match=r"has no option.*similarity; allowed: embedding_dim"):
        MILClassifier(num_features=4, pooling=network, network={"similarity": "dot"})


def test_networks_reject_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_features must be an integer >= 1"):
        MeanMILNetwork(0)
    with pytest.raises(ValueError, match="attention_dim"):
        AttentionMILNetwork(3, attention_dim=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        HopfieldMILNetwork(3, embedding_dim=8, num_heads=2, dropout=1.0)


def test_deep_ensemble_trains_each_member_and_predicts_their_mean(tmp_path: Path) -> None:
    from ahop.ensemble import BinaryDeepEnsemble, mean_probability_logit

    torch.manual_seed(0)
    task = MILClassifier(
        num_features=16, network={"embedding_dim": 8, "num_heads": 2}, ensemble_size=3
    )
    assert isinstance(task.network, BinaryDeepEnsemble) and len(task.network.members) == 3
    first, second = (next(iter(m.parameters())) for m in task.network.members[:2])
    assert not torch.equal(first, second)  # independently initialised
    instances, mask, labels = make_synthetic_bags(seed=0).padded(range(12))
    task.train()
    loss, _ = task.shared_step((instances, mask, labels), "train")
    members = task.network.member_logits(instances, mask)  # dropout 0: the same forward
    want = torch.stack(
        [task.criterion(members[:, j], labels.float()) for j in range(3)]
    ).mean()  # the members' own losses, not the loss of their mean
    torch.testing.assert_close(loss, want)
    task.eval()
    with torch.no_grad():
        mean = torch.sigmoid(task.network.member_logits(instances, mask)).mean(-1)
        torch.testing.assert_close(task.predict_step((instances, mask), 0), mean)
    big = torch.tensor([[60.0, -60.0, 80.0]])  # stable far from 0
    torch.testing.assert_close(torch.sigmoid(mean_probability_logit(big)), torch.tensor([2 / 3]))
    with pytest.raises(ValueError, match="ensemble_size"):
        MILClassifier(num_features=4, ensemble_size=0)
