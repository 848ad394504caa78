from pathlib import Path

import pytest

from benchmark import config as config_module
from benchmark.config import RunConfig, apply_override, config_hash, dump_yaml, from_dict, load_yaml, validate
from benchmark.errors import UserError


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig()
    cfg.train.lr = 3e-4
    cfg.methods = ["finetune", "ldifs+replay"]
    cfg.hparams = {"ldifs": {"alpha": 5.0}}
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(path) == cfg


def test_partial_yaml_keeps_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 0.01}\n")
    cfg = load_yaml(path)
    assert cfg.train.lr == 0.01 and cfg.train.batch_size == RunConfig().train.batch_size


@pytest.mark.parametrize(
    "key,raw,expected",
    [
        ("train.lr", "1e-4", 1e-4),
        ("train.epochs", "3", 3),
        ("train.train_limit", "none", None),
        ("eval.kinds", "lp,zs", ["lp", "zs"]),
        ("seeds", "0,1,2", [0, 1, 2]),
        ("model.pretrain.images", "100", 100),
        ("hparams.ldifs.alpha", "2.5", 2.5),
    ],
)
def test_dotted_overrides_are_typed(key, raw, expected):
    cfg = RunConfig()
    apply_override(cfg, key, raw)
    target = cfg
    for part in key.split("."):
        target = target[part] if isinstance(target, dict) else getattr(target, part)
    assert target == expected


@pytest.mark.parametrize(
    "key,raw,message",
    [
        ("train.lrr", "1", "unknown config key 'train.lrr'"),
        ("train.epochs", "two", "train.epochs: expected an integer, got 'two'"),
        ("train.lr", "fast", "train.lr: expected a number"),
        ("train", "1", "is a section"),
        ("bogus", "1", "unknown config key 'bogus'"),
    ],
)
def test_bad_overrides_name_the_key(key, raw, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        apply_override(RunConfig(), key, raw)


@pytest.mark.parametrize(
    "section,message",
    [
        ({"train": {"lr": -1.0}}, "train.lr=-1.0 must be > 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size=0 must be >= 1"),
        ({"methods": []}, "methods"),
        ({"train": {"head_init": "random"}}, "valid choices: zeroshot, lp"),
        ({"eval": {"kinds": ["acc"]}}, "valid choices: head, lp, zs"),
    ],
)
def test_validate_ranges(section, message):
    with pytest.raises(UserError, match=message):
        validate(from_dict(RunConfig, section))


def test_hash_ignores_where_results_go():
    a, b = RunConfig(), RunConfig()
    b.results_dir, b.name, b.device = "elsewhere", "x", "cpu"
    assert config_hash(a) == config_hash(b)
    b.train.lr = 1.0
    assert config_hash(a) != config_hash(b)


# ---------------------------------------------------------------- layering (base:)


def test_a_partial_config_layers_over_the_default_run(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("sequence: micro\ntrain: {lr: 0.005}\n")
    cfg, embedded = load_yaml(path), load_yaml(Path(config_module.PRESETS) / "embedded.yaml")
    assert cfg.train.lr == 0.005 and cfg.sequence == "micro"
    assert cfg.train.epochs == embedded.train.epochs and cfg.train.warmup_steps == embedded.train.warmup_steps
    assert cfg.hparams == embedded.hparams and cfg.model == embedded.model


def test_base_names_a_preset_a_file_or_the_defaults(tmp_path):
    (tmp_path / "paper_like.yaml").write_text("base: paper\ntrain: {batch_size: 64}\n")
    (tmp_path / "child.yaml").write_text("base: paper_like.yaml\neval: {test_limit: 10}\n")
    cfg = load_yaml(tmp_path / "child.yaml")
    assert cfg.model.name == "ViT-B-32" and cfg.train.batch_size == 64 and cfg.eval.test_limit == 10
    (tmp_path / "bare.yaml").write_text("base: defaults\n")
    assert load_yaml(tmp_path / "bare.yaml") == RunConfig()


@pytest.mark.parametrize(
    "text,message",
    [("base: nowhere\n", "valid choices: defaults"), ("base: loop.yaml\n", "layers over itself")],
)
def test_bad_base_is_a_one_line_error(tmp_path, text, message):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(UserError, match=message):
        load_yaml(tmp_path / "loop.yaml")


def test_a_resolved_config_reloads_to_itself(tmp_path):
    cfg = RunConfig(sequence="micro", seeds=[1, 2])
    cfg.hparams = {"ldifs": {"alpha": 3.0}}
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(path) == cfg and config_hash(load_yaml(path)) == config_hash(cfg)


def test_literal_and_range_fields_refuse_bad_values():
    cfg = RunConfig()
    with pytest.raises(UserError, match="train.amp='fp8' is not valid; valid choices: auto, bf16, tf32, fp32, off"):
        apply_override(cfg, "train.amp", "fp8")
    from benchmark.config import Range

    with pytest.raises(UserError, match=r"must be in \[0, 1\]"):
        Range(0, 1).check(float("nan"), "x")
