"""The leaderboard: one row per method, ranked by final head accuracy and by concept forgetting,
each number with a bootstrap confidence interval and a paired comparison with a baseline.

Built from ``accuracy_long.csv`` alone (plus manifest.json for runs that failed), written as
leaderboard.csv, leaderboard.md and a self-contained leaderboard.html. Runs made separately
(other methods, other seeds, other machines) are merged with
``python -m benchmark.reporting.leaderboard RUN1 RUN2 ... [--out DIR]``, which refuses runs whose
numbers are not comparable (see :func:`check_mergeable`).

Three rooms: ``leaderboard_build`` (the table and its statistics), ``leaderboard_render``
(csv, markdown, HTML) and ``leaderboard_merge`` (pooling runs); this module is the command
and the names other code imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.errors import OneLineParser, command
from benchmark.reporting.leaderboard_build import (  # noqa: F401  (re-exported)
    BELOW,
    BEST,
    BOARD_METRICS,
    MARK_SORT_KEYS,
    MISSING,
    ONE_SEED,
    OVERLAPS,
    BoardMetric,
    build_leaderboard,
    failed_runs_of,
    hparams_source,
    leaderboard_columns,
    read_manifest_runs,
    spread_marks,
)
from benchmark.reporting.leaderboard_merge import (  # noqa: F401  (re-exported)
    DEFAULT_MERGE_OUT,
    LoadedRun,
    check_merge_out,
    check_mergeable,
    comparison_keys,
    load_run,
    merge_runs,
    merged_config,
    merged_long,
    merged_manifest,
)
from benchmark.reporting.leaderboard_render import (  # noqa: F401  (re-exported)
    LEGEND,
    display_cells,
    figure_paths,
    leaderboard_html,
    leaderboard_markdown,
    print_board,
    write_leaderboard,
    write_leaderboard_files,
)
from benchmark.rundir import LEADERBOARD_HTML


@command  # the suite's one boundary: one line and exit 2, 130 for Ctrl-C, --debug for the traceback
def main(argv: list[str]) -> int:
    """``python -m benchmark.reporting.leaderboard RUN1 RUN2 ... [--out DIR] [--baseline M]``: merge runs into one leaderboard; 2 if refused."""
    parser = OneLineParser(prog="python -m benchmark.reporting.leaderboard", description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with accuracy_long.csv and config.yaml)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MERGE_OUT, help=f"output folder (default {DEFAULT_MERGE_OUT})"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip summary.csv, report.md and plots/ (faster)")
    parser.add_argument(
        "--baseline", help="the method every other is compared with (default: finetune if present, else the first)"
    )
    args = parser.parse_args(argv)
    paths = merge_runs(args.runs, args.out, draw_plots=not args.no_plots, baseline=args.baseline)
    print_board(args.out)
    print(f"wrote {next(p for p in paths if p.name == LEADERBOARD_HTML)} (and leaderboard.csv, .md, .tex)")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
