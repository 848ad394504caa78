"""Per-layer feature drift: after every stage, how far each tapped layer of the encoder has
moved, so a run shows *where* a method forgets as well as how much.

For every task a fixed batch of its test images (``eval.drift_images``, drawn once, the same
images every stage) goes through the encoder once per stage with the LDIFS taps recorded
(``benchmark.models.taps.image_taps``: ln_pre and every quarter of the blocks of a ViT, the
stem and the four stages of a ResNet). Per tap it records:

- ``dist_*``: the LDIFS distance (Mukhoti et al., TMLR 2024, Eq. 2), the mean over images
  and positions of ``|f/|f| - r/|r||^2 / C``, each vector l2-normalised along the feature
  axis (C channels of a conv map, the width of a ViT token), computed by LDIFS's own
  ``ldifs_distance``;
- ``cka_*``: linear CKA (Kornblith et al., ICML 2019) of the taps flattened to ``[N, D]``,
  ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features, computed from
  the ``N x N`` Gram matrices (the same number; ``D`` is up to 50 x 768 per ViT-B/32 tap);

each against the pre-trained encoder (``*_pretrained``; its taps computed once per run) and
against the encoder after the previous stage (``*_previous``; its taps kept from the
previous stage's measurement, so no old encoder is run again). After a resume the previous
stage's encoder is the stage checkpoint's, and its taps are computed from it once.

The encoder runs as the tracker evaluates it: inference mode, BatchNorm on its running
statistics, the run's precision. Rows are kept per (method, seed) in a file beside its stage
checkpoint, rewritten after every stage (a resumed stage replaces its rows); the runner joins
them into ``feature_drift.csv`` (``write_feature_drift``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from benchmark.errors import UserError
from benchmark.evaluation.tracker import Tracker
from benchmark.files import atomic_write
from benchmark.models.preprocess import run_autocast
from benchmark.models.taps import Tap, TapRecorder, image_taps, ldifs_distance
from benchmark.rundir import CHECKPOINTS_DIR, FEATURE_DRIFT_CSV
from tasks.cache import batches

log = logging.getLogger(__name__)

# feature_drift.csv's columns (benchmark/reporting/drift_table.py reads them; the reporting layer
# cannot import this one, so both spell them and a test checks the written file against the reader)
DRIFT_COLUMNS = ("method", "seed", "stage", "trained_task", "eval_task", "layer", "measure", "value")
NORM_AXIS = "features"  # the paper's Eq. 2 normalises channels; for a ViT token that is its width
PART_SUFFIX = ".drift.csv"  # a (method, seed)'s rows, beside its stage checkpoint
PRETRAINED = "pretrained"  # trained_task of stage 0, as in accuracy_long.csv


# ---------------------------------------------------------------- the two measures


def centred_gram(x: torch.Tensor) -> torch.Tensor:
    """The ``N x N`` Gram matrix ``X X^T`` of features ``[N, ...]`` flattened to ``[N, D]`` and
    column-centred: products in float32 (float64 inputs stay float64), the result in float64
    for CKA's sums (float32 products moved a CKA of 0.99985 by 5e-12; they cost a third of float64's)."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        x = x.permute(0, 2, 3, 1)  # features in memory order, no copy: CKA does not depend on their order
    flat = x.flatten(1)
    flat = flat.float() if flat.dtype != torch.float64 else flat
    flat = flat - flat.mean(0, keepdim=True)
    return (flat @ flat.T).double()


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741  Kornblith et al.'s K and L
    """Linear CKA from two centred Gram matrices: ``<K, L>_F / (||K||_F ||L||_F)``, which equals
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` (Kornblith et al., ICML 2019: with K = X X^T,
    ``<K, L>_F = ||Y^T X||_F^2`` and ``||K||_F = ||X^T X||_F``); NaN when either side has no variance."""
    denominator = float(k.norm() * l.norm())
    return float((k * l).sum()) / denominator if denominator > 0 else math.nan


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices with the same rows (images): 1 for identical
    features, invariant to orthogonal transforms and isotropic scaling of either."""
    return cka_from_grams(centred_gram(x), centred_gram(y))


def layer_measures(
    current: list[torch.Tensor], reference: list[torch.Tensor], taps: list[Tap], grams: tuple[list, list]
) -> list[tuple[float, float]]:
    """(LDIFS distance, linear CKA) per tap of two encoders' taps of the same images;
    ``grams``: both sides' centred Gram matrices, per tap."""
    out = []
    for i, tap in enumerate(taps):
        ref = reference[i].to(current[i].device)
        distance = float(ldifs_distance([current[i]], [ref], [tap], NORM_AXIS))
        out.append((distance, cka_from_grams(grams[0][i], grams[1][i].to(grams[0][i].device))))
    return out


