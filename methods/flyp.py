"""FLYP: fine-tune like you pretrain, with CLIP's contrastive loss between images and class prompts.

How it sits on the engine, which is built for cross-entropy on head logits:

- Text tower: a trainable copy of the original model's text tower (never
  ``engine.bundle.model`` itself, whose text tower the tracker's zero-shot evaluation
  needs unchanged), attached as the submodule ``flyp_text`` of ``strategy.model`` in
  ``before_training``. Avalanche builds the optimiser after that hook (in
  ``check_model_and_optimizer``, before plugins' ``before_training_exp``), so the copy's
  parameters, its ``logit_scale`` included, are trained with the image tower. One copy
  lives through the whole sequence: each stage starts from the text tower the previous one
  left.
- Loss: FLYP's ``task_loss`` hook gives the engine the contrastive loss in place of the
  cross-entropy for the training step; any other caller of Avalanche's criterion (EWC's
  importance pass) still gets cross-entropy, and other plugins' terms (``flyp+ldifs``)
  add to ``strategy.loss`` as usual. The image embeddings come from the engine's forward
  pass (a forward hook on the image tower), not a second pass.
- Prompts: each sample's text is one of its task's templates, drawn at random per
  sample, filled with its class name (pre-tokenised once per task). Samples of the same
  class in a batch are negatives of each other, as in the authors' loss over a batch.
- Heads: FLYP's classifier is the text tower, so after every stage each trained task's
  head is rebuilt as the zero-shot head of the FLYP-trained text tower (template average,
  scaled by its logit scale, no bias), including the heads of earlier tasks, which
  follow the text tower as it drifts. The ZS-init head the scheduler adds before a stage
  is not trained (the loss does not use it) and is replaced at the stage's end.
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.evaluation.heads import zeroshot_weights
from benchmark.training.method import EngineView, HeadRows, HeadTools, Method, register_method
from tasks import Task

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp of the learned temperature


@register_method("flyp")
class FLYP(Method):
    """Contrastive fine-tuning of image and text towers on class prompts; heads rebuilt from the text tower."""

    paper = "Goyal, Kumar, Garg, Kolter, Raghunathan, CVPR 2023 (Finetune like you pretrain)"

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        return (
            "its contrastive loss pits each image against the other prompts of its batch, so the loss of a "
            "process's share of a batch is not a part of the whole batch's"
        )

    needs_encoder_training = True

    @classmethod
    def refuse(cls, scenario: str) -> Optional[str]:
        if scenario == "class_incremental":
            return (
                "it rebuilds each task's head from that task's own class prompts, "
                "so it has no head over the classes of all groups seen so far"
            )
        return None

    def init_head(self, heads: HeadTools, task: Task) -> HeadRows:
        """The zero-shot head, whatever train.head_init says: the head is rebuilt from the
        text tower at the stage's end anyway, so a probe would be fitted for nothing."""
        return heads.zeroshot(task)

    def __init__(self, params: Optional[Method.Params] = None) -> None:
        super().__init__(params)
        self.text: Optional[nn.Module] = None  # the trainable text tower
        self.tasks: dict[int, Task] = {}  # task label -> task, for prompts and head rebuilds
        self.prompt_tokens: dict[int, torch.Tensor] = {}  # task label -> [classes, templates, L]
        self.image_embeddings: Optional[torch.Tensor] = None  # of the engine's last forward
        self._hook = None

    # ---- setup
    def before_training(self, strategy: EngineView, **kwargs) -> None:
        if self.text is None:
            self.text = trainable_text_tower(strategy.bundle.model).to(strategy.device).train()
        if getattr(strategy.model, "flyp_text", None) is not self.text:
            strategy.model.flyp_text = self.text  # a submodule: the optimiser built next takes it

    def __getstate__(self) -> dict:
        """Copies of the method (LwF deep-copies the model, whose forward hook points here)
        leave out the hook on the live tower."""
        return {k: v for k, v in self.__dict__.items() if k != "_hook"}

    def state_dict(self) -> dict:
        """The trained text tower, the tasks seen (by name) and their prompt tokens."""
        return {
            "text": None if self.text is None else self.text.state_dict(),
            "tasks": {label: task.name for label, task in self.tasks.items()},
            "prompt_tokens": self.prompt_tokens,
        }

    def load_state_dict(self, state: dict, context) -> None:
        if state["text"] is not None:
            self.text = trainable_text_tower(context.bundle.model).to(context.device).train()
            self.text.load_state_dict(state["text"])
            context.model.flyp_text = self.text
        self.tasks = {int(label): context.tasks[name] for label, name in state["tasks"].items()}
        self.prompt_tokens = {int(label): t.to(context.device) for label, t in state["prompt_tokens"].items()}

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        label = int(strategy.experience.task_label)
        task = strategy.current_task
        self.tasks[label] = task
        prompts = [p for per_class in task.prompts() for p in per_class]
        tokens = strategy.bundle.tokenizer(prompts).to(strategy.device)
        self.prompt_tokens[label] = tokens.view(task.num_classes, len(task.templates), -1)
        self._live_visual = strategy.model.visual
        self._hook = self._live_visual.register_forward_hook(self._keep)  # type: ignore[assignment]

    def _keep(self, module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if module is self._live_visual:  # not a deep copy of it (LwF's teacher copies hooks along)
            self.image_embeddings = output

    # ---- the step
    def task_loss(self, strategy: EngineView) -> torch.Tensor:
        """The engine's task loss: FLYP trains on the contrastive loss, not the heads' CE."""
        return self.contrastive_loss(strategy)

    def contrastive_loss(self, strategy: EngineView) -> torch.Tensor:
        """CLIP's symmetric InfoNCE between the batch's images and their class prompts."""
        tokens = self.batch_prompts(strategy.mb_y, strategy.mb_task_id, strategy)
        with strategy.autocast():
            text = self.text.encode_text(tokens)  # type: ignore[operator]
        images = F.normalize(self.image_embeddings.float(), dim=-1)
        texts = F.normalize(text.float(), dim=-1)
        logits = self.text.logit_scale.exp() * images @ texts.T  # type: ignore[operator]
        targets = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def batch_prompts(self, y: torch.Tensor, task_ids: torch.Tensor, strategy) -> torch.Tensor:
        """One random-template prompt per sample, on the device, as token ids [B, L]."""
        single = getattr(strategy.dataloader, "single_task", None)
        if single is not None:  # the engine's own loader: no host sync
            return _pick(self.prompt_tokens[single], y)
        out = torch.empty(len(y), self.prompt_tokens[int(task_ids[0])].shape[-1], dtype=torch.long, device=y.device)
        for t in torch.unique(task_ids).tolist():  # mixed-task batches (replay) only
            mask = task_ids == t
            out[mask] = _pick(self.prompt_tokens[t], y[mask])
        return out

    @torch.no_grad()
    def after_update(self, strategy: EngineView, **kwargs) -> None:
        self.text.logit_scale.clamp_(0, MAX_LOGIT_SCALE)  # type: ignore[operator]

    # ---- the end of a stage
    @torch.no_grad()
    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        self._hook.remove()  # type: ignore[attr-defined]
        self.image_embeddings = None
        self.text.eval()
        for label, task in self.tasks.items():
            head = strategy.model.heads[str(label)]
            head.weight.copy_(zeroshot_weights(self.text, strategy.bundle.tokenizer, task.prompts(), strategy.device))  # type: ignore[operator]
            head.bias.zero_()  # type: ignore[operator]
        self.text.train()


def trainable_text_tower(clip: nn.Module) -> nn.Module:
    """A deep copy of an open_clip model without its image tower: ``encode_text`` and
    ``logit_scale`` work on it, and only text parameters (and the temperature) are in it."""
    skip_image_tower = {id(clip.visual): nn.Identity()}  # deepcopy's memo: never copied
    text = copy.deepcopy(clip, memo=skip_image_tower)
    return text.requires_grad_(True)


def _pick(table: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows table[y, random template] of a [classes, templates, L] token table."""
    template = torch.randint(table.shape[1], (len(y),), device=y.device)
    return table[y, template]
