"""leaderboard.tex: the leaderboard as a LaTeX table for a paper (booktabs rules, mean ± std
over seeds, the best mean of each metric in bold, optionally a 95% interval column per
metric, and the cost columns the runs recorded).

The file is a ``table`` float to ``\\input`` into a document that loads ``booktabs`` and
``graphicx``. ``python -m benchmark.reporting.leaderboard_latex RUN [--no-intervals]`` writes
it again from RUN/leaderboard.csv (e.g. without the interval columns).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import OneLineParser, UserError, command
from benchmark.files import atomic_text
from benchmark.reporting.leaderboard_build import CAPTIONS, metrics_of, scenario_of
from benchmark.rundir import LEADERBOARD_CSV, run_title

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# cost column -> (header, format of the value)
LATEX_COSTS = {
    "trainable_params": ("params (M)", lambda v: f"{v / 1e6:.2f}"),
    "train_s_per_stage": ("s/stage", lambda v: f"{v:.1f}"),
    "images_per_s": ("img/s", lambda v: f"{v:.0f}"),
    "peak_host_mb": ("host MiB", lambda v: f"{v:.0f}"),
    "peak_device_mb": ("GPU MiB", lambda v: f"{v:.0f}"),
}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in str(text))


def _math(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if float(text) == 0 else text


def _mean_cell(mean: float, std: float, n_seeds: int, best: bool) -> str:
    if np.isnan(mean):
        return "n/a"
    body = _math(mean) + (rf" \pm {_math(std)}" if n_seeds > 1 and not np.isnan(std) else "")
    return rf"$\mathbf{{{body}}}$" if best else f"${body}$"


def _interval_cell(low: float, high: float) -> str:
    return "" if np.isnan(low) or np.isnan(high) else f"$[{_math(low)}, {_math(high)}]$"


def leaderboard_latex(title: str, board: pd.DataFrame, intervals: bool = True) -> str:
    """The LaTeX table of a built board (rows in its ranking order)."""
    board_metrics = metrics_of(board)
    costs = [c for c in LATEX_COSTS if c in board.columns and board[c].notna().any()]
    headers = ["method", "seeds"]
    for metric in board_metrics:
        headers.append(escape(metric.label))
        headers += ["95\\% CI"] if intervals else []
    headers += [LATEX_COSTS[c][0] for c in costs]
    best = {m.column: board[m.column].max() for m in board_metrics if board[m.column].notna().any()}
    rows = []
    for _, entry in board.iterrows():
        cells = [rf"\texttt{{{escape(entry['method'])}}}", str(int(entry["n_seeds"]))]
        for metric in board_metrics:
            mean = float(entry[metric.column])
            is_best = metric.column in best and mean == best[metric.column]
            cells.append(_mean_cell(mean, float(entry[f"{metric.column}_std"]), int(entry["n_seeds"]), is_best))
            if intervals:
                cells.append(
                    _interval_cell(float(entry[f"{metric.column}_ci_low"]), float(entry[f"{metric.column}_ci_high"]))
                )
        cells += ["n/a" if np.isnan(float(entry[c])) else LATEX_COSTS[c][1](float(entry[c])) for c in costs]
        rows.append("{}" + " & ".join(cells) + r" \\")
    spec = "l" + "r" * (len(headers) - 1)
    caption = (
        f"{escape(title)}: mean $\\pm$ std over seeds"
        + (", with the 95\\% Student $t$ interval of the mean" if intervals else "")
        + f"; best in bold. {escape(CAPTIONS[scenario_of(board)])}"
    )
    return "\n".join(
        [
            "% Written by ldifs-bench (benchmark/reporting/leaderboard_latex.py); needs \\usepackage{booktabs,graphicx}.",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{caption}}}",
            "\\resizebox{\\linewidth}{!}{%",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(headers) + r" \\",
            "\\midrule",
            *rows,
            "\\bottomrule",
            "\\end{tabular}}",
            "\\end{table}",
            "",
        ]
    )


@command  # the suite's one boundary: one line and exit 2, 130 for Ctrl-C, --debug for the traceback
def main(argv: list[str]) -> int:
    """``python -m benchmark.reporting.leaderboard_latex RUN [--no-intervals]``: write RUN/leaderboard.tex again."""
    parser = OneLineParser(prog="python -m benchmark.reporting.leaderboard_latex", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help=f"a folder holding {LEADERBOARD_CSV}")
    parser.add_argument("--no-intervals", action="store_true", help="leave out the 95%% interval columns")
    args = parser.parse_args(argv)
    path = args.run_dir / LEADERBOARD_CSV
    try:
        board = pd.read_csv(path, keep_default_na=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    board["failed_seeds"] = board["failed_seeds"].fillna("").astype(str)
    out = args.run_dir / "leaderboard.tex"
    atomic_text(out, leaderboard_latex(run_title(args.run_dir), board, not args.no_intervals))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
