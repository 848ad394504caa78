"""The one training engine: Avalanche's SupervisedTemplate fed whole device-resident batches.

Every method is a set of Avalanche plugins on this engine, so ours (LDIFS, L2-SP, ...) and
Avalanche's own (EWC, LwF, replay, ...) compose. What the engine changes of Avalanche's
template is only where time goes: batches are drawn from uint8 tensors already on the
device (no per-sample Python), preprocessed there in one call, and stepped under bf16
autocast on CUDA; the optimiser and the warm-up + cosine schedule are rebuilt per stage
as in the LDIFS authors' protocol.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import Optional

import torch
import torch.nn as nn
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from benchmark import distributed
from benchmark.config import TrainConfig
from benchmark.errors import UserError
from benchmark.logs import progress
from benchmark.models.augment import rrc_boxes
from benchmark.models.classifier import ClipClassifier
from benchmark.models.clip_loading import ClipBundle
from benchmark.models.preprocess import BatchPreprocess, bf16_autocast, resolve_precision
from benchmark.training.losses import task_cross_entropy
from tasks import Task
from tasks.cache import MappedImages

log = logging.getLogger(__name__)

AUGMENT_SEED_OFFSET = 1_000_000_007  # keeps the crop stream apart from the batch-order seeds


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or Inf: the method's stage is stopped and marked failed."""


