"""ZSCL: distillation from the initial CLIP on reference data, plus weight ensembling.

Zheng, Ma, Wang, Qin, Yue, You, "Preventing Zero-Shot Transfer Degradation in Continual
Learning of Vision-Language Models", ICCV 2023 (arXiv 2303.06628); the authors' code
(github.com/Thunderbeee/ZSCL, folder ``mtil/``) is the reference for every detail below.

Two parts, on top of fine-tuning:

- Feature-space distillation. At every step a batch of reference images (never from a
  task) goes through the student's image tower and through the teacher's, the INITIAL
  model's image tower, frozen, the same at every stage. Both sets of normalised image
  features are scored against the teacher's normalised text features of reference
  captions, scaled by the initial model's ``exp(logit_scale)``. The student matches the
  teacher's softmax with temperature T = 2, scaled by T^2, once over the captions for each
  image (image -> text) and once over the batch's images for each caption (text -> image),
  weight 1 each (``--image_loss --text_loss`` in the authors' ZSCL.sh). Since the text
  features are the teacher's, the loss only reaches the image tower: ZSCL needs no student
  text tower, and fits this suite's image tower + heads model as it is.
- Weight ensembling. After update k = 0, f, 2f, ... (f = ``avg_freq``) and after the
  stage's last update, the running average of the model's parameters (image tower and
  heads) absorbs the live ones, ``avg <- (avg * n + live) / (n + 1)`` with n the number of
  snapshots so far, starting from the stage's initial weights (which count as the first
  sample). The authors' loop runs ``range(iterations + 1)``, updates 0..N, so with f
  dividing N their last merge follows their last update; here a stage has N updates
  (0..N-1), and the last one is merged whether or not f divides it (without that, 1000
  steps at f = 100 would end on the snapshot after update 900). At the end of the stage
  the averaged weights replace the live ones: they are what the tracker evaluates and what
  the next stage starts from.

Reference data. The authors used ImageNet train images (``--ref-dataset ImageNet``) and
the captions of Conceptual Captions' validation split (``--ref-sentences
conceptual_captions``, about 13k raw captions). This suite never downloads, so the
reference set is an input: ``ref_images`` = ``procedural`` (fresh renders of the embedded
default's procedural world, from a seed no task or pretraining uses) or a folder of images
(searched recursively, e.g. an ImageNet train folder); ``ref_texts`` = ``procedural``
(the distinct captions of the same renders, the pretraining vocabulary) or a text file of
one caption per line, or a table with a ``title`` column: comma- or tab-separated, the
delimiter read from the header (the authors' ``gather_cc.py`` writes Conceptual Captions
as ``*_output.csv`` files that are tab-separated, header ``title\tfilepath``).

``ref_count`` (2000) caps the reference images: a folder is sampled once (seeded) and the
images are kept decoded on the device; the authors stream the whole ImageNet train split
(``--ref-dataset ImageNet``), one new batch per step. On a 1000-step stage at batch 64 that
is 64,000 distinct images against the suite's 2,000 seen about 32 times each; raise
``ref_count`` for a closer match (memory: 2,000 images at 224 px take 0.3 GB as uint8).

Departures from the authors' code, all deliberate:

- They fine-tune both towers contrastively against class prompts (``--train-mode=whole``,
  no head); here, as for every method of the suite, the image tower and a linear head per
  task are trained with cross-entropy. ZSCL's losses are unchanged by this (see above).
- The distillation term is written as KL(teacher || student), i.e. their soft-target
  cross-entropy minus the teacher's entropy: a constant for the student, so the gradient
  is identical, and the term reads 0 when student = teacher.
- Their L2 pull to the stage's start (``--l2 1`` in their MTIL script ZSCL.sh; not part of
  the method the paper describes) is ``l2`` here, default 0: the method of the paper. Their
  script's full settings are ``--hparams.zscl.l2 1`` plus what the suite sets elsewhere
  (ViT-B/16, batch 64, warm-up 100, 1000 iterations, lr 1e-5, weight decay 0).
- Their cross-entropy uses label smoothing 0.2 (``--ls 0.2`` in the same script); every
  method of the suite, ZSCL included, trains with plain cross-entropy, so that methods
  differ by their method only. Smoothing softens the task head's logits, which also
  changes how far the encoder is pushed; its effect on ZSCL here is not measured.
- ``avg_freq`` 0 (the default) means a tenth of the stage's steps: their 100 of 1000
  iterations, on whatever protocol runs. Every parameter of the model is averaged, as in
  their code (both towers there): here the image tower and the heads. The current task's
  head starts the stage as its initialisation, the zero-shot head of the class prompts by
  default, which is what their text tower gives at the start of a task; old heads do not
  train, so their average is themselves. BatchNorm buffers (ResNet towers) are not averaged, as in their code (their
  ViTs have none); after the average replaces the live weights, the running statistics are
  recomputed over the stage's training data, as SWA does for BatchNorm networks (Izmailov
  et al., UAI 2018), and the student's passes on reference images leave them alone.
- The teacher's BatchNorm layers (ResNet towers) use the batch's statistics, like the
  student in training, with their running statistics frozen: the two towers must see a
  batch the same way for the distillation to be zero at the start (their ViTs have none).
- Each reference batch has ``ref_batch_size`` images (0: the training batch size, as
  theirs), drawn without replacement from a per-stage shuffle seeded by (seed, stage).
"""

