"""``--plan``: what a run will cost, before it runs.

Counts come from the registered split sizes (``tasks.standins.SPLIT_SIZES``, the real datasets'
published counts) for the real datasets, so no data needs to be on disk; a task without a
registered size (the embedded world, a declared task) is loaded to count it. The protocol
then fixes everything: the authors' 90/10 train/validation split (tasks/loading.py), the 20%
held out where a dataset has no test split, ``train.train_limit``, the epochs of each stage,
``eval.test_limit`` / ``eval.lp_train_limit``, the tracker's passes (test features for
``head`` and ``zs``, the probe's train features and, for the authors' probe, its validation
features, after stage 0 and after every stage).

Time: one timed probe on this device of the config's architecture with random weights
(the time of a step does not depend on the weights, and no download is needed): one
training step (forward, cross-entropy, backward, AdamW) and one evaluation batch. On a CPU
the probe times batches of 2 and 8 and extrapolates the line through them to the batch (a
ViT-B step at batch 128 would take minutes there); on a GPU it times the config's batch. LDIFS adds one forward of its reference a step
(timed as an evaluation batch); other methods are counted as fine-tuning's step. The probe's
fits are counted in matmul flops at a measured rate. Not counted: loading the model and data,
the first decode into the cache, checkpoints, reports. ``--plan`` writes the estimate to
``<results_dir>/.plans/<config hash>.json``; the run of that config records it in its
manifest with how far off it was.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch

from benchmark.config import RunConfig
from benchmark.run.plan_record import plan_file
from tasks import Sequence

VAL_FRACTION, MAX_VAL, HELD_OUT = 0.1, 20_000, 0.2  # tasks/loading.py's protocol
CPU_PROBE_BATCHES = (2, 8)


@dataclass
class TaskCount:
    """One task's images as the protocol uses them."""

    name: str
    train: int  # fine-tuning's split (90% of train)
    val: int
    test: int
    source: str  # where the counts come from
    share: float = 1.0  # class-incremental group: its share of the dataset's images


@dataclass
class Plan:
    sequence: str
    stages: list[dict] = field(default_factory=list)  # task, images, epochs, steps
    evals: list[dict] = field(default_factory=list)  # task, test, probe, val images a pass
    passes: int = 0  # evaluation passes of every task (stage 0 once, then each stage of each training run)
    training_runs: list[str] = field(default_factory=list)  # "method seed" pairs that train
    probe: dict = field(default_factory=dict)  # the timing probe's measurements
    seconds: dict = field(default_factory=dict)  # the estimate's parts
    sources: list[str] = field(default_factory=list)
    classes: dict[str, int] = field(default_factory=dict)  # the probe's classes a task

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


# ----------------------------------------------------------------------------- counts


def split_counts(train: int, test: Optional[int]) -> tuple[int, int, int]:
    """(fine-tuning, validation, test) images of a dataset of ``train`` (+ ``test``) images."""
    if test is None:  # held out (tasks/loading.py held_out_indices)
        test = max(1, int(round(train * HELD_OUT))) if train > 1 else 0
        train -= test
    val = min(int(train * VAL_FRACTION), MAX_VAL)
    return train - val, val, test


def task_counts(cfg: RunConfig, sequence: Sequence) -> dict[str, TaskCount]:
    """Every evaluated task's counts (class-incremental: one entry per group)."""
    from tasks.standins import SPLIT_SIZES

    counts: dict[str, TaskCount] = {}
    for name in sequence.loaded_tasks:
        if name in SPLIT_SIZES and name not in cfg.tasks and name not in sequence.declared:
            train, val, test = split_counts(*SPLIT_SIZES[name])
            counts[name] = TaskCount(name, train, val, test, "registered split sizes")
        else:
            counts[name] = _loaded_counts(cfg, sequence, name)
    if sequence.class_incremental:
        counts = _groups(counts, sequence)
    return counts


def _loaded_counts(cfg: RunConfig, sequence: Sequence, name: str) -> TaskCount:
    """A task without a registered size, loaded to count it (the embedded world: seconds;
    a declared dataset is decoded, into the cache when the config names one)."""
    from tasks import TaskContext
    from tasks.declared import declarations, task_factory

    key = (cfg.data_root, sequence.path, name, repr(cfg.tasks))
    if key not in _LOADED:  # a sweep's cells share their tasks: each is counted once
        ctx = TaskContext(data_root=Path(cfg.data_root), data_cache=None)
        task = task_factory(name, declarations(sequence.declared, sequence.path, cfg.tasks))(ctx)
        val = len(task.val) if task.val is not None else 0
        _LOADED[key] = TaskCount(name, len(task.train), val, len(task.test), "loaded")
    return _LOADED[key]


