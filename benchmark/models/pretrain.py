"""Contrastive pretraining of the embedded tiny CLIP on the procedural world.

The embedded default does not pretrain: it loads the tiny CLIP the repository ships
(``benchmark/models/weights/<name>/``: ``open_clip_model.safetensors``, its
``open_clip_config.json`` and ``pretrain.json``, the record of how it was made, with the
weights' sha256 checked at every load), through open_clip's ``local-dir:`` loader exactly
as a real checkpoint. A model is a fixed artifact: pretrained on each machine, the same code
and seed gave different weights on different hosts (their CPU kernels differ).

    python -m benchmark.models.pretrain                 # regenerate the shipped tiny-rn
    python -m benchmark.models.pretrain --check         # verify the shipped files, train nothing

A config whose ``model.pretrain`` differs from the shipped record pretrains its own model
into the model cache (``model.cache_dir``), keyed by model, pretraining config and world
version, under a lock so that parallel runs train it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from benchmark.config import ModelConfig, to_dict
from benchmark.errors import UserError, command
from benchmark.files import check_tool_folder, flocked
from benchmark.logs import progress as progress_bar
from benchmark.logs import quiet_root_logger
from benchmark.models.architectures import suite_model_config
from benchmark.models.preprocess import OPENAI_MEAN, OPENAI_STD, BatchPreprocess

log = logging.getLogger(__name__)

WORLD_VERSION = 1  # bump when tasks/synthetic.py renders differently: old caches become stale


def cache_key(cfg: ModelConfig) -> str:
    """Folder name for a (model config, pretraining config, world version) triple."""
    import open_clip

    blob = json.dumps(
        {
            "model": suite_model_config(cfg.name),
            "pretrain": to_dict(cfg.pretrain),
            "world": WORLD_VERSION,
            "open_clip": open_clip.__version__.split(".")[0],
        },
        sort_keys=True,
    )
    return f"{cfg.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


WEIGHTS = "open_clip_pytorch_model.bin"
SHIPPED = Path(__file__).parent / "weights"  # the repository's pretrained models, one folder each
SHIPPED_WEIGHTS = "open_clip_model.safetensors"
RECORD = "pretrain.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_model(cfg: ModelConfig, root: Optional[Path] = None) -> Optional[Path]:
    """The shipped folder of this model when its record was made with ``cfg``'s pretraining
    config (same cache key), after checking the weights' sha256; None when none matches."""
    folder = (root or SHIPPED) / cfg.name
    if not _ships(folder):
        return None  # nothing shipped for this model: the config's pretraining runs
    record = read_record(folder)
    if record.get("cache_key") != cache_key(cfg):
        return None
    weights = folder / SHIPPED_WEIGHTS
    actual = file_sha256(weights) if weights.is_file() else "missing"
    if actual != record.get("sha256"):
        raise UserError(
            f"shipped weights {weights} have sha256 {actual[:16]}..., their record {folder / RECORD} says "
            f"{str(record.get('sha256'))[:16]}...: restore them (git checkout -- {folder}) or regenerate "
            "them (python -m benchmark.models.pretrain)"
        )
    return folder


# pretrain refuses to replace a folder without a readable record (check_out), hence "move it away".
REPAIR = (
    "restore it (git checkout -- {folder}), or move the folder away and regenerate the model "
    "(python -m benchmark.models.pretrain)"
)


def read_record(folder: Path) -> dict:
    """The shipped model's record; a missing or unreadable one is a one-line UserError with the
    repair: without it a run cannot tell the shipped model from another, and would otherwise
    pretrain its own without a word."""
    path = folder / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"the shipped model's record {path} is missing; {REPAIR.format(folder=folder)}") from None
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) else "not valid JSON"
        raise UserError(
            f"the shipped model's record {path} is unreadable ({why}); {REPAIR.format(folder=folder)}"
        ) from None
    if not isinstance(record, dict):
        raise UserError(
            f"the shipped model's record {path} is unreadable (not a JSON object); {REPAIR.format(folder=folder)}"
        )
    return record


