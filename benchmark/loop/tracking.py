"""What the optional experiment loggers (``--loggers``) receive beside the training loss:
every task's accuracy after every stage, and each method's summary metrics at its end,
the numbers a user opens TensorBoard or W&B to look at."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def log_stage_accuracies(loggers: list, prefix: str, rows: Sequence[Mapping[str, Any]], stage: int) -> None:
    """``<method>/seed<N>/accuracy/<kind>/<task>`` after stage ``stage`` (0: the pretrained model)."""
    metrics = {f"{prefix}accuracy/{r['kind']}/{r['eval_task']}": float(r["accuracy"]) for r in rows}
    log_metrics(loggers, metrics, stage)


def log_summary(
    loggers: list, prefix: str, method: str, rows: Sequence[Mapping[str, Any]], status: str, stage: int
) -> None:
    """The method's summary.csv rows (last accuracy, BWT, dLP, ...) as ``<prefix>summary/<kind>/<metric>``."""
    if not loggers:
        return
    if status == "ok":  # a failed method has no summary row (summary.csv leaves it out too)
        _log_summary_rows(loggers, prefix, method, rows, stage)
        log_accuracy_matrices([x for x in loggers if hasattr(x, "log_accuracy_matrix")], prefix, method, rows)
    for logger in loggers:  # a method's loggers end with it
        wandb = getattr(logger, "wandb", None)
        if wandb is not None and wandb.run is not None:
            wandb.finish()


def log_accuracy_matrices(loggers: list, prefix: str, method: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each kind's accuracy matrix of one (method, seed) as a table, and its heatmap as an
    image (plots.plot_accuracy_heatmaps), to every logger that takes them (W&B)."""
    if not loggers or not rows:
        return
    import tempfile

    from benchmark.reporting import plots, table

    df = pd.DataFrame([{**r, "status": "ok"} for r in rows])
    df = df[df.get("split", pd.Series("test", index=df.index)).fillna("test") == "test"]
    tasks = table.sequence_tasks(df) + table.eval_only_tasks(df)
    seed = int(df["seed"].iloc[0])
    with tempfile.TemporaryDirectory() as folder:
        drawn = plots.plot_accuracy_heatmaps(df, Path(folder))
        images = {path.stem: str(path) for path in drawn if path.suffix == ".png"}
        for kind in table.kinds_in_order(df, method):
            matrix = table.accuracy_matrix(df, method, seed, kind, tasks)
            data = [[stage, *[None if math.isnan(v) else float(v) for v in line]] for stage, line in enumerate(matrix)]
            image = images.get(f"heatmap_{plots.safe_name(method)}_{kind}")
            for logger in loggers:
                logger.log_accuracy_matrix(f"{prefix}accuracy_matrix/{kind}", ["stage", *tasks], data, image)


def _log_summary_rows(loggers: list, prefix: str, method: str, rows: Sequence[Mapping[str, Any]], stage: int) -> None:
    from benchmark.reporting.reports import summarise

    summary = summarise(pd.DataFrame([{**r, "status": "ok"} for r in rows]))
    metrics = {
        f"{prefix}summary/{rec['kind']}/{name}": float(value)
        for rec in summary[summary.method == method].to_dict("records")
        for name, value in rec.items()
        if name not in ("method", "kind") and isinstance(value, (int, float)) and math.isfinite(value)
    }
    log_metrics(loggers, metrics, stage)


def log_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    """Send scalars to each Avalanche logger in the form it can store."""
    from avalanche.logging import CSVLogger, TextLogger

    for logger in loggers:
        if isinstance(logger, CSVLogger):  # its own files have fixed columns: one more file beside them
            path = Path(logger.log_folder) / "metrics.csv"
            new = not path.exists()
            with path.open("a", encoding="utf-8") as stream:
                stream.write("name,step,value\n" if new else "")
                stream.writelines(f"{name},{step},{value}\n" for name, value in metrics.items())
        elif hasattr(logger, "wandb"):  # one wandb row per stage, its x-axis a column
            logger.wandb.log({**metrics, "stage": step})
        elif isinstance(logger, TextLogger):
            for name, value in metrics.items():
                print(f"{name} (stage {step}): {value:.4f}", file=logger.file, flush=True)
        else:
            for name, value in metrics.items():
                logger.log_single_metric(name, value, step)
        writer = getattr(logger, "writer", None)  # TensorBoard: on disk now, not at exit
        if writer is not None:
            writer.flush()
