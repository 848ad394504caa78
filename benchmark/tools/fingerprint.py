"""Where do two hosts' numbers part? Bit-level hashes of the embedded default's first
computations, to diff between machines.

    python -m benchmark.tools.fingerprint            # quick: weights, preprocessing, forward, 3 steps
    python -m benchmark.tools.fingerprint --full     # + every task's stage-0 features and probe (~20 s)
    python -m benchmark.tools.fingerprint --out FILE # also write the lines to FILE (a new file)

Each line hashes one tensor (sha256 of its float32 bytes, 16 hex digits) after one step of
the pipeline: the shipped model's weights, the device preprocessing of 8 random images, a
forward of the image tower, three AdamW steps of it (quick); then, with ``--full``, each
task's stage-0 test and probe features, the fitted probe's weights and its accuracy. Two
hosts that compute the same thing print the same lines; the first line that differs says
where they part (docs/reproducibility.md has the lines of the hosts the suite was checked on).

Every run on a CPU records the sha256 of its quick lines in ``manifest.json``
(``cpu_fingerprint``): two runs whose fingerprints agree computed their first steps alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmark.models.fingerprint import STEPS, digest, header, quick_lines, tensor_hash

__all__ = ["STEPS", "digest", "header", "quick_lines", "tensor_hash", "task_lines", "run_fingerprint", "main"]


def task_lines(setup) -> Iterator[str]:
    """Every task's stage-0 test and probe features, fitted probe and its test accuracy."""
    visual = setup.bundle.model.visual
    for name, es in setup.tracker.sets.items():
        feats = setup.tracker.features(visual, es.test_images)
        probe_feats = setup.tracker.features(visual, es.probe_images)
        probe = setup.tracker.fit_probe(visual, es)
        acc = (probe(feats).argmax(-1).cpu() == es.test_labels).float().mean().item() * 100
        yield (
            f"task {name}: test feats {tensor_hash(feats)} probe feats {tensor_hash(probe_feats)} "
            f"probe W {tensor_hash(probe.weight)} acc {acc:.2f}"
        )


def run_fingerprint(full: bool) -> list[str]:
    """The embedded default's fingerprint lines on this host (the shipped model, one thread)."""
    from benchmark.run.cli import parse_config
    from benchmark.run.run_setup import prepare
    from benchmark.run.runner import check_inputs

    _, cfg = parse_config(["--methods", "finetune", "--seeds", "0", "--device", "cpu"])
    torch.set_num_threads(max(1, cfg.threads or 1))
    sequence, _ = check_inputs(cfg)
    if full:
        setup = prepare(cfg, sequence, progress=False)
        bundle, preprocess = setup.bundle, setup.preprocess
    else:  # no task data: the model and its preprocessing only
        from benchmark.models.clip_loading import load_clip
        from benchmark.models.preprocess import BatchPreprocess

        bundle = load_clip(cfg.model, torch.device("cpu"), False)
        preprocess = BatchPreprocess(bundle.image_size, bundle.mean, bundle.std, cfg.train.resize)
    quick = header() + list(quick_lines(bundle.model.visual, preprocess))  # type: ignore[arg-type]
    # the digest a run's manifest.json records as cpu_fingerprint (same lines, same threads)
    lines = quick + [f"digest {digest(quick)}"]
    return lines + (list(task_lines(setup)) if full else [])


def parse_args(argv: list[str]) -> argparse.Namespace:
    from benchmark.errors import OneLineParser

    p = OneLineParser(prog="python -m benchmark.tools.fingerprint", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also every task's stage-0 features and probe")
    p.add_argument("--out", type=Path, help="also write the lines to this new file (never replaces one)")
    return p.parse_args(argv)


def _fingerprint_main(argv: list[str]) -> int:
    from benchmark.errors import UserError

    args = parse_args(argv)
    if args.out is not None and (args.out.exists() or args.out.is_symlink()):
        raise UserError(f"--out {args.out} exists; name a new file (fingerprint never replaces one)")
    if args.out is not None and not args.out.parent.is_dir():
        raise UserError(f"--out {args.out}: folder {args.out.parent} does not exist")
    lines = run_fingerprint(args.full)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        with open(args.out, "x") as f:  # exclusive create: checked above, and never replaces a file
            f.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command, under the suite's one error boundary (benchmark.errors.run_command)."""
    from benchmark.errors import run_command

    args = list(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: _fingerprint_main(args), debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(main())
