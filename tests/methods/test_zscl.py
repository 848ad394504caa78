"""ZSCL: distillation from the initial model (zero at the start), the weight ensemble, reference data."""

from __future__ import annotations

import pytest
import torch
from methods_testkit import Spy, micro_setup, run

from benchmark.errors import UserError
from methods import build_method
from methods.zscl import ZSCL, distillation, ensemble, reference_set


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_distillation_is_zero_at_the_first_step_and_positive_later(tower):
    """Recorded per step through the engine: teacher = student at the first step of stage 1."""
    values: dict[int, list[float]] = {1: [], 2: []}
    holder: dict[str, ZSCL] = {}
    spy = Spy(before_backward=lambda s: values[s.stage_index].append(float(holder["m"].last_distillation)))
    spy_first = Spy(before_training=lambda s: holder.setdefault("m", next(p for p in s.plugins if isinstance(p, ZSCL))))
    setup = micro_setup(tower, lr=1e-2)
    run(setup, "zscl", {"zscl": {"avg_freq": 1}}, spies=(spy, spy_first))
    assert abs(values[1][0]) < 1e-6  # the student is the initial model: nothing to distil
    assert values[1][1] > 1e-6  # one update later it has moved
    assert values[2][0] > 1e-6  # stage 2 starts from stage 1's average, not the teacher


