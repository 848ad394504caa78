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

from benchmark.config import _coerce, _fields
from benchmark.errors import UserError
from benchmark.registry import Registry

if TYPE_CHECKING:  # these import Avalanche: only type checkers follow them
    from benchmark.models.classifier import ClipClassifier
    from benchmark.models.loading import ClipBundle
    from tasks import Task

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

    The stage state (``stage_index``, ``current_task``) is set by the engine itself in
    ``Engine.train_stage``; a hook never sets engine attributes.
    """

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


class Method(PluginHooks):
    """Base class of registered methods. Subclasses override Avalanche hooks
    (``before_training_exp``, ``before_backward``, ``after_backward``, ...) and declare
    their hyperparameters as a ``Params`` dataclass; the docstring's first line is the
    one-line description ``--list-methods`` prints."""

    @dataclass
    class Params:
        pass

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    trains: ClassVar[bool] = True  # False: the encoder and heads never change (zero-shot)
    head_init: ClassVar[Optional[str]] = None  # overrides train.head_init when set
    freeze_encoder: ClassVar[bool] = False  # True: only the heads train (linear probing)
    # True: after each stage the new task's head is replaced by the tracker's converged
    # linear probe (eval.probe) on the frozen features, not left where the optimiser put it.
    probe_head: ClassVar[bool] = False
    # True: acts only on the image encoder (a penalty on it, a change of its weights), so it
    # would silently do nothing beside a method that freezes the encoder: refused.
    needs_encoder_training: ClassVar[bool] = False
    # True: each stage's head rows are the class means of the frozen features (a prototype
    # classifier): the stage computes them and takes no training step.
    prototype_head: ClassVar[bool] = False
    # scenario ("task_incremental" | "class_incremental") -> why the method cannot run it;
    # the run is refused in one line before any training (benchmark/run/class_incremental.py).
    refuses: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Optional[Method.Params] = None) -> None:
        self.params = params if params is not None else self.Params()

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

    model: Any  # the ClipClassifier with the saved image tower and heads loaded
    tasks: dict[str, Any]  # task name -> tasks.Task
    bundle: Any  # the original ClipBundle (text tower, tokenizer)
    device: Any  # torch.device the run trains on


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


METHODS: Registry[type] = Registry("method")


def register_method(name: str):
    """Class decorator: ``@register_method("ldifs")`` names the method and registers it."""

    def wrap(cls: type) -> type:
        cls.name = name
        return METHODS.register(name)(cls)

    return wrap


def build_params(cls: type, values: dict[str, Any]) -> Any:
    """The method's Params from ``hparams.<method>``, each value checked against its type."""
    fields = _fields(cls.Params)
    for key in values:
        if key not in fields:
            raise UserError(f"unknown hyperparameter {cls.name}.{key}; valid: {', '.join(fields) or '(none)'}")
    return cls.Params(**{k: _coerce(v, fields[k], f"hparams.{cls.name}.{k}") for k, v in values.items()})


def build_method(spec: str, hparams: dict[str, dict[str, Any]], check_only: bool = False) -> list[Method]:
    """Instantiate ``"ldifs"`` or a composition ``"ldifs+replay"`` as a list of plugins;
    ``check_only``: every check, but no ``Method.setup`` (no heavy library imported)."""
    parts = spec.split("+")
    if not all(parts):  # "+", "ldifs+", "a++b": an empty part is a typo, not a method
        raise UserError(f"method {spec!r} has an empty part; write methods as NAME or NAME+NAME, e.g. ldifs+replay")
    classes = [METHODS.get(p) for p in parts]
    if len(parts) != len(set(parts)):
        raise UserError(f"method {spec!r} names a part twice")
    if len(classes) > 1 and not all(c.trains for c in classes):
        frozen = [c.name for c in classes if not c.trains]
        raise UserError(
            f"method {spec!r} cannot be composed: {', '.join(frozen)} trains nothing, "
            "so nothing else can act on its training"
        )
    frozen_by = [c.name for c in classes if c.freeze_encoder]
    idle = [c.name for c in classes if c.needs_encoder_training]
    if frozen_by and idle:
        raise UserError(
            f"method {spec!r} cannot be composed: {', '.join(frozen_by)} freezes the image encoder, "
            f"so {', '.join(idle)} (which only acts on the encoder) would change nothing"
        )
    inits = {c.head_init for c in classes if c.head_init}
    if len(inits) > 1:
        raise UserError(f"method {spec!r} cannot be composed: its parts ask for different head inits {sorted(inits)}")
    methods = [c(build_params(c, hparams.get(c.name, {}))) for c in classes]
    for m in methods:
        m.validate() if hasattr(m, "validate") else None
        m.setup() if not check_only else None
    return methods
