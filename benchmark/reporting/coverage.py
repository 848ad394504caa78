"""How often the leaderboard's 95% intervals cover the true value: a simulation.

``python -m benchmark.reporting.coverage [--reps N]`` draws ``N`` simulated leaderboards per
setting, each a ``[seeds, tasks]`` matrix like the ones ``leaderboard_build`` hands to
``benchmark.reporting.statistics``, computes every interval with the functions the
leaderboard uses, and prints, as a markdown table, the fraction that contain the true value.
docs/statistics.md shows its output; tests/benchmark/test_coverage.py checks that the table
there is this module's output.

The model of a seed: ``value[seed, task] = 50 + sqrt(rho) · z[seed] + sqrt(1 - rho) · e[seed, task]``
with ``rho = 0.5`` (a seed that goes badly goes badly on every task) and three tasks; ``z``
and ``e`` are independent draws of unit variance from one distribution: normal,
heavy-tailed (Student t with 3 degrees of freedom, scaled) or skewed (lognormal with
sigma 1, centred and scaled). The compared method is an independent draw of the same
model, so the true difference is 0 and the true P(X > Y) is 0.5.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from benchmark.config import Range, check_flags
from benchmark.errors import OneLineParser, command
from benchmark.reporting import statistics as st

SEED_COUNTS = (2, 3, 5, 10)
DISTRIBUTIONS = ("normal", "heavy-tailed", "skewed")
DEFAULT_REPS = 1000
TASKS, RHO, CENTRE = 3, 0.5, 50.0
SIMULATION_SEED = 20260101
CHUNK = 250  # simulated leaderboards per bootstrap call (bounds the memory of [chunk, resamples, seeds])


def _noise(distribution: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance, mean-zero draws."""
    if distribution == "normal":
        return rng.standard_normal(shape)
    if distribution == "heavy-tailed":
        return rng.standard_t(3, shape) / np.sqrt(3.0)  # var(t3) = 3
    sigma = 1.0
    mean, var = np.exp(sigma**2 / 2), (np.exp(sigma**2) - 1) * np.exp(sigma**2)
    return (rng.lognormal(0.0, sigma, shape) - mean) / np.sqrt(var)


def simulate(distribution: str, rng: np.random.Generator, reps: int, seeds: int) -> np.ndarray:
    """``[reps, seeds, tasks]`` simulated per-task numbers of one method."""
    shared = _noise(distribution, rng, (reps, seeds, 1))
    own = _noise(distribution, rng, (reps, seeds, TASKS))
    return CENTRE + np.sqrt(RHO) * shared + np.sqrt(1 - RHO) * own


def true_iqm(distribution: str) -> float:
    """The population IQM of one seed x task value (the centre for the symmetric ones)."""
    if distribution != "skewed":
        return CENTRE
    from scipy.stats import trim_mean

    values = simulate(distribution, np.random.default_rng(SIMULATION_SEED + 1), 1, 400_000).ravel()
    return float(trim_mean(values, st.IQM_TRIM))


def _stratified_percentile(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval the leaderboard reported before this simulation: a percentile bootstrap
    of the mean, each task's seeds resampled on their own (rliable's stratified bootstrap)."""

    def mean_of_means(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([column.mean(axis=axis) for column in columns], axis=0)

    return st.bootstrap_bounds(st._columns(X), mean_of_means, paired=False)


# Each row: (label, truth(distribution), bounds(X, Y)) with X, Y [reps, seeds, tasks].
INTERVALS: tuple[tuple[str, Callable[[str], float], Callable], ...] = (
    ("mean: Student t (reported)", lambda d: CENTRE, lambda X, Y: st.t_bounds(st.seed_means(X))),
    ("mean: stratified percentile bootstrap (before)", lambda d: CENTRE, lambda X, Y: _stratified_percentile(X)),
    (
        "Δ, other seeds: Welch t (reported)",
        lambda d: 0.0,
        lambda X, Y: st.welch_bounds(st.seed_means(X), st.seed_means(Y)),
    ),
    (
        "IQM: percentile bootstrap of seeds (reported)",
        true_iqm,
        lambda X, Y: st.bootstrap_bounds(st._columns(X), st.iqm_of, True),
    ),
    (
        "P(>): percentile bootstrap (reported)",
        lambda d: 0.5,
        lambda X, Y: st.bootstrap_bounds([st.seed_means(X), st.seed_means(Y)], st.poi_of, False),
    ),
)


def coverage(distribution: str, seeds: int, reps: int) -> dict[str, float]:
    """Per interval, the fraction of ``reps`` simulated leaderboards whose interval holds the truth."""
    rng = np.random.default_rng([SIMULATION_SEED, DISTRIBUTIONS.index(distribution), seeds])
    X, Y = simulate(distribution, rng, reps, seeds), simulate(distribution, rng, reps, seeds)
    result = {}
    for label, truth, bounds in INTERVALS:
        value, hits = truth(distribution), 0
        for start in range(0, reps, CHUNK):
            low, high = bounds(X[start : start + CHUNK], Y[start : start + CHUNK])
            hits += int(np.sum((low <= value) & (value <= high)))
        result[label] = hits / reps
    return result


def coverage_table(
    reps: int = DEFAULT_REPS, seed_counts: Sequence[int] = SEED_COUNTS, distributions: Sequence[str] = DISTRIBUTIONS
) -> str:
    """The markdown table docs/statistics.md shows: one row per (interval, distribution)."""
    cells = {(d, n): coverage(d, n, reps) for d in distributions for n in seed_counts}
    header = "| interval | seeds' distribution | " + " | ".join(f"n = {n}" for n in seed_counts) + " |"
    lines = [header, "| --- | --- |" + " ---: |" * len(seed_counts)]
    for label, _, _ in INTERVALS:
        for d in distributions:
            values = " | ".join(f"{cells[d, n][label]:.3f}" for n in seed_counts)
            lines.append(f"| {label} | {d} | {values} |")
    return "\n".join(lines) + "\n"


@dataclass
class Flags:
    """The command's numeric flags and their valid values (checked as config keys are)."""

    reps: Annotated[int, Range(low=1)] = DEFAULT_REPS


@command  # the suite's one boundary: one line and exit 2, 130 for Ctrl-C, --debug for the traceback
def main(argv: list[str]) -> int:
    """``python -m benchmark.reporting.coverage [--reps N]``: print the coverage table (markdown)."""
    parser = OneLineParser(prog="python -m benchmark.reporting.coverage", description=main.__doc__)
    parser.add_argument(
        "--reps", type=int, default=DEFAULT_REPS, help=f"simulated leaderboards per cell ({DEFAULT_REPS})"
    )
    args = parser.parse_args(argv)
    check_flags(args, Flags)
    print(coverage_table(args.reps), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
