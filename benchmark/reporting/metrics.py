"""Continual-learning metrics on accuracy matrices (pure numpy functions).

Conventions shared by every function:

* ``R`` is a float array of shape ``[T+1, T]`` for a sequence of ``T`` tasks.
  ``R[i, j]`` is the accuracy (percent) on the j-th sequence task (0-based column ``j`` is
  the task trained at stage ``j + 1``) measured after stage ``i``; row 0 is the model
  before any fine-tuning. Column ``j`` is therefore trained at rows ``i >= j + 1``.
* ``A`` / ``D`` are ``[S+1, K]`` arrays over any ``K`` evaluated tasks (sequence tasks and
  eval-only tasks that are never trained), again with row 0 = before fine-tuning.

NaN (a missing measurement) propagates through every mean: a metric built on a missing
number is reported as missing rather than silently computed from fewer tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

NEVER_TRAINED = -1  # trained_stage marker of an eval-only task


def _as_sequence_matrix(R: np.ndarray) -> np.ndarray:
    """Return R as a float array after checking it has the ``[T+1, T]`` shape, T >= 1."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D [T+1, T], got {R.ndim}-D shape {R.shape}")
    rows, tasks = R.shape
    if tasks < 1 or rows != tasks + 1:
        raise ValueError(f"accuracy matrix must have shape [T+1, T] with T >= 1, got {R.shape}")
    return R


def _as_stage_matrix(A: np.ndarray) -> np.ndarray:
    """Return A as a float ``[S+1, K]`` array (at least the stage-0 row, any K)."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] < 1:
        raise ValueError(f"stage matrix must be 2-D [S+1, K] with at least one row, got shape {A.shape}")
    return A


def _mean_or_nan(values: np.ndarray) -> float:
    """Mean of the values, NaN (without a RuntimeWarning) when there are none."""
    return float(np.mean(values)) if values.size else float("nan")


def average_accuracy(R: np.ndarray) -> np.ndarray:
    """Average accuracy over the tasks trained so far, after each stage 1..T.

    Entry ``i-1`` is ``mean(R[i, :i])`` (Lopez-Paz & Ranzato 2017, GEM, "ACC" taken at
    every stage rather than only the last).
    """
    R = _as_sequence_matrix(R)
    tasks = R.shape[1]
    return np.array([R[stage, :stage].mean() for stage in range(1, tasks + 1)])


def last_accuracy(R: np.ndarray) -> float:
    """Mean accuracy over all sequence tasks after the final stage: ``mean(R[T, :])``.

    GEM's ACC (Lopez-Paz & Ranzato 2017); identical to ZSCL's MTIL "Last" (Zheng et al. 2023).
    """
    R = _as_sequence_matrix(R)
    return float(R[-1].mean())


def incremental_accuracy(R: np.ndarray, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Accuracy on everything trained so far, after each stage 1..T.

    Entry ``i-1`` is the mean of ``R[i, :i]`` weighted by ``weights[:i]`` (the number of test
    images of each column; equal weights when None). With class-incremental groups scored by
    the head over all seen classes this is the accuracy on the test images of all seen
    classes (Rebuffi et al., CVPR 2017, iCaRL; Zheng et al., ICCV 2023, ZSCL's CIL tables).
    """
    R = _as_sequence_matrix(R)
    tasks = R.shape[1]
    w = np.ones(tasks) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (tasks,):
        raise ValueError(f"weights must have one entry per task ({tasks}), got shape {w.shape}")
    return np.array([np.sum(R[stage, :stage] * w[:stage]) / np.sum(w[:stage]) for stage in range(1, tasks + 1)])


def average_incremental_accuracy(R: np.ndarray, weights: Optional[Sequence[float]] = None) -> float:
    """Mean over stages 1..T of :func:`incremental_accuracy` ("average incremental accuracy",
    Rebuffi et al. 2017; ZSCL's class-incremental "Avg"); its last entry is their "Last"."""
    return float(np.mean(incremental_accuracy(R, weights)))


def forgetting_initial_final(R: np.ndarray) -> np.ndarray:
    """Initial-minus-final forgetting of tasks 0..T-2: ``R[j+1, j] - R[T, j]``.

    Accuracy just after the task was trained minus accuracy at the end (Avalanche's
    forgetting metric). The last task has no later stage, so it is left out (length T-1).
    Positive = forgotten.
    """
    R = _as_sequence_matrix(R)
    tasks = R.shape[1]
    return np.array([R[task + 1, task] - R[tasks, task] for task in range(tasks - 1)])


def forgetting_max(R: np.ndarray) -> np.ndarray:
    """Max-based forgetting of tasks 0..T-2 (Chaudhry et al. 2018, RWalk).

    ``max(R[j+1 : T, j]) - R[T, j]``: the best accuracy the task ever had, from the stage
    it was trained (row j+1) up to but excluding the final stage T, minus its final
    accuracy. This is our reading of RWalk's "max over i < T": stages before the task was
    trained are not counted, because a task cannot be forgotten before it is learned.
    Length T-1; positive = forgotten.
    """
    R = _as_sequence_matrix(R)
    tasks = R.shape[1]
    return np.array([R[task + 1 : tasks, task].max() - R[tasks, task] for task in range(tasks - 1)])


