"""What every (method, seed) of a run shares, loaded once per process: the device, the
model, the tasks with their evaluation sets, the tracker (``prepare``); and the pre-trained
model's rows a run saved (``read_stage0``). The runner and its worker processes
(``benchmark.run.pair_workers``) both build it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmark import distributed
from benchmark.config import RunConfig
from benchmark.errors import UserError
from tasks import Sequence, Task, TaskContext
from tasks.cache import resolve_cache_dir
from tasks.declared import declarations, task_factory

if TYPE_CHECKING:
    from benchmark.evaluation.tracker import EvalSet
    from benchmark.loop.scheduler import RunSetup
    from benchmark.models.clip_loading import ClipBundle


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; valid choices: auto, cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} requested but MPS is not available here; valid choices: auto, cpu")
    return _device_of_this_process(name, device)


def _device_of_this_process(name: str, device: torch.device) -> torch.device:
    """Under torchrun, each process trains on the GPU of its local rank (``--device cuda``)."""
    if not distributed.launched() or device.type == "cpu":
        return device
    if device.type != "cuda" or device.index is not None:
        raise UserError(
            f"device {name!r} under torchrun: each process takes the GPU of its LOCAL_RANK; valid choices: cuda, cpu, auto"
        )
    if distributed.cuda_index() >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {distributed.local_rank()} has no GPU: {torch.cuda.device_count()} visible here")
    return torch.device("cuda", distributed.cuda_index())


def prepare(cfg: RunConfig, sequence: Sequence, progress: bool) -> RunSetup:
    from benchmark.evaluation.tracker import Tracker, probed_tasks
    from benchmark.loop.scheduler import RunSetup
    from benchmark.loop.seen_classes import dataset_context, split_into_groups
    from benchmark.models.clip_loading import load_clip
    from benchmark.models.preprocess import BatchPreprocess
    from tasks.base import with_prompts

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    bundle = load_clip(cfg.model, device, progress)
    preprocess = BatchPreprocess(bundle.image_size, bundle.mean, bundle.std, cfg.train.resize)
    ctx = TaskContext(
        data_root=Path(cfg.data_root),
        seed=0,
        train_limit=_load_limit(cfg),
        test_limit=cfg.eval.test_limit,
        download=cfg.download,
        data_cache=resolve_cache_dir(cfg.data_cache, cfg.model.cache_dir),
        val="val" in cfg.eval.splits,
        image_size=bundle.image_size,  # image-file tasks decode at the model's size
    )
    declared = declarations(sequence.declared, sequence.path, cfg.tasks)
    tasks = {name: task_factory(name, declared)(dataset_context(ctx, sequence, name)) for name in sequence.loaded_tasks}
    tasks = {name: with_prompts(task, cfg.prompts.templates, cfg.prompts.classnames) for name, task in tasks.items()}
    if sequence.class_incremental:  # the dataset's classes in groups, one task per stage
        tasks = split_into_groups(tasks, sequence)
    sets = {name: _eval_set(task, bundle, cfg, device) for name, task in tasks.items()}
    probed = probed_tasks(cfg.eval.lp_tasks, sequence)
    tracker = Tracker(sets, cfg.eval, preprocess, device, progress, amp=cfg.train.amp, probed=probed)
    return RunSetup(cfg, sequence, tasks, bundle, device, preprocess, tracker, progress)


def _load_limit(cfg: RunConfig):
    """Images per train split worth decoding: what fine-tuning or the probe will use."""
    limits = (cfg.train.train_limit, cfg.eval.lp_train_limit)
    return None if None in limits else max(limits)


def _eval_set(task: Task, bundle: ClipBundle, cfg: RunConfig, device: torch.device) -> EvalSet:
    from benchmark.evaluation.heads import zeroshot_weights
    from benchmark.evaluation.tracker import EvalSet
    from benchmark.loop.seen_classes import group_limit

    probe = task.train.subset(group_limit(cfg.eval.lp_train_limit, task, "train"), seed=1)
    test = task.test.subset(group_limit(cfg.eval.test_limit, task, "test"), seed=2)
    zs = zeroshot_weights(bundle.model, bundle.tokenizer, task.prompts(), device)
    es = EvalSet(task, probe.images, probe.labels, test.images, test.labels, zs)
    # The validation split is scored when eval.splits asks, and picks the authors' probe's lr
    # (eval.probe=authors) either way.
    if ("val" in cfg.eval.splits or cfg.eval.probe == "authors") and task.val is not None:
        val = task.val.subset(group_limit(cfg.eval.test_limit, task, "val"), seed=3)
        es.val_images, es.val_labels = val.images, val.labels
    return es


def read_stage0(path: Path):
    """The pretrained model's rows saved by an earlier attempt (deterministic, but not free:
    a resumed run reuses them); None when absent or unreadable, so they are recomputed."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None
