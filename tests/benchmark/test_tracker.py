"""The tracker: rows per task and kind, head fallbacks, and a probe that really fits."""

import pytest
import torch

from benchmark.config import EvalConfig
from benchmark.evaluation.heads import accuracy, fit_linear_probe
from benchmark.evaluation.tracker import EvalSet, Tracker
from benchmark.models.preprocess import BatchPreprocess
from tasks.base import Split, Task


class MeanColour(torch.nn.Module):
    """A fake image tower: the mean colour of the image, so colour tasks are linearly separable."""

    def forward(self, x):
        return x.mean(dim=(2, 3)) + 1e-3


def colour_task(n: int) -> Task:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    images[torch.arange(n), labels] = 200  # class k = bright channel k
    images += torch.randint(0, 30, images.shape, generator=g, dtype=torch.uint8)
    split = Split(images, labels)
    return Task("rgb", ["red", "green", "blue"], ["{}"], split, split)


def make_tracker(kinds):
    task = colour_task(60)
    zs = torch.eye(3) * 10  # a zero-shot head that happens to be right for MeanColour
    es = EvalSet(task, task.train.images, task.train.labels, task.test.images, task.test.labels, zs)
    prep = BatchPreprocess(4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return Tracker({"rgb": es}, EvalConfig(kinds=kinds), prep, torch.device("cpu"), progress=False)


def test_rows_per_kind_and_values():
    tracker = make_tracker(["head", "lp", "zs"])
    wrong_head = torch.nn.Linear(3, 3)
    with torch.no_grad():
        wrong_head.weight.copy_(torch.eye(3)[[1, 2, 0]] * 10)  # predicts the next class: always wrong
        wrong_head.bias.zero_()
    rows = tracker.evaluate(MeanColour(), {"rgb": wrong_head}, stage=1)
    acc = {r["kind"]: r["accuracy"] for r in rows}
    assert acc == {"head": 0.0, "lp": 100.0, "zs": 100.0}
    # without a trained head, "head" falls back to the zero-shot head
    rows = tracker.evaluate(MeanColour(), {}, stage=0)
    assert {r["kind"]: r["accuracy"] for r in rows}["head"] == 100.0


def test_linear_probe_fits_separable_data():
    g = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    labels = torch.arange(200) % 4
    feats = torch.nn.functional.normalize(centres[labels] + 0.05 * torch.randn(200, 8, generator=g), dim=1)
    probe = fit_linear_probe(feats, labels, 4, max_iter=50)
    assert accuracy(probe(feats), labels) == 100.0


def test_expected_calibration_error_by_hand():
    from benchmark.evaluation.heads import expected_calibration_error

    # 4 samples, 2 classes; logits chosen so that the top softmax probabilities are exactly
    # 0.5 (bin 7 of 15: (7/15, 8/15]), 0.5, 0.9 (bin 13: (13/15, 14/15]) and 0.9.
    logit = torch.log(torch.tensor(9.0))  # softmax([log 9, 0]) = [0.9, 0.1]
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [logit, 0.0], [0.0, logit]])
    labels = torch.tensor([0, 1, 0, 0])
    # ties go to class 0: predictions 0, 0, 0, 1 -> correct 1, 0, 1, 0
    # bin of 0.5: acc 1/2, conf 0.5 -> gap 0; bin of 0.9: acc 1/2, conf 0.9 -> gap 0.4, weight 2/4
    assert expected_calibration_error(logits, labels) == pytest.approx(20.0, abs=1e-4)
    # perfectly confident and right: 0
    assert expected_calibration_error(torch.tensor([[50.0, 0.0]]), torch.tensor([0])) == pytest.approx(0.0, abs=1e-4)
    # equal-width bins: confidence 1/3 exactly sits in (4/15, 5/15], one-class-right -> |1 - 1/3|
    three = torch.zeros(1, 3)
    assert expected_calibration_error(three, torch.tensor([0])) == pytest.approx(200.0 / 3, abs=1e-3)


def test_rows_carry_ece():
    tracker = make_tracker(["head", "zs"])
    rows = tracker.evaluate(MeanColour(), {}, stage=0)
    assert all(0.0 <= r["ece"] <= 100.0 for r in rows)


def test_val_split_rows_are_scored_apart_and_leave_test_rows_unchanged():
    """eval.splits [test, val]: every kind also on the val split, labelled split=val."""
    plain = make_tracker(["head", "lp", "zs"])
    with_val = make_tracker(["head", "lp", "zs"])
    with_val.cfg = EvalConfig(kinds=["head", "lp", "zs"], splits=["test", "val"])
    es = with_val.sets["rgb"]
    flipped = colour_task(30)  # val labels shifted by one class: every kind scores 0 there
    es.val_images, es.val_labels = flipped.test.images, (flipped.test.labels + 1) % 3
    rows = with_val.evaluate(MeanColour(), {}, stage=0)
    test_rows = [r for r in rows if r["split"] == "test"]
    assert test_rows == plain.evaluate(MeanColour(), {}, stage=0)
    assert {r["kind"]: r["accuracy"] for r in rows if r["split"] == "val"} == {"head": 0.0, "lp": 0.0, "zs": 0.0}


CUDA = torch.device("cuda")  # only named: nothing below runs on it


@pytest.mark.parametrize(
    "amp,on_cuda", [("auto", "bf16"), ("bf16", "bf16"), ("tf32", "tf32"), ("fp32", "fp32"), ("off", "fp32")]
)
def test_train_amp_names_the_precision_of_the_run(amp, on_cuda):
    from benchmark.models.preprocess import resolve_precision

    assert resolve_precision(amp, CUDA) == on_cuda
    assert resolve_precision(amp, torch.device("cpu")) == "fp32"


def test_evaluation_autocasts_only_when_the_run_is_bf16():
    import warnings

    from benchmark.models.preprocess import run_autocast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only torch warns that CUDA autocast is unavailable
        assert isinstance(run_autocast("auto", CUDA), torch.autocast)
        assert run_autocast("auto", CUDA).fast_dtype == torch.bfloat16
    for amp in ("tf32", "fp32", "off"):
        assert not isinstance(run_autocast(amp, CUDA), torch.autocast)


@pytest.mark.parametrize("amp", ["tf32", "fp32", "bf16"])
def test_tracker_features_follow_the_run_precision(amp, monkeypatch):
    import contextlib

    import benchmark.evaluation.tracker as tracker_module

    asked = []

    def spy(run_amp, device):
        asked.append(run_amp)
        return contextlib.nullcontext()

    monkeypatch.setattr(tracker_module, "run_autocast", spy)
    tracker = make_tracker(["zs"])
    tracker.amp = amp
    tracker.evaluate(MeanColour(), {}, 0)
    assert asked and set(asked) == {amp}


def test_the_runner_gives_the_tracker_the_run_precision(micro_cfg):
    from benchmark.run.runner import check_inputs, prepare

    micro_cfg.train.amp = "tf32"
    sequence, _ = check_inputs(micro_cfg)
    assert prepare(micro_cfg, sequence, progress=False).tracker.amp == "tf32"


def test_tf32_is_set_for_the_run_and_restored():
    from benchmark.models.preprocess import matmul_precision

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with matmul_precision("tf32", CUDA):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with matmul_precision("fp32", CUDA):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved
