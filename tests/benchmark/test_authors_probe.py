"""The authors' linear probe: torch's AdamW arithmetic, selection on validation only, a CLI run."""

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from benchmark.config import EvalConfig, dump_yaml
from benchmark.evaluation.authors_probe import adamw_fit, fit_authors_probe, init_linear
from benchmark.evaluation.tracker import EvalSet, Tracker
from benchmark.models.preprocess import BatchPreprocess
from run_benchmark import main
from tasks.base import Split, Task


def clusters(n: int, seed: int, noise: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.arange(n) % 3
    return F.normalize(centres[labels] + noise * torch.randn(n, 8, generator=g), dim=1), labels


def test_batched_fit_is_torch_adamw_per_lr():
    x, y = clusters(60, 1)
    lrs = [0.01, 0.5]
    w, b = adamw_fit(x, y, 3, lrs, steps=25)
    for i, lr in enumerate(lrs):
        head = torch.nn.Linear(8, 3)
        w0, b0 = init_linear(8, 3, x.device)
        with torch.no_grad():
            head.weight.copy_(w0)
            head.bias.copy_(b0)
        opt = torch.optim.AdamW(head.parameters(), lr=lr)  # default weight decay 0.01, as the authors
        for _ in range(25):
            opt.zero_grad()
            F.cross_entropy(head(x), y).backward()
            opt.step()
        torch.testing.assert_close(w[i], head.weight.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b[i], head.bias.detach(), rtol=1e-4, atol=1e-5)


def test_selection_on_validation_then_refit():
    train, val = clusters(90, 1, noise=1.0), clusters(30, 2, noise=1.0)
    lrs = [0.01, 0.05, 0.1, 0.5, 1.0]
    head, lr = fit_authors_probe(train, val, 3, lrs, steps=50)
    w, b = adamw_fit(*train, 3, lrs, steps=50)
    val_acc = [float(((val[0] @ w[i].T + b[i]).argmax(1) == val[1]).float().mean()) for i in range(len(lrs))]
    assert lr == lrs[val_acc.index(max(val_acc))]  # the first lr of the best validation accuracy
    w_all, b_all = adamw_fit(torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]), 3, [lr], steps=50)
    torch.testing.assert_close(head.weight, w_all[0])  # refit on train + validation
    torch.testing.assert_close(head.bias, b_all[0])


class Identity(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)


def tracker_with_test_labels(test_labels: torch.Tensor) -> Tracker:
    g = torch.Generator().manual_seed(3)

    def split(n: int) -> Split:
        labels = torch.arange(n) % 3
        images = torch.randint(0, 120, (n, 3, 2, 2), generator=g, dtype=torch.uint8)
        images[torch.arange(n), labels] += 100
        return Split(images, labels)

    train, val, test = split(60), split(30), split(30)
    task = Task("rgb", ["r", "g", "b"], ["{}"], train, test, val=val)
    es = EvalSet(task, train.images, train.labels, test.images, test_labels, torch.eye(3, 12), val.images, val.labels)
    cfg = EvalConfig(kinds=["lp"], probe="authors", probe_steps=40)
    return Tracker({"rgb": es}, cfg, BatchPreprocess(2, (0.0,) * 3, (1.0,) * 3), torch.device("cpu"), progress=False)


def test_poisoned_test_labels_do_not_change_the_chosen_lr():
    clean_labels = torch.arange(30) % 3
    clean = tracker_with_test_labels(clean_labels)
    poisoned = tracker_with_test_labels((clean_labels + 1) % 3)  # every test label wrong
    acc_clean = clean.evaluate(Identity(), {}, stage=0)[0]["accuracy"]
    acc_poisoned = poisoned.evaluate(Identity(), {}, stage=0)[0]["accuracy"]
    assert clean.probe_lrs == poisoned.probe_lrs and set(clean.probe_lrs) == {"rgb"}
    assert acc_clean > 50 > acc_poisoned  # the poison did reach the test split


def test_cli_runs_authors_probe_on_micro(micro_cfg, tmp_path):
    micro_cfg.eval.probe_steps = 30  # the protocol's 1000 steps are for real runs; the path is the same
    path = tmp_path / "micro.yaml"
    path.write_text(dump_yaml(micro_cfg))
    assert (
        main(["--config", str(path), "-q", "--name", "authors", "--eval.probe", "authors", "--methods", "finetune"])
        == 0
    )
    table = pd.read_csv(Path(micro_cfg.results_dir) / "authors" / "accuracy_long.csv")
    lp = table[table["kind"] == "lp"]["accuracy"]
    assert len(lp) > 0 and lp.between(0, 100).all()


def fitted_rows(monkeypatch) -> list[torch.Tensor]:
    """Spy on the probe's optimiser: the features of every fit it runs."""
    import benchmark.evaluation.authors_probe as probe_module

    seen: list[torch.Tensor] = []
    real = probe_module.adamw_fit

    def spy(feats, *args, **kwargs):
        seen.append(feats.clone())
        return real(feats, *args, **kwargs)

    monkeypatch.setattr(probe_module, "adamw_fit", spy)
    return seen


def test_an_lp_init_head_never_fits_a_validation_row(monkeypatch):
    tracker = tracker_with_test_labels(torch.arange(30) % 3)
    es = tracker.sets["rgb"]
    train = tracker.features(Identity(), es.probe_images)
    val = tracker.features(Identity(), es.val_images)
    seen = fitted_rows(monkeypatch)
    head = tracker.fit_probe(Identity(), es, head_init=True)
    assert seen and all(torch.equal(rows, train) for rows in seen)  # the lr sweep only; no refit
    assert not any((rows[:, None] == val[None]).all(-1).any() for rows in seen)
    # the head is the train-only fit at the chosen lr
    w, b = adamw_fit(train, es.probe_labels, 3, [tracker.probe_lrs["rgb"]], 40)  # the module's name, unspied
    torch.testing.assert_close((head.weight, head.bias), (w[0], b[0]))


def test_the_lp_evaluation_keeps_the_authors_refit_on_train_and_val(monkeypatch):
    tracker = tracker_with_test_labels(torch.arange(30) % 3)
    seen = fitted_rows(monkeypatch)
    tracker.fit_probe(Identity(), tracker.sets["rgb"])
    assert [len(rows) for rows in seen] == [60, 90]


def test_a_methods_probe_head_asks_for_a_train_only_fit():
    """LP-init and linear_probe's head come from ``StageHeads.probe``: a head, not the lp kind."""
    from benchmark.evaluation.stage_heads import StageHeads

    asked = []

    class Tracker:
        sets = {"t": type("ES", (), {"zeroshot": torch.eye(2)})()}

        def fit_probe(self, visual, es, head_init=False):
            asked.append(head_init)
            return torch.nn.Linear(2, 2)

    model = type("Model", (), {"visual": None})()
    task = type("Task", (), {"name": "t"})()
    weight, bias = StageHeads(model, Tracker(), 1.0, lambda task: None).probe(task)
    assert asked == [True] and weight.shape == (2, 2) and bias.shape == (2,)
