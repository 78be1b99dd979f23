"""Smoke test of benchmarks/retrieval.py: every experiment runs (--quick, offline digits) and its
numbers obey the facts each experiment rests on."""

from __future__ import annotations

import json

import pytest
import torch

import benchmarks.common as common
import benchmarks.retrieval as bench


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "OUT", out)
    try:
        yield bench.main(["all", "--dataset", "digits", "--quick", "--seeds", "2"]), out
    finally:
        patch.undo()


def test_every_experiment_writes_plot_and_json(results):
    runs, out = results
    assert set(runs) == set(bench.EXPERIMENTS)
    for name in bench.EXPERIMENTS:
        dataset = "random" if name == "classical" else "digits"
        tag = f"retrieval_{name}_{dataset}_quick"
        assert (out / f"{tag}.png").stat().st_size > 0
        payload = json.loads((out / f"{tag}.json").read_text())
        assert (
            payload["seeds"] == ([0] if name == "adaptive" else [0, 1])
            and payload["wall_seconds"] > 0
        )


def test_capacity_fractions(results):
    runs, _ = results
    per_query = runs["capacity"]["results"]
    for per_sim in per_query.values():
        for per_size in per_sim.values():
            for scores in per_size.values():
                assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    # two stored digits and mild noise: every distance similarity retrieves both
    noise = per_query[f"noise {bench.NOISE_SIGMA}"]
    assert noise["euclidean"][2] == noise["manhattan"][2] == [1.0, 1.0]


def test_separation_raw_identity_fails_normalised_ones_work(results):
    runs, _ = results
    masked = runs["separation"]["results"]["mask"]
    # raw dot-product weights are not normalised: the output is a huge sum of memories
    assert masked["identity"][2] == [0.0, 0.0]
    assert masked["max"][2] == [1.0, 1.0]


def test_adaptive_reports_fixed_trained_and_ablations(results):
    runs, _ = results
    table = runs["adaptive"]["accuracy"]
    hardest = table[max(table)]
    for label in [*bench.FIXED_SIMILARITIES, *bench.ABLATIONS]:
        assert 0.0 <= hardest[label] <= 1.0


def test_classical_capacity_shape(results):
    runs, _ = results
    curves = runs["classical"]["results"]["N=100, flip=0.0"]
    # far below 0.138 N every pattern is a fixed point; far above, most are not
    assert curves[0.05]["exact"] == [1.0, 1.0]
    assert max(curves[0.25]["exact"]) < 0.5


def test_paper_reports_every_method_ablations_and_the_time_ratio(results):
    runs, out = results
    paper = runs["paper"]
    assert set(paper["results"]) == {"synthetic", "digits"}
    for per_level in paper["results"].values():
        for per_method in per_level.values():
            assert set(per_method) == set(bench.PAPER_METHODS)
            for scores in per_method.values():
                assert len(scores) == 2
                assert all(0.0 <= s["acc"] <= 1.0 and s["error"] >= 0 for s in scores)
                assert all(s["beta"] in bench.PAPER_BETAS for s in scores)
    for group, per_level in paper["ablations"].items():
        assert per_level and all(
            set(v) == set(bench.PAPER_ABLATIONS[group]) for v in per_level.values()
        )
    assert all(ratio > 0 for ratio in paper["uhop_over_ahop_time"].values())
    assert (out / "retrieval_paper_digits_quick_partial.json").exists()


def test_correct_retrieval_is_the_nearest_stored_pattern():
    memories = torch.eye(3)
    sources = torch.tensor([0, 1, 2])
    weights = torch.tensor([[1.0, 0, 0], [0.2, 0.6, 0.2], [0.6, 0.0, 0.4]])
    correct, error = bench._correct_and_error(weights, memories, sources)
    assert correct == pytest.approx(2 / 3)  # the third output is nearest to memory 0
    assert error == pytest.approx(float((weights - memories).square().mean()))
