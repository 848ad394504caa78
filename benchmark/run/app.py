"""``ldifs-bench``: one command with subcommands, as CLIP_benchmark's ``clip_benchmark eval``.

Each subcommand is the ``main(argv)`` of the module that owns it, imported only when named
(``ldifs-bench --help`` imports none of them), so every ``python -m`` form and
``python run_benchmark.py`` stay the same commands under their old names.
"""

from __future__ import annotations

import importlib
import sys

from benchmark.errors import UserError, command

# name -> (the module whose main(argv) runs it, what it does)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("benchmark.run.cli", "run a benchmark (the flags of python run_benchmark.py)"),
    "sweep": ("benchmark.run.cli", "run a sweep file: ldifs-bench sweep FILE [flags] (run --sweep FILE)"),
    "leaderboard": ("benchmark.reporting.leaderboard", "merge run folders into one leaderboard"),
    "publish": ("benchmark.reporting.publish", "publish a run or merged sweep as the committed reference results"),
    "criterion": ("benchmark.reporting.criterion", "the embedded default's headline criterion, on a run"),
    "gpu-check": ("benchmark.tools.gpu_check", "the suite's GPU self-check on this card"),
    "perf": ("benchmark.tools.perf", "step time: a bare PyTorch loop against the suite's engine"),
    "pretrain": ("benchmark.models.pretrain", "contrastive pretraining of the embedded tiny CLIP"),
    "fingerprint": ("benchmark.tools.fingerprint", "bit-level hashes of the first computations, to diff two hosts"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in SUBCOMMANDS.items()]
    return "\n".join(
        [
            "usage: ldifs-bench SUBCOMMAND [ARGS]   (ldifs-bench SUBCOMMAND --help: its own flags)",
            "",
            "subcommands:",
            *lines,
            "",
            "ldifs-bench --FLAG ... (no subcommand) is ldifs-bench run --FLAG ...",
        ]
    )


@command
def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name.startswith("-"):  # the former entry point took run's flags directly
        name, rest = "run", argv
    if name not in SUBCOMMANDS:
        raise UserError(f"unknown subcommand {name!r}; valid: {', '.join(SUBCOMMANDS)} (ldifs-bench --help)")
    if name == "sweep":
        if not rest or rest[0].startswith("-"):
            raise UserError("ldifs-bench sweep needs a sweep file first: ldifs-bench sweep FILE [flags]")
        rest = ["--sweep", *rest]
    return _entry(name)(rest)


def _entry(name: str):
    """The subcommand's ``main``, imported now; a module this copy of the suite lacks is one line."""
    module = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):
            raise UserError(f"ldifs-bench {name}: {module} is not part of this installation") from e
        raise


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
