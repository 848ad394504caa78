"""Interval estimates for the leaderboard: pure functions on ``[seeds, tasks]`` matrices.

The unit of replication is the seed (it fixes data order and head initialisation for every
task at once), so every interval treats a seed's row as one draw:

* the **mean** (over tasks of each task's mean over seeds, which is the mean over seeds of
  each seed's task average) gets a **Student t interval** on the per-seed task averages,
  and a **paired difference** the t interval on the per-seed differences (Student 1908;
  exact for normal seeds at any n >= 2); a difference between seed sets that differ gets
  Welch's t interval (Welch 1947);
* the **IQM** (interquartile mean of all seed x task values, Agarwal et al., "Deep
  Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021) and the
  **probability of improvement** P(X > Y) keep rliable's percentile bootstrap, with whole
  seeds resampled; with few seeds these intervals are too narrow, so the leaderboard labels
  them ``few seeds`` below :data:`FEW_SEEDS` (measured by ``benchmark.reporting.coverage``,
  printed in docs/statistics.md).

The resampling is ``scipy.stats.bootstrap`` (``method="percentile"``, a fixed seed). Every
function takes optional leading batch axes (``[..., seeds, tasks]``): the coverage
simulation calls these same functions on thousands of simulated matrices at once.

A NaN anywhere makes the statistic NaN (a metric on a missing number is missing, as in
``benchmark.reporting.metrics``). With fewer than two seeds there is no interval: every
bound is NaN (written empty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0  # a fixed seed: the same runs give the same intervals, byte for byte
IQM_TRIM = 0.25  # the interquartile mean drops the lowest and highest quarter
# Below this many seeds a bootstrap interval is labelled "few seeds": its measured coverage
# for normal seeds was under 90% at every simulated n below it (docs/statistics.md's table,
# checked against the simulation by tests/benchmark/test_coverage.py).
FEW_SEEDS = {"iqm": 10, "p_improve": 10}
FEW_SEEDS_LABEL = "few seeds"


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval (bounds NaN when there is none)."""

    value: float
    low: float = float("nan")
    high: float = float("nan")


def _matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"expected a [seeds, tasks] matrix with at least one task, got shape {X.shape}")
    return X


def seed_means(X: np.ndarray) -> np.ndarray:
    """Each seed's mean over tasks (``[..., seeds]``): the per-seed number the mean averages."""
    return np.asarray(X, dtype=float).mean(axis=-1)


def stratified_mean(X: np.ndarray) -> float:
    """Mean over tasks of each task's mean over seeds (the leaderboard's aggregate)."""
    X = _matrix(X)
    return float(X.mean(axis=0).mean()) if X.shape[0] else float("nan")


def interquartile_mean(X: np.ndarray) -> float:
    """IQM: the mean of the middle 50% of all seed x task values (rliable's aggregate)."""
    from scipy.stats import trim_mean

    X = _matrix(X)
    return float(trim_mean(X.ravel(), IQM_TRIM)) if X.size else float("nan")


def probability_of_improvement(X: np.ndarray, Y: np.ndarray) -> float:
    """P(X > Y), ties counting half, per task over every pair of runs, averaged over tasks.
    The leaderboard passes one column of per-seed task averages, so that P(>) speaks of the
    same number as the mean and the difference."""
    X, Y = _matrix(X), _matrix(Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same tasks, got shapes {X.shape} and {Y.shape}")
    if not X.size or not Y.size:
        return float("nan")
    return float(np.mean([_poi(X[:, t], Y[:, t]) for t in range(X.shape[1])]))


def _poi(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(x > y) over all pairs along ``axis`` (vectorised over leading axes)."""
    x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


# ---------------------------------------------------------------- batched bounds


def t_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval of the mean of ``values`` along the last axis (the seeds):
    mean ± t(n-1) · s / sqrt(n), s the sample std (ddof 1). NaN for fewer than two seeds."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    if n < 2:
        nan = np.full(values.shape[:-1], np.nan)
        return nan, nan
    half = t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(axis=-1, ddof=1) / np.sqrt(n)
    mean = values.mean(axis=-1)
    return mean - half, mean + half


def welch_bounds(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t interval of mean(a) - mean(b) (independent seeds, unequal variances),
    along the last axis; NaN unless both have two seeds or more."""
    from scipy.stats import t

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n, m = a.shape[-1], b.shape[-1]
    if min(n, m) < 2:
        nan = np.full(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), np.nan)
        return nan, nan
    va, vb = a.var(axis=-1, ddof=1) / n, b.var(axis=-1, ddof=1) / m
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (m - 1))
    df = np.where(np.isfinite(df), df, min(n, m) - 1)  # both spreads 0: the interval is the point
    half = t.ppf(0.5 + CONFIDENCE / 2, df) * np.sqrt(va + vb)
    diff = a.mean(axis=-1) - b.mean(axis=-1)
    return diff - half, diff + half