def test_distillation_is_kl_and_symmetric_in_direction():
    t, s = torch.randn(4, 7), torch.randn(4, 7)
    assert float(distillation(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(t / 2, -1)
    kl = (p * (torch.log_softmax(t / 2, -1) - torch.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    assert float(distillation(t, s, 2.0)) == pytest.approx(float(kl), rel=1e-5)
    # the authors' soft-target cross-entropy differs by the teacher's entropy only: same gradient
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    distillation(t, s1, 2.0).backward()
    (-(p * torch.log_softmax(s2 / 2, -1)).sum(-1).mean() * 4).backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-6)


@pytest.mark.parametrize("avg_freq", [1, 2, 100])
def test_the_ensembled_weights_are_the_papers_average(avg_freq):
    """avg <- (avg n + live)/(n + 1) after updates 0, f, 2f, ... and after the last update;
    the start counts once. Stage 1 of the micro sequence has 2 updates, so every f gives
    (start + live_0 + live_1) / 3: the last merge follows the last update, as in the
    authors' loop over ``range(iterations + 1)``. The tracker then sees that average, for
    the image tower and for the stage's head (whose start is its zero-shot init)."""
    lives: list[dict[str, torch.Tensor]] = []
    spy = Spy(after_update=lambda s: lives.append({k: v.detach().clone() for k, v in s.model.named_parameters()}))
    setup = micro_setup("vit", lr=1e-2)
    run(setup, "zscl", {"zscl": {"avg_freq": avg_freq}}, spies=(spy,))
    start = {f"visual.{k}": v for k, v in setup.tracker.encoders[0].items()}
    start["heads.0.weight"] = setup.tracker.sets["alpha"].zeroshot
    start["heads.0.bias"] = torch.zeros(3)
    head = setup.tracker.heads[1]["alpha"]
    stage1 = {**{f"visual.{k}": v for k, v in setup.tracker.encoders[1].items()}}
    stage1.update({"heads.0.weight": head.weight.detach(), "heads.0.bias": head.bias.detach()})
    samples = [start] + lives[:2]
    for name in lives[0]:
        expected = sum(s[name] for s in samples) / len(samples)
        torch.testing.assert_close(stage1[name], expected, rtol=1e-5, atol=1e-5)
    assert any(not torch.equal(lives[1][n], stage1[n]) for n in lives[0])  # not the live weights


def test_ensemble_running_mean_by_hand():
    avg = [torch.tensor([0.0, 3.0])]
    ensemble(avg, [torch.tensor([3.0, 0.0])], 1)  # (avg*1 + live)/2
    torch.testing.assert_close(avg[0], torch.tensor([1.5, 1.5]))
    ensemble(avg, [torch.tensor([3.0, 3.0])], 2)  # (avg*2 + live)/3
    torch.testing.assert_close(avg[0], torch.tensor([2.0, 2.0]))


class FakeEngine:
    """What the weight ensemble touches: a model with one parameter, moved by hand."""

    def __init__(self) -> None:
        self.model = torch.nn.Module()
        self.model.visual = torch.nn.Linear(1, 1, bias=False)  # no BatchNorm: nothing to recalibrate
        torch.nn.init.zeros_(self.model.visual.weight)


@pytest.mark.parametrize("steps,period", [(10, 4), (1000, 100), (7, 7), (1, 3)])
def test_the_last_merge_follows_the_last_update(steps, period):
    """Update k sets the weight to k + 1; the average must hold the start (0), the updates
    0, f, 2f, ... and the last one, like the authors' loop of N + 1 updates whose last is a
    merge step."""
    zscl, engine = ZSCL(ZSCL.Params(avg_freq=period)), FakeEngine()
    weight = engine.model.visual.weight
    zscl.average = [weight.detach().clone()]
    zscl.period = period
    for k in range(steps):
        with torch.no_grad():
            weight.fill_(k + 1.0)
        zscl.after_update(engine)
    merged = sorted({*range(0, steps, period), steps - 1})
    zscl.after_training_exp(engine)
    expected = sum(k + 1.0 for k in merged) / (len(merged) + 1)
    assert float(weight) == pytest.approx(expected)
    assert zscl.snapshots == len(merged) and zscl.merged_after == steps - 1


def test_reference_data_from_the_world_a_folder_and_caption_files(tmp_path):
    from PIL import Image

    images, texts = reference_set(ZSCL.Params(ref_count=50), 32)
    assert images.shape == (50, 3, 32, 32) and images.dtype == torch.uint8
    assert len(texts) == len(set(texts)) > 10  # distinct captions of the procedural vocabulary
    folder = tmp_path / "imgs" / "class_a"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 80, 10, 10)).save(folder / f"{i}.png")
    (tmp_path / "caps.txt").write_text("a dog on a sofa\n\na red bus\n")
    (tmp_path / "cc.csv").write_text("title,filepath\na cat,x.jpg\na tree,y.jpg\n")
    # the authors' gather_cc.py output: tab-separated under a .csv name, commas inside captions
    (tmp_path / "Validation_GCC-1.1.0-Validation_output.csv").write_text(
        "title\tfilepath\na dog, running\t/cc/val/0/0.jpg\nsunset over the sea\t/cc/val/0/1.jpg\n"
    )
    images, texts = reference_set(
        ZSCL.Params(ref_images=str(tmp_path / "imgs"), ref_texts=str(tmp_path / "caps.txt")), 24
    )
    assert images.shape == (3, 3, 24, 24) and texts == ["a dog on a sofa", "a red bus"]
    _, texts = reference_set(ZSCL.Params(ref_texts=str(tmp_path / "cc.csv"), ref_count=5), 24)
    assert texts == ["a cat", "a tree"]
    authors = tmp_path / "Validation_GCC-1.1.0-Validation_output.csv"
    _, texts = reference_set(ZSCL.Params(ref_texts=str(authors), ref_count=5), 24)
    assert texts == ["a dog, running", "sunset over the sea"]
    (tmp_path / "no_title.tsv").write_text("caption\tfilepath\na cat\tx.jpg\n")
    with pytest.raises(UserError, match="needs a 'title' column \\(found 'caption', 'filepath'"):
        reference_set(ZSCL.Params(ref_texts=str(tmp_path / "no_title.tsv"), ref_count=5), 24)


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"temperature": 0}, "temperature=0.0 must be > 0"),
        ({"avg_freq": -1}, "avg_freq=-1 must be >= 0"),
        ({"ref_images": "/no/such/folder"}, "no such file or folder"),
        ({"text_weight": -1}, "text_weight=-1.0 must be >= 0"),
    ],
)
def test_bad_hyperparameters_are_one_line(hparams, message):
    with pytest.raises(UserError, match=message):
        build_method("zscl", {"zscl": hparams})


@pytest.mark.slow
def test_zscl_forgets_less_than_finetuning_on_the_embedded_default(tmp_path):
    """dLP over the eval-only tasks (textures, colours), mean over 3 seeds: ZSCL's is closer
    to 0 than fine-tuning's (about 6 min of CPU on the embedded default)."""
    import pandas as pd

    from benchmark.config import load_yaml
    from benchmark.run.cli import EMBEDDED_DEFAULT
    from benchmark.run.runner import run as run_benchmark

    cfg = load_yaml(EMBEDDED_DEFAULT)
    cfg.methods, cfg.seeds, cfg.results_dir = ["finetune", "zscl"], [0, 1, 2], str(tmp_path)
    board = pd.read_csv(run_benchmark(cfg, progress=False) / "leaderboard.csv").set_index("method")
    assert board.loc["zscl", "n_seeds"] == 3
    assert board.loc["zscl", "dlp"] > board.loc["finetune", "dlp"]