class DeviceBatchLoader:
    """Shuffled mini-batches sliced from tensors that live on the device."""

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        generator: torch.Generator,
        single_task: Optional[int],
        min_batch: int = 1,
        world: int = 1,
        rank: int = 0,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.generator = generator
        self.single_task = single_task  # the task label when every sample shares it
        # Dataset positions of the batch last yielded, on the CPU and the device (LDIFS reuses
        # its reference's taps per image across epochs: methods/ldifs.py).
        self.last_indices: Optional[torch.Tensor] = None
        self.last_indices_device: Optional[torch.Tensor] = None
        # A trailing batch smaller than this is dropped: BatchNorm in training mode cannot
        # normalise one image (ModifiedResNet towers), so their last batch of 1 is skipped.
        self.min_batch = min_batch
        # Several processes (benchmark/distributed.py): every one draws the same global
        # batches and yields its contiguous share of each; ``share`` is the last one's
        # (lo, hi, global batch size).
        self.world, self.rank = world, rank
        self.share = (0, 0, 0)

    @classmethod
    def from_dataset(
        cls,
        dataset,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        min_batch: int = 1,
        world: int = 1,
        rank: int = 0,
    ):
        """Materialise an Avalanche dataset once per stage (not once per epoch)."""
        tensors = _tensors_of(dataset)
        if tensors is None:  # anything else: one pass of Avalanche's own per-sample loading
            loader = torch.utils.data.DataLoader(dataset, batch_size=4096, shuffle=False)
            tensors = [torch.cat(p) for p in zip(*loader)]
        # images mapped from the decoded-image cache stay on the host: gathered per batch
        tensors = [t if isinstance(t, MappedImages) else t.to(device, non_blocking=True) for t in tensors]
        tasks = tensors[-1].unique()
        single = int(tasks[0]) if len(tasks) == 1 else None
        return cls(tensors, batch_size, generator, single, min_batch, world, rank)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        full, rest = divmod(n, self.batch_size)
        return full + int(rest >= self.min_batch * self.world)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        n = len(self.tensors[0])
        perm = torch.randperm(n, generator=self.generator)
        order = perm.to(self.tensors[-1].device)  # task labels: always on the device
        batches = [
            self._my_share(h, d)
            for h, d in zip(perm.split(self.batch_size), order.split(self.batch_size))
            if len(h) >= self.min_batch * self.world  # every process's share has min_batch images
        ]
        if any(isinstance(t, MappedImages) for t in self.tensors):
            yield from self._mapped_batches(batches)
            return
        for cpu_idx, idx, share in batches:
            self.last_indices, self.last_indices_device, self.share = cpu_idx, idx, share
            yield [t[idx] for t in self.tensors]

    def _my_share(self, cpu_idx: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """This process's contiguous share of a global batch, and (lo, hi, global size)."""
        lo, hi = distributed.shard(len(cpu_idx), self.world, self.rank)
        return cpu_idx[lo:hi], idx[lo:hi], (lo, hi, len(cpu_idx))

    def _mapped_batches(self, batches: list[tuple[torch.Tensor, torch.Tensor, tuple]]):
        """Batches whose images are read from disk one batch ahead, in a thread, while the
        device works on the current one; pinned host memory makes the copy asynchronous."""
        from concurrent.futures import ThreadPoolExecutor

        device = self.tensors[-1].device
        pin = device.type == "cuda"

        def read(i: int) -> list:
            return [t.gather(batches[i][0], pin) if isinstance(t, MappedImages) else None for t in self.tensors]

        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(read, 0) if batches else None
            for i, (cpu_idx, idx, share) in enumerate(batches):
                host = ahead.result()
                if i + 1 < len(batches):
                    ahead = pool.submit(read, i + 1)
                self.last_indices, self.last_indices_device, self.share = cpu_idx, idx, share
                yield [t[idx] if h is None else h.to(device, non_blocking=True) for t, h in zip(self.tensors, host)]


def has_batch_norm(model: nn.Module) -> bool:
    """True when the model normalises by batch statistics in training (ResNet towers)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


LOGGERS = ("tensorboard", "csv", "wandb", "text")


def make_evaluator(loggers: Sequence[str], log_dir: Optional[str], run_name: Optional[str] = None) -> EvaluationPlugin:
    """Avalanche's evaluator: silent by default; with ``loggers``, the training loss per
    epoch and per stage goes to Avalanche's own loggers (optional experiment trackers).

    ``run_name`` (``<method>-seed<seed>``: one engine trains one method and seed) makes one
    TensorBoard run (``tensorboard/<run_name>``) and one named wandb run per method and
    seed, so each has its own loss curve instead of every method's losses on one."""
    import warnings

    if not loggers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no loggers specified": silence is the point
            return EvaluationPlugin(loggers=[])
    from avalanche.evaluation.metrics import loss_metrics
    from avalanche.logging import CSVLogger, TensorboardLogger, TextLogger

    from benchmark.training.wandb_logger import OfflineWandBLogger

    folder = log_dir or "avalanche_logs"
    make = {
        "tensorboard": lambda: TensorboardLogger(f"{folder}/tensorboard" + (f"/{run_name}" if run_name else "")),
        "csv": lambda: CSVLogger(f"{folder}/csv"),
        "wandb": lambda: OfflineWandBLogger(f"{folder}/wandb", run_name),
        "text": lambda: TextLogger(open(f"{folder}/avalanche.txt", "a")),
    }
    return EvaluationPlugin(loss_metrics(epoch=True, experience=True), loggers=[make[name]() for name in loggers])


def _tensors_of(dataset) -> Optional[list[torch.Tensor]]:
    """(images, labels, task labels) straight from the tensors behind a stage's dataset,
    when it is one untransformed in-memory tensor dataset (what ``make_stream`` builds)."""
    flat = getattr(dataset, "_flat_data", None)
    inner = getattr(flat, "_datasets", [None])
    if (
        len(inner) != 1
        or not isinstance(inner[0], torch.utils.data.TensorDataset)
        or flat._indices is not None
        or not _no_transforms(flat._transform_groups)
        or not hasattr(dataset, "targets_task_labels")
    ):
        return None
    images, labels = inner[0].tensors
    tasks = torch.as_tensor(list(dataset.targets_task_labels), dtype=torch.long)
    return [images, labels, tasks]


def _no_transforms(groups) -> bool:
    from avalanche.benchmarks.utils.transform_groups import EmptyTransformGroups

    return groups is None or isinstance(groups, EmptyTransformGroups)


class Engine(SupervisedTemplate):
    """Avalanche's supervised template with a device-resident data path (see module doc)."""

    def __init__(
        self,
        model: ClipClassifier,
        train_cfg: TrainConfig,
        preprocess: BatchPreprocess,
        plugins: list[SupervisedPlugin],
        device: torch.device,
        seed: int,
        progress: bool = True,
        loggers: Sequence[str] = (),
        log_dir: Optional[str] = None,
        bundle: Optional[ClipBundle] = None,
        run_name: Optional[str] = None,
    ) -> None:
        self.cfg = train_cfg
        self.seed = seed
        self.stage_index = 0
        self.preprocess = preprocess.to(device)
        self.amp = resolve_precision(train_cfg.amp, device) == "bf16"  # tf32/fp32: fp32 tensors
        self.progress = progress
        self.lr_schedule: Optional[torch.optim.lr_scheduler.LambdaLR] = None
        self.last_loss = float("nan")
        self._all_finite = torch.ones((), dtype=torch.bool, device=device)  # checked at syncs only
        self.bundle = bundle  # the original CLIP (text tower, tokenizer) for methods that need it
        self.current_task: Optional[Task] = None  # the task of the stage being trained (train_stage sets it)
        self.stage_started = time.time()
        optimizer = self._new_optimizer(model, device)
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=train_cfg.batch_size,
            train_epochs=1,
            eval_mb_size=train_cfg.batch_size,
            device=device,
            plugins=plugins,
            evaluator=make_evaluator(loggers, log_dir, run_name),
            eval_every=-1,
        )
        # Avalanche's own check of plugins under torch.distributed only warns; the runner has
        # refused every method that cannot run on several processes (Method.refuse_distributed).
        self._distributed_check = True

    def _new_optimizer(self, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=device.type == "cuda"
        )

    def train_stage(self, stage: int, task: Task, epochs: int, experience) -> None:
        """Train one stage of the sequence: the engine sets its own stage state, then runs
        Avalanche's ``train`` on the stage's experience (a fresh optimiser and schedule)."""
        self.stage_index, self.current_task, self.train_epochs = stage, task, epochs
        self.stage_started = time.time()
        distributed.broadcast_module(self.model)  # one model on every process (head rules ran on each)
        try:
            self.train(experience, eval_streams=[])
            distributed.average_batch_norm(self.model)  # each process tracked its shares' statistics
        finally:
            if getattr(self, "_bar", None) is not None:
                self._bar.close()  # also when the stage stops on a NaN loss or out of memory

    def autocast(self):
        """bf16 autocast when the run's precision is bf16 (plugins running forward passes use this too)."""
        return bf16_autocast(self.device, self.amp)

    # ---- data path
    def make_train_dataloader(self, **kwargs) -> None:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.stage_index)
        min_batch = 2 if has_batch_norm(self.model) else 1
        if self.train_mb_size < min_batch:
            raise UserError(
                f"train.batch_size={self.train_mb_size} cannot train this image tower: its BatchNorm layers "
                "need at least 2 images per batch"
            )
        self.dataloader = DeviceBatchLoader.from_dataset(
            self.adapted_dataset,
            self.train_mb_size,
            self.device,
            gen,
            min_batch,
            distributed.world_size(),
            distributed.rank(),
        )
        # crop boxes (train.augment) from their own stream: the batch order stays the same
        self.augment_generator = torch.Generator().manual_seed(
            AUGMENT_SEED_OFFSET + self.seed * 1000 + self.stage_index
        )

    def _unpack_minibatch(self) -> None:
        self.mbatch = [t.to(self.device, non_blocking=True) for t in self.mbatch]  # type: ignore[has-type]
        if self.mbatch[0].dtype == torch.uint8 and self.cfg.augment == "rrc":
            images = self.mbatch[0]
            lo, hi, total = self._share()  # the global batch's boxes, this process's rows of them
            boxes = rrc_boxes(total, images.shape[-2], images.shape[-1], self.augment_generator)[lo:hi]
            self.mbatch[0] = self.preprocess.crops(images, boxes)
        elif self.mbatch[0].dtype == torch.uint8:
            self.mbatch[0] = self.preprocess(self.mbatch[0])

    def forward(self):
        single = getattr(self.dataloader, "single_task", None)
        with self.autocast():  # an int task label skips the per-task split (and its host sync)
            return self.model(self.mb_x, single if single is not None else self.mb_task_id)

    def criterion(self):
        """The task loss of the step: a method's ``task_loss`` when one gives it (FLYP's
        contrastive loss), else cross-entropy on the head's logits. Other plugins' terms are
        added to ``self.loss`` by their own hooks, as in Avalanche."""
        for plugin in self.plugins:
            task_loss = getattr(plugin, "task_loss", None)
            loss = task_loss(self) if task_loss is not None else None
            if loss is not None:
                return loss
        return task_cross_entropy(
            self.mb_output.float(), self.mb_y, self.current_task, self.cfg.loss_classes, self.cfg.label_smoothing
        )

    # ---- optimiser, schedule, clipping: fresh for every stage (authors' protocol)
    def make_optimizer(self, **kwargs) -> None:
        self.optimizer = self._new_optimizer(self.model, self.device)

    def _before_training_exp(self, **kwargs) -> None:
        super()._before_training_exp(**kwargs)  # plugins may swap the dataloader (replay)
        total = max(1, self.train_epochs * len(self.dataloader))
        warm = min(self.cfg.warmup_steps, total // 2)
        if warm < self.cfg.warmup_steps:  # said, not silent: the schedule differs from the config
            message = (
                f"stage {self.stage_index}: train.warmup_steps={self.cfg.warmup_steps} capped at {warm} "
                f"(half of the stage's {total} steps)"
            )
            log.warning(message, extra={"once": True})  # every method and cell caps alike: said once

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.stage_step = 0
        self.stage_images = 0  # images trained on this stage (the leaderboard's images/s)
        task = getattr(self.current_task, "name", "")
        desc = f"  stage {self.stage_index}" + (f" {task}" if task else "")
        self._bar = progress(total, desc, enabled=self.progress, unit="step", leave=False)

    def backward(self) -> None:
        self._all_finite &= torch.isfinite(self.loss.detach()).all()  # on the device: no host sync
        super().backward()
        if distributed.active():  # before plugins' after_backward: they see the global batch's gradient
            lo, hi, total = self._share()
            distributed.reduce_gradients(self.model.parameters(), (hi - lo) / total)

    def _share(self) -> tuple[int, int, int]:
        """(lo, hi, size) of this process's rows in the step's global batch; the whole batch
        on one process, or when a loader other than the engine's feeds every process whole."""
        share = getattr(self.dataloader, "share", None)
        if share and share[2]:
            return share
        n = len(self.mb_x) if getattr(self, "mbatch", None) is not None else 1
        return 0, n, n * distributed.world_size()

    def check_finite(self) -> None:
        if not distributed.all_true(self._all_finite):  # every process stops at the same step
            raise NonFiniteLoss(
                f"non-finite loss (NaN/Inf) in stage {self.stage_index} by step {self.stage_step}; "
                "try a lower train.lr or a smaller regulariser weight"
            )

    def optimizer_step(self) -> None:
        if self.cfg.grad_clip > 0:  # after plugins' after_backward/before_update hooks
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.cfg.grad_clip)
        self.optimizer.step()

    def _after_update(self, **kwargs) -> None:
        super()._after_update(**kwargs)
        self.lr_schedule.step()
        self._bar.update(1)
        self.stage_step += 1  # the bar does not count when disabled (-q)
        self.stage_images += self._share()[2] if distributed.active() else len(self.mb_x)  # the global batch
        if self.stage_step % 25 == 0 or self.stage_step == self._bar.total:  # rare host syncs only
            self.last_loss = float(self.loss.detach())
            self._bar.set_postfix(loss=f"{self.last_loss:.3f}")
            self.check_finite()

    def _after_training_exp(self, **kwargs) -> None:
        lo, hi, total = self._share() if distributed.active() else (0, 1, 1)
        self.last_loss = float(distributed.weighted_sum(self.loss.detach(), (hi - lo) / total))  # the global batch's
        self._bar.close()
        self.check_finite()
        super()._after_training_exp(**kwargs)
