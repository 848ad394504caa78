"""The task-sequence scheduler: one method, one seed, stage after stage on one engine."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from benchmark.engine import ClipClassifier, Engine
from methods import build_method
from tasks import Task

if TYPE_CHECKING:
    from benchmark.runner import RunSetup


@dataclass
class MethodResult:
    method: str
    seed: int
    rows: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)  # per-stage timings and loss
    status: str = "ok"


class _TensorTaskDataset(TensorDataset):
    """A TensorDataset with the ``targets`` Avalanche's classification datasets need."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.targets = labels.tolist()


def make_stream(tasks: list[Task], train_limit, seed: int) -> list:
    """Avalanche experiences, one per stage, task label = stage index (task-incremental).

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
        split = task.train.subset(train_limit, seed)
        data.append(TaskAwareSupervisedClassificationDataset(
            [_TensorTaskDataset(split.images, split.labels)],
            data_attributes=[DataAttribute(split.labels.tolist(), "targets"),
                             TaskLabels(ConstantSequence(label, len(split)))]))
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(train=data)))
    return list(bench.train_stream)


def run_method(setup: "RunSetup", spec: str, seed: int, stage0: list[dict]) -> MethodResult:
    """Fine-tune with ``spec`` through the sequence; evaluate every task after every stage."""
    cfg, seq = setup.cfg, setup.sequence
    result = MethodResult(spec, seed)
    result.rows += _label(stage0, spec, seed, 0, "pretrained")
    torch.manual_seed(seed)
    plugins = build_method(spec, cfg.hparams)
    model = ClipClassifier(copy.deepcopy(setup.bundle.model.visual)).to(setup.device)
    if not all(p.trains for p in plugins):  # zero-shot: nothing changes, so neither do the numbers
        for stage, st in enumerate(seq.stages, 1):
            result.rows += _label(stage0, spec, seed, stage, st.task)
        return result
    engine = Engine(model, cfg.train, setup.preprocess, plugins, setup.device, seed, setup.progress)
    if any(p.freeze_encoder for p in plugins):  # after the engine: its first optimiser needs a parameter
        model.visual.requires_grad_(False)  # each stage's optimiser only takes what requires grad
    engine.bundle = setup.bundle  # the original CLIP (text tower, tokenizer) for methods that need it
    stream = make_stream([setup.tasks[t] for t in seq.tasks], cfg.train.train_limit, seed)
    head_init = next((p.head_init for p in plugins if p.head_init), cfg.train.head_init)
    trained: dict[str, torch.nn.Module] = {}
    for stage, (st, exp) in enumerate(zip(seq.stages, stream), 1):
        t0 = time.time()
        _add_head(model, setup, st.task, stage - 1, head_init)
        engine.stage_index, engine.train_epochs = stage, st.epochs or cfg.train.epochs
        engine.current_task = setup.tasks[st.task]
        engine.train(exp, eval_streams=[])
        t1 = time.time()
        trained[st.task] = model.heads[str(stage - 1)]
        rows = setup.tracker.evaluate(model.visual, trained, stage, f"{spec} ")
        result.rows += _label(rows, spec, seed, stage, st.task)
        result.stages.append(_stage_summary(stage, st.task, engine.last_loss, rows, t1 - t0, time.time() - t1))
        if setup.progress:
            s = result.stages[-1]
            tqdm.write(f"[{spec} seed {seed}] stage {stage} {st.task}: loss {s['final_loss']:.3f}, "
                       f"head acc {s['head_accuracy']:.1f}%, train {s['train_seconds']:.1f}s, "
                       f"eval {s['eval_seconds']:.1f}s")
    return result


def _add_head(model: ClipClassifier, setup: "RunSetup", task: str, label: int, init: str) -> None:
    es = setup.tracker.sets[task]
    if init == "lp":  # LP-init (Kumar et al. 2022): a probe on the current encoder's features
        probe = setup.tracker.fit_probe(model.visual, es)
        model.add_head(label, probe.weight.detach().clone(), probe.bias.detach().clone())
    else:
        model.add_head(label, es.zeroshot.clone())


def _label(rows: list[dict], method: str, seed: int, stage: int, trained: str) -> list[dict]:
    return [{"method": method, "seed": seed, "stage": stage, "trained_task": trained, **r} for r in rows]


def _stage_summary(stage: int, task: str, loss: float, rows: list[dict], train_s: float, eval_s: float) -> dict:
    head = next((r["accuracy"] for r in rows if r["eval_task"] == task and r["kind"] == "head"), float("nan"))
    return {"stage": stage, "task": task, "final_loss": round(loss, 4), "head_accuracy": head,
            "train_seconds": round(train_s, 2), "eval_seconds": round(eval_s, 2)}
