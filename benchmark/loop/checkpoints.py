"""Stage-granular checkpoints: a killed run resumes after its last finished stage.

A checkpoint holds data, never code: tensors and plain containers (dicts, lists, strings,
numbers), so it loads with ``torch.load(weights_only=True)``, PyTorch's restricted
unpickler that refuses every class and function outside that allow-list. A checkpoint
planted in a results folder (a shared results directory, someone's partial run copied in)
therefore cannot run code when a run resumes; one that does not load this way, or does
not have the suite's layout, is ignored with a warning and that (method, seed) starts from
stage 1. The model is saved as state dicts (image tower, heads), each method's state
through its ``state_dict()``/``load_state_dict()`` hooks (``benchmark.training.method``),
Avalanche's counters and the RNG states as numbers and tensors.
"""

from __future__ import annotations

import copy
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmark import distributed
from benchmark.errors import ForeignCheckpoint, UserError
from benchmark.files import atomic_write
from benchmark.provenance import git_revision
from benchmark.rows import AccuracyRow
from benchmark.rundir import CHECKPOINTS_DIR
from benchmark.training.method import RestoreContext

log = logging.getLogger(__name__)

FORMAT = "ldifs-bench stage checkpoint 2"  # bumped when the layout changes: older files are ignored


def rng_state() -> dict[str, Any]:
    """Every RNG the training draws from, as tensors and plain numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, torch.tensor(words, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],  # type: ignore[attr-defined]
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class StageState:
    """What a (method, seed) needs to go on after ``stage``; saved as ``asdict(...)``."""

    stage: int = 0
    rows: list[AccuracyRow] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)  # per-stage summaries
    rng: dict[str, Any] = field(default_factory=dict)
    visual: Optional[dict[str, torch.Tensor]] = None  # the image tower's state dict
    heads: Optional[dict[str, dict[str, torch.Tensor]]] = None  # task label -> the head's weight, bias
    model_extra: dict[str, Any] = field(default_factory=dict)  # Avalanche's task bookkeeping, train/eval modes
    methods: Optional[list[dict[str, Any]]] = None  # per plugin: {"method": name, "state": its state dict}
    clock: dict[str, int] = field(default_factory=dict)  # Avalanche's counters (EWC indexes by them)
    done: bool = False
    status: str = "ok"
    error: str = ""
    git_revision: str = ""
    format: str = FORMAT


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    """The ClipClassifier as data: image tower and heads state dicts, Avalanche's task set."""
    return {
        "visual": model.visual.state_dict(),  # type: ignore[union-attr]
        "heads": {label: head.state_dict() for label, head in model.heads.items()},  # type: ignore[operator, union-attr]
        "model_extra": {
            "known_train_tasks_labels": sorted(int(t) for t in getattr(model, "known_train_tasks_labels", ())),
            "max_class_label": int(getattr(model, "max_class_label", 0)),
            "training": module_modes(model),
        },
    }