# ---------------------------------------------------------------- one run's measurement


@dataclass
class EncoderTaps:
    """One encoder's taps of every task's fixed batch: raw taps on the CPU (for the distance;
    a ViT-B tap of 256 images is 39 MB) and their centred Gram matrices on the device (CKA)."""

    taps: dict[str, list[torch.Tensor]]
    grams: dict[str, list[torch.Tensor]]


def fixed_batch(images: Any, n: int) -> torch.Tensor:
    """``n`` test images drawn once with a fixed seed (a test split may be ordered by class),
    all of them when there are fewer; read once into memory (a mapped decoded-image cache
    would be read from disk at every stage)."""
    if len(images) > n:
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n].sort().values]
    return torch.cat(list(batches(images, 4096))) if len(images) else images


class _LastTapDone(Exception):
    """Raised by a hook on the last tap: the layers after it (a ResNet's attention pool, a
    ViT's projection) are not measured, so the forward stops there (a third of tiny-rn's)."""


def _stop(*_args) -> None:
    raise _LastTapDone


class FeatureDrift:
    """The measurement of one run (one per tracker): the fixed batches, the pre-trained
    encoder's taps, and per (method, seed) the taps of the encoder after its last stage."""

    def __init__(self, tracker: Tracker, pretrained: nn.Module, images: int) -> None:
        self.tracker, self.pretrained_visual = tracker, pretrained
        self.batches = {name: fixed_batch(es.test_images, images) for name, es in tracker.sets.items()}
        self.pretrained: Optional[EncoderTaps] = None
        # (method, seed) -> (stage, the model it was measured on, its taps): valid for that model only
        self.previous: dict[tuple[str, int], tuple[int, weakref.ref, EncoderTaps]] = {}
        self.rows: dict[tuple[str, int], list[dict]] = {}  # the latest rows of each (method, seed)
        self.layers = [tap.name for tap in image_taps(pretrained)]
        self.forwards = 0  # encoder forward passes (batches) the measurement ran: its cost

    @torch.inference_mode()
    def measure(self, visual: nn.Module) -> tuple[list[Tap], EncoderTaps]:
        """The taps of every task's fixed batch, through the encoder as the tracker runs it."""
        t, taps = self.tracker, image_taps(visual)
        recorder, modes = TapRecorder(taps), {m: m.training for m in visual.modules()}
        stop = taps[-1].module.register_forward_hook(_stop)  # after the recorder's hook: it records first
        visual.eval()
        out = EncoderTaps({}, {})
        try:
            with run_autocast(t.amp, t.device):
                for name, images in self.batches.items():
                    chunks = []
                    for chunk in batches(images, t.cfg.batch_size, pin=t.device.type == "cuda"):
                        with contextlib.suppress(_LastTapDone):
                            visual(t.preprocess(chunk.to(t.device, non_blocking=True)))
                        chunks.append(recorder.take())
                        self.forwards += 1
                    per_tap = [torch.cat(parts) for parts in zip(*chunks)]
                    # float64 Gram matrices; MPS has no float64, so there they are made on the CPU
                    out.grams[name] = [centred_gram(x if x.device.type != "mps" else x.cpu()) for x in per_tap]
                    out.taps[name] = [x.cpu() for x in per_tap]
        finally:
            recorder.remove()
            stop.remove()
            for module, training in modes.items():  # each module's own mode, as it was
                module.training = training
        return taps, out

    def record(
        self, model: nn.Module, method: str, seed: int, stage: int, task: str, checkpoints: Any = None
    ) -> list[dict]:
        """Measure ``model.visual`` after ``stage`` (trained on ``task``); return the (method,
        seed)'s rows of stages 0..stage, also written beside its stage checkpoint."""
        if self.pretrained is None:
            self.pretrained = self.measure(self.pretrained_visual)[1]
        previous = self._previous(model, (method, seed), stage, checkpoints)
        taps, current = self.measure(model.visual)  # type: ignore[arg-type]
        rows = self._compare(current, self.pretrained, taps, "pretrained", (method, seed, stage, task))
        if previous is self.pretrained:  # stage 1: the previous encoder is the pre-trained one
            rows += [{**r, "measure": r["measure"].replace("_pretrained", "_previous")} for r in rows]
        elif previous is not None:
            rows += self._compare(current, previous, taps, "previous", (method, seed, stage, task))
        # one (method, seed) runs at a time: only its taps are kept (a ViT-B's are GBs over MTIL's tasks)
        self.previous = {(method, seed): (stage, weakref.ref(model), current)}
        return self._store(method, seed, stage, rows, part_path(checkpoints))

    @torch.no_grad()
    def _compare(self, current: EncoderTaps, ref: EncoderTaps, taps: list[Tap], what: str, labels: tuple) -> list[dict]:
        """The rows of ``dist_<what>`` and ``cka_<what>`` on every task and layer."""
        rows = []
        for name in self.batches:
            grams = (current.grams[name], ref.grams[name])
            pairs = layer_measures(current.taps[name], ref.taps[name], taps, grams)
            for layer, (distance, cka) in zip(self.layers, pairs):
                rows.append(_row(*labels, name, layer, f"dist_{what}", distance))  # type: ignore[call-arg]
                rows.append(_row(*labels, name, layer, f"cka_{what}", cka))  # type: ignore[call-arg]
        return rows

    def _previous(self, model: nn.Module, key: tuple[str, int], stage: int, checkpoints: Any) -> Optional[EncoderTaps]:
        """The taps of the encoder after ``stage - 1``: the pre-trained one's, those kept from
        the last measurement of this very model, or (after a resume) those of the stage
        checkpoint's encoder, measured now; None, with a warning, when there is none."""
        if stage == 1:
            return self.pretrained
        held = self.previous.get(key)
        if held is not None and held[0] == stage - 1 and held[1]() is model:
            return held[2]
        saved = checkpoints.load() if checkpoints is not None else None
        if saved is None or saved.stage != stage - 1 or not saved.visual:
            log.warning(f"[{key[0]} seed {key[1]}] feature drift: no encoder of stage {stage - 1}; *_previous left out")
            return None
        tower = copy.deepcopy(model.visual)  # the architecture (a method may have changed it), then the weights
        tower.load_state_dict(saved.visual)  # type: ignore[union-attr]
        return self.measure(tower)[1]  # type: ignore[arg-type]

    def stage0_rows(self, method: str, seed: int) -> list[dict]:
        """Stage 0 is the pre-trained encoder itself: distance 0 and CKA 1 by definition (the
        measurement of the pre-trained encoder against its own taps gives them up to rounding)."""
        return unchanged_rows(method, seed, 0, PRETRAINED, list(self.batches), self.layers, previous=False)

    def _store(self, method: str, seed: int, stage: int, rows: list[dict], part: Optional[Path]) -> list[dict]:
        """Keep the earlier stages' rows and replace this stage's and later ones (a resumed
        stage is measured again); write them atomically when the run has a folder."""
        if part is not None:  # the file, never rows another run of this (method, seed) left in memory
            earlier = read_rows(part) if part.is_file() else []
        else:
            earlier = self.rows.get((method, seed), [])
        kept = [r for r in earlier if 0 < r["stage"] < stage]
        if len({r["stage"] for r in kept}) < stage - 1:
            log.warning(f"[{method} seed {seed}] feature drift: rows of stages before {stage} are missing")
        self.rows[(method, seed)] = self.stage0_rows(method, seed) + kept + rows
        if part is not None:
            write_rows(part, self.rows[(method, seed)])
        return self.rows[(method, seed)]


