"""The leaderboard's statistics against bootstraps computed by hand.

Tiny matrices whose bootstrap distributions can be enumerated: with two seeds a resample
is one of (a, a), (a, b), (b, a), (b, b), so the distribution of the mean puts 1/4 on a,
1/2 on (a+b)/2 and 1/4 on b, and its 2.5th and 97.5th percentiles are a and b exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmark.reporting import statistics
from benchmark.reporting.leaderboard import build_leaderboard


def test_two_seeds_one_task_gives_the_two_values_as_the_interval():
    interval = statistics.mean_interval(np.array([[10.0], [20.0]]))
    assert (interval.value, interval.low, interval.high) == (15.0, 10.0, 20.0)


def test_the_bootstrap_is_stratified_by_task():
    """Task 1 seeds (10, 20), task 2 seeds (30, 30): resampling within each task, the mean of
    task means is (10+30)/2, (15+30)/2 or (20+30)/2, so the CI is [20, 25]. Pooling the four
    runs instead would draw (10, 10, 20, 20)-like resamples and reach below 20."""
    X = np.array([[10.0, 30.0], [20.0, 30.0]])
    interval = statistics.mean_interval(X)
    assert (interval.value, interval.low, interval.high) == (22.5, 20.0, 25.0)


def test_interval_matches_the_enumerated_bootstrap_distribution():
    """Three seeds: all 27 equally likely resamples enumerated by hand; scipy's 2000 draws
    (fixed seed) land on the same percentiles within Monte Carlo error."""
    values = np.array([0.0, 3.0, 9.0])
    exact = [np.mean(resample) for resample in itertools.product(values, repeat=3)]
    low, high = np.percentile(exact, [2.5, 97.5], method="inverted_cdf")  # the distribution's own quantiles
    interval = statistics.mean_interval(values[:, None])
    assert interval.value == 4.0
    assert interval.low == pytest.approx(low, abs=0.5) and interval.high == pytest.approx(high, abs=0.5)


def test_a_fixed_seed_gives_the_same_interval_every_time():
    X = np.random.default_rng(3).normal(size=(5, 3))
    assert statistics.mean_interval(X) == statistics.mean_interval(X)
    assert statistics.mean_interval(X, seed=1) != statistics.mean_interval(X, seed=2)


def test_paired_difference_resamples_the_per_seed_differences():
    """Seed differences (12-10, 25-20) = (2, 5): mean 3.5, CI [2, 5]."""
    interval = statistics.difference_interval(np.array([[12.0], [25.0]]), np.array([[10.0], [20.0]]), paired=True)
    assert (interval.value, interval.low, interval.high) == (3.5, 2.0, 5.0)


def test_unpaired_difference_resamples_each_method_on_its_own():
    """X (0, 2), B (1, 1): B's resamples all mean 1, X's mean 0, 1 or 2: CI [-1, 1]."""
    interval = statistics.difference_interval(np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]]), paired=False)
    assert (interval.value, interval.low, interval.high) == (0.0, -1.0, 1.0)


def test_probability_of_improvement_counts_ties_half():
    """X (1, 3) against Y (2, 2): pairs 1>2 no, 1>2 no, 3>2 yes, 3>2 yes: 0.5. X's resamples
    (1, 1), (1, 3), (3, 3) give 0, 0.5, 1: the CI is [0, 1]. Equal runs: 0.5."""
    interval = statistics.improvement_interval(np.array([[1.0], [3.0]]), np.array([[2.0], [2.0]]))
    assert (interval.value, interval.low, interval.high) == (0.5, 0.0, 1.0)
    assert statistics.probability_of_improvement(np.array([[4.0]]), np.array([[4.0]])) == 0.5


def test_iqm_drops_the_outer_quarters():
    """Eight runs: the IQM is the mean of the middle four, whatever one bad seed scored."""
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [-100.0, 8.0]])
    assert statistics.interquartile_mean(X) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))


def test_one_seed_has_no_interval():
    for interval in (
        statistics.mean_interval(np.array([[1.0, 2.0]])),
        statistics.iqm_interval(np.array([[1.0, 2.0]])),
        statistics.difference_interval(np.array([[1.0]]), np.array([[0.0]]), paired=True),
        statistics.improvement_interval(np.array([[1.0]]), np.array([[0.0], [2.0]])),
    ):
        assert np.isnan(interval.low) and np.isnan(interval.high)
        assert not np.isnan(interval.value)


def test_a_missing_number_gives_no_interval():
    interval = statistics.mean_interval(np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert np.isnan(interval.value) and np.isnan(interval.low)


def _long(head: dict[str, dict[int, tuple[float, float]]]) -> pd.DataFrame:
    """Long rows: per method and seed, final head accuracies on tasks a and b (stage 0: 0)."""
    rows = []
    for method, seeds in head.items():
        for seed, finals in seeds.items():
            for stage, trained in enumerate(["pretrained", "a", "b"]):
                for task, final in zip("ab", finals):
                    value = final if stage == 2 else 0.0
                    rows.append((method, seed, stage, trained, task, "head", value, "ok"))
    columns = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy", "status"]
    return pd.DataFrame(rows, columns=columns)


def test_the_leaderboard_carries_the_hand_computed_intervals():
    """finetune (a, b) per seed: (10, 30), (20, 30); ldifs: (12, 30), (25, 30). Stratified CI
    of finetune [20, 25]; ldifs minus finetune seed by seed: task a (2, 5), task b (0, 0):
    difference 1.75, CI [1, 2.5]; P(ldifs > finetune): task a 3/4, task b 1/2 -> 0.625."""
    board = build_leaderboard(_long({"finetune": {0: (10, 30), 1: (20, 30)}, "ldifs": {0: (12, 30), 1: (25, 30)}}))
    finetune, ldifs = (board[board["method"] == m].iloc[0] for m in ("finetune", "ldifs"))
    assert finetune[["last_head_acc", "last_head_acc_ci_low", "last_head_acc_ci_high"]].tolist() == [22.5, 20, 25]
    assert finetune["baseline"] == "finetune" and np.isnan(finetune["last_head_acc_diff"])
    diff = ldifs[["last_head_acc_diff", "last_head_acc_diff_ci_low", "last_head_acc_diff_ci_high"]].tolist()
    assert diff == [1.75, 1.0, 2.5]
    assert ldifs["last_head_acc_p_improve"] == 0.625
