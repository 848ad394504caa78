"""Step-time benchmark: a bare PyTorch loop vs the suite's engine (FT, LDIFS, ...), one process.

    python -m benchmark.tools.perf                                   # CPU, the embedded tiny model
    python -m benchmark.tools.perf --model tiny-vit --epochs 2       # CPU, LDIFS with reused taps
    python -m benchmark.tools.perf --device cuda --model ViT-B-32 --epochs 2   # GPU, every LDIFS path
    python -m benchmark.tools.perf --device cuda --model ViT-B-32 --image-size 224 --steps 400 --cache
        # + "finetune_cached": the same stage read from a warm decoded-image cache (tasks/cache.py)

Every variant trains the same model on the same device-resident uint8 data (32 px, resized
on the device to the model's resolution) with the same batch, optimiser and schedule.
Variants are interleaved over repeats and the median is kept, so a noisy shared machine
biases no variant; ratios are computed within the run. LDIFS is timed plain and with each
speed path of methods/ldifs.py (a second CUDA stream, a CUDA graph, reference taps reused
across epochs). Says what it times on stderr as it goes; prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F

from benchmark.config import Range, TrainConfig, check_flags
from benchmark.errors import OneLineParser, UserError, command
from benchmark.models.architectures import suite_model_config, suite_model_names
from benchmark.models.classifier import ClipClassifier
from benchmark.models.preprocess import OPENAI_MEAN, OPENAI_STD, BatchPreprocess, bf16_autocast
from benchmark.provenance import device_name
from benchmark.training.engine import Engine


def build_visual(name: str) -> tuple[torch.nn.Module, int]:
    """A randomly initialised image tower (weights do not change step time)."""
    import open_clip

    if name in suite_model_names():
        model = open_clip.CLIP(**suite_model_config(name))
    else:
        model = open_clip.create_model(name, pretrained=None)
    size = model.visual.image_size
    return model.visual, size[0] if isinstance(size, (tuple, list)) else size


# LDIFS's speed paths (hparams.ldifs.*): each variant is LDIFS with these set.
LDIFS_VARIANTS = {
    "plain": {},
    "stream": {"reference_stream": True},
    "graph": {"cuda_graph": True},
    "reuse": {"reuse_reference_taps": "auto"},  # auto: a BatchNorm tower recomputes (tier reported)
    "all": {"reference_stream": True, "cuda_graph": True, "reuse_reference_taps": "auto"},
}
CPU_VARIANTS = ("plain", "reuse")  # stream and graph are CUDA-only (same numbers, nothing to time)


def say(message: str, end: str = "\n") -> None:
    """What is being timed, on stderr: stdout carries only the JSON."""
    print(message, file=sys.stderr, end=end, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(visual, head_w, data, cfg: TrainConfig, prep, device, steps: int, epochs: int = 1) -> float:
    """The reference: plain PyTorch, no framework, no augmentation. Returns seconds per step."""
    model = ClipClassifier(copy.deepcopy(visual)).to(device)
    model.add_head(0, head_w)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    total = steps * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    x_all, y_all = data
    _sync(device)
    start = time.perf_counter()
    batches = [i for _ in range(epochs) for i in torch.randperm(len(y_all), device=device).split(cfg.batch_size)]
    for idx in batches:
        with bf16_autocast(device, cfg.amp != "off"):
            logits = model(prep(x_all[idx]), 0)
        loss = F.cross_entropy(logits.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
    _sync(device)
    return (time.perf_counter() - start) / total


def suite_loop(
    method: str,
    visual,
    head_w,
    data,
    cfg: TrainConfig,
    prep,
    device,
    steps: int,
    epochs: int = 1,
    hparams=None,
    images=None,
) -> tuple[float, list]:
    """The suite's engine with a registered method's plugins. Returns seconds per step and the plugins.

    ``images``: the same images read from the decoded-image cache instead (MappedImages)."""
    from benchmark.loop.scheduler import make_stream
    from methods import build_method
    from tasks.base import Split, Task

    model = ClipClassifier(copy.deepcopy(visual)).to(device)
    model.add_head(0, head_w)
    x_all, y_all = data
    split = Split(x_all.cpu() if images is None else images, y_all.cpu())
    task = Task("perf", [str(i) for i in range(head_w.shape[0])], ["{}"], split, split)
    exp = make_stream([task], None, 0)[0]
    plugins = build_method(method, hparams or {})
    engine = Engine(model, cfg, prep, plugins, device, seed=0, progress=False)
    engine.train_epochs = epochs
    _sync(device)
    start = time.perf_counter()
    engine.train(exp, eval_streams=[])
    _sync(device)
    return (time.perf_counter() - start) / (steps * epochs), plugins


def warm_cache(images: torch.Tensor, folder: str):
    """The images written once into a decoded-image cache entry, then mapped (a warm cache)."""
    import numpy as np

    from tasks.cache import cached_arrays

    host = images.cpu()

    def fill(rows, labels) -> None:
        for start in range(0, len(host), 1024):
            rows[start : start + 1024] = host[start : start + 1024].numpy()

    n, size = len(host), host.shape[-1]
    key = {"n": n, "size": size, "checksum": int(host[:64].sum())}  # other data, other entry
    mapped, _ = cached_arrays(Path(folder), "perf", key, n, size, fill, "perf")
    assert np.array_equal(mapped.gather(np.arange(min(n, 4))).numpy(), host[:4].numpy())
    return mapped


def data_prep(n_images: int, folder: str) -> dict:
    """Seconds to prepare a folder task of ``n_images`` fabricated PNGs (320x256 noise, 10
    classes, stored at 224 px): decoded into memory (no cache), into a cold cache, and mapped
    from the warm cache (what every later run pays)."""
    import numpy as np
    from PIL import Image

    from tasks.base import TaskContext
    from tasks.folder_tasks import folder_task

    root, rng = Path(folder) / "images", np.random.default_rng(0)
    for i in range(n_images):
        path = root / "train" / f"class_{i % 10}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)).save(path)
    make = folder_task("prep", root)
    seconds = {}
    for label, cache in (
        ("no_cache", None),
        ("cold_cache", Path(folder) / "cache"),
        ("warm_cache", Path(folder) / "cache"),
    ):
        start = time.perf_counter()
        make(TaskContext(data_cache=cache))
        seconds[label] = round(time.perf_counter() - start, 3)
    return {
        "images": n_images,
        "seconds": seconds,
        "warm_speedup_vs_decoding": round(seconds["no_cache"] / seconds["warm_cache"], 1),
    }


def eval_cost(visual, prep, device, n_probe: int, n_test: int, batch: int, amp: str = "auto") -> dict[str, float]:
    """Seconds to evaluate one task: features of its probe and test images (inference mode)
    and the L-BFGS linear probe, as the tracker does it."""
    from benchmark.config import EvalConfig
    from benchmark.evaluation.tracker import EvalSet, Tracker
    from tasks.base import Split, Task

    n = n_probe + n_test
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (n,), device=device)
    split = Split(images.cpu(), labels.cpu())
    task = Task("perf", [str(i) for i in range(10)], ["{}"], split, split)
    with torch.no_grad():
        zs = torch.randn(10, visual(prep(images[:2])).shape[-1], device=device)
    es = EvalSet(task, images[:n_probe], labels[:n_probe], images[n_probe:], labels[n_probe:], zs)
    tracker = Tracker({"perf": es}, EvalConfig(batch_size=batch), prep, device, progress=False, amp=amp)
    tracker.evaluate(visual, {}, 0)  # warm-up
    _sync(device)
    start = time.perf_counter()
    tracker.evaluate(visual, {}, 0)
    _sync(device)
    return {"seconds_per_task": round(time.perf_counter() - start, 3), "images_per_task": n}


def eval_share(visual, prep, device, train_img_s: float, amp: str = "auto") -> dict:
    """Evaluation's share of a stage at the paper's scale (paper_continual): a stage trains
    10 epochs of SVHN's 90% train split (65,931 images), then evaluates 12 tasks, each on
    up to 10,000 probe and 10,000 test images (the tracker's per-task cost, measured)."""
    cost = eval_cost(visual, prep, device, 10_000, 10_000, 512, amp)
    train_s = 10 * 65_931 / train_img_s
    eval_s = 12 * cost["seconds_per_task"]
    return {
        **cost,
        "stage_train_seconds_projected": round(train_s, 1),
        "stage_eval_seconds_projected": round(eval_s, 1),
        "eval_share_of_stage": round(eval_s / (eval_s + train_s), 3),
    }


def measure(variants: dict[str, Callable[[], float]], repeats: int, label: str = "repeat") -> dict[str, float]:
    """Median seconds/step per variant, variants interleaved in every repeat; one stderr
    line per variant and repeat (named before it runs, its time added when done)."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            say(f"perf: {label} {r + 1}/{repeats}: {name} ...", end=" ")
            times[name].append(fn())
            say(f"{1000 * times[name][-1]:.1f} ms/step")
    return {k: statistics.median(v) for k, v in times.items()}


AMP_CHOICES = ("auto", "bf16", "tf32", "off")  # --amp (gpu_check's --precisions take the same)


def set_precision(amp: str, device: torch.device) -> str:
    """``--amp``: bf16 autocast, TF32 matmuls in fp32, or strict fp32; returns train.amp."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    tf32 = amp == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return "bf16" if amp == "bf16" else "off"


def train_config(args: argparse.Namespace, amp: str) -> TrainConfig:
    cfg = TrainConfig(lr=1e-5, batch_size=args.batch_size, warmup_steps=0, amp=amp)  # type: ignore[arg-type]
    if hasattr(cfg, "augment"):
        cfg.augment = args.augment
    elif args.augment != "none":
        raise UserError(f"--augment {args.augment}: this version's train config has no augment option; use none")
    return cfg


def ldifs_variants(args: argparse.Namespace, device: torch.device) -> list[str]:
    names = list(CPU_VARIANTS if device.type != "cuda" else LDIFS_VARIANTS) if args.ldifs == "auto" else []
    names = names or [v for v in args.ldifs.split(",") if v]
    bad = [v for v in names if v not in LDIFS_VARIANTS]
    if bad:
        raise UserError(f"--ldifs {','.join(bad)}; valid: auto or a list of {', '.join(LDIFS_VARIANTS)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="tiny-rn", help="a suite model (tiny-rn, tiny-vit) or an open_clip name")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed stage (reused taps pay off from the 2nd)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="finetune,ldifs", help="suite methods to time, comma-separated")
    p.add_argument(
        "--ldifs",
        default="auto",
        help=f"LDIFS variants to time: auto (all on CUDA; {','.join(CPU_VARIANTS)} elsewhere) "
        f"or a list of {','.join(LDIFS_VARIANTS)}",
    )
    p.add_argument(
        "--amp",
        default="auto",
        choices=AMP_CHOICES,
        help="precision as train.amp has it: auto (bf16 on CUDA), bf16 autocast, TF32 matmuls, fp32",
    )
    p.add_argument("--augment", default="none", help="train.augment for the suite's variants (the bare loop: none)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--image-size", type=int, default=32, help="stored resolution of the uint8 images")
    p.add_argument(
        "--cache",
        action="store_true",
        help="also time finetune reading the same images from a warm decoded-image cache (finetune_cached)",
    )
    p.add_argument(
        "--data-prep",
        type=int,
        default=0,
        metavar="N",
        help="only time preparing a folder task of N fabricated PNGs: no cache, cold cache, warm cache",
    )
    p.add_argument("--cache-dir", default="", help="folder for --cache's entry (default: a temporary folder)")
    p.add_argument(
        "--eval-share",
        action="store_true",
        help="also time one task's evaluation and project the share of a paper-scale stage",
    )
    args = p.parse_args(argv)
    check_flags(args, Flags)  # before any model is built
    return args


@dataclass
class Flags:
    """The numeric flags, checked as config keys are (benchmark.config.check_flags)."""

    batch_size: Annotated[int, Range(low=1)] = 128
    steps: Annotated[int, Range(low=1)] = 30
    epochs: Annotated[int, Range(low=1)] = 1
    repeats: Annotated[int, Range(low=1)] = 3
    threads: Annotated[int, Range(low=0, high=1024)] = 0
    image_size: Annotated[int, Range(low=1, high=4096)] = 32
    data_prep: Annotated[int, Range(low=0)] = 0


def build_variants(args, visual, head_w, data, cfg, prep, device) -> tuple[dict, dict[str, str]]:
    """Timing closures: the bare loop, each method, each LDIFS variant; and where the reuse
    variants kept their reference taps (filled in as they run)."""
    run = dict(visual=visual, head_w=head_w, data=data, cfg=cfg, prep=prep, device=device)
    steps, epochs = args.steps, args.epochs
    variants = {"bare": lambda: bare_loop(visual, head_w, data, cfg, prep, device, steps, epochs)}
    tiers: dict[str, str] = {}

    def timed(name: str, method: str, hparams: dict) -> Callable[[], float]:
        def fn() -> float:
            seconds, plugins = suite_loop(method, **run, steps=steps, epochs=epochs, hparams=hparams)
            tier = next((p.reuse_tier for p in plugins if getattr(p, "reuse_tier", None)), None)
            if tier:
                tiers[name] = tier
            return seconds

        return fn

    for m in [m for m in args.methods.split(",") if m]:
        if m != "ldifs":
            variants[m] = timed(m, m, {})
            continue
        for v in ldifs_variants(args, device):
            name = "ldifs" if v == "plain" else f"ldifs[{v}]"
            variants[name] = timed(name, "ldifs", {"ldifs": LDIFS_VARIANTS[v]})
    return variants, tiers


def report(args, size: int, sec: dict[str, float], tiers: dict[str, str], device: torch.device, amp: str) -> dict:
    suite = [k for k in sec if k != "bare"]
    out = {
        "device": device_name(device),
        "model": args.model,
        "image_size": size,
        "stored_size": args.image_size,
        "batch": args.batch_size,
        "steps_per_epoch": args.steps,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "amp": amp,
        "augment": args.augment,
        "img_per_s": {k: round(args.batch_size / v, 1) for k, v in sec.items()},
        "ms_per_step": {k: round(1000 * v, 2) for k, v in sec.items()},
    }
    ratios = {f"{m}_vs_bare_throughput": round(sec["bare"] / sec[m], 3) for m in suite}
    if "finetune" in sec:
        ratios.update({f"{m}_vs_finetune_time": round(sec[m] / sec["finetune"], 3) for m in suite if m != "finetune"})
    if "finetune_cached" in sec and "finetune" in sec:
        ratios["finetune_cached_vs_finetune_throughput"] = round(sec["finetune"] / sec["finetune_cached"], 3)
    out["ratios"] = ratios
    if tiers:
        out["ldifs_reuse_tier"] = tiers
    return out


@command
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data_prep:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(data_prep(args.data_prep, args.cache_dir or tmp), indent=2))
        return 0
    device = torch.device(args.device)
    amp = set_precision(args.amp, device)
    cfg = train_config(args, amp)
    torch.manual_seed(0)
    visual, size = build_visual(args.model)
    visual = visual.to(device).to(memory_format=torch.channels_last)
    prep = BatchPreprocess(size, OPENAI_MEAN, OPENAI_STD).to(device)
    n = args.steps * args.batch_size
    data = (
        torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, device=device),
        torch.randint(0, 10, (n,), device=device),
    )
    with torch.no_grad():
        head_w = F.normalize(torch.randn(10, visual(prep(data[0][:2])).shape[-1], device=device), dim=-1) * 20
    variants, tiers = build_variants(args, visual, head_w, data, cfg, prep, device)
    say(
        f"perf: {device_name(device)}, {args.model} at {size} px, batch {args.batch_size}, amp {args.amp} "
        f"({'bf16 autocast' if amp == 'bf16' else 'fp32 matmuls' + (' in TF32' if args.amp == 'tf32' else '')}), "
        f"augment {args.augment}, {args.epochs} epoch(s) x {args.steps} steps; 1 warm-up + {args.repeats} repeats"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache:
            mapped = warm_cache(data[0], args.cache_dir or tmp)
            variants["finetune_cached"] = lambda: suite_loop(
                "finetune", visual, head_w, data, cfg, prep, device, args.steps, args.epochs, images=mapped
            )[0]
        measure(variants, 1, "warm-up")  # allocator, kernels, lazy imports, CUDA graph capture, the page cache
        sec = measure(variants, args.repeats)
    for name, tier in tiers.items():
        say(f"perf: {name}: reference taps kept in the {tier} tier")
    out = report(args, size, sec, tiers, device, args.amp)
    if args.eval_share:
        out["eval"] = eval_share(visual, prep, device, args.batch_size / sec.get("finetune", sec["bare"]), args.amp)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
