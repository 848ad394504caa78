"""GPU self-check: the suite's GPU figures on your card, in one command of at most 10 minutes.

    python -m benchmark.tools.gpu_check                 # writes gpu_check.json and gpu_check.md
    python -m benchmark.tools.gpu_check --dry-run       # prints the plan, runs nothing
    python -m benchmark.tools.gpu_check --out DIR --budget 420 --skip criterion

Steps (each bounded by what is left of the budget; a step that fails is reported, the
others still run):
1. ``gpu_tests``: ``pytest -m gpu`` (LDIFS's speed paths give the plain path's penalty
   and gradient, fp32 and bf16; a micro run on CUDA).
2. ``step_times``: ViT-B-32, batch 128, open_clip's train augmentation (``rrc``), under
   bf16 autocast and under TF32: a bare PyTorch loop, the suite's fine-tuning, LDIFS plain
   and each of its speed paths, interleaved in one process per precision
   (``benchmark.tools.perf``); the model FLOP utilisation of fine-tuning.
3. ``precision_floor``: the LDIFS distance and its gradient under bf16, TF32 and fp32
   against strict fp32, with the trained copy drifted by 1e-3 and 1e-2 of each weight
   tensor's norm (where bf16 rounding swamps the signal).
4. ``cache``: fine-tuning at 224 px read from a warm decoded-image cache against the same
   images held in device memory.
5. ``criterion``: the embedded default's headline numbers (fine-tuning vs LDIFS, seeds in
   parallel processes) on this device: the numbers, not a pass.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from benchmark.config import Range, check_flags
from benchmark.errors import UserError, command
from benchmark.files import atomic_text, check_tool_folder

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("gpu_tests", "step_times", "precision_floor", "cache", "criterion")
PLAN = {
    "gpu_tests": "pytest -m gpu: every LDIFS speed path gives the plain path's penalty and gradient (fp32, bf16)",
    "step_times": "ViT-B-32, batch 128, augment rrc, bf16 and TF32: bare loop, suite fine-tuning, LDIFS plain "
    "and each speed path, interleaved; model FLOP utilisation of fine-tuning",
    "precision_floor": "LDIFS distance and gradient cosine vs strict fp32 at 1e-3 and 1e-2 relative drift, "
    "for bf16, TF32, fp32",
    "cache": "fine-tuning at 224 px from a warm decoded-image cache vs in-memory arrays (throughput ratio)",
    "criterion": "the embedded default, fine-tuning vs LDIFS over seeds on this device (numbers, not a pass)",
}
# --precisions: benchmark.tools.perf's --amp choices (AMP_CHOICES; not imported here: it loads torch).
PRECISIONS = ("auto", "bf16", "tf32", "off")
# Dense peak tensor throughput (TFLOP/s) by card and precision, from the vendors' data
# sheets (SXM parts; sparsity not counted). MFU is reported only for cards listed here.
PEAK_TFLOPS = {
    "H100": {"bf16": 989.0, "tf32": 494.5},
    "H200": {"bf16": 989.0, "tf32": 494.5},
    "A100": {"bf16": 312.0, "tf32": 156.0},
}


def say(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def environment(device_index: int = 0) -> dict:
    """Card, driver, CUDA, library versions, date and the suite's commit."""
    import torch

    from benchmark.provenance import git_revision, versions

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_revision(),
        "torch_cuda": torch.version.cuda,
        **versions(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device_index)
        env["card"] = props.name
        env["memory_gib"] = round(props.total_memory / 2**30, 1)  # type: ignore[assignment]
        env["driver"] = _driver_version()
    return env


