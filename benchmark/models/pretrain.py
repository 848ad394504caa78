"""Contrastive pretraining of the embedded tiny CLIP on the procedural world (cached).

The result is saved in open_clip's own folder format (``open_clip_config.json`` plus
``open_clip_pytorch_model.bin``) and loaded back through ``local-dir:``, exactly as a
real checkpoint would be.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmark.config import ModelConfig, to_dict
from benchmark.errors import UserError
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


@contextlib.contextmanager
def _entry_lock(path: Path, progress: bool) -> Iterator[None]:
    """An exclusive flock on a cache entry; released when the holder exits or is killed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another process pretraining the same model ({path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock file stays: unlinking it would let a third process lock a new inode


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
