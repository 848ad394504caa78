"""The published class names and templates (tasks/clip_prompts.py) and the preset sequences."""

from __future__ import annotations

import pytest

from tasks import TASKS, load_sequence
from tasks.clip_prompts import DATASETS, clip_prompts

CLASS_COUNTS = {
    "CIFAR10": 10,
    "CIFAR100": 100,
    "Caltech101": 102,
    "DTD": 47,
    "EuroSAT": 10,
    "FGVCAircraft": 100,
    "Flowers102": 102,
    "Food101": 101,
    "GTSRB": 43,
    "ImageNet": 1000,
    "MNIST": 10,
    "OxfordIIITPet": 37,
    "RESISC45": 45,
    "STL10": 10,
    "SUN397": 397,
    "SVHN": 10,
    "StanfordCars": 196,
}
TEMPLATE_COUNTS = {
    "CIFAR10": 18,
    "CIFAR100": 18,
    "Caltech101": 34,
    "DTD": 8,
    "EuroSAT": 3,
    "ImageNet": 80,
    "RESISC45": 18,
    "StanfordCars": 8,
    "GTSRB": 3,
    "SUN397": 2,
    "STL10": 2,
    "FGVCAircraft": 2,
}


@pytest.mark.parametrize("dataset", sorted(CLASS_COUNTS))
def test_every_dataset_has_its_published_lists(dataset):
    prompts = clip_prompts(dataset)
    assert len(prompts.classnames) == CLASS_COUNTS[dataset]
    assert len(prompts.templates) == TEMPLATE_COUNTS.get(dataset, 1)
    assert all(t.count("{}") == 1 for t in prompts.templates)
    assert all(n and n == n.strip() for n in prompts.classnames) and prompts.source


def test_lists_agree_with_independent_copies():
    from torchvision.datasets import Flowers102

    # torchvision keeps the original Flowers-102 names where CLIP renamed three classes
    renamed = {15: "globe-flower", 59: "pink-yellow dahlia?", 92: "ball moss"}
    ours = list(clip_prompts("Flowers102").classnames)
    assert [renamed.get(i, n) for i, n in enumerate(ours)] == Flowers102.classes
    assert clip_prompts("ImageNet").classnames[:3] == ("tench", "goldfish", "great white shark")
    assert clip_prompts("ImageNet").templates[0] == "a bad photo of a {}."
    assert set(DATASETS) == set(CLASS_COUNTS)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(KeyError, match="CIFAR10"):
        clip_prompts("CIFAR11")


AUTHORS_EPOCHS = {
    "cars": 35,
    "cifar10": 10,
    "cifar100": 10,
    "dtd": 76,
    "eurosat": 12,
    "gtsrb": 11,
    "imagenet": 10,
    "mnist": 10,
    "resisc45": 15,
    "stl10": None,
    "sun397": 14,
    "svhn": 10,
}


def test_paper_presets_follow_the_authors_protocol():
    continual = load_sequence("paper_continual")
    assert [(s.task, s.epochs) for s in continual.stages] == [("svhn", 10), ("cifar10", 10), ("resisc45", 15)]
    assert set(continual.all_tasks) == set(AUTHORS_EPOCHS)
    for task, epochs in AUTHORS_EPOCHS.items():
        single = load_sequence(f"paper_single_{task}")
        assert [(s.task, s.epochs) for s in single.stages] == [(task, epochs)]
        assert sorted(single.eval_only) == sorted(t for t in AUTHORS_EPOCHS if t != task)
    mtil = load_sequence("mtil")
    assert mtil.tasks == [
        "aircraft",
        "caltech101",
        "cifar100",
        "dtd",
        "eurosat",
        "flowers102",
        "food101",
        "mnist",
        "pets",
        "cars",
        "sun397",
    ]
    for name in ("paper_continual", "mtil"):
        for task in load_sequence(name).all_tasks:
            TASKS.get(task)


def test_paper_run_config_preset():
    from pathlib import Path

    from benchmark.config import load_yaml, validate

    cfg = load_yaml(Path(__file__).parents[2] / "benchmark" / "presets" / "paper.yaml")
    validate(cfg)
    assert (cfg.model.name, cfg.model.pretrained) == ("ViT-B-32", "openai")
    t = cfg.train
    assert (t.lr, t.weight_decay, t.batch_size, t.warmup_steps, t.grad_clip, t.head_init) == (
        1e-5,
        0.1,
        128,
        500,
        1.0,
        "zeroshot",
    )
    assert cfg.hparams["ldifs"]["alpha"] == 10.0
    assert t.amp == "tf32"  # fp32 tensors as the authors', TF32 matmuls (docs/protocol.md, "Precision")