def module_modes(model: torch.nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def set_module_modes(model: torch.nn.Module, modes: dict[str, bool]) -> None:
    for name, module in model.named_modules():
        if name in modes:
            module.training = bool(modes[name])


def capture_stage(stage: int, model: torch.nn.Module, plugins: list, clock: Any, result: Any) -> StageState:
    """The state right after ``stage``: model, methods, Avalanche's counters, RNG, rows so far."""
    return StageState(
        stage=stage,
        rows=result.rows,
        stages=result.stages,
        rng=rng_state(),
        methods=[{"method": p.name, "state": p.state_dict()} for p in plugins],
        clock={k: v for k, v in vars(clock).items() if type(v) is int},
        status=result.status,
        error=result.error,
        **model_state(model),
    )


def restore_stage(saved: StageState, model: torch.nn.Module, plugins: list, context: RestoreContext) -> None:
    """Load a saved stage into a freshly built model and freshly built methods.

    Rebuilding heads draws from the RNG, so call this before restoring the RNG state."""
    try:
        model.visual.load_state_dict(saved.visual)  # type: ignore[union-attr]
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        raise ForeignCheckpoint(f"its image tower does not fit this model: {_first_line(e)}") from e
    device = next(model.visual.parameters()).device  # type: ignore[union-attr]
    try:
        heads = [
            (int(label), head["weight"].to(device), head["bias"].to(device)) for label, head in saved.heads.items()
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ForeignCheckpoint(f"its heads are not a stage checkpoint's ({type(e).__name__}: {e})") from e
    for label, weight, bias in heads:
        model.add_head(label, weight, bias)  # type: ignore[operator]
    extra = saved.model_extra
    model.known_train_tasks_labels = set(extra.get("known_train_tasks_labels", []))  # type: ignore[assignment]
    model.max_class_label = extra.get("max_class_label", 0)
    set_module_modes(model, extra.get("training", {}))
    names = [entry["method"] for entry in saved.methods]
    if names != [p.name for p in plugins]:
        raise ForeignCheckpoint(f"it holds the state of methods {names}, not of {[p.name for p in plugins]}")
    for plugin, entry in zip(plugins, saved.methods):
        plugin.load_state_dict(entry["state"], context)  # raises ForeignCheckpoint, or a bug's own error


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def plain(value: Any, where: str = "state") -> Any:
    """``value`` as what ``torch.load(weights_only=True)`` accepts: tensors, numbers,
    strings, None and dicts/lists of them (numpy scalars and sets converted); anything
    else is a TypeError naming where it is, so a method cannot smuggle an object in."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v, f"{where}[{k!r}]") for k, v in value.items() if _key_ok(k, where)}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v, where) for v in value)
    raise TypeError(f"{where} is a {type(value).__name__}, not a tensor or plain data")


def _key_ok(key: Any, where: str) -> bool:
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise TypeError(f"{where} has a key of type {type(key).__name__}")
    return True


def _write(path: Path, data: dict) -> None:
    """Save ``data`` atomically: the previous checkpoint stays whole until the new one is.

    ``torch.save`` reports a failed write (a full disk, a quota) as a RuntimeError from its
    stream writer, not an OSError; the data is plain (``plain``), so a RuntimeError here is
    the write failing: one line, and the run resumes from the previous checkpoint."""
    try:
        atomic_write(path, lambda stream: torch.save(data, stream), binary=True)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(
            f"cannot write the checkpoint {path} ({reason}; is the disk full?); "
            "free space and re-run the same command to resume"
        ) from None


class StageCheckpoints:
    """The latest stage of one (method, seed): model, method state, RNG, tracker rows."""

    def __init__(self, folder: Optional[Path], spec: str, seed: int, keep: bool = False) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec)
        self.path = folder / CHECKPOINTS_DIR / f"{safe}__seed{seed}.pt" if folder else None
        self.keep = keep
        self.ignored: Optional[str] = None  # why a checkpoint found there was not used

    def load(self) -> Optional[StageState]:
        """The saved state, or None (no file, or one that is not a checkpoint of this suite)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            # weights_only: PyTorch's restricted unpickler; a file that asks for any class or
            # function (code) is refused before anything in it runs.
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("it does not have this suite's checkpoint layout")
            state = StageState(**data)
        except Exception as e:  # refused by the safe unpickler, truncated, or someone else's
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # the caller (the scheduler) says it once, with the method and seed
            self.ignored = f"ignoring {self.path} (not a checkpoint this suite can load safely: {reason[:200]})"
            return None
        if state.git_revision not in (git_revision(), ""):
            log.warning(
                f"{self.path.name} was written by suite revision {state.git_revision}, this is "
                f"{git_revision()}: resuming anyway; use --fresh if the change matters"
            )
        return state

    def save(self, state: StageState) -> bool:
        """Write the state (atomically); False when it is not plain data and was not saved,
        and on every process but 0 under torchrun (one writer)."""
        if self.path is None or not distributed.is_writer():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = copy.copy(state)
        state.git_revision = git_revision()
        try:
            data = plain(asdict(state))
        except TypeError as e:
            # A method whose state is not plain data still runs; it just restarts from
            # stage 1 if the run is interrupted.
            log.warning(f"no checkpoint for {self.path.stem}: its state cannot be saved safely ({e})")
            return False
        if self.keep and not state.done:  # keep every stage's file, not only the latest
            _write(self.path.with_name(f"{self.path.stem}.stage{state.stage}.pt"), data)
        _write(self.path, data)
        return True

    def finish(self, state: StageState) -> None:
        """The (method, seed) is done: keep its rows, drop the weights unless asked to keep them."""
        state.done = True
        if not self.keep:
            state.visual = state.heads = state.methods = None
            state.model_extra, state.clock, state.rng = {}, {}, {}
        if not self.save(state) and self.path is not None:  # unsaveable state: keep the rows at least
            self.save(
                StageState(state.stage, state.rows, state.stages, done=True, status=state.status, error=state.error)
            )
