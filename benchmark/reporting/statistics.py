"""Interval estimates for the leaderboard: pure functions on ``[seeds, tasks]`` matrices.

Follows rliable (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021; github.com/google-research/rliable): with a handful of
seeds a mean ± std says little, so every number gets a percentile-bootstrap confidence
interval over seeds, **stratified by task** (each task's seeds are resampled separately, so
every resample still averages the same tasks); an interquartile mean (IQM) over all
seed x task runs is the aggregate robust to one bad seed; and a method is compared with a
baseline by the difference of their means (with its CI) and the probability of improvement
P(X > Y) (Mann-Whitney's U / nm per task, averaged over tasks).

The resampling is ``scipy.stats.bootstrap`` (``method="percentile"``): given one sample per
task and ``paired=False`` it resamples each sample independently, which is exactly the
stratified bootstrap. rliable itself was not used: it pins ``arch == 5.3.0`` and needs
seaborn, for four statistics scipy already covers (docs/statistics.md).

Every matrix has one row per seed and one column per task (the tasks a leaderboard metric
averages); a NaN anywhere makes the statistic NaN (a metric on a missing number is missing,
as in ``benchmark.reporting.metrics``). With fewer than two seeds there is no interval:
every bound is NaN (written empty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0  # a fixed seed: the same runs give the same intervals, byte for byte
IQM_TRIM = 0.25  # the interquartile mean drops the lowest and highest quarter


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (bounds NaN when there is none)."""

    value: float
    low: float = float("nan")
    high: float = float("nan")


def _matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"expected a [seeds, tasks] matrix with at least one task, got shape {X.shape}")
    return X


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
    """P(X > Y), ties counting half, per task over every pair of runs, averaged over tasks."""
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


def _bootstrap(samples: list[np.ndarray], statistic: Callable, seed: int) -> tuple[float, float]:
    """scipy's percentile bootstrap, each sample resampled on its own (stratified)."""
    from scipy.stats import bootstrap

    if any(np.isnan(sample).any() for sample in samples):
        return float("nan"), float("nan")
    result = bootstrap(
        samples,
        statistic,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        paired=False,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _columns(X: np.ndarray) -> list[np.ndarray]:
    return [X[:, t] for t in range(X.shape[1])]


def _mean_of_means(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean([column.mean(axis=axis) for column in columns], axis=0)


def _iqm_of(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(columns, axis=axis), IQM_TRIM, axis=axis)


def _interval(X: np.ndarray, value_of, statistic, seed: int) -> Interval:
    """``value_of(X)`` with the stratified percentile-bootstrap CI of ``statistic`` (none for one seed)."""
    X = _matrix(X)
    value = value_of(X)
    if X.shape[0] < 2:
        return Interval(value)
    return Interval(value, *_bootstrap(_columns(X), statistic, seed))


def mean_interval(X: np.ndarray, seed: int = SEED) -> Interval:
    """The stratified mean with its percentile-bootstrap CI over seeds (none for one seed)."""
    return _interval(X, stratified_mean, _mean_of_means, seed)


def iqm_interval(X: np.ndarray, seed: int = SEED) -> Interval:
    """The IQM over seed x task runs with its stratified bootstrap CI (none for one seed)."""
    return _interval(X, interquartile_mean, _iqm_of, seed)


def difference_interval(X: np.ndarray, B: np.ndarray, paired: bool, seed: int = SEED) -> Interval:
    """Stratified mean of X minus that of the baseline B, with its CI.

    ``paired``: row i of X and of B come from the same seed (same data order and
    initialisation), so the per-seed differences are resampled together; otherwise X's and
    B's seeds are resampled independently. No interval unless both have two seeds or more."""
    X, B = _matrix(X), _matrix(B)
    value = stratified_mean(X) - stratified_mean(B)
    if paired:
        if X.shape != B.shape:
            raise ValueError(f"paired matrices must have the same shape, got {X.shape} and {B.shape}")
        return mean_interval(X - B, seed)
    if min(X.shape[0], B.shape[0]) < 2:
        return Interval(value)
    tasks = X.shape[1]

    def difference(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        return _mean_of_means(*columns[:tasks], axis=axis) - _mean_of_means(*columns[tasks:], axis=axis)

    return Interval(value, *_bootstrap(_columns(X) + _columns(B), difference, seed))


def improvement_interval(X: np.ndarray, Y: np.ndarray, seed: int = SEED) -> Interval:
    """P(X > Y) (averaged over tasks) with its stratified bootstrap CI, X's and Y's runs
    resampled independently, as rliable does (none unless both have two seeds or more)."""
    X, Y = _matrix(X), _matrix(Y)
    value = probability_of_improvement(X, Y)
    if min(X.shape[0], Y.shape[0]) < 2:
        return Interval(value)
    tasks = X.shape[1]

    def poi(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        per_task = [_poi(columns[t], columns[tasks + t], axis) for t in range(tasks)]
        return np.mean(per_task, axis=0)

    return Interval(value, *_bootstrap(_columns(X) + _columns(Y), poi, seed))