def _driver_version() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """A child in the suite's root with unbuffered output; raises TimeoutError past ``timeout``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 1), env=full_env)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{' '.join(cmd[1:4])} ... ran past {timeout:.0f} s") from None


def gpu_tests(args: argparse.Namespace, seconds_left: float) -> dict:
    """``pytest -m gpu`` in a child process: counts, failures, the closing line."""
    marker = "gpu" if args.device.startswith("cuda") else "gpu and not gpu"  # the CPU smoke test selects none
    cmd = [sys.executable, "-m", "pytest", "-q", "--tb=short", "-m", marker, "-p", "no:cacheprovider", "tests"]
    proc = _run(cmd, seconds_left)
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else proc.stderr.strip()[-300:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    failed = [line[len("FAILED ") :] for line in lines if line.startswith("FAILED ")]
    out = {"exit_code": proc.returncode, "summary": summary.strip("= "), "counts": counts, "failed": failed}
    if failed:  # the tracebacks, for whoever reads the JSON
        out["output_tail"] = proc.stdout[-6000:]
    return out


def _perf(args: argparse.Namespace, extra: list[str], seconds_left: float) -> dict:
    cmd = [sys.executable, "-m", "benchmark.tools.perf", "--device", args.device, "--model", args.model]
    cmd += ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats), *extra]
    proc = _run(cmd, seconds_left)
    if proc.returncode != 0:
        raise RuntimeError(f"perf exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def flops_per_image(model: str, image_size: int | None = None) -> float:
    """FLOPs of one training step's forward + backward per image (torch's FLOP counter, on
    the CPU at batch 2; matmuls and convolutions, which is what tensor cores run)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.tools.perf import build_visual

    visual, size = build_visual(model)
    x = torch.randn(2, 3, image_size or size, image_size or size)
    with FlopCounterMode(display=False) as counter:
        visual(x).float().sum().backward()
    return counter.get_total_flops() / 2


def peak_tflops(card: str, precision: str) -> float | None:
    for key, peaks in PEAK_TFLOPS.items():
        if key in card:
            return peaks.get(precision)
    return None


def step_times(args: argparse.Namespace, seconds_left: float) -> dict:
    """perf's step-time matrix under bf16 and TF32, and fine-tuning's model FLOP utilisation."""
    import torch

    deadline = time.monotonic() + seconds_left
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    flops = flops_per_image(args.model)
    out: dict = {"flops_per_image_train": flops}
    for precision in args.precisions.split(","):
        extra = ["--amp", precision, "--augment", "rrc", "--steps", str(args.steps), "--epochs", "2"]
        result = _perf(args, extra, deadline - time.monotonic())
        img_s = result["img_per_s"].get("finetune")
        peak = peak_tflops(card, precision)
        result["finetune_tflops"] = round(flops * img_s / 1e12, 1) if img_s else None
        result["finetune_mfu"] = round(flops * img_s / (peak * 1e12), 3) if img_s and peak else None
        out[precision] = result
    return out


def _drifted(visual, drift: float, generator):
    """A copy whose every weight tensor moved by ``drift`` times its own norm, in a random direction."""
    import torch

    live = copy.deepcopy(visual)
    with torch.no_grad():
        for p in live.parameters():
            noise = torch.randn(p.shape, generator=generator, device="cpu").to(p.device)
            p.add_(noise * (drift * p.norm() / noise.norm().clamp_min(1e-12)))
    return live.requires_grad_(True)


def _distance_and_grad(live, reference, x, precision: str):
    """LDIFS distance of ``live`` to ``reference`` on ``x`` and its gradient, flattened, in fp32."""
    import torch

    from benchmark.models.taps import TapRecorder, image_taps
    from methods.ldifs import ldifs_distance

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    live_rec, ref_rec = TapRecorder(image_taps(live)), TapRecorder(image_taps(reference))
    try:
        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        with autocast:
            live(x)
            with torch.no_grad():
                reference(x)
        distance = ldifs_distance(live_rec.take(), ref_rec.take(), live_rec.taps)
        grads = torch.autograd.grad(distance, [p for p in live.parameters()], allow_unused=True)
    finally:
        live_rec.remove()
        ref_rec.remove()
    flat = torch.cat([g.flatten().float() for g in grads if g is not None])
    return float(distance.detach()), flat


