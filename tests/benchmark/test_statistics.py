"""The leaderboard's statistics against intervals computed by hand.

The mean and the differences get Student t intervals on the per-seed task averages:
mean ± t(n-1) · s / sqrt(n), with t(1) = 12.706 for two seeds. The IQM and P(>) keep a
percentile bootstrap, checked on matrices small enough to enumerate every resample: with
three seeds (0, 3, 9) a resample is one of 27 equally likely triples.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmark.reporting import statistics
from benchmark.reporting.leaderboard import build_leaderboard

T1 = 12.706204736  # the 97.5% quantile of Student's t with 1 degree of freedom


def test_two_seeds_give_the_student_t_interval():
    """(10, 20): mean 15, s = 7.071; half-width 12.706 · 7.071 / sqrt(2) = 63.53."""
    interval = statistics.mean_interval(np.array([[10.0], [20.0]]))
    half = T1 * np.std([10.0, 20.0], ddof=1) / np.sqrt(2)
    assert interval.value == 15.0
    assert (interval.low, interval.high) == pytest.approx((15 - half, 15 + half))
    assert half == pytest.approx(63.53, abs=0.01)


def test_the_unit_is_the_seed_average_over_tasks():
    """Tasks (10, 30) and (20, 30) per seed: seed averages 20 and 25, mean 22.5; the t
    interval of (20, 25), which keeps what a seed does to every task together."""
    interval = statistics.mean_interval(np.array([[10.0, 30.0], [20.0, 30.0]]))
    half = T1 * np.std([20.0, 25.0], ddof=1) / np.sqrt(2)
    assert interval.value == 22.5
    assert (interval.low, interval.high) == pytest.approx((22.5 - half, 22.5 + half))


def test_iqm_interval_matches_the_enumerated_bootstrap_distribution():
    """Three seeds, one task: the IQM of three values trims nothing, so a resample's IQM is its
    mean; all 27 resamples enumerated by hand, scipy's 2000 draws (fixed seed) land on the
    same percentiles within Monte Carlo error."""
    values = np.array([0.0, 3.0, 9.0])
    exact = [np.mean(resample) for resample in itertools.product(values, repeat=3)]
    low, high = np.percentile(exact, [2.5, 97.5], method="inverted_cdf")  # the distribution's own quantiles
    interval = statistics.iqm_interval(values[:, None])
    assert interval.value == 4.0
    assert interval.low == pytest.approx(low, abs=0.5) and interval.high == pytest.approx(high, abs=0.5)


def test_the_iqm_bootstrap_resamples_whole_seeds():
    """Seeds (0, 0) and (10, 10): a resample holds each seed's two tasks together, so its
    four values are all 0, all 10, or two of each: the IQM is 0, 5 or 10, never 2.5."""
    X = np.array([[0.0, 0.0], [10.0, 10.0]])
    interval = statistics.iqm_interval(X)
    assert (interval.low, interval.high) == (0.0, 10.0)


def test_a_fixed_seed_gives_the_same_interval_every_time():
    X = np.random.default_rng(3).normal(size=(5, 3))
    assert statistics.iqm_interval(X) == statistics.iqm_interval(X)
    assert statistics.iqm_interval(X, seed=1) != statistics.iqm_interval(X, seed=2)


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    """Seed differences (12-10, 25-20) = (2, 5): mean 3.5, t interval of (2, 5)."""
    interval = statistics.difference_interval(np.array([[12.0], [25.0]]), np.array([[10.0], [20.0]]), paired=True)
    half = T1 * np.std([2.0, 5.0], ddof=1) / np.sqrt(2)
    assert interval.value == 3.5
    assert (interval.low, interval.high) == pytest.approx((3.5 - half, 3.5 + half))


def test_unpaired_difference_is_welchs_interval():
    """X (0, 2), B (1, 1): variances of the means 1 and 0, Welch's df = 1: 0 ± 12.706.
    Both spreads 0: the interval is the point."""
    interval = statistics.difference_interval(np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]]), paired=False)
    assert interval.value == 0.0
    assert (interval.low, interval.high) == pytest.approx((-T1, T1))
    flat = statistics.difference_interval(np.array([[3.0], [3.0]]), np.array([[1.0], [1.0]]), paired=False)
    assert (flat.value, flat.low, flat.high) == (2.0, 2.0, 2.0)


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
    """finetune (a, b) per seed: (10, 30), (20, 30), seed averages (20, 25); ldifs: (12, 30),
    (25, 30), averages (21, 27.5). ldifs minus finetune seed by seed: (1, 2.5), difference
    1.75 with the t interval of (1, 2.5); P(>) on the same seed averages: 21 > 20, 21 < 25,
    27.5 > 20, 27.5 > 25 -> 0.75."""
    board = build_leaderboard(_long({"finetune": {0: (10, 30), 1: (20, 30)}, "ldifs": {0: (12, 30), 1: (25, 30)}}))
    finetune, ldifs = (board[board["method"] == m].iloc[0] for m in ("finetune", "ldifs"))
    half = T1 * np.std([20.0, 25.0], ddof=1) / np.sqrt(2)
    got = finetune[["last_head_acc", "last_head_acc_ci_low", "last_head_acc_ci_high"]].tolist()
    assert got == pytest.approx([22.5, 22.5 - half, 22.5 + half])
    assert finetune["baseline"] == "finetune" and np.isnan(finetune["last_head_acc_diff"])
    diff = ldifs[["last_head_acc_diff", "last_head_acc_diff_ci_low", "last_head_acc_diff_ci_high"]].tolist()
    half = T1 * np.std([1.0, 2.5], ddof=1) / np.sqrt(2)
    assert diff == pytest.approx([1.75, 1.75 - half, 1.75 + half])
    assert ldifs["last_head_acc_p_improve"] == 0.75
    assert ldifs["few_seeds"] == "iqm p_improve" and finetune["few_seeds"] == "iqm"