_LOADED: dict[tuple, TaskCount] = {}


def _groups(counts: dict[str, TaskCount], sequence: Sequence) -> dict[str, TaskCount]:
    spec = sequence.classes
    whole = counts.pop(spec.dataset)
    if spec.groups is not None:
        groups = spec.groups
    else:
        groups = spec.class_groups(_dataset_classes(spec.dataset, spec.order))
    total = sum(len(g) for g in groups)
    out = {}
    for name, group in zip(spec.group_names(), groups):
        share = len(group) / total
        out[name] = TaskCount(
            name,
            round(whole.train * share),
            round(whole.val * share),
            round(whole.test * share),
            whole.source,
            share,
        )
    return {**out, **counts}


def build_plan(cfg: RunConfig, sequence: Sequence) -> Plan:
    """Stages, steps and evaluation images of the run (no timing yet)."""
    from methods import build_method

    counts = task_counts(cfg, sequence)
    plan = Plan(sequence.name, sources=sorted({c.source for c in counts.values()}))
    batch = cfg.train.batch_size
    for stage in sequence.stages:
        c = counts[stage.task]
        images = c.train if cfg.train.train_limit is None else min(c.train, cfg.train.train_limit)
        epochs = stage.epochs or cfg.train.epochs
        per_epoch = max(1, math.ceil(images / batch))
        plan.stages.append({"task": stage.task, "images": images, "epochs": epochs, "steps": per_epoch * epochs})
    authors = cfg.eval.probe == "authors"
    for c in counts.values():
        probe = c.train if cfg.eval.lp_train_limit is None else min(c.train, cfg.eval.lp_train_limit)
        limit = cfg.eval.test_limit
        test = c.test if limit is None else min(c.test, limit)
        val = (c.val if limit is None else min(c.val, limit)) if (authors or "val" in cfg.eval.splits) else 0
        lp = "lp" in cfg.eval.kinds
        plan.evals.append({"task": c.name, "test": test, "probe": probe if lp else 0, "val": val if lp else 0})
    for seed in cfg.seeds:
        for spec in cfg.methods:
            hooks = build_method(spec, cfg.hparams, check_only=True)
            if all(_trains(h) for h in hooks) or sequence.class_incremental:
                plan.training_runs.append(f"{spec} {seed}")
    plan.passes = 1 + len(plan.training_runs) * len(sequence.stages)
    return plan


def _trains(method: Any) -> bool:
    trains = getattr(method, "trains", True)  # a method's hook (or, in older methods, a flag)
    return bool(trains() if callable(trains) else trains)


# ----------------------------------------------------------------------------- timing


