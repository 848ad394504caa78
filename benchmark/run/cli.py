"""Command line: ``python run_benchmark.py [--config FILE] [--key.sub VALUE ...]``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Optional

from benchmark.config import RunConfig, apply_override, dump_yaml, load_yaml
from benchmark.errors import OneLineParser, UserError, command
from benchmark.files import load_yaml_file
from benchmark.logs import quiet_warnings, setup_console

log = logging.getLogger(__name__)
EMBEDDED_DEFAULT = Path(__file__).parents[1] / "presets" / "embedded.yaml"
EPILOG = """Without --config, the embedded default (benchmark/presets/embedded.yaml) runs.
Any config key can be overridden with a dotted flag, e.g. --train.lr 1e-4,
--model.name ViT-B-32 --model.pretrained openai, --hparams.ldifs.alpha 5. A composition
of methods is written with '+', e.g. --methods finetune,ldifs+replay."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_benchmark.py", description=__doc__.splitlines()[0], epilog=EPILOG)
    p.add_argument("--config", help="YAML config file (a partial one is fine)")
    p.add_argument("--methods", help="comma-separated methods, e.g. finetune,ldifs ('all' for every one)")
    p.add_argument("--sequence", help="registered sequence name or a YAML file")
    p.add_argument("--seed", type=int, help="one seed (shorthand for --seeds N)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", help="torch CPU threads (0: torch's default)")
    p.add_argument("--results-dir", dest="results_dir", help="where run directories are written")
    p.add_argument("--name", help="run directory name (default <sequence>-<config hash>)")
    p.add_argument("--data-root", dest="data_root", help="folder of real datasets (default ./data)")
    p.add_argument(
        "--data-cache",
        dest="data_cache",
        help="decoded-image cache folder (default <suite cache>/data; 'none': decode into memory)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="let torchvision download missing datasets (needs network)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars or progress lines, only warnings and errors (run.log still has all)",
    )
    p.add_argument("--fresh", action="store_true", help="discard an earlier (partial or complete) run of this config")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep every stage's checkpoint (default: only what resume needs, dropped when done)",
    )
    p.add_argument(
        "--loggers", help="Avalanche loggers (training loss, per-stage accuracies, summary): tensorboard,csv,wandb,text"
    )
    p.add_argument("--sweep", help="a sweep file (base + grid): run every cell, merge, select (docs/sweeps.md)")
    p.add_argument(
        "--launcher",
        help="where sweep cells (or, without a sweep, the run) run: local (default) or slurm (--slurm.partition P ...)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="local processes: a sweep's cells (default: one per GPU, else 1), or a run's (method, seed) pairs "
        "(default 1; the same rows when the config sets threads)",
    )
    p.add_argument("--shard", help="sweep: run only shard i of n (i/n, cells in config-hash order)")
    p.add_argument(
        "--multirun",
        nargs="+",
        metavar="KEY=V1,V2",
        help="a grid over dotted keys, run as a sweep of this config, e.g. hparams.ldifs.alpha=10,100 seeds=0,1",
    )
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="sweep: print the cells and exit")
    p.add_argument("--merge-only", dest="merge_only", action="store_true", help="sweep: merge finished cells only")
    p.add_argument("--select", help="sweep: the selection criterion instead of the file's select: (val_last_head, ...)")
    p.add_argument(
        "--plugins",
        help="comma-separated .py files or importable modules registering methods/tasks, e.g. mine.py,my_pkg.more",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="rehearse this config in CPU minutes: the embedded model, a few steps and images (docs/real_scale.md)",
    )
    p.add_argument(
        "--plan", action="store_true", help="print the stages, images, steps and an estimated wall time; run nothing"
    )
    p.add_argument("--list-methods", action="store_true", help="print the method registry and exit")
    p.add_argument("--list-tasks", action="store_true", help="print the task registry and exit")
    p.add_argument("--list-sequences", action="store_true", help="print the sequence registry and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    return p


def parse_config(argv: list[str]) -> tuple[argparse.Namespace, RunConfig]:
    args, rest = build_parser().parse_known_args(argv)
    cfg = load_yaml(args.config if args.config else EMBEDDED_DEFAULT)
    if args.plugins is not None:
        apply_override(cfg, "plugins", args.plugins)
    from benchmark.run.plugins import load_plugins, normalise

    cfg.plugins = normalise(cfg.plugins)
    if not args.print_config:  # --print-config runs nothing, not even a plugin's import
        load_plugins(cfg.plugins)  # before any registry is read (--methods all, --list-methods)
    # Every override in order, kept on args so that a sweep applies them to its own base
    # (--plugins included: the cells' config.yaml record it, and spawned workers import it).
    args.overrides = [("plugins", cfg.plugins)] if args.plugins is not None else []
    args.overrides += [(f, getattr(args, f)) for f in ("sequence", "device", "threads") if getattr(args, f) is not None]
    more = ("results_dir", "name", "data_root", "data_cache", "download", "loggers")
    args.overrides += [(f, getattr(args, f)) for f in more if getattr(args, f) is not None]
    if args.methods is not None:
        args.overrides.append(("methods", _expand_methods(args.methods)))
    if args.seed is not None:
        args.overrides.append(("seeds", [args.seed]))
    if args.seeds is not None:
        args.overrides.append(("seeds", args.seeds))
    pairs = _dotted_pairs(rest)
    args.slurm = {key[len("slurm.") :]: value for key, value in pairs if key.startswith("slurm.")}
    args.overrides += [(key, value) for key, value in pairs if not key.startswith("slurm.")]
    for key, value in args.overrides:
        apply_override(cfg, key, value)
    _warn_shadowed(cfg, {key for key, _ in pairs} | _keys_of_file(args.config))
    if args.smoke:  # after every override: its settings win (benchmark/run/smoke.py)
        from benchmark.run.smoke import smoke_config

        cfg = smoke_config(cfg)
    return args, cfg


def _keys_of_file(path: Optional[str]) -> set[str]:
    """Dotted keys a config file changes over its base (none for a complete config, ``base: defaults``,
    such as a run's resolved config.yaml: it names every key)."""
    if not path:
        return set()
    data = load_yaml_file(path, "config file") or {}  # already read once by load_yaml: valid here
    if data.get("base") == "defaults":
        return set()

    def walk(section: dict, prefix: str) -> set[str]:
        keys = set()
        for key, value in section.items():
            keys |= walk(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
        return keys

    return walk(data, "")


def _warn_shadowed(cfg: RunConfig, explicit: set[str]) -> None:
    """A setting the user gave that the run will not use says so (train.epochs under a
    sequence that sets epochs for every stage)."""
    if "train.epochs" not in explicit:
        return
    from tasks import load_sequence

    sequence = load_sequence(cfg.sequence)
    if all(stage.epochs for stage in sequence.stages):
        per_stage = ", ".join(f"{stage.task} {stage.epochs}" for stage in sequence.stages)
        log.warning(
            f"warning: train.epochs={cfg.train.epochs} is not used: sequence {sequence.name!r} sets the epochs of "
            f"every stage ({per_stage}); edit the sequence file to change them"
        )


def _expand_methods(text: str) -> str:
    if text.strip() == "all":
        from methods import METHODS

        return ",".join(METHODS.names())
    return text


def _dotted_pairs(rest: list[str]) -> list[tuple[str, str]]:
    """['--train.lr', '1e-4', '--eval.kinds=lp,zs'] -> [('train.lr', '1e-4'), ('eval.kinds', 'lp,zs')]."""
    pairs, i = [], 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--") or "." not in token.split("=")[0]:
            raise UserError(f"unrecognised argument {token!r}; see --help (config keys are dotted: --train.lr 1e-4)")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(rest):
                raise UserError(f"{token} needs a value")
            key, value = token[2:], rest[i + 1]
            i += 2
        pairs.append((key.replace("-", "_"), value))
    return pairs


def print_registries(args: argparse.Namespace, cfg: Optional[RunConfig] = None) -> None:
    from methods import METHODS
    from tasks import SEQUENCES, TASKS, load_sequence

    if args.list_methods:
        for name in METHODS.names():
            values = (cfg.hparams if cfg else {}).get(name)
            print(f"{name:14s} {_with_config_values(METHODS.get(name).describe(), values)}")
    if args.list_tasks:
        for name in TASKS.names():
            doc = (TASKS.get(name).__doc__ or "").strip().splitlines()
            print(f"{name:14s} {doc[0] if doc else ''}")
    if args.list_sequences:
        for name in SEQUENCES.names():
            seq = load_sequence(name)
            print(f"{name:14s} {seq.description}")


def _with_config_values(text: str, values: Optional[dict]) -> str:
    """A method's description with the values the config in force gives it (``alpha=100.0``
    under the embedded default), each followed by its built-in value."""
    import re

    for key, value in (values or {}).items():
        pattern = re.compile(rf"\b{re.escape(str(key))}=([^,\]]+)")
        built_in = pattern.search(text)
        note = f" (this config; built-in {built_in.group(1)})" if built_in else " (this config)"
        if built_in:
            replacement = f"{key}={value!r}{note}"
            text = pattern.sub(lambda _, shown=replacement: shown, text, count=1)  # type: ignore[misc]
        else:
            text += f" [{key}={value!r}{note}]"
    return text


SUITE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding benchmark/, methods/, tasks/


def check_own_packages() -> None:
    """The suite's top-level ``methods`` and ``tasks`` must be its own (``benchmark`` is, or this
    code would not run): a user's ``tasks.py`` (or ``methods/``) earlier on ``sys.path`` would
    shadow them. Say which file does, in one line."""
    import importlib.util

    for name in ("methods", "tasks"):
        spec = importlib.util.find_spec(name) if name not in sys.modules else sys.modules[name].__spec__
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or SUITE_ROOT not in origin.parents:
            raise UserError(
                f"the module {name!r} comes from {origin or 'nowhere'}, not from ldifs-bench ({SUITE_ROOT}); "
                f"a file or folder named {name} earlier on sys.path shadows the suite's: run from another "
                "folder, rename it, or install the suite in its own virtual environment"
            )


TORCH_PAIR_FIX = (
    "reinstall both from one index, e.g. pip install --force-reinstall torch torchvision "
    "--index-url https://download.pytorch.org/whl/cpu (or the CUDA index your torch came from)"
)


def check_torch_pair() -> None:
    """torch and torchvision must be built for each other: a CPU torch beside a CUDA
    torchvision (or another release's) fails late with ``operator torchvision::nms does not
    exist``. Say so at start-up, in one line with the fix."""
    import torch

    try:
        import torchvision
        from torchvision.extension import _has_ops
    except (ImportError, RuntimeError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"torchvision does not load with torch {torch.__version__} ({first}); {TORCH_PAIR_FIX}"
        ) from None
    if not _has_ops():
        raise UserError(
            f"torchvision {torchvision.__version__} was not built for torch {torch.__version__} "
            f"(its compiled operators do not load); {TORCH_PAIR_FIX}"
        )


@command  # the suite's one boundary: one line and exit 2, 130 for Ctrl-C, --debug for the traceback
def main(argv: list[str]) -> int:
    quiet_warnings()  # third-party internals' warnings off, every other one shown once
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs at root
    setup_console(quiet="-q" in argv or "--quiet" in argv)
    return _main(argv)


def _main(argv: list[str]) -> int:
    check_own_packages()
    args, cfg = parse_config(argv)
    if args.print_config:
        if args.sweep:  # the sweep's base, with the command line's overrides
            from benchmark.run.sweep import sweep_base

            cfg = sweep_base(Path(args.sweep), args.overrides)[1]
        print(dump_yaml(cfg), end="")
        return 0
    if args.list_methods or args.list_tasks or args.list_sequences:
        print_registries(args, cfg)
        return 0
    if not args.dry_run:  # importing torchvision costs a second: only where work will run
        check_torch_pair()
    _check_launched(args)
    if args.plan:  # the cost of this config (or sweep) on this device; nothing runs
        from benchmark.run.plan import plan_command

        return plan_command(cfg, args)
    if args.multirun:  # a grid from the command line: a sweep whose base is this config
        from benchmark.logs import once_per_command
        from benchmark.run.multirun import multirun_sweep
        from benchmark.run.sweep_cli import sweep_command

        if args.sweep:
            raise UserError("--multirun and --sweep do not mix: put the grid in the sweep file's grid:")
        with once_per_command():
            return sweep_command(args, multirun_sweep(cfg, args.multirun, args.select))
    sweep_flags = (args.launcher, args.shard, args.dry_run, args.merge_only, args.slurm, args.select)
    if args.launcher == "slurm" and not args.sweep and not any(sweep_flags[1:4] + (args.workers, args.select)):
        from benchmark.reporting.summary import print_headline
        from benchmark.run.launchers import submit_run

        print_headline(submit_run(cfg, args.slurm, args.fresh, args.keep_checkpoints))  # one run, one job
        return 0
    if args.sweep or any(sweep_flags):  # --workers alone shares a plain run's pairs
        from benchmark.logs import once_per_command
        from benchmark.run.sweep_cli import sweep_command

        with once_per_command():  # the cells' workers say each warning once, not once each
            return sweep_command(args)
    from benchmark.reporting.summary import print_headline
    from benchmark.run.runner import run

    command = shlex.join(["run_benchmark.py", *argv])  # for results/index.csv
    workers = 1 if args.workers is None else args.workers  # the runner refuses < 1
    run_dir = run(cfg, not args.quiet, args.fresh, args.keep_checkpoints, command=command, workers=workers)
    from benchmark import distributed

    if distributed.is_writer():  # under torchrun, one headline
        print_headline(run_dir)
    distributed.finish()
    return 0


def _check_launched(args: argparse.Namespace) -> None:
    """Under torchrun only a plain run shares its work between the processes."""
    from benchmark import distributed

    if distributed.launched() and (args.plan or args.multirun or args.sweep or args.launcher or args.dry_run):
        raise UserError(
            "under torchrun only a plain run is data-parallel; run --plan, --sweep, --multirun and --launcher "
            "without torchrun"
        )


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
