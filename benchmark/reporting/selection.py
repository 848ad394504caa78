"""Hyperparameter selection on the validation split: criteria, the choice, selection.csv.

A sweep scores every task on its validation split (``split=val`` rows of accuracy_long.csv)
as well as on test. A criterion turns one setting's val rows into a number; for each method
the setting with the best mean over seeds wins, and the leaderboard then ranks the winners by
their TEST numbers. Only :func:`select_settings` chooses, and it is handed val rows alone, so
the test split cannot influence the choice (the protocol of Mukhoti et al., TMLR 2024, who
tune on the held-out 10% of each train split; Mammoth's best-args presets keep such choices
as reusable configs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from benchmark.errors import choices_error

if TYPE_CHECKING:  # pandas is imported where a selection is computed: a sweep's --dry-run checks names only
    import pandas as pd

# Columns a labelled long frame carries besides the long CSV's: which method the row's
# setting belongs to and the setting's text ("" for the base config's own values).
BASE_METHOD, SETTING = "base_method", "setting"


def _val_last_head(summary: pd.DataFrame, method: str) -> float:
    """Final head accuracy averaged over the trained tasks' val splits (mean over seeds)."""
    return _summary_value(summary, method, "head", "last")


def _val_last_head_plus_dlp(summary: pd.DataFrame, method: str) -> float:
    """val_last_head + dLP on val: concept forgetting (final minus pre-trained linear-probe
    accuracy on eval-only tasks, Mukhoti et al. Sec. 3) counts as much as adaptation."""
    return _val_last_head(summary, method) + _summary_value(summary, method, "lp", "delta_final_untrained")


CRITERIA: dict[str, Callable[[pd.DataFrame, str], float]] = {
    "val_last_head": _val_last_head,
    "val_last_head_plus_dlp": _val_last_head_plus_dlp,
}
DEFAULT_CRITERION = "val_last_head"


def check_criterion(name: str) -> None:
    """Raise the one-line UserError for an unknown criterion."""
    if name not in CRITERIA:
        raise choices_error("select criterion", name, CRITERIA)


def _summary_value(summary: pd.DataFrame, method: str, kind: str, column: str) -> float:
    rows = summary[(summary["method"] == method) & (summary["kind"] == kind)]
    return float(rows.iloc[0][column]) if len(rows) and column in rows.columns else float("nan")


def _metric_frame(df: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Per labelled method: mean over seeds of last head acc, dLP and dZS on one split."""
    import pandas as pd

    from benchmark.reporting import reports, table

    usable = table.usable_rows(df)
    summary = reports.summarise(usable) if len(usable) else pd.DataFrame(columns=["method", "kind"])
    records = []
    for method in table.methods_in_order(df):
        records.append(
            {
                "method": method,
                f"{prefix}_n_seeds": len(pd.unique(usable.loc[usable["method"] == method, "seed"])),
                f"{prefix}_last_head": _summary_value(summary, method, "head", "last"),
                f"{prefix}_dlp": _summary_value(summary, method, "lp", "delta_final_untrained"),
                f"{prefix}_dzs": _summary_value(summary, method, "zs", "delta_final_untrained"),
            }
        )
    return pd.DataFrame(records), summary


def select_settings(val: pd.DataFrame, settings: pd.DataFrame, criterion: str) -> pd.DataFrame:
    """The choice: ``settings`` (method, base_method, setting) plus the criterion and ``selected``.

    ``val`` holds validation rows only (methods labelled as in ``settings``). Per base method
    the highest criterion wins; ties go to the first setting in ``settings``' order. A setting
    whose criterion is NaN (e.g. no val rows) is never chosen.
    """
    check_criterion(criterion)
    metrics, summary = _metric_frame(val, "val")
    out = settings.merge(metrics, on="method", how="left")
    out["criterion"] = criterion
    out["criterion_value"] = [CRITERIA[criterion](summary, m) if len(val) else np.nan for m in out["method"]]
    out["selected"] = False
    for _, group in out.groupby(BASE_METHOD, sort=False):
        values = group["criterion_value"].to_numpy(float)
        if not np.isnan(values).all():
            out.loc[group.index[int(np.nanargmax(values))], "selected"] = True
    return out


def selection_table(val: pd.DataFrame, test: pd.DataFrame, settings: pd.DataFrame, criterion: str) -> pd.DataFrame:
    """selection.csv: every setting's val numbers, criterion, choice, and (for reading only) test numbers."""
    chosen = select_settings(val, settings, criterion)
    test_metrics, _ = _metric_frame(test, "test")
    return chosen.merge(test_metrics, on="method", how="left")


def selection_markdown(selection: pd.DataFrame) -> str:
    import pandas as pd

    from benchmark.reporting import reports

    """selection.md: selection.csv for reading, one row per setting, methods in alphabetical
    order and each method's settings by value, the chosen one marked; val decides, test is
    shown beside it."""
    rows = pd.DataFrame(
        {
            "method": selection[BASE_METHOD],
            "setting": selection[SETTING].replace("", "(base)"),
            f"val: {selection['criterion'].iloc[0] if len(selection) else ''}": selection["criterion_value"],
            "chosen": selection["selected"].map({True: "chosen", False: ""}),
            "test last head acc": selection["test_last_head"],
            "test dLP": selection["test_dlp"],
            "test dZS": selection["test_dzs"],
            "seeds": selection["test_n_seeds"],
        }
    )
    rows = rows.iloc[
        sorted(range(len(rows)), key=lambda i: (rows["method"].iloc[i], _natural(rows["setting"].iloc[i])))
    ]
    return (
        "# Hyperparameter selection on the validation split\n\n"
        "Per method, the setting with the best validation criterion (mean over seeds) is chosen; "
        "the test columns are shown for reading only and never influence the choice.\n\n" + reports.markdown_table(rows)
    )


def _natural(text: str) -> list[tuple[int, float, str]]:
    """Sort key that orders numbers by value: mem_size=100 < 200 < 1000."""
    parts = re.split(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text)
    return [(1, float(part), "") if index % 2 else (0, 0.0, part) for index, part in enumerate(parts)]