def time_probe(cfg: RunConfig, device: torch.device, classes: int) -> dict[str, Any]:
    """Seconds of one training step and of one image's evaluation forward, and matmul flops/s."""
    from benchmark.models.classifier import ClipClassifier

    visual, size = _architecture(cfg, device)
    model = ClipClassifier(visual).to(device)
    with torch.no_grad():
        dim = model.visual(torch.zeros(2, 3, size, size, device=device)).shape[-1]
    model.add_head(0, torch.randn(classes, dim, device=device))
    cpu = device.type == "cpu"
    batch = cfg.train.batch_size
    # A CPU times batches of 2 and 8 and extrapolates the line through them (a ViT-B step at
    # batch 128 would take minutes there); a GPU times the config's batch itself.
    sizes = [min(batch, b) for b in CPU_PROBE_BATCHES] if cpu else [batch]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    steps, forwards = [], []
    for b in sorted(set(sizes)):
        x = torch.randn(b, 3, size, size, device=device)
        y = torch.randint(0, classes, (b,), device=device)

        def step(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            loss = torch.nn.functional.cross_entropy(model(x, 0), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def forward(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model.visual(x)

        steps.append((b, _timed(step, device)))
        forwards.append((b, _timed(forward, device)))
    a, w = torch.randn(4096, dim, device=device), torch.randn(dim, 1000, device=device)
    mm_s = _timed(lambda: a @ w, device)
    return {
        "device": str(device),
        "model": cfg.model.name,
        "probe_batches": [b for b, _ in steps],
        "batch": batch,
        "step_seconds": _at(steps, batch),
        "eval_seconds_per_image": _at(forwards, cfg.eval.batch_size) / cfg.eval.batch_size,
        "matmul_flops_per_second": 2 * 4096 * dim * 1000 / mm_s,
        "feature_dim": int(dim),
        "measured_step_seconds": dict((str(b), round(t, 4)) for b, t in steps),
    }


def _at(points: list[tuple[int, float]], n: int) -> float:
    """Seconds at batch ``n`` on the line through the timed batches (proportional from one
    point, or where the line would not grow with the batch)."""
    (b1, t1), (b2, t2) = points[0], points[-1]
    slope = (t2 - t1) / (b2 - b1) if b2 != b1 else 0.0
    if slope <= 0:
        return t2 * n / b2
    return t1 + slope * (n - b1)


def _architecture(cfg: RunConfig, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The config's image tower with random weights, and its input size (nothing downloaded)."""
    from benchmark.models.architectures import suite_model_names

    if cfg.model.name in suite_model_names():  # the suite's own configs (benchmark/models/configs/)
        from open_clip.model import CLIP

        from benchmark.models.architectures import suite_model_config

        arch = suite_model_config(cfg.model.name)
        return CLIP(**arch).visual.to(device), int(arch["vision_cfg"]["image_size"])
    from benchmark.models.clip_loading import load_clip

    bundle = load_clip(replace(cfg.model, pretrained="none"), device, progress=False)
    return bundle.model.visual, bundle.image_size  # type: ignore[return-value]


def _timed(fn, device: torch.device, repeats: int = 1) -> float:
    fn()  # warm-up: allocations, kernels chosen
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def estimate(plan: Plan, cfg: RunConfig, probe: dict[str, Any]) -> Plan:
    """Fill ``plan.seconds``: training per method, evaluation forwards, probe fits."""
    plan.probe = probe
    steps = sum(s["steps"] for s in plan.stages)
    ref = probe["eval_seconds_per_image"] * cfg.train.batch_size  # LDIFS: its reference's forward a step
    for run in plan.training_runs:
        method = run.split()[0]
        extra = ref if "ldifs" in method.split("+") else 0.0
        key = f"train {method}"
        plan.seconds[key] = plan.seconds.get(key, 0.0) + steps * (probe["step_seconds"] + extra)
    per_pass = sum(e["test"] + e["probe"] + e["val"] for e in plan.evals)
    plan.seconds["evaluation forwards"] = plan.passes * per_pass * probe["eval_seconds_per_image"]
    plan.seconds["probe fits"] = plan.passes * _probe_flops(plan, cfg, probe) / probe["matmul_flops_per_second"]
    return plan


def _probe_flops(plan: Plan, cfg: RunConfig, probe: dict[str, Any]) -> float:
    """Matmul flops of one pass's probe fits: forward and backward of N x D x K a step."""
    if "lp" not in cfg.eval.kinds:
        return 0.0
    steps = (
        cfg.eval.probe_steps * (len(cfg.eval.probe_lrs) + 1) if cfg.eval.probe == "authors" else cfg.eval.lp_max_iter
    )
    dim = probe["feature_dim"]
    return sum(6 * e["probe"] * dim * plan.classes.get(e["task"], 100) * steps for e in plan.evals)


# ----------------------------------------------------------------------------- output


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def render(plan: Plan, cfg: RunConfig) -> str:
    p = plan.probe
    lines = [
        f"plan of {plan.sequence}: methods {', '.join(cfg.methods)}; seeds {', '.join(map(str, cfg.seeds))}; "
        f"{len(plan.training_runs)} (method, seed) runs train",
        f"counts: {', '.join(plan.sources)} (tasks.standins.SPLIT_SIZES: the real datasets' published sizes; "
        "'loaded': read from the task)",
        f"stages (batch {cfg.train.batch_size}, train.train_limit {cfg.train.train_limit}):",
    ]
    for k, s in enumerate(plan.stages, 1):
        lines.append(f"  {k}. {s['task']}: {s['images']:,} images x {s['epochs']} epochs = {s['steps']:,} steps")
    lines.append(
        f"evaluation passes: {plan.passes} (stage 0 once, then after each stage of each training run); images a pass:"
    )
    lines.append(f"  {'task':16s} {'test (head, zs)':>16s} {'probe (lp)':>11s} {'val (probe lr)':>15s}")
    for e in plan.evals:
        lines.append(f"  {e['task']:16s} {e['test']:>16,} {e['probe']:>11,} {e['val']:>15,}")
    timed = ", ".join(f"{t} s at batch {b}" for b, t in p["measured_step_seconds"].items())
    how = "the config's batch" if len(p["probe_batches"]) == 1 else "extrapolated on the line through them"
    lines.append(
        f"timing probe on {p['device']}: {p['model']} (random weights), one training step {timed} "
        f"-> {p['step_seconds']:.3f} s at batch {p['batch']} ({how}); evaluation "
        f"{p['eval_seconds_per_image'] * 1000:.2f} ms an image; matmul {p['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s"
    )
    lines.append("estimate (not counted: loading the model and data, first decode, checkpoints, reports):")
    for part, seconds in plan.seconds.items():
        lines.append(f"  {part:22s} {hours(seconds)}")
    lines.append(f"  {'total':22s} {plan.total_seconds / 3600:.2f} h on this device")
    return "\n".join(lines)


def save(plan: Plan, cfg: RunConfig) -> Path:
    from benchmark.files import atomic_text

    path = plan_file(cfg)
    record = {**asdict(plan), "estimated_seconds": round(plan.total_seconds, 1)}
    atomic_text(path, json.dumps(record, indent=2))
    return path


def plan_command(cfg: RunConfig, args: Any = None) -> int:
    """``--plan``: print the plan of ``cfg`` (or of ``--sweep``'s cells) on this device, save
    the estimate, run nothing."""
    if args is not None and getattr(args, "sweep", None):
        return _sweep_plan(args)
    plan = planned(cfg, {})
    print(render(plan, cfg))
    workers = min(getattr(args, "workers", None) or 1, max(1, len(plan.training_runs)))
    if workers > 1:  # --workers N: the (method, seed) runs shared between N processes
        print(
            f"  {'on ' + str(workers) + ' workers':22s} {plan.total_seconds / workers / 3600:.2f} h, the runs shared evenly"
        )
    print(f"saved to {save(plan, cfg)}; the run of this config records it in manifest.json (plan)")
    return 0


def planned(cfg: RunConfig, probes: dict[tuple, dict]) -> Plan:
    """The plan of one config, timed (one probe per model, batch and device, kept in ``probes``)."""
    from benchmark.run.run_setup import resolve_device
    from benchmark.run.runner import check_inputs

    sequence, _ = check_inputs(cfg)
    plan = build_plan(cfg, sequence)
    plan.classes = _class_counts(sequence)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    key = (cfg.model.name, cfg.train.batch_size, str(device))
    if key not in probes:
        probes[key] = time_probe(cfg, device, plan.classes.get(sequence.tasks[0], 10))
    return estimate(plan, cfg, probes[key])


def _sweep_plan(args: Any) -> int:
    """The total over a sweep's cells, and what ``--launcher slurm`` would submit."""
    from benchmark.run.launchers import slurm_options
    from benchmark.run.sweep import describe, load_sweep

    sweep = load_sweep(Path(args.sweep), args.overrides, getattr(args, "select", None), getattr(args, "name", None))
    probes: dict[tuple, dict] = {}
    total, todo = 0.0, 0
    print(f"plan of sweep {sweep.name}: {len(sweep.cells)} cells")
    for cell in sweep.cells:
        plan = planned(cell.cfg, probes)
        save(plan, cell.cfg)
        done = cell.complete()
        todo += not done
        total += 0.0 if done else plan.total_seconds
        state = "complete" if done else hours(plan.total_seconds)
        print(f"  {cell.key} {describe(cell)}: {state}")
    print(f"total of the {todo} cells to run: {total / 3600:.2f} h on this device (one worker)")
    options = slurm_options({**sweep.slurm, **getattr(args, "slurm", {})})
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    print(f"--launcher slurm would submit {todo} array tasks (one a cell to run) with {shown}")
    return 0


REGISTERED_CLASSES = {"caltech101": 101, "tinyimagenet": 200}
REGISTERED_CLASSES = {"caltech101": 101, "tinyimagenet": 200}  # CLIP's Caltech list adds "background"
PROMPT_KEYS = {
    "svhn": "SVHN", "cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST", "stl10": "STL10",
    "eurosat": "EuroSAT", "gtsrb": "GTSRB", "dtd": "DTD", "cars": "StanfordCars", "food101": "Food101",
    "flowers102": "Flowers102", "aircraft": "FGVCAircraft", "pets": "OxfordIIITPet", "resisc45": "RESISC45",
    "sun397": "SUN397", "imagenet": "ImageNet",
}  # fmt: skip


def _dataset_classes(name: str, order: Optional[list[int]] = None) -> int:
    """A registered dataset's class count (CLIP's published names), or the length of an order."""
    if order is not None:
        return len(order)
    if name in REGISTERED_CLASSES:
        return REGISTERED_CLASSES[name]
    from tasks.clip_prompts import clip_prompts

    return len(clip_prompts(PROMPT_KEYS[name]).classnames) if name in PROMPT_KEYS else 10


def _class_counts(sequence: Sequence) -> dict[str, int]:
    """Classes of every evaluated task (the probe's and the timed head's width)."""
    out = {name: _dataset_classes(name) for name in sequence.loaded_tasks}
    if sequence.class_incremental:
        spec = sequence.classes
        groups = spec.groups or spec.class_groups(_dataset_classes(spec.dataset, spec.order))
        seen = 0
        for name, group in zip(spec.group_names(), groups):
            seen += len(group)
            out[name] = seen  # the one head grows over every class seen so far
    return out
