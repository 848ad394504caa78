"""A run reads the same images whichever path a task takes: the decoded-image cache cold,
warm, or disabled gives a byte-identical accuracy_long.csv."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from PIL import Image

from benchmark.run.cli import main
from benchmark.run.runner import run
from tasks.cache import build_count


def _folder_sequence(tmp_path: Path) -> Path:
    for split, n in (("train", 12), ("test", 4)):
        for c in range(3):
            folder = tmp_path / "toy" / split / f"shade_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 18), (80 * c + i, 255 - 60 * c, 7 * i)).save(folder / f"{i}.png")
    seq = tmp_path / "seq.yaml"
    seq.write_text(
        yaml.safe_dump(
            {
                "tasks": {"toy": {"folder": "toy", "templates": ["a {} square."]}},
                "stages": [{"task": "toy", "epochs": 2}],
            }
        )
    )
    return seq


def test_accuracy_csv_is_byte_identical_with_the_cache_cold_warm_and_disabled(tmp_path, micro_cfg):
    micro_cfg.sequence = str(_folder_sequence(tmp_path))
    micro_cfg.methods = ["finetune"]
    micro_cfg.train.batch_size = 11  # 33 train images: no batch of one (BatchNorm)
    cache = tmp_path / "cache"
    csvs = {}
    for label, setting in (("cold", str(cache)), ("warm", str(cache)), ("disabled", "none")):
        cfg = copy.deepcopy(micro_cfg)
        cfg.results_dir, cfg.data_cache = str(tmp_path / label), setting
        csvs[label] = (run(cfg, progress=False) / "accuracy_long.csv").read_bytes()
        assert build_count(cache) == 2  # train and test sources, decoded by the cold run only
    assert csvs["cold"] == csvs["warm"] == csvs["disabled"]
    assert b"toy" in csvs["cold"]


def test_an_image_that_does_not_open_exits_2_with_one_line(tmp_path, micro_cfg, capsys):
    seq = _folder_sequence(tmp_path)
    bad = tmp_path / "toy" / "test" / "shade_1" / "2.png"
    bad.write_bytes(b"\x89PNG broken")
    code = main(
        [
            "--sequence",
            str(seq),
            "--results-dir",
            str(tmp_path / "results"),
            "--data-cache",
            str(tmp_path / "cache"),
            "--model.cache_dir",
            micro_cfg.model.cache_dir,
            "--model.pretrain.images",
            "256",
            "--model.pretrain.epochs",
            "1",
            "--device",
            "cpu",
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0]
    assert "Traceback" not in capsys.readouterr().err


def test_data_cache_flag_sets_the_config_and_leaves_the_hash_alone():
    from benchmark.config import config_hash
    from benchmark.run.cli import parse_config

    _, default = parse_config([])
    _, cfg = parse_config(["--data-cache", "none"])
    assert cfg.data_cache == "none" and default.data_cache == ""
    assert config_hash(cfg) == config_hash(default)  # where decoded images live changes no result


def test_batches_from_the_cache_equal_batches_from_memory(tmp_path):
    import numpy as np
    import torch

    from benchmark.training.engine import DeviceBatchLoader
    from tasks.cache import cached_arrays

    images = torch.randint(0, 256, (37, 3, 5, 5), dtype=torch.uint8)

    def fill(rows, labels) -> None:
        rows[0:37] = images.numpy()

    mapped, _ = cached_arrays(tmp_path, "toy", {"k": 0}, 37, 5, fill, "toy")
    positions = torch.randperm(37)[:30]  # a subset, as Split.subset takes it
    labels, tasks = torch.arange(30), torch.zeros(30, dtype=torch.long)
    loaders = [
        DeviceBatchLoader([x, labels, tasks], 8, torch.Generator().manual_seed(3), 0)
        for x in (images[positions], mapped[positions])
    ]
    for memory, disk in zip(*loaders, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(memory, disk))
    assert np.array_equal(mapped[positions].materialize().numpy(), images[positions].numpy())