def precision_floor(args: argparse.Namespace, seconds_left: float) -> dict:
    """Distance ratio and gradient cosine of each precision against strict fp32, per drift."""
    import torch
    import torch.nn.functional as F

    from benchmark.tools.perf import build_visual
    from methods.ldifs import frozen_like_training

    device = torch.device(args.device)
    torch.manual_seed(0)
    visual, size = build_visual(args.model)
    visual = visual.to(device).float()
    reference = frozen_like_training(visual)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.floor_batch, 3, size, size, generator=gen).to(device)
    out = {"batch": args.floor_batch, "drift": "each weight tensor moved by drift x its norm"}
    try:
        for drift in (1e-3, 1e-2):
            live = _drifted(visual, drift, gen)
            d32, g32 = _distance_and_grad(live, reference, x, "fp32")
            row = {"fp32_distance": d32}
            for precision in ("bf16", "tf32", "fp32"):
                d, g = _distance_and_grad(live, reference, x, precision)
                row[precision] = {
                    "distance_vs_fp32": round(d / d32, 4) if d32 else None,
                    "grad_cosine_vs_fp32": round(float(F.cosine_similarity(g, g32, dim=0)), 4),
                }
            out[f"{drift:g}"] = row
    finally:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return out


def cache(args: argparse.Namespace, seconds_left: float) -> dict:
    """perf's ``--cache``: fine-tuning from a warm 224 px cache entry vs device-resident arrays."""
    extra = ["--amp", args.precisions.split(",")[0], "--methods", "finetune", "--cache"]
    extra += ["--image-size", str(args.cache_image_size), "--steps", str(args.steps)]
    result = _perf(args, extra, seconds_left)
    return {
        "image_size": args.cache_image_size,
        "img_per_s": result["img_per_s"],
        "finetune_cached_vs_finetune_throughput": result["ratios"].get("finetune_cached_vs_finetune_throughput"),
    }


