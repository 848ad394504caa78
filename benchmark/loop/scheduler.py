"""The task-sequence scheduler: one method, one seed, stage after stage on one engine."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils.data import TensorDataset

from benchmark import distributed
from benchmark.config import RunConfig
from benchmark.errors import ForeignCheckpoint
from benchmark.evaluation.drift import record_drift
from benchmark.evaluation.stage_heads import StageHeads
from benchmark.evaluation.tracker import Tracker
from benchmark.loop import seen_classes as cil
from benchmark.loop.checkpoints import StageCheckpoints, capture_stage, restore_stage, set_rng_state
from benchmark.loop.tracking import log_stage_accuracies, log_summary
from benchmark.models.classifier import ClipClassifier
from benchmark.models.clip_loading import ClipBundle
from benchmark.models.preprocess import BatchPreprocess
from benchmark.rows import AccuracyRow, Score, label_scores
from benchmark.rundir import safe_name
from benchmark.training.engine import Engine, NonFiniteLoss
from benchmark.training.method import HeadRows, RestoreContext
from methods import Method, build_method
from tasks import Sequence, Split, Task

log = logging.getLogger(__name__)

OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class RunSetup:
    """What every (seed, method) of a run shares."""

    cfg: RunConfig
    sequence: Sequence
    tasks: dict[str, Task]
    bundle: ClipBundle
    device: torch.device
    preprocess: BatchPreprocess
    tracker: Tracker
    progress: bool
    log_dir: Optional[str] = None  # where Avalanche's optional loggers write


@dataclass
class MethodResult:
    method: str
    seed: int
    rows: list[AccuracyRow] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)  # per-stage timings and loss
    status: str = "ok"  # "failed" when a stage stopped on a NaN/Inf loss or out of memory
    error: str = ""


class _TensorTaskDataset(TensorDataset):
    """A TensorDataset with the ``targets`` Avalanche's classification datasets need."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.targets = labels.tolist()


def make_stream(tasks: list[Task], train_limit, seed: int, class_incremental: bool = False) -> list:
    """Avalanche experiences, one per stage, task label = stage index (task-incremental), or
    task label 0 and labels = positions in the class order (class-incremental groups).

    The datasets are task-aware (``task_set``, ``targets_task_labels``): Avalanche's LwF and
    task-balanced replay look their stage's data up by task label.
    """
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset
    from avalanche.benchmarks.utils.data_attribute import DataAttribute, TaskLabels
    from avalanche.benchmarks.utils.flat_data import ConstantSequence

    data = []
    for label, task in enumerate(tasks):
        split = task.train.subset(cil.group_limit(train_limit, task, "train"), seed)
        if class_incremental:
            label, split = cil.HEAD, Split(split.images, split.labels + task.offset)  # type: ignore[attr-defined]
        data.append(
            TaskAwareSupervisedClassificationDataset(
                [_TensorTaskDataset(split.images, split.labels)],
                data_attributes=[
                    DataAttribute(split.labels.tolist(), "targets"),
                    TaskLabels(ConstantSequence(label, len(split))),
                ],
            )
        )
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(train=data)))
    return list(bench.train_stream)


