"""ZSCL's class-incremental protocol: the preset, the loss over the current group's classes,
label smoothing and the prompt override (facts from Thunderbeee/ZSCL b96e714, cil/)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from benchmark.config import RunConfig, config_hash, validate
from benchmark.errors import UserError
from benchmark.run.cli import main
from benchmark.training.losses import task_cross_entropy
from tasks import Split, Task
from tasks.base import with_prompts
from tasks.class_incremental import ClassGroup


def test_the_preset_prints_zscls_prompt_lr_and_weights(capsys):
    argv = ["--config", "benchmark/presets/zscl_cil.yaml", "--sequence", "cifar100_cil10", "--methods", "zscl"]
    assert main([*argv, "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["prompts"] == {"templates": ["a bad photo of a {}."], "classnames": "raw"}
    assert cfg["train"]["lr"] == 7.1e-6 and cfg["train"]["epochs"] == 1 and cfg["train"]["warmup_steps"] == 30
    assert (cfg["train"]["label_smoothing"], cfg["train"]["loss_classes"]) == (0.2, "current")
    assert (cfg["train"]["batch_size"], cfg["train"]["weight_decay"]) == (64, 0.0)
    assert cfg["hparams"]["zscl"] == {"image_weight": 5.0, "text_weight": 5.0, "avg_freq": 10}
    assert (cfg["model"]["name"], cfg["model"]["pretrained"]) == ("ViT-B-16", "openai")


def _group(offset: int, k: int) -> ClassGroup:
    empty = Split(torch.zeros(0, 3, 4, 4, dtype=torch.uint8), torch.zeros(0))
    return ClassGroup("d-g2", [f"c{i}" for i in range(k)], ["{}"], empty, empty, offset=offset, classes=list(range(k)))


def test_current_is_cross_entropy_over_the_groups_logits_with_shifted_targets():
    torch.manual_seed(0)
    logits = torch.randn(8, 5, requires_grad=True)  # 3 old classes, then the group's 2
    targets = torch.tensor([3, 4, 4, 3, 3, 4, 3, 4])
    loss = task_cross_entropy(logits, targets, _group(3, 2), "current", 0.2)
    expected = F.cross_entropy(logits[:, 3:], targets - 3, label_smoothing=0.2)  # ZSCL's models.py
    assert torch.allclose(loss, expected, atol=1e-7)
    loss.backward()
    assert logits.grad[:, :3].abs().max() == 0  # old classes' logits get no gradient
    seen = task_cross_entropy(logits, targets, _group(3, 2), "seen", 0.0)
    assert torch.equal(seen, F.cross_entropy(logits, targets))  # the suite's default, unchanged


def test_an_earlier_groups_sample_is_scored_over_all_seen_classes():
    logits, targets = torch.randn(4, 5), torch.tensor([0, 4, 1, 3])  # 0 and 1: a replay buffer's
    loss = task_cross_entropy(logits, targets, _group(3, 2), "current")
    own = F.cross_entropy(logits[[1, 3], 3:], torch.tensor([1, 0]), reduction="sum")
    old = F.cross_entropy(logits[[0, 2]], torch.tensor([0, 1]), reduction="sum")
    assert torch.allclose(loss, (own + old) / 4)


def test_a_task_incremental_task_ignores_loss_classes():
    logits, targets = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    assert torch.equal(task_cross_entropy(logits, targets, None, "current"), F.cross_entropy(logits, targets))


def test_raw_names_and_one_template_replace_the_tasks_prompts():
    split = Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    task = Task("c", ["aquarium fish", "maple tree"], ["a photo of a {}.", "art of the {}."], split, split)
    task.raw_classnames = ["aquarium_fish", "maple_tree"]
    zscl = with_prompts(task, ["a bad photo of a {}."], "raw")
    assert zscl.prompts() == [["a bad photo of a aquarium_fish."], ["a bad photo of a maple_tree."]]
    assert with_prompts(task, [], "task").prompts() == task.prompts()
    task.raw_classnames = None  # a dataset without names of its own keeps the task's
    assert with_prompts(task, [], "raw").classnames == ["aquarium fish", "maple tree"]


def test_the_new_keys_are_checked_and_leave_default_hashes_alone():
    cfg = RunConfig()
    before = config_hash(cfg)
    cfg.train.label_smoothing, cfg.train.loss_classes = 0.0, "seen"
    assert config_hash(cfg) == before
    cfg.train.loss_classes = "current"
    assert config_hash(cfg) != before
    with pytest.raises(UserError, match="train.label_smoothing=1.0 must be in"):
        validate(RunConfig(train=RunConfig().train.__class__(label_smoothing=1.0)))
    bad = RunConfig()
    bad.prompts.templates = ["no slot"]
    with pytest.raises(UserError, match="needs exactly one"):
        validate(bad)
