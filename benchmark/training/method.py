"""What a method is: a named set of Avalanche plugin hooks on the shared engine, and what
those hooks may see of the engine (``EngineView``).

Light on purpose: this module (and so the method registry, ``--list-methods``,
``--print-config``) imports neither Avalanche nor the engine. ``Method`` declares the hooks
of Avalanche's ``SupervisedPlugin`` itself, and Avalanche calls a plugin's hooks by name
(``avalanche.training.utils.trigger_plugins``), so it needs no Avalanche base class;
``tests/benchmark/test_fast_commands.py`` checks the list against Avalanche's."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Protocol

import torch

from benchmark.config import coerce, field_types
from benchmark.errors import UserError
from benchmark.registry import Registry

if TYPE_CHECKING:  # these import Avalanche: only type checkers follow them
    from benchmark.config import TrainConfig
    from benchmark.models.classifier import ClipClassifier
    from benchmark.models.clip_loading import ClipBundle
    from benchmark.models.preprocess import BatchPreprocess
    from tasks import Split, Task

# Every callback Avalanche 0.6 may invoke on a supervised plugin (dir(SupervisedPlugin)).
HOOKS: tuple[str, ...] = tuple(
    f"{when}_{what}"
    for when in ("before", "after")
    for what in (
        "backward",
        "eval",
        "eval_dataset_adaptation",
        "eval_exp",
        "eval_forward",
        "eval_iteration",
        "forward",
        "train_dataset_adaptation",
        "training",
        "training_epoch",
        "training_exp",
        "training_iteration",
        "update",
    )
)


def _no_op(self: Any, strategy: Any, *args: Any, **kwargs: Any) -> None:
    """A hook that does nothing (what Avalanche's ``BasePlugin`` hooks do)."""


class PluginHooks:
    """Avalanche's ``SupervisedPlugin`` interface without importing Avalanche: every hook a
    no-op, ``supports_distributed`` False, as in ``avalanche.core.BasePlugin``."""

    supports_distributed: ClassVar[bool] = False


for _hook in HOOKS:
    setattr(PluginHooks, _hook, _no_op)


class EngineView(Protocol):
    """The engine as a method's hooks see it: what they may read, and the two things they may
    change (``loss``, by adding a term; the model's weights). Modelled on Avalanche's
    ``SupervisedStrategyProtocol``; ``benchmark.training.engine.Engine`` implements it.

    The stage state (``stage_index``, ``current_task``, ``train_epochs``) is set by the
    engine itself in ``Engine.train_stage``; neither a hook nor the continual loop sets
    engine attributes.
    """

    cfg: TrainConfig  # the run's train section (lr, batch_size, augment, ...)
    seed: int  # the run's seed for this method (methods seed their own draws from it and the stage)
    preprocess: BatchPreprocess  # uint8 images -> the tower's normalised input, on the device
    train_epochs: int  # epochs of the stage being trained
    train_mb_size: int  # the batch size (train.batch_size)
    model: ClipClassifier  # image tower + one head per task
    optimizer: torch.optim.Optimizer  # rebuilt every stage (after ``before_training_exp``... see engine)
    device: torch.device
    bundle: Optional[ClipBundle]  # the original CLIP: text tower, tokenizer (never trained)
    stage_index: int  # 1-based stage of the sequence being trained
    current_task: Optional[Task]  # the task of that stage
    experience: Any  # Avalanche's experience of the stage (``task_label``, ``dataset``)
    dataloader: Any  # the stage's batches; ``single_task`` is the task label when all share one
    clock: Any  # Avalanche's counters (epochs, iterations, experiences)
    mb_x: torch.Tensor  # [B, 3, H, W] preprocessed images of the current batch
    mb_y: torch.Tensor  # [B] class labels
    mb_task_id: torch.Tensor  # [B] task labels (stage index - 1)
    mb_output: torch.Tensor  # [B, classes] logits of the forward pass
    loss: torch.Tensor  # the step's loss so far; plugins add their terms in before_backward

    def autocast(self) -> AbstractContextManager:
        """The precision context the engine trains under (plugins' own forwards use it too)."""
        ...


HeadRows = tuple[torch.Tensor, Optional[torch.Tensor]]  # a head's (weight [K, D], bias [K] or None: zeros)


class HeadTools(Protocol):
    """What a method's head rule may compute on the encoder being trained, handed to
    ``Method.init_head`` and ``Method.final_head``; ``benchmark.evaluation.stage_heads.StageHeads``
    implements it with the tracker's feature extraction and probe."""

    logit_scale: float  # CLIP's exp(logit_scale), the zero-shot head's scale

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """l2-normalised embeddings [N, D] (float32) of uint8 images by the current encoder."""
        ...

    def train_split(self, task: Task) -> Split:
        """The task's training images the stage sees (at most ``train.train_limit``)."""
        ...

    def zeroshot(self, task: Task) -> HeadRows:
        """The zero-shot rows of the task's class prompts (the original text tower)."""
        ...

    def probe(self, task: Task) -> HeadRows:
        """A converged linear probe on the current encoder's features (train split only)."""
        ...

    def prototypes(self, task: Task) -> HeadRows:
        """The class means of the current encoder's features of the stage's training images."""
        ...


class Method(PluginHooks):
    """Base class of registered methods. Subclasses override Avalanche hooks
    (``before_training_exp``, ``before_backward``, ``after_backward``, ...) and declare
    their hyperparameters as a ``Params`` dataclass; the docstring's first line is the
    one-line description ``--list-methods`` prints.

    The continual loop asks every part of a method the questions below (hooks with the
    defaults of plain fine-tuning) and reads nothing else of it: what a method does
    differently (a frozen encoder, a head of its own, no training step) it says by
    overriding them, in its own file."""

    @dataclass
    class Params:
        pass

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    # True: acts only on the image encoder (a penalty on it, a change of its weights), so it
    # would silently do nothing beside a part that freezes the encoder: the default
    # ``compose_check`` refuses that composition.
    needs_encoder_training: ClassVar[bool] = False

    # ---- what the continual loop asks (benchmark/loop/scheduler.py)
    @classmethod
    def refuse(cls, scenario: str) -> Optional[str]:
        """Why this method cannot run ``scenario`` (``"task_incremental"`` or
        ``"class_incremental"``), or None: the run is refused in one line before any training."""
        return None

    @classmethod
    def refuse_distributed(cls) -> Optional[str]:
        """Why this method cannot train data-parallel on several processes (``torchrun``: each
        takes a share of every batch, gradients summed before ``after_backward``), or None:
        such a run is refused in one line before any work (benchmark/distributed.py)."""
        return None

    def trains(self) -> bool:
        """False: the method changes nothing of the pre-trained model (zero-shot). In a
        task-incremental sequence the loop then copies the pre-trained rows to every stage
        instead of evaluating again; in a class-incremental one the head still grows."""
        return True

    def trains_encoder(self) -> bool:
        """False: the image tower is frozen for the whole run (its parameters leave the
        optimiser); only the heads train, if anything does."""
        return True

    def takes_steps(self) -> bool:
        """False: a stage takes no optimiser step; its head is whatever ``init_head`` and
        ``final_head`` make of it (class means, zero-shot rows)."""
        return self.trains()

    def init_head(self, heads: HeadTools, task: Task) -> Optional[HeadRows]:
        """The rows the stage's head starts from (task-incremental: the task's head;
        class-incremental: the group's rows of the one head), or None for the run's
        ``train.head_init``. Called before the stage trains."""
        return None

    def final_head(self, heads: HeadTools, task: Task) -> Optional[HeadRows]:
        """The rows the stage's head ends with, replacing where training left them (a
        converged probe), or None to keep them. Called after the stage trained (or took no
        step), before it is evaluated."""
        return None

    def compose_check(self, parts: list[Method]) -> Optional[str]:
        """Why this part cannot run beside the others of a composition (``parts``, itself
        included), or None. The default refuses a part that trains nothing among others, a
        part that only acts on the encoder beside one that freezes it, and two parts that
        both set the head's rows at the same point of a stage."""
        others = [p for p in parts if p is not self]
        if others and not self.trains():
            return f"{self.name} trains nothing, so nothing else can act on its training"
        frozen_by = [p.name for p in others if not p.trains_encoder()]
        if self.needs_encoder_training and frozen_by:
            return (
                f"{', '.join(frozen_by)} freezes the image encoder, so {self.name} (which only acts on the encoder) "
                "would change nothing"
            )
        for hook in ("init_head", "final_head"):
            rivals = [p.name for p in others if _overrides(p, hook)]
            if _overrides(self, hook) and rivals:
                return f"{self.name} and {', '.join(rivals)} both set the head's rows ({hook}): different head inits"
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A class flag of the former contract would be silently ignored: refused instead."""
        super().__init_subclass__(**kwargs)
        for flag, hook in _FORMER_FLAGS.items():
            if flag in cls.__dict__ and not callable(cls.__dict__[flag]):
                raise TypeError(f"{cls.__qualname__}.{flag} is no longer read: override Method.{hook} instead")

    def __init__(self, params: Any = None) -> None:
        self.params: Any = params if params is not None else self.Params()  # the subclass's Params

    def setup(self) -> None:
        """Build what needs a heavy library (an Avalanche plugin: ``methods.avalanche_plugins``).
        ``build_method`` calls it unless only checking a config (``check_only``: a sweep's
        dry run, a rerun that finds its run complete), which must not import Avalanche."""

    def task_loss(self, strategy: EngineView) -> Optional[torch.Tensor]:
        """The step's task loss in place of cross-entropy on the head's logits, or None to
        keep it (FLYP returns its contrastive loss). Called once per training step, after
        ``after_forward``; penalties belong in ``before_backward`` instead."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the method carries from one stage to the next (reference weights, importances,
        buffers), as tensors and plain containers only: stage checkpoints store it and load
        it with ``torch.load(weights_only=True)``, which refuses any other object. A method
        with such state must override this and ``load_state_dict``; the default is none."""
        return {}

    def load_state_dict(self, state: dict[str, Any], context: RestoreContext) -> None:
        """Take back what ``state_dict`` returned, into a freshly built method; ``context``
        holds the restored model (heads included), the tasks and the original CLIP."""

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        first = doc[0] if doc else ""
        params = ", ".join(f"{f.name}={_default(f)!r}" for f in dataclasses.fields(cls.Params))
        return f"{first}" + (f" [{params}]" if params else "") + (f" ({cls.paper})" if cls.paper else "")


@dataclass
class RestoreContext:
    """What a method may need to rebuild its state when a run resumes from a checkpoint."""

    model: ClipClassifier  # with the saved image tower and heads loaded
    tasks: dict[str, Task]  # task name -> task (class-incremental: the groups)
    bundle: ClipBundle  # the original CLIP (text tower, tokenizer)
    device: torch.device  # the device the run trains on


# Class flags the loop read before methods owned their behaviour -> the hook that replaced each.
_FORMER_FLAGS = {
    "trains": "trains()",
    "head_init": "init_head()",
    "freeze_encoder": "trains_encoder()",
    "probe_head": "final_head()",
    "prototype_head": "init_head() and takes_steps()",
    "refuses": "refuse()",
}


def _overrides(method: Method, hook: str) -> bool:
    """True when the method's class replaces ``Method``'s default of ``hook``."""
    return getattr(type(method), hook) is not getattr(Method, hook)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[operator]  # Params fields all have a default or a factory


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str):
    """Class decorator: ``@register_method("ldifs")`` names the method and registers it."""

    def wrap(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return wrap


def build_params(cls: type[Method], values: dict[str, Any]) -> Any:
    """The method's Params from ``hparams.<method>``, each value checked against its type."""
    fields = field_types(cls.Params)
    for key in values:
        if key not in fields:
            raise UserError(f"unknown hyperparameter {cls.name}.{key}; valid: {', '.join(fields) or '(none)'}")
    return cls.Params(**{k: coerce(v, fields[k], f"hparams.{cls.name}.{k}") for k, v in values.items()})


def build_method(spec: str, hparams: dict[str, dict[str, Any]], check_only: bool = False) -> list[Method]:
    """Instantiate ``"ldifs"`` or a composition ``"ldifs+replay"`` as a list of plugins;
    ``check_only``: every check, but no ``Method.setup`` (no heavy library imported)."""
    parts = spec.split("+")
    if not all(parts):  # "+", "ldifs+", "a++b": an empty part is a typo, not a method
        raise UserError(f"method {spec!r} has an empty part; write methods as NAME or NAME+NAME, e.g. ldifs+replay")
    classes = [METHODS.get(p) for p in parts]
    if len(parts) != len(set(parts)):
        raise UserError(f"method {spec!r} names a part twice")
    methods = [c(build_params(c, hparams.get(c.name, {}))) for c in classes]
    for m in methods:
        why = m.compose_check(methods) if len(methods) > 1 else None
        if why:
            raise UserError(f"method {spec!r} cannot be composed: {why}")
    for m in methods:
        m.validate() if hasattr(m, "validate") else None
        m.setup() if not check_only else None
    return methods
