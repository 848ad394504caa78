import pytest

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