from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.training.method import EngineView, Method, register_method
from methods.l2sp import add_l2sp_gradient
from methods.ldifs import frozen_like_training

REFERENCE_SEED = 31_337_000  # procedural renders: disjoint from every task's and pretraining's seeds


def distillation(teacher: torch.Tensor, student: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) per row, mean over rows, times T^2 (Hinton et al.
    2015): the authors' soft-target cross-entropy minus the teacher's entropy."""
    p_t = F.softmax(teacher.float() / temperature, dim=-1)
    log_ratio = F.log_softmax(teacher.float() / temperature, dim=-1) - F.log_softmax(student.float() / temperature, -1)
    return (p_t * log_ratio).sum(-1).mean() * temperature**2


def zscl_loss(
    student_feats: torch.Tensor, teacher_feats: torch.Tensor, text_feats: torch.Tensor, scale: float, p: ZSCL.Params
) -> torch.Tensor:
    """Image -> text and text -> image distillation on one reference batch (features normalised here)."""
    s = scale * F.normalize(student_feats.float(), dim=-1) @ text_feats.T  # [B_ref, N_txt]
    t = scale * F.normalize(teacher_feats.float(), dim=-1) @ text_feats.T
    loss = p.image_weight * distillation(t, s, p.temperature)
    return loss + p.text_weight * distillation(t.T, s.T, p.temperature)


@register_method("zscl")
class ZSCL(Method):
    """Fine-tuning + distillation from the initial CLIP on reference images/captions + weight ensembling."""

    paper = "Zheng et al., ICCV 2023 (ZSCL, arXiv 2303.06628)"
    needs_encoder_training = True

    @dataclass
    class Params:
        ref_images: str = "procedural"  # procedural | a folder of images (the authors: ImageNet train)
        ref_texts: str = "procedural"  # procedural | a .txt (one caption a line), .csv/.tsv (column title)
        # reference images used (rendered, or drawn once from the folder); the authors stream all of ImageNet
        ref_count: Annotated[int, Range(low=1)] = 2000
        ref_batch_size: Annotated[int, Range(low=0)] = 0  # 0: the training batch size (the authors' choice)
        temperature: Annotated[float, Range(low=0, open_low=True)] = 2.0  # the authors' distillation temperature
        image_weight: Annotated[float, Range(low=0)] = 1.0  # image -> text term
        text_weight: Annotated[float, Range(low=0)] = 1.0  # text -> image term
        weight_ensembling: bool = True  # the authors' --we (False: distillation only)
        avg_freq: Annotated[int, Range(low=0)] = 0  # weight-ensembling period in steps; 0: a tenth of the stage's steps
        l2: Annotated[float, Range(low=0)] = 0.0  # their optional sum-of-squares pull to the stage's start (ZSCL.sh: 1)

    def validate(self) -> None:
        """What the field types cannot say (ranges and choices are declared on ``Params``)."""
        p = self.params
        for key in ("ref_images", "ref_texts"):
            value = getattr(p, key)
            if value != "procedural" and not Path(value).exists():
                raise UserError(f"hparams.zscl.{key}={value!r}: no such file or folder; valid: procedural or a path")

    def __init__(self, params: Optional[ZSCL.Params] = None) -> None:
        super().__init__(params)
        # Rebuilt from the original model when missing (never checkpointed: see __getstate__).
        self.teacher: Optional[nn.Module] = None
        self.ref_images: Optional[torch.Tensor] = None  # uint8 [N, 3, H, W], on the device
        self.text_feats: Optional[torch.Tensor] = None  # normalised teacher text features [N_txt, D]
        self.scale = 100.0
        # Per stage.
        self.average: list[torch.Tensor] = []
        self.snapshots = 0  # n: snapshots absorbed into the average (the start weights not counted)
        self.step = 0
        self.merged_after = -1  # the update whose weights the average absorbed last
        self.period = 1
        self.order: Optional[torch.Tensor] = None
        self.cursor = 0
        self.anchors: list[torch.Tensor] = []  # stage-start weights, for l2 only
        self.last_distillation = torch.tensor(0.0)

    def __getstate__(self) -> dict:
        """Stage checkpoints keep hyperparameters only: the teacher and the reference set are
        rebuilt from the original model, and a stage's averages end with the stage."""
        drop = ("teacher", "ref_images", "text_feats", "average", "order")
        return {k: (None if k in drop else v) for k, v in self.__dict__.items()}

    # ---- setup
    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        if self.teacher is None:
            self._build_reference(strategy)
        visual = strategy.model.visual
        self.average = [p.detach().clone() for p in strategy.model.parameters()]  # the start: sample 0
        self.snapshots, self.step, self.cursor, self.merged_after = 0, 0, 0, -1
        steps = max(1, strategy.train_epochs * len(strategy.dataloader))
        self.period = self.params.avg_freq or max(1, steps // 10)
        gen = torch.Generator().manual_seed(strategy.seed * 1000 + strategy.stage_index)
        self.order = torch.randperm(len(self.ref_images), generator=gen).to(strategy.device)
        self.anchors = [p.detach().clone() for p in visual.parameters()] if self.params.l2 else []

    def _build_reference(self, strategy: EngineView) -> None:
        bundle = strategy.bundle
        self.teacher = frozen_like_training(bundle.model.visual).to(strategy.device)  # type: ignore[arg-type]
        images, texts = reference_set(self.params, bundle.image_size)
        self.ref_images = images.to(strategy.device)
        with torch.no_grad():
            self.text_feats = encode_texts(bundle.model, bundle.tokenizer, texts, strategy.device)
            self.scale = float(bundle.model.logit_scale.exp())  # type: ignore[operator]

    # ---- every step
    def before_backward(self, strategy: EngineView, **kwargs) -> None:
        x = strategy.preprocess(self._next_batch(strategy))
        with strategy.autocast(), bn_stats_frozen(strategy.model.visual):
            student = strategy.model.visual(x)
            with torch.no_grad():
                teacher = self.teacher(x)
        self.last_distillation = zscl_loss(student, teacher, self.text_feats, self.scale, self.params)
        strategy.loss += self.last_distillation

    def _next_batch(self, strategy: EngineView) -> torch.Tensor:
        size = min(self.params.ref_batch_size or strategy.train_mb_size, len(self.order))
        if self.cursor + size > len(self.order):  # the authors' iterator restarts when exhausted
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + size]
        self.cursor += size
        return self.ref_images[idx]

    @torch.no_grad()
    def after_backward(self, strategy: EngineView, **kwargs) -> None:
        if self.params.l2:  # d/dp of l2 * sum (p - p0)^2
            add_l2sp_gradient(list(strategy.model.visual.parameters()), self.anchors, self.params.l2)

    @torch.no_grad()
    def after_update(self, strategy: EngineView, **kwargs) -> None:
        if self.params.weight_ensembling and self.step % self.period == 0:  # after updates 0, f, 2f, ...
            self._merge(strategy, self.step)
        self.step += 1

    def _merge(self, strategy: EngineView, update: int) -> None:
        self.snapshots += 1
        ensemble(self.average, list(strategy.model.parameters()), self.snapshots)
        self.merged_after = update

    @torch.no_grad()
    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        averaged = self.params.weight_ensembling
        if averaged and self.step > 0 and self.merged_after != self.step - 1:
            self._merge(strategy, self.step - 1)  # the last update, as in the authors' loop (module doc)
        if averaged:
            for live, avg in zip(strategy.model.parameters(), self.average):
                live.copy_(avg)  # the averaged model is evaluated and carried to the next stage
        self.average, self.order, self.anchors = [], None, []
        if averaged:
            recalibrate_bn(strategy)


def batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def bn_stats_frozen(module: nn.Module):
    """BatchNorm layers normalise with the batch's statistics but leave their running ones
    alone: reference images must not shift the statistics the task is evaluated with."""
    layers = batchnorms(module)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0  # type: ignore[assignment]
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(strategy) -> None:
    """Running BatchNorm statistics recomputed for the averaged weights, from one pass over
    the stage's training batches (SWA's ``bn_update``, Izmailov et al., UAI 2018): the live
    weights' statistics do not fit the average. A no-op for towers without BatchNorm (ViT)."""
    visual = strategy.model.visual
    layers = batchnorms(visual)
    if not layers:
        return
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()  # type: ignore[operator]
        m.momentum = None  # a cumulative average over the pass
    was_training = visual.training
    visual.train()
    for batch in strategy.dataloader:
        x = batch[0].to(strategy.device)
        with strategy.autocast():
            visual(strategy.preprocess(x) if x.dtype == torch.uint8 else x)
    visual.train(was_training)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum


def ensemble(average: list[torch.Tensor], live: list[torch.Tensor], n: int) -> None:
    """avg <- (avg * n + live) / (n + 1), in place (the authors' ``merge_we``)."""
    torch._foreach_mul_(average, n / (n + 1))
    torch._foreach_add_(average, [p.detach() for p in live], alpha=1 / (n + 1))