def criterion(args: argparse.Namespace, seconds_left: float) -> dict:
    """The embedded default's fine-tuning vs LDIFS, one child process per seed, all at once."""
    from benchmark.reporting.criterion import criterion_table, load_runs

    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for seed in seeds:
            cmd = [sys.executable, "run_benchmark.py", "--methods", "finetune,ldifs", "--seeds", str(seed)]
            cmd += ["--device", args.device, "--results-dir", tmp, "--name", f"seed{seed}", "-q"]
            cmd += shlex.split(args.criterion_args)
            threads = "2" if args.device.startswith("cuda") else "1"
            procs.append(
                subprocess.Popen(
                    [*cmd, "--threads", threads], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
            )
        deadline, errors = time.monotonic() + seconds_left, []
        for seed, proc in zip(seeds, procs):
            try:
                _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                errors.append(f"seed {seed}: past the budget")
                continue
            if proc.returncode != 0:
                errors.append(f"seed {seed}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
        # only seeds whose run finished: a killed one may have written part of its CSV
        done = [Path(tmp) / f"seed{s}" for s, proc in zip(seeds, procs) if proc.returncode == 0]
        if not done:
            raise RuntimeError("; ".join(errors) or "no seed finished")
        table = criterion_table(load_runs(done))
    return {"seeds_finished": len(done), "errors": errors, "table": table.round(2).to_dict("records")}


STEP_FUNCTIONS: dict[str, Callable[[argparse.Namespace, float], dict]] = {
    "gpu_tests": gpu_tests,
    "step_times": step_times,
    "precision_floor": precision_floor,
    "cache": cache,
    "criterion": criterion,
}
# Each step's share of the budget (the rest of the budget flows to later steps).
BUDGET_SHARE = {"gpu_tests": 0.22, "step_times": 0.38, "precision_floor": 0.06, "cache": 0.12, "criterion": 0.22}


def run_steps(args: argparse.Namespace, steps: list[str]) -> dict:
    """Each step within its share of the budget; a failure is recorded and the next step runs."""
    results, start = {}, time.monotonic()
    for i, name in enumerate(steps):
        left = args.budget - (time.monotonic() - start)
        share = sum(BUDGET_SHARE[s] for s in steps[i:])
        allowed = left * BUDGET_SHARE[name] / share if i < len(steps) - 1 else left
        if left < 5:
            results[name] = {"error": "skipped: no budget left", "seconds": 0.0}
            continue
        say(f"{name}: {PLAN[name]} (up to {allowed:.0f} s)")
        t0 = time.monotonic()
        try:
            results[name] = {"result": STEP_FUNCTIONS[name](args, allowed)}
        except Exception as e:  # noqa: BLE001 - one step's failure is part of the report, not the end of it
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.monotonic() - t0, 1)
        say(
            f"{name}: {'error: ' + results[name]['error'] if 'error' in results[name] else 'done'} in {results[name]['seconds']} s"  # type: ignore[operator]
        )
    return results


def render_markdown(report: dict) -> str:
    """The report as markdown: environment, then one section per step (pure: tested on the CPU)."""
    env = report["environment"]
    lines = ["# GPU self-check", ""]
    lines.append(
        f"{env.get('card', env.get('device', '?'))}, driver {env.get('driver', '?')}, CUDA {env.get('torch_cuda')}, "
        f"torch {env.get('torch')}, open_clip {env.get('open_clip_torch')}, avalanche {env.get('avalanche-lib')}; "
        f"{env.get('date')}, commit {env.get('commit')}; budget {report.get('budget_s')} s, "
        f"wall {report.get('wall_s')} s."
    )
    for name, step in report["steps"].items():
        lines += ["", f"## {name} ({step.get('seconds', 0)} s)", "", PLAN[name] + ".", ""]
        if "error" in step:
            lines.append(f"Not measured: {step['error']}")
            continue
        lines += RENDERERS[name](step["result"])
    return "\n".join(lines) + "\n"


def _render_tests(r: dict) -> list[str]:
    failed = "".join(f"\n- failed: `{f}`" for f in r["failed"])
    return [f"`{r['summary']}` (exit {r['exit_code']}){failed}"]


def _render_steps(r: dict) -> list[str]:
    precisions = [k for k in r if isinstance(r[k], dict) and "ms_per_step" in r[k]]
    variants = list(dict.fromkeys(v for p in precisions for v in r[p]["ms_per_step"]))
    lines = [
        "| variant | " + " | ".join(f"{p} ms/step | {p} vs FT" for p in precisions) + " |",
        "| --- | " + " | ".join("--- | ---" for _ in precisions) + " |",
    ]
    for v in variants:
        cells = []
        for p in precisions:
            ms, ft = r[p]["ms_per_step"].get(v), r[p]["ms_per_step"].get("finetune")
            cells += [f"{ms:.1f}" if ms else "", f"{ms / ft:.3f}x" if ms and ft else ""]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    for p in precisions:
        res = r[p]
        lines.append("")
        lines.append(
            f"{p}: fine-tuning {res['img_per_s'].get('finetune')} img/s = {res.get('finetune_tflops')} TFLOP/s "
            f"(MFU {res.get('finetune_mfu')}); suite fine-tuning vs bare loop throughput "
            f"{res['ratios'].get('finetune_vs_bare_throughput')}; batch {res['batch']}, {res['image_size']} px, "
            f"augment {res['augment']}, {res['epochs']} epochs x {res['steps_per_epoch']} steps, "
            f"median of {res['repeats']}; LDIFS reuse tier {res.get('ldifs_reuse_tier', {})}."
        )
    lines.append(
        f"\nFLOPs per image of a training step (forward + backward): {r['flops_per_image_train'] / 1e9:.2f} G."
    )
    return lines


def _render_floor(r: dict) -> list[str]:
    drifts = [k for k in r if k not in ("batch", "drift")]
    lines = [
        "| precision | " + " | ".join(f"distance/fp32 at {d} | grad cosine at {d}" for d in drifts) + " |",
        "| --- | " + " | ".join("--- | ---" for _ in drifts) + " |",
    ]
    for p in ("bf16", "tf32", "fp32"):
        cells = [f"{r[d][p]['distance_vs_fp32']} | {r[d][p]['grad_cosine_vs_fp32']}" for d in drifts]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines.append(f"\nBatch {r['batch']}; drift: {r['drift']}.")
    return lines


def _render_cache(r: dict) -> list[str]:
    return [
        f"At {r['image_size']} px: {r['img_per_s']} img/s; warm cache vs in-memory throughput "
        f"{r['finetune_cached_vs_finetune_throughput']}."
    ]


def _render_criterion(r: dict) -> list[str]:
    import pandas as pd

    from benchmark.reporting.criterion import render

    errors = "".join(f"\n- {e}" for e in r["errors"])
    return [render(pd.DataFrame(r["table"])), f"\n{r['seeds_finished']} seed(s) finished.{errors}"]


RENDERERS = {
    "gpu_tests": _render_tests,
    "step_times": _render_steps,
    "precision_floor": _render_floor,
    "cache": _render_cache,
    "criterion": _render_criterion,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmark.errors import OneLineParser

    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/gpu_check"), help="folder for gpu_check.json and .md")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for all steps together (default 540)")
    p.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {','.join(STEPS)}")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu: a smoke test of the plumbing, tiny model)")
    p.add_argument("--model", default="ViT-B-32", help="open_clip architecture for step times and the floor")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=16, help="steps per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precisions", default="tf32,bf16", help="step-time precisions (the first also times the cache)")
    p.add_argument("--floor-batch", type=int, default=32)
    p.add_argument("--cache-image-size", type=int, default=224)
    p.add_argument("--seeds", default="0,1,2,3,4", help="embedded-default seeds for the criterion")
    p.add_argument("--criterion-args", default="", help="extra run_benchmark.py flags for the criterion's runs")
    args = p.parse_args(argv)
    check_flags(argparse.Namespace(**vars(args)), Flags)  # on a copy: the steps read the flags as given
    return args