def _row(method: str, seed: int, stage: int, task: str, eval_task: str, layer: str, measure: str, value: float) -> dict:
    return dict(zip(DRIFT_COLUMNS, (method, seed, stage, task, eval_task, layer, measure, value)))


def unchanged_rows(
    method: str, seed: int, stage: int, task: str, eval_tasks: list[str], layers: list[str], previous: bool = True
) -> list[dict]:
    """The rows of an encoder identical to the pre-trained one (and to the previous stage's)."""
    against = ("pretrained", "previous") if previous else ("pretrained",)
    return [
        _row(method, seed, stage, task, name, layer, f"{measure}_{what}", value)
        for name in eval_tasks
        for what in against
        for layer in layers
        for measure, value in (("dist", 0.0), ("cka", 1.0))
    ]


# ---------------------------------------------------------------- files


def part_path(checkpoints: Any) -> Optional[Path]:
    """Where a (method, seed)'s rows live during a run: beside its stage checkpoint (None: no folder)."""
    path = getattr(checkpoints, "path", None)
    return None if path is None else path.with_name(path.stem + PART_SUFFIX)


def write_rows(path: Path, rows: Iterable[dict]) -> None:
    """The rows as CSV, atomically (values to 6 significant digits)."""

    def write(stream) -> None:
        writer = csv.writer(stream)
        writer.writerow(DRIFT_COLUMNS)
        for r in rows:
            writer.writerow([*(r[c] for c in DRIFT_COLUMNS[:-1]), format(r["value"], ".6g")])

    atomic_write(path, write)