def check_shipped_record(cfg: ModelConfig, root: Optional[Path] = None) -> None:
    """Before any work: a shipped folder of this model whose record is missing or unreadable
    is one line naming it and the repair (a run pretrains only a pretraining not shipped)."""
    folder = (root or SHIPPED) / cfg.name
    if _ships(folder):
        read_record(folder)


def _ships(folder: Path) -> bool:
    """Does the repository ship a model here (its record or its weights, even one without the other)."""
    return os.path.lexists(folder / RECORD) or os.path.lexists(folder / SHIPPED_WEIGHTS)


def is_record(data: object) -> bool:
    """Is this JSON a record ``export`` wrote (the marker of a folder pretrain may replace)."""
    return isinstance(data, dict) and {"cache_key", "sha256", "model"} <= set(data)


SHIPPED_FILES = (SHIPPED_WEIGHTS, "open_clip_config.json", RECORD)


def check_out(out: Path) -> None:
    """``--out`` before any pretraining: absent, empty, or a model folder export wrote (its
    record there) holding nothing else, since it is replaced whole."""
    check_tool_folder(out, "pretrain --out", RECORD, is_record, SHIPPED_FILES, whole=True)


def ensure_pretrained(cfg: ModelConfig, cache_dir: Path, progress: bool = True) -> Path:
    """Return the cached folder, pretraining into it first if it is not there yet.

    Many runs may start at once on one cache (a sweep): pretraining happens under an
    exclusive lock on the entry, so one process trains and the others wait, then use its
    files. The entry is written in a temporary folder and renamed into place when
    complete; an entry found incomplete (its weights deleted) is rebuilt the same way."""
    folder = cache_dir / "models" / cache_key(cfg)
    if _complete(folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _entry_lock(folder.with_name(f".{folder.name}.lock"), progress):
            if not _complete(folder):  # a process we waited for may have built it
                _build(folder, cfg, progress)
    except OSError as e:  # a cache path that is a file, read-only, or a full disk
        raise UserError(
            f"model cache {str(cache_dir)!r} (model.cache_dir or $LDIFS_BENCH_CACHE) cannot be written: "
            f"{e.strerror or e}"
        ) from None
    return folder


def _complete(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file() and (folder / "open_clip_config.json").is_file()


def _entry_lock(path: Path, progress: bool) -> contextlib.AbstractContextManager:
    """An exclusive flock on a cache entry; released when the holder exits or is killed. The
    lock file stays: unlinking it would let a third process lock a new inode."""

    def wait(_fd: int) -> None:
        log.info(f"waiting for another process pretraining the same model ({path})")

    return flocked(path, on_busy=wait)  # an OSError: ensure_pretrained's one line about the cache


def _build(folder: Path, cfg: ModelConfig, progress: bool) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_config(tmp, cfg.name)
        stats = pretrain(tmp, cfg, progress)
        (tmp / "pretrain_stats.json").write_text(json.dumps(stats, indent=2))
        if folder.exists():  # an incomplete entry (weights deleted): replaced, under the lock
            shutil.rmtree(folder)
        tmp.replace(folder)  # atomic: a crashed pretraining never leaves a half-written model
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_config(folder: Path, name: str) -> None:
    payload = {
        "model_cfg": suite_model_config(name),
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(payload, indent=2))


def pretrain(folder: Path, cfg: ModelConfig, progress: bool = True) -> dict:
    """Train a randomly initialised CLIP contrastively on rendered image-caption pairs."""
    import open_clip

    from tasks.synthetic import render

    p = cfg.pretrain
    torch.manual_seed(p.seed)
    with quiet_root_logger():  # config only, no weights yet: random init is the point
        model = open_clip.create_model(f"local-dir:{folder}").to(memory_format=torch.channels_last)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    world = render(p.images, seed=p.seed + 123_457)  # seeds disjoint from every task's
    texts = tokenizer(world.captions(p.seed))  # [N, context_length]
    prep = BatchPreprocess(
        model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0],
        OPENAI_MEAN,
        OPENAI_STD,
    )
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps = p.epochs * math.ceil(p.images / p.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(p.seed)
    bar = progress_bar(steps, "pretraining tiny CLIP (cached after)", enabled=progress, unit="step")
    start, loss, step = time.time(), torch.tensor(0.0), 0
    model.train()
    for _epoch in range(p.epochs):
        for idx in torch.randperm(p.images, generator=gen).split(p.batch_size):
            if len(idx) < 2:
                continue
            img_f, txt_f, scale = model(prep(world.images[idx]), texts[idx])[:3]
            loss = loss_fn(img_f, txt_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():  # CLIP's clamp of the temperature
                model.logit_scale.clamp_(0, math.log(100))
            bar.update(1)
            step += 1  # the bar does not count when disabled: a step counter keeps syncs rare
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    torch.save(model.state_dict(), folder / WEIGHTS)
    return {"seconds": round(time.time() - start, 1), "final_loss": round(loss.item(), 4), "steps": steps}


def export(cfg: ModelConfig, out: Path, progress: bool = True) -> dict:
    """Pretrain ``cfg`` (or take it from the model cache) and write the shipped folder:
    safetensors weights, open_clip config, and the record (cache key, world version,
    configs, versions, machine, sha256). Written beside ``out`` and swapped in at the end."""
    import platform

    import open_clip
    from safetensors.torch import save_file

    from benchmark.models.architectures import default_cache_dir

    check_out(out)  # before any pretraining
    cached = ensure_pretrained(cfg, default_cache_dir(cfg), progress)
    state = torch.load(cached / WEIGHTS, map_location="cpu", weights_only=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))  # a new folder: nobody else's
    os.chmod(tmp, 0o755)  # mkdtemp's folder is owner-only; a model folder is meant to be shared
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / SHIPPED_WEIGHTS))
        _write_config(tmp, cfg.name)
        stats = (
            json.loads((cached / "pretrain_stats.json").read_text())
            if (cached / "pretrain_stats.json").is_file()
            else {}
        )
        record = {
            "model": cfg.name,
            "cache_key": cache_key(cfg),
            "world_version": WORLD_VERSION,
            "pretrain": to_dict(cfg.pretrain),
            "model_cfg": suite_model_config(cfg.name),
            "stats": stats,
            "made_with": {
                "torch": torch.__version__,
                "open_clip": open_clip.__version__,
                "machine": f"{platform.machine()} {platform.processor()}".strip(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            },
            "sha256": file_sha256(tmp / SHIPPED_WEIGHTS),
        }
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if check_tool_folder(out, "pretrain --out", RECORD, is_record, SHIPPED_FILES, whole=True):
            shutil.rmtree(out)  # checked again just before: it holds the model export wrote, nothing else
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


@command
def main(argv: Optional[list[str]] = None) -> int:
    from benchmark.config import load_yaml
    from benchmark.errors import OneLineParser

    p = OneLineParser(description="Regenerate (or --check) the shipped pretrained tiny CLIP")
    p.add_argument("--config", default=str(Path(__file__).parents[1] / "presets" / "embedded.yaml"))
    p.add_argument("--out", help="folder to write (default benchmark/models/weights/<model name>)")
    p.add_argument("--check", action="store_true", help="only verify the shipped files against their record")
    args = p.parse_args(argv)
    run_cfg = load_yaml(Path(args.config))
    cfg = run_cfg.model
    if args.check:
        folder = shipped_model(cfg)
        if folder is None:
            raise UserError(f"no shipped model in {SHIPPED} matches {args.config}'s model.{cfg.name} pretraining")
        print(f"{folder}: sha256 matches its record")
        return 0
    out = Path(args.out) if args.out else SHIPPED / cfg.name
    check_out(out)  # a user's folder or a file: refused before the minutes of pretraining
    if run_cfg.threads:  # the preset's thread count: part of what makes the weights repeatable
        torch.set_num_threads(run_cfg.threads)
    record = export(cfg, out)
    print(f"wrote {out} (sha256 {record['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())  # type: ignore[call-arg]