def run_method(
    setup: RunSetup,
    spec: str,
    seed: int,
    stage0: list[Score],
    checkpoints: Optional[StageCheckpoints] = None,
    plugins: Optional[list[Method]] = None,
) -> MethodResult:
    """Fine-tune with ``spec`` through the sequence; evaluate every task after every stage.

    ``plugins`` are the method's hooks, built from ``spec`` and the config's hparams when
    not given (tests pass their own, e.g. with spies). After every stage the model, the
    methods' state (Avalanche plugins included), the RNG and the rows so far are
    checkpointed, so a killed run resumes at the next stage."""
    cfg, seq = setup.cfg, setup.sequence
    checkpoints = checkpoints or StageCheckpoints(None, spec, seed)
    distributed.barrier()  # under torchrun: every process reads the file process 0 wrote, none ahead of it
    saved = checkpoints.load()
    if checkpoints.ignored:
        log.warning(f"[{spec} seed {seed}] {checkpoints.ignored}; starting from stage 1")
    if saved is not None and saved.done:
        return MethodResult(spec, seed, saved.rows, saved.stages, saved.status, saved.error)
    torch.manual_seed(seed)
    plugins = plugins if plugins is not None else build_method(spec, cfg.hparams)
    # zero-shot: nothing changes, so neither do the numbers (class-incremental: the head grows)
    if not all(p.trains() for p in _parts(plugins)) and not seq.class_incremental:
        rows = [
            r
            for stage, task in enumerate(["pretrained"] + seq.tasks)
            for r in label_scores(stage0, spec, seed, stage, task)
        ]
        return MethodResult(spec, seed, rows)
    model = ClipClassifier(copy.deepcopy(setup.bundle.model.visual)).to(setup.device)  # type: ignore[arg-type]
    result, first = MethodResult(spec, seed, label_scores(stage0, spec, seed, 0, "pretrained")), 1
    if saved is not None:  # resume: the state as it was right after stage saved.stage
        model, plugins, saved = _restore(setup, spec, seed, saved, model, plugins, checkpoints)
    if saved is not None:
        first, result.rows, result.stages = saved.stage + 1, saved.rows, saved.stages
        set_rng_state(saved.rng)  # after restore_stage: rebuilding the heads drew from the RNG
        log.info(f"[{spec} seed {seed}] resuming after stage {saved.stage} from {checkpoints.path}")
    engine = _make_engine(setup, model, plugins, seed, saved, spec)
    heads = _stage_heads(setup, model)
    if first == 1:
        log_stage_accuracies(engine.evaluator.loggers, f"{spec}/seed{seed}/", stage0, 0)
    stream = make_stream([setup.tasks[t] for t in seq.tasks], cfg.train.train_limit, seed, seq.class_incremental)
    for stage, (st, exp) in enumerate(zip(seq.stages, stream), 1):
        if stage < first:
            continue
        started = time.time()
        try:
            loss = _train_stage(setup, engine, heads, _parts(plugins), stage, st, exp)
        except (NonFiniteLoss, OUT_OF_MEMORY) as e:
            if isinstance(e, OUT_OF_MEMORY) and distributed.active():
                raise  # one process's: the others wait in a collective, so the whole run stops (resumable)
            _fail(result, engine, stage, st.task, e, cfg.train.batch_size)
            break
        _evaluate_stage(setup, engine, result, stage, st.task, loss, time.time() - started)
        if distributed.is_writer():  # no collective in it: process 0 alone measures and writes
            record_drift(setup, engine.model, result, stage, st.task, checkpoints)  # before the checkpoint moves on
        checkpoints.save(capture_stage(stage, model, plugins, engine.clock, result))
    log_summary(engine.evaluator.loggers, f"{spec}/seed{seed}/", spec, result.rows, result.status, len(seq.stages))
    checkpoints.finish(capture_stage(len(result.stages), model, plugins, engine.clock, result))
    return result


def _restore(setup: RunSetup, spec: str, seed: int, saved, model, plugins: list, checkpoints: StageCheckpoints):
    """Load the saved stage into the fresh model and methods; a checkpoint that does not fit
    them (damaged, or of other methods) is ignored and the (method, seed) starts afresh."""
    try:
        restore_stage(saved, model, plugins, RestoreContext(model, setup.tasks, setup.bundle, setup.device))
        return model, plugins, saved
    except ForeignCheckpoint as e:  # only a checkpoint that does not fit: a method's bug keeps its traceback
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        log.warning(f"[{spec} seed {seed}] ignoring {checkpoints.path} ({reason}); starting from stage 1")
        torch.manual_seed(seed)
        fresh = ClipClassifier(copy.deepcopy(setup.bundle.model.visual)).to(setup.device)  # type: ignore[arg-type]
        return fresh, build_method(spec, setup.cfg.hparams), None


def _make_engine(setup: RunSetup, model: ClipClassifier, plugins: list, seed: int, saved, spec: str) -> Engine:
    engine = Engine(
        model,
        setup.cfg.train,
        setup.preprocess,
        plugins,
        setup.device,
        seed,
        setup.progress,
        loggers=setup.cfg.loggers if distributed.is_writer() else (),  # process 0 alone writes
        log_dir=setup.log_dir,
        bundle=setup.bundle,
        run_name=f"{safe_name(spec)}-seed{seed}",  # one TensorBoard / wandb run per method and seed
    )
    if not all(p.trains_encoder() for p in _parts(plugins)):  # after the engine: its first optimiser needs a parameter
        model.visual.requires_grad_(False)  # each stage's optimiser only takes what requires grad
    if saved is not None:  # Avalanche's counters (EWC indexes its importances by them)
        engine.clock.__dict__.update(saved.clock)
    return engine


def _parts(plugins: list) -> list[Method]:
    """The method's parts among the engine's plugins (a test's plain Avalanche plugin has no
    method hooks: it is asked nothing)."""
    return [p for p in plugins if isinstance(p, Method)]


def _stage_heads(setup: RunSetup, model: ClipClassifier) -> StageHeads:
    """The head rules' tools on this (method, seed)'s model; a stage's images are the ones it trains on."""
    limit = setup.cfg.train.train_limit
    scale = float(setup.bundle.model.logit_scale.detach().exp())  # type: ignore[operator]
    return StageHeads(
        model, setup.tracker, scale, lambda task: task.train.subset(cil.group_limit(limit, task, "train"), 0)
    )