def reference_set(p: ZSCL.Params, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """(uint8 reference images, reference captions) the hyperparameters name."""
    if p.ref_images == "procedural" or p.ref_texts == "procedural":
        from tasks.synthetic import render

        world = render(p.ref_count, seed=REFERENCE_SEED)
    images = (
        world.images if p.ref_images == "procedural" else folder_images(Path(p.ref_images), p.ref_count, image_size)
    )
    if p.ref_texts == "procedural":
        texts = sorted(set(world.captions(REFERENCE_SEED)))
    else:
        texts = caption_file(Path(p.ref_texts))
    return images, texts


def folder_images(folder: Path, count: int, image_size: int) -> torch.Tensor:
    """Up to ``count`` images under ``folder`` (recursively; a seeded draw), as uint8 squares."""
    from PIL import Image

    from tasks.folder_tasks import IMAGE_EXTENSIONS
    from tasks.loading import to_square_uint8

    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"hparams.zscl.ref_images={str(folder)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))[:count].tolist()
    return torch.stack([to_square_uint8(Image.open(files[i]).convert("RGB"), image_size) for i in pick])


def caption_file(path: Path) -> list[str]:
    """Captions from a text file (one a line) or a .csv/.tsv table with a ``title`` column,
    comma- or tab-separated (a tab in the header line means tabs: the authors' CC file)."""
    if path.suffix.lower() in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as f:
            header = f.readline()
            f.seek(0)
            rows = list(csv.DictReader(f, delimiter="\t" if "\t" in header else ","))
        if "title" not in (rows[0] if rows else {"title": ""}):
            columns = ", ".join(repr(c) for c in rows[0])
            raise UserError(
                f"hparams.zscl.ref_texts={str(path)!r}: a table needs a 'title' column (found {columns}; "
                "comma- or tab-separated)"
            )
        texts = [(r["title"] or "").strip() for r in rows]
    else:
        texts = [line.strip() for line in path.read_text().splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise UserError(f"hparams.zscl.ref_texts={str(path)!r} holds no captions")
    return texts


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """The original text tower's normalised features of ``texts``, in chunks: [N, D]."""
    feats = [model.encode_text(tokenizer(texts[i : i + 256]).to(device)).float() for i in range(0, len(texts), 256)]  # type: ignore[operator]
    return F.normalize(torch.cat(feats), dim=-1)