def backward_transfer(R: np.ndarray) -> float:
    """Backward transfer: mean over j=0..T-2 of ``R[T, j] - R[j+1, j]`` (Lopez-Paz & Ranzato 2017, GEM).

    Negative = forgetting. NaN when T == 1 (no earlier task to look back at).
    """
    R = _as_sequence_matrix(R)
    return _mean_or_nan(-forgetting_initial_final(R))


def forward_transfer(R: np.ndarray) -> float:
    """Forward transfer: mean over j=1..T-1 of ``R[j, j] - R[0, j]`` (Lopez-Paz & Ranzato 2017, GEM).

    Accuracy on task j just before it is trained (after stage j, which trained the
    previous task) minus the pre-trained model's accuracy on it. NaN when T == 1.
    """
    R = _as_sequence_matrix(R)
    tasks = R.shape[1]
    gains = np.array([R[task, task] - R[0, task] for task in range(1, tasks)])
    return _mean_or_nan(gains)


def mtil_transfer(R: np.ndarray) -> float:
    """MTIL "Transfer" as ZSCL computes it (Zheng et al., ICCV 2023; their results notebook).

    ZSCL's matrix has one row per stage after training (no pre-trained row). For every task
    but the first, it averages that task's column over the stages before the one that
    trains it, then averages those column means. In this module's convention (row 0 =
    pre-trained, column j trained at stage j + 1) column j's entries are ``R[1:j+1, j]``,
    for j = 1..T-1: the pre-trained row is not used. Tasks with more such stages weigh the
    same as tasks with one (compare :func:`mtil_transfer_pooled`). NaN when T == 1.
    """
    R = _as_sequence_matrix(R)
    columns = [R[1 : task + 1, task].mean() for task in range(1, R.shape[1])]
    return _mean_or_nan(np.array(columns))


def mtil_transfer_pooled(R: np.ndarray) -> float:
    """The same entries as :func:`mtil_transfer`, pooled: every entry weighs the same.

    Mean of the strict upper triangle of the T x T matrix ``R[1:]``: row i (stage i,
    1-based) has trained columns 0..i-1, so its untrained entries are ``R[i, j]``, j >= i.
    Differs from ZSCL's number whenever T > 2 (later tasks have more entries). NaN when T == 1.
    """
    R = _as_sequence_matrix(R)
    after_training = R[1:]
    rows, cols = np.triu_indices(after_training.shape[0], k=1)
    return _mean_or_nan(after_training[rows, cols])


def mtil_avg(R: np.ndarray) -> float:
    """MTIL "Avg" (Zheng et al. 2023, ZSCL): mean of every entry of stages 1..T, ``mean(R[1:])``."""
    R = _as_sequence_matrix(R)
    return float(R[1:].mean())


def mtil_last(R: np.ndarray) -> float:
    """MTIL "Last" (Zheng et al. 2023, ZSCL): mean of the final row; equals :func:`last_accuracy`."""
    return last_accuracy(R)


def concept_forgetting(A: np.ndarray) -> np.ndarray:
    """Change from the pre-trained model on every task: ``A[i, j] - A[0, j]`` (Mukhoti et al. 2024).

    With linear-probe accuracies in ``A`` this is dLP, with zero-shot accuracies dZS.
    Negative = the concept was forgotten. Same shape as A; row 0 is all zeros.
    """
    A = _as_stage_matrix(A)
    return A - A[0]


def _trained_stage_array(trained_stage: Sequence[Optional[int]], num_stages: int) -> np.ndarray:
    """Map None to NEVER_TRAINED and check every stage is -1 or in 1..num_stages."""
    stages = np.array([NEVER_TRAINED if s is None else int(s) for s in trained_stage], dtype=int)
    valid = (stages == NEVER_TRAINED) | ((stages >= 1) & (stages <= num_stages))
    if not valid.all():
        bad = stages[~valid].tolist()
        raise ValueError(f"trained_stage entries must be -1 (never trained) or in 1..{num_stages}, got {bad}")
    return stages


def untrained_mask(num_stages: int, trained_stage: Sequence[Optional[int]]) -> np.ndarray:
    """Boolean ``[S+1, K]`` mask, True where column j is not trained at or before stage i.

    ``trained_stage[j]`` is the 1-based stage that trains column j, or -1 (None also
    accepted) for eval-only tasks that are never trained. These are the cells where
    Mukhoti et al. (2024) measure concept forgetting.
    """
    if num_stages < 0:
        raise ValueError(f"num_stages must be >= 0, got {num_stages}")
    stages = _trained_stage_array(trained_stage, num_stages)
    stage_index = np.arange(num_stages + 1)[:, None]
    never_trained = stages[None, :] == NEVER_TRAINED
    return never_trained | (stage_index < stages[None, :])


def mean_over_untrained(D: np.ndarray, trained_stage: Sequence[Optional[int]]) -> np.ndarray:
    """Per stage, mean of ``D[i, j]`` over the columns not yet trained at stage i (Mukhoti et al. 2024).

    Applied to :func:`concept_forgetting` output this is the mean dLP (or dZS) over the
    concepts the model has not been fine-tuned on. Length S+1; NaN where no column is
    untrained (e.g. the final stage of a run without eval-only tasks).
    """
    D = _as_stage_matrix(D)
    if len(trained_stage) != D.shape[1]:
        raise ValueError(f"trained_stage has {len(trained_stage)} entries but D has {D.shape[1]} columns")
    mask = untrained_mask(D.shape[0] - 1, trained_stage)
    return np.array([_mean_or_nan(row[row_mask]) for row, row_mask in zip(D, mask)])
