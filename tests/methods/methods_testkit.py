"""A seconds-long world for method tests: a tiny random open_clip CLIP (ViT or ResNet image
tower), two random uint8 tasks, and a RunSetup around them, so that methods run through the real scheduler and
engine (benchmark.loop.scheduler.run_method) without loading weights or data.

Not a conftest: tests import what they use from here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn as nn

from benchmark.config import EvalConfig, RunConfig, TrainConfig
from benchmark.evaluation.heads import zeroshot_weights
from benchmark.evaluation.tracker import EvalSet, Tracker
from benchmark.loop.scheduler import MethodResult, RunSetup, run_method
from benchmark.models.clip_loading import ClipBundle
from benchmark.models.preprocess import BatchPreprocess
from methods import Method, build_method
from tasks import Split, Task
from tasks.class_incremental import ClassIncremental, group_tasks
from tasks.sequences import Sequence, Stage

IMAGE_SIZE = 16
CONTEXT_LENGTH = 8
TRAIN_IMAGES = 16  # 2 steps per stage at batch 8: the second sees what the first changed
TEST_IMAGES = 16


def tiny_clip(seed: int = 0, tower: str = "vit") -> nn.Module:
    """A sub-1M-parameter open_clip CLIP with a one-layer text tower and a ViT image tower
    (16 px, patch 8) or a ModifiedResNet one (32 px; BatchNorm buffers, like tiny-rn)."""
    import open_clip

    torch.manual_seed(seed)
    if tower == "vit":
        vision = {"image_size": IMAGE_SIZE, "layers": 2, "width": 16, "patch_size": 8, "head_width": 8}
    else:
        vision = {"image_size": 2 * IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}
    text = {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}
    model = open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()
    return model.to(memory_format=torch.channels_last)  # as benchmark.models.load_clip gives it


@functools.lru_cache(maxsize=1)
def _bpe_tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")  # the BPE vocabulary ships with open_clip


def tokenize(texts: list[str]) -> torch.Tensor:
    return _bpe_tokenizer()(texts, context_length=CONTEXT_LENGTH)


def random_task(name: str, classnames: list[str], seed: int, images: int = TRAIN_IMAGES) -> Task:
    """Random uint8 images whose class shifts the mean colour, so there is something to learn."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        labels = torch.randint(0, len(classnames), (n,), generator=g)
        noise = torch.randint(0, 128, (n, 3, IMAGE_SIZE, IMAGE_SIZE), generator=g)
        shift = (labels * (120 // len(classnames))).view(n, 1, 1, 1)
        return Split((noise + shift).to(torch.uint8), labels)

    return Task(name, classnames, ["a photo of a {}.", "a {} thing."], split(images), split(images))


@contextlib.contextmanager
def single_thread():
    """One intra-op thread: a 0.8M-parameter model gains nothing from more, and on a shared
    2-core machine the extra threads spin-wait (measured 5x slower with 2 under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def micro_setup(
    tower: str = "vit",
    lr: float = 1e-3,
    kinds: tuple[str, ...] = ("head", "zs"),
    device: str = "cpu",
    class_incremental: bool = False,
) -> RunSetup:
    """Two stages (one epoch, 2 steps each) on two 3-class random tasks, or (class_incremental)
    on the two 3-class groups of one 6-class random task."""
    with single_thread():
        return _micro_setup(tower, lr, kinds, torch.device(device), class_incremental)


def _micro_setup(
    tower: str, lr: float, kinds: tuple[str, ...], device: torch.device, class_incremental: bool = False
) -> RunSetup:
    model = tiny_clip(0, tower).to(device)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    bundle = ClipBundle(model, tokenize, size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), f"tiny random test CLIP ({tower})")
    if class_incremental:  # one 6-class task whose classes arrive in two groups of three
        spec = ClassIncremental("hues", 2, order=[3, 0, 5, 1, 4, 2])
        hues = random_task("hues", ["red", "green", "blue", "cat", "dog", "cow"], 1, images=2 * TRAIN_IMAGES)
        tasks = dict(group_tasks(hues, spec))
        sequence = Sequence("micro-cil", [Stage(t, 1) for t in tasks], classes=spec)
    else:
        tasks = {
            "alpha": random_task("alpha", ["red", "green", "blue"], 1),
            "beta": random_task("beta", ["cat", "dog", "cow"], 2),
        }
        sequence = Sequence("micro-methods", [Stage("alpha", 1), Stage("beta", 1)])
    cfg = RunConfig(
        sequence="micro-methods",
        device=device.type,
        train=TrainConfig(epochs=1, lr=lr, batch_size=8, warmup_steps=0),
        eval=EvalConfig(kinds=list(kinds), lp_max_iter=10),
    )
    preprocess = BatchPreprocess(bundle.image_size, bundle.mean, bundle.std)
    sets = {
        name: EvalSet(
            task,
            task.train.images,
            task.train.labels,
            task.test.images,
            task.test.labels,
            zeroshot_weights(model, tokenize, task.prompts(), device),
        )
        for name, task in tasks.items()
    }
    tracker = RecordingTracker(sets, cfg.eval, preprocess, device, progress=False)
    return RunSetup(cfg, sequence, tasks, bundle, device, preprocess, tracker, progress=False)


class RecordingTracker(Tracker):
    """The tracker, keeping a copy of the image tower and heads it was given at each stage."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encoders: dict[int, dict[str, torch.Tensor]] = {}
        self.heads: dict[int, dict[str, nn.Module]] = {}

    def evaluate(
        self, visual: nn.Module, heads: dict[str, nn.Module], stage: int, desc: str = "", zs_heads=None
    ) -> list[dict]:
        self.encoders[stage] = {k: v.detach().clone() for k, v in visual.state_dict().items()}
        self.heads[stage] = copy.deepcopy(heads)
        return super().evaluate(visual, heads, stage, desc, zs_heads)


def run(
    setup: RunSetup,
    spec: str,
    hparams: Optional[dict] = None,
    spies: tuple[Method, ...] = (),
    spies_first: bool = False,
) -> tuple[MethodResult, list[Method]]:
    """Run ``spec`` through the micro sequence; return the result and the plugins used.

    ``spies`` are extra (unregistered) plugins put after the method's (or before, with
    ``spies_first``) to observe the engine at its hooks.
    """
    setup.cfg.hparams = hparams or {}
    built = build_method(spec, setup.cfg.hparams)
    plugins = [*spies, *built] if spies_first else [*built, *spies]
    with single_thread():
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
        result = run_method(setup, spec, seed=0, stage0=stage0, plugins=plugins)
    return result, built


def encoder_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Largest absolute change of any floating-point tensor of the image tower."""
    return max(float((after[k].float() - v.float()).abs().max()) for k, v in before.items() if v.is_floating_point())


def pretrained_encoder(setup: RunSetup) -> dict[str, torch.Tensor]:
    return setup.tracker.encoders[0]


class Spy(Method):
    """An unregistered plugin that calls ``fn(strategy)`` at the hooks it is given."""

    name = "spy"

    def __init__(self, **hooks: Callable) -> None:
        super().__init__()
        for hook, fn in hooks.items():
            setattr(self, hook, lambda strategy, _fn=fn, **kwargs: _fn(strategy))


def extra_loss(strategy) -> float:
    """What plugins added to the loss so far in this step: the loss minus the engine's CE."""
    ce = torch.nn.functional.cross_entropy(strategy.mb_output.float(), strategy.mb_y)
    return float(strategy.loss.detach() - ce.detach())