def bootstrap_bounds(
    samples: list[np.ndarray], statistic: Callable, paired: bool, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """scipy's percentile bootstrap along the last axis (the seeds). ``paired``: the samples
    share seeds and are resampled with the same draws (a seed's tasks stay together);
    otherwise each sample is resampled on its own. Leading axes are independent batches."""
    import warnings

    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # a degenerate resample distribution (equal seeds) is fine here
        warnings.simplefilter("ignore")
        result = bootstrap(
            samples,
            statistic,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            paired=paired,
            vectorized=True,
            axis=-1,
            rng=np.random.default_rng(seed),
        )
    return result.confidence_interval.low, result.confidence_interval.high


def _columns(X: np.ndarray) -> list[np.ndarray]:
    """The task columns of ``[..., seeds, tasks]`` as ``[..., seeds]`` samples."""
    return [X[..., t] for t in range(X.shape[-1])]


def iqm_of(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    """The IQM of the task columns' values pooled (the bootstrap's statistic)."""
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(columns, axis=axis), IQM_TRIM, axis=axis)


def poi_of(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(x > y) along ``axis`` (the bootstrap's statistic)."""
    return _poi(x, y, axis)


# ---------------------------------------------------------------- one matrix


def _interval(value: float, bounds: Callable[[], tuple], *matrices: np.ndarray) -> Interval:
    """``value`` with ``bounds()`` unless a matrix has a NaN or fewer than two seeds."""
    if any(M.shape[0] < 2 for M in matrices) or any(np.isnan(M).any() for M in matrices):
        return Interval(value)
    low, high = bounds()
    return Interval(value, float(low), float(high))


def mean_interval(X: np.ndarray, seed: int = SEED) -> Interval:
    """The stratified mean with the Student t interval of the per-seed task averages
    (``seed`` is unused: kept so that every interval function has one signature)."""
    X = _matrix(X)
    return _interval(stratified_mean(X), lambda: t_bounds(seed_means(X)), X)


def iqm_interval(X: np.ndarray, seed: int = SEED) -> Interval:
    """The IQM over seed x task runs with the percentile bootstrap over whole seeds."""
    X = _matrix(X)
    return _interval(interquartile_mean(X), lambda: bootstrap_bounds(_columns(X), iqm_of, True, seed), X)


def difference_interval(X: np.ndarray, B: np.ndarray, paired: bool, seed: int = SEED) -> Interval:
    """Stratified mean of X minus that of the baseline B, with its t interval.

    ``paired``: row i of X and of B come from the same seed (same data order and
    initialisation): the t interval of the per-seed differences of task averages. Otherwise
    Welch's interval of the two methods' per-seed task averages. None unless both have two
    seeds or more."""
    X, B = _matrix(X), _matrix(B)
    value = stratified_mean(X) - stratified_mean(B)
    if paired:
        if X.shape != B.shape:
            raise ValueError(f"paired matrices must have the same shape, got {X.shape} and {B.shape}")
        return _interval(value, lambda: t_bounds(seed_means(X - B)), X, B)
    return _interval(value, lambda: welch_bounds(seed_means(X), seed_means(B)), X, B)


def improvement_interval(X: np.ndarray, Y: np.ndarray, seed: int = SEED) -> Interval:
    """P(X > Y) (averaged over tasks) with its percentile bootstrap, X's and Y's seeds
    resampled independently, as rliable does (none unless both have two seeds or more)."""
    X, Y = _matrix(X), _matrix(Y)
    value = probability_of_improvement(X, Y)
    tasks = X.shape[1]

    def poi(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_poi(columns[t], columns[tasks + t], axis) for t in range(tasks)], axis=0)

    return _interval(value, lambda: bootstrap_bounds(_columns(X) + _columns(Y), poi, False, seed), X, Y)


def few_seeds(statistic: str, n_seeds: int) -> bool:
    """Whether ``statistic``'s interval (``iqm``, ``p_improve``) is labelled ``few seeds`` at this many seeds."""
    return 2 <= n_seeds < FEW_SEEDS.get(statistic, 0)