def read_rows(path: Path) -> list[dict]:
    """Rows written by ``write_rows``; an unreadable file gives none (its stages are measured again only if resumed)."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            return [
                {**r, "seed": int(r["seed"]), "stage": int(r["stage"]), "value": float(r["value"])}
                for r in csv.DictReader(stream)
            ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning(f"feature drift: ignoring {path} ({e})")
        return []


# ---------------------------------------------------------------- the scheduler's and the runner's calls

_RUNS: weakref.WeakKeyDictionary[Tracker, Optional[FeatureDrift]] = weakref.WeakKeyDictionary()


def drift_of(setup: Any) -> Optional[FeatureDrift]:
    """The run's measurement (made at its first use); None when ``eval.drift_images`` is 0 or
    the image tower has no taps (a warning says so once)."""
    tracker = setup.tracker
    images = tracker.cfg.drift_images
    if not images:
        return None
    if tracker not in _RUNS:
        try:
            _RUNS[tracker] = FeatureDrift(tracker, setup.bundle.model.visual, images)
        except UserError as e:  # a tower without declared taps: the run goes on unmeasured
            log.warning(f"feature drift not measured: {e}")
            _RUNS[tracker] = None
    return _RUNS[tracker]


def record_drift(setup: Any, model: nn.Module, result: Any, stage: int, task: str, checkpoints: Any = None) -> None:
    """After ``stage``'s evaluation: measure the (method, seed)'s encoder (``result`` names
    them) and note the seconds it took in the stage's summary (``drift_seconds``)."""
    drift = drift_of(setup)
    if drift is None:
        return
    started = time.time()
    drift.record(model, result.method, result.seed, stage, task, checkpoints)
    seconds = time.time() - started
    if result.stages and result.stages[-1].get("stage") == stage:
        result.stages[-1]["drift_seconds"] = round(seconds, 2)
    log.info(f"[{result.method} seed {result.seed}] stage {stage}: feature drift measured in {seconds:.1f}s")


def write_feature_drift(folder: Path, setup: Any, results: Iterable[Any]) -> Optional[Path]:
    """Join every (method, seed)'s rows into ``feature_drift.csv`` (atomically), in the order
    of ``results``. A method the scheduler did not run stage by stage because nothing in it
    trains (zero-shot in a task-incremental sequence) kept the pre-trained encoder: its rows
    say so (distance 0, CKA 1) for every stage its accuracy rows have."""
    drift = drift_of(setup)
    if drift is None:
        return None
    parts: dict[tuple[str, int], list[dict]] = {}
    for path in sorted((Path(folder) / CHECKPOINTS_DIR).glob(f"*{PART_SUFFIX}")):
        for row in read_rows(path):
            parts.setdefault((row["method"], row["seed"]), []).append(row)
    rows = []
    for r in results:
        got = parts.get((r.method, r.seed)) or drift.rows.get((r.method, r.seed), [])
        if not got and not r.stages and r.status == "ok":
            got = drift.stage0_rows(r.method, r.seed)
            tasks = sorted({(int(row["stage"]), row["trained_task"]) for row in r.rows if row["stage"] > 0})
            for stage, task in tasks:
                got += unchanged_rows(r.method, r.seed, stage, task, list(drift.batches), drift.layers)
        rows += got
    path = Path(folder) / FEATURE_DRIFT_CSV
    write_rows(path, rows)
    return path
