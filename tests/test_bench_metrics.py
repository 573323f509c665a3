"""The benchmark's ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from orchestrator.evals.bench.metrics import (
    dcg,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    unique,
)

LOG2_3 = math.log2(3)  # the discount at rank 2


def test_unique_keeps_first_occurrence_order() -> None:
    assert unique(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]
    assert unique([]) == []


def test_dcg_discounts_by_log2_of_rank_plus_one() -> None:
    assert dcg([1, 1, 1]) == pytest.approx(1 + 1 / LOG2_3 + 1 / 2)
    assert dcg([]) == 0


def test_ndcg_binary() -> None:
    # DCG = 1/log2(3) (b at rank 2); ideal = 1 + 1/log2(3) (two relevant ids).
    expected = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert ndcg_at_k(["a", "b", "c"], {"b", "d"}, 3) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b", "c"], {"b", "d"}, 3) == pytest.approx(0.386853, abs=1e-6)
    assert ndcg_at_k(["b", "d", "a"], {"b", "d"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "c"], {"b"}, 10) == 0.0


def test_ndcg_ideal_is_cut_at_k() -> None:
    # Two relevant ids but k=1: the ideal list holds one, so a relevant first hit is perfect.
    assert ndcg_at_k(["a", "x"], {"a", "b"}, 1) == pytest.approx(1.0)
    # The relevant id just past k counts for nothing.
    assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0


def test_ndcg_graded() -> None:
    # DCG = 1 + 2/log2(3); ideal order (b, a) = 2 + 1/log2(3).
    expected = (1 + 2 / LOG2_3) / (2 + 1 / LOG2_3)
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 2}, 2) == pytest.approx(expected)
    assert expected == pytest.approx(0.859719, abs=1e-6)
    # Grades of 0 or below are not relevant.
    assert ndcg_at_k(["a"], {"a": 0, "b": -1}, 5) == 0.0


def test_ndcg_without_relevant_ids_is_zero() -> None:
    assert ndcg_at_k(["a", "b"], set(), 10) == 0.0


def test_recall() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"b", "d", "e"}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, {"b", "d", "e"}, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, {"a"}, 100) == 1.0
    assert recall_at_k(ranked, set(), 5) == 0.0


def test_mrr() -> None:
    assert mrr_at_k(["a", "b", "c"], {"c", "z"}, 3) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "b", "c"], {"c"}, 2) == 0.0
    assert mrr_at_k(["c", "a"], {"a", "c"}, 10) == 1.0


def test_repeats_and_bad_k_are_errors() -> None:
    with pytest.raises(ValueError, match="repeat"):
        ndcg_at_k(["a", "a"], {"a"}, 10)
    with pytest.raises(ValueError, match="repeat"):
        recall_at_k(["a", "b", "a"], {"a"}, 3)
    # Repeats past k are not looked at.
    assert mrr_at_k(["a", "b", "a"], {"a"}, 2) == 1.0
    with pytest.raises(ValueError, match="at least 1"):
        mrr_at_k(["a"], {"a"}, 0)


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)  # position 0.95 * 3 = 2.85
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_memory_slope_is_mb_per_thousand_chunks() -> None:
    from orchestrator.evals.bench.retrieval.memory import slope_mb_per_1k

    marks = [(float(i), 500.0 + 2.0 * i, 1000 * i) for i in range(5)]  # +2 MB per 1k chunks
    assert slope_mb_per_1k(marks) == pytest.approx(2.0)
    assert slope_mb_per_1k([(0.0, 500.0, 0), (1.0, 500.0, 1000)]) == 0.0
    assert math.isnan(slope_mb_per_1k(marks[:1]))


def test_memory_verdict_counts_from_the_second_batch() -> None:
    from orchestrator.evals.bench.retrieval.memory import verdict

    # Model warm-up in the first batch (500 -> 700 MB), then flat with a spike at t=6.
    samples = [(0.0, 500.0), (1.0, 700.0), (2.0, 705.0), (4.0, 710.0), (6.0, 790.0),
               (8.0, 712.0)]
    marks = [(0.0, 500.0, 0), (2.0, 705.0, 256), (4.0, 710.0, 512), (6.0, 712.0, 768)]
    result = verdict(samples, marks)
    assert result["baseline_mb"] == 705.0 and result["rise_mb"] == 85.0
    assert result["rise_from_start_mb"] == 290.0
    assert result["second_half_growth_mb"] == 80.0  # halves split at t=5: 710 vs 790
    assert result["flat"] is False  # growth over the 50 MB limit
    steady = verdict([*samples[:4], (6.0, 715.0), (8.0, 712.0)], marks)
    assert steady["flat"] is True and steady["rise_mb"] == 10.0