@dataclass
class Flags:
    """The numeric and choice flags, checked as config keys are (benchmark.config.check_flags)."""

    budget: Annotated[float, Range(low=1)] = 540.0
    skip: list[Literal[STEPS]] = field(default_factory=list)  # type: ignore[valid-type]
    batch_size: Annotated[int, Range(low=1)] = 128
    steps: Annotated[int, Range(low=1)] = 16
    repeats: Annotated[int, Range(low=1)] = 3
    precisions: list[Literal[PRECISIONS]] = field(default_factory=list)  # type: ignore[valid-type]
    floor_batch: Annotated[int, Range(low=1)] = 32
    cache_image_size: Annotated[int, Range(low=1, high=4096)] = 224
    seeds: list[Annotated[int, Range(low=0, high=2**32 - 1)]] = field(default_factory=list)


OWNED = ("gpu_check.json", "gpu_check.md")


def is_report(data: object) -> bool:
    """Is this JSON a gpu_check.json (the marker of a folder gpu_check wrote)."""
    return isinstance(data, dict) and {"environment", "steps"} <= set(data)


@command
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    skipped = [s for s in args.skip.split(",") if s]
    steps = [s for s in STEPS if s not in skipped]
    if not steps:
        raise UserError(f"--skip {args.skip} leaves no step to run; valid steps: {', '.join(STEPS)}")
    if not args.precisions.strip(","):
        raise UserError(f"--precisions {args.precisions!r} names none; valid: {', '.join(PRECISIONS)}")
    check_tool_folder(args.out, "gpu_check --out", "gpu_check.json", is_report, OWNED)  # before any step
    if args.dry_run:
        for i, name in enumerate(steps, 1):
            print(f"{i}. {name}: {PLAN[name]}")
        print(f"budget {args.budget:.0f} s; reports: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda}); nothing to check"
        )
    start = time.monotonic()
    report = {"environment": environment(), "budget_s": args.budget, "device": args.device, "model": args.model}
    if not args.device.startswith("cuda"):
        report["environment"]["device"] = args.device
    report["steps"] = run_steps(args, steps)
    report["wall_s"] = round(time.monotonic() - start, 1)
    check_tool_folder(args.out, "gpu_check --out", "gpu_check.json", is_report, OWNED)  # again: it may have changed
    atomic_text(args.out / "gpu_check.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_text(args.out / "gpu_check.md", render_markdown(report))
    say(f"wrote {args.out / 'gpu_check.md'} and gpu_check.json in {report['wall_s']} s")
    return 0 if all("error" not in s for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