def _train_stage(setup: RunSetup, engine: Engine, heads: StageHeads, parts: list[Method], stage: int, st, exp) -> float:
    """One stage as the method's hooks say: its head's first rows (``init_head``, else
    train.head_init), the steps (unless a part ``takes_steps`` no), its head's last rows
    (``final_head``). Returns the stage's final loss (0.0 when no step was taken)."""
    task = setup.tasks[st.task]
    start = _head_rule(parts, "init_head", heads, task) or heads.rule(setup.cfg.train.head_init, task)
    _set_head(engine.model, setup, task, stage - 1, start)
    steps = all(p.takes_steps() for p in parts)
    if steps:
        engine.train_stage(stage, task, st.epochs or setup.cfg.train.epochs, exp)
    end = _head_rule(parts, "final_head", heads, task)
    if end is not None:
        _set_head(engine.model, setup, task, stage - 1, end)
    return engine.last_loss if steps else 0.0


def _head_rule(parts: list[Method], hook: str, heads: StageHeads, task: Task) -> Optional[HeadRows]:
    """The rows of the first part whose ``hook`` sets the head (composition allows one)."""
    return next((rows for p in parts if (rows := getattr(p, hook)(heads, task)) is not None), None)


def _evaluate_stage(
    setup: RunSetup, engine: Engine, result: MethodResult, stage: int, task: str, loss: float, train_s: float
) -> None:
    t1 = time.time()
    seen, zs_heads = setup.sequence.tasks[:stage], None
    if setup.sequence.class_incremental:  # no task identity: one head over every seen class
        trained, zs_heads = cil.seen_heads(engine.model, setup.tracker.sets, seen)
    else:
        trained = {t: engine.model.heads[str(i)] for i, t in enumerate(seen)}
    rows = setup.tracker.evaluate(engine.model.visual, trained, stage, f"{result.method} ", zs_heads)
    result.rows += label_scores(rows, result.method, result.seed, stage, task)
    log_stage_accuracies(engine.evaluator.loggers, f"{result.method}/seed{result.seed}/", rows, stage)
    s = _stage_summary(stage, task, loss, rows, train_s, time.time() - t1)
    s.update(stage_costs(engine, setup.device, stage))  # the leaderboard's cost columns
    result.stages.append(s)
    line = (
        f"[{result.method} seed {result.seed}] stage {stage} {task}: loss {s['final_loss']:.3f}, "
        f"head acc {s['head_accuracy']:.1f}%, train {s['train_seconds']:.1f}s, eval {s['eval_seconds']:.1f}s"
    )
    log.info(line)


def _fail(result: MethodResult, engine: Engine, stage: int, task: str, err: Exception, batch: int) -> None:
    """Mark the (method, seed) failed; the run goes on with the other methods."""
    if isinstance(err, OUT_OF_MEMORY):
        err = RuntimeError(f"out of memory at train.batch_size={batch}; try --train.batch_size {max(1, batch // 2)}")
    result.status, result.error = "failed", f"stage {stage} ({task}): {err}"
    log.error(f"[{result.method} seed {result.seed}] FAILED at {result.error}")


def _set_head(model: ClipClassifier, setup: RunSetup, task: Task, label: int, rows: HeadRows) -> None:
    """The stage's head (task-incremental), or its classes' rows of the one head (class-incremental)."""
    weight, bias = rows
    if setup.sequence.class_incremental:
        cil.set_group_rows(model, task, weight, bias)  # type: ignore[arg-type]
    else:
        model.add_head(label, weight, bias)


def _stage_summary(stage: int, task: str, loss: float, rows: list[Score], train_s: float, eval_s: float) -> dict:
    head = next(
        (
            r["accuracy"]
            for r in rows
            if r["eval_task"] == task and r["kind"] == "head" and r.get("split", "test") == "test"
        ),
        float("nan"),
    )
    return {
        "stage": stage,
        "task": task,
        "final_loss": round(loss, 4),
        "head_accuracy": head,
        "train_seconds": round(train_s, 2),
        "eval_seconds": round(eval_s, 2),
    }


def stage_costs(engine: Engine, device: torch.device, stage: int) -> dict:
    """What the stage cost: trainable parameters, images trained on, and peak host memory (the
    process's high-water mark) and device memory (since the last stage's, CUDA only), in MiB."""
    import resource

    trainable = sum(p.numel() for p in engine.model.parameters() if p.requires_grad)
    # the engine counts the images of the stage it trained last; a stage without steps trains none
    images = getattr(engine, "stage_images", 0) if engine.stage_index == stage else 0
    costs = {"trainable_params": int(trainable), "train_images": int(images)}
    costs["peak_host_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # type: ignore[assignment]  # KiB on Linux
    if device.type == "cuda":
        costs["peak_device_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)  # type: ignore[assignment]
        torch.cuda.reset_peak_memory_stats(device)
    return costs
