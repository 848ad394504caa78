"""``--smoke``: a config's rehearsal in CPU minutes, through every loader, head, metric, report
and plot it will use.

One transform of the resolved config: the embedded model (the tiny open_clip the repository
ships) in place of the config's, one optimiser step an epoch (the sequence's epochs, so 10 to
15 steps a stage for the paper preset), and a few images a task for evaluation and the probe.
Everything else stays: the sequence, its datasets read from ``data_root`` by their real
loaders, the methods and their hyperparameters, the evaluation kinds and probe, the reports.
A user runs it on their own data root before submitting the real run; CI runs the paper
preset on tiny stand-ins (``python -m tasks.standins``). The run is marked (``smoke: true``
in config.yaml and manifest.json) and gets its own folder (the config hash changes).
"""

from __future__ import annotations

import copy
import dataclasses

from benchmark.config import RunConfig

# What --smoke sets (they win over the command line's and the config's values).
SMOKE_SETTINGS: dict[str, object] = {
    "model.name": "tiny-rn",  # the embedded model: shipped, offline, checked by its sha256
    "model.pretrained": "suite",
    "threads": 1,  # the tiny model on one thread: steady where two contend (benchmark/presets/embedded.yaml)
    "train.batch_size": 8,
    "train.train_limit": 8,  # one step an epoch
    "train.epochs": 1,  # for stages whose sequence gives no epochs
    "eval.test_limit": 16,
    "eval.lp_train_limit": 32,
    "eval.lp_max_iter": 10,
    "eval.probe_steps": 10,  # the authors' probe: 10 AdamW steps a learning rate, not 1000
}
SMOKE_DRIFT_IMAGES = 8  # feature drift on at most this many images (left off when off)


def smoke_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` made a smoke run (SMOKE_SETTINGS, ``smoke: true``); ``cfg`` itself is unchanged.
    A key this version of the config lacks is skipped."""
    out = copy.deepcopy(cfg)
    for dotted, value in SMOKE_SETTINGS.items():
        *sections, key = dotted.split(".")
        target = out
        for section in sections:
            target = getattr(target, section)
        if key in {f.name for f in dataclasses.fields(target)}:
            setattr(target, key, value)
    if hasattr(out.eval, "drift_images"):
        out.eval.drift_images = min(SMOKE_DRIFT_IMAGES, cfg.eval.drift_images)
    out.smoke = True
    return out
