"""One row of the long accuracy table (``accuracy_long.csv``, a run's source of truth): its
typed form and its column order, shared by the tracker that scores it, the continual loop
that labels it, the runner that writes it and the reports that read it.

Kernel on purpose: the reporting layer reads these columns and must never load torch.
"""

from __future__ import annotations

from typing import TypedDict


class Score(TypedDict):
    """What the tracker measures of one task, one kind, one split after a stage."""

    eval_task: str
    kind: str  # head | lp | zs
    accuracy: float  # top-1, percent
    ece: float  # expected calibration error, percent (Guo et al., ICML 2017), 15 bins
    split: str  # test (the reported numbers) | val (eval.splits has "val"; sweeps tune on it)
    n: int  # images scored: weights when class-incremental groups are pooled


class AccuracyRow(Score):
    """A score labelled by the loop: which method and seed, after which stage, trained on what."""

    method: str
    seed: int
    stage: int  # 0: the pre-trained model
    trained_task: str  # the stage's task ("pretrained" at stage 0)


class WrittenRow(AccuracyRow, total=False):
    """A row as the runner writes it: with the (method, seed)'s outcome."""

    status: str  # ok | failed (a NaN/Inf loss or out of memory stopped it; its rows so far are kept)


# The CSV's columns, in the order the runner writes them.
COLUMNS: tuple[str, ...] = (
    "method",
    "seed",
    "stage",
    "trained_task",
    "eval_task",
    "kind",
    "accuracy",
    "ece",
    "status",
    "split",
    "n",
)
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS[:7]  # what a reader needs of any CSV
OPTIONAL_COLUMNS: tuple[str, ...] = COLUMNS[7:]  # written by the runner; older runs may lack them


def label_scores(scores: list[Score], method: str, seed: int, stage: int, trained_task: str) -> list[AccuracyRow]:
    """The tracker's scores of one stage as rows of the table."""
    return [AccuracyRow(method=method, seed=seed, stage=stage, trained_task=trained_task, **score) for score in scores]
