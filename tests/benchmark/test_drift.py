"""Per-layer feature drift (benchmark/evaluation/drift.py): linear CKA on hand-computed cases,
the distance against LDIFS's own penalty, stage 0, the CSV a run writes, resume, the cost."""

from __future__ import annotations

import copy
import shutil
import sys
import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.evaluation import drift
from benchmark.evaluation.drift import FeatureDrift, centred_gram, cka_from_grams, layer_measures, linear_cka
from benchmark.models.taps import TapRecorder, image_taps
from benchmark.reporting.drift_table import DRIFT_COLUMNS, load_drift_csv
from benchmark.rundir import FEATURE_DRIFT_CSV, PLOTS_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
from methods_testkit import Spy, micro_setup, run, single_thread  # noqa: E402

from benchmark.loop import scheduler  # noqa: E402
from benchmark.loop.checkpoints import StageCheckpoints  # noqa: E402
from methods import METHODS  # noqa: E402

# ---------------------------------------------------------------- linear CKA


def test_linear_cka_of_identical_features_is_one():
    x = torch.randn(20, 7, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 6, generator=g), torch.randn(30, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    base = linear_cka(x, y)
    assert 0 < base < 1
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-5)
    assert linear_cka(x, y @ q.T) == pytest.approx(base, rel=1e-5)
    assert linear_cka(x @ q, x) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(3.5 * x, y) == pytest.approx(base, rel=1e-6)
    assert linear_cka(x, 0.01 * y) == pytest.approx(base, rel=1e-6)


def test_linear_cka_of_hand_computed_cases():
    # One feature: CKA is the squared Pearson correlation. Centred x = (-1, 0, 1), y = (-1, 1, 0):
    # Y^T X = 1, X^T X = Y^T Y = 2, so 1^2 / (2 * 2) = 0.25.
    assert linear_cka(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [3.0], [2.0]])) == pytest.approx(0.25)
    # Two features, already centred: X^T X = 2 I (norm sqrt 8), Y keeps X's first axis only
    # (Y^T Y = diag(2, 0), norm 2), Y^T X = diag(2, 0) (squared norm 4): 4 / (2 sqrt 8) = 1 / sqrt 2.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    assert linear_cka(x, y) == pytest.approx(2**-0.5)


def test_the_gram_form_equals_the_feature_form_and_flattens_maps():
    """D > N (a conv map flattened): ||Y^T X||^2 / (||X^T X|| ||Y^T Y||) on centred columns."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 3, 4, 4, generator=g).double(), torch.randn(8, 3, 4, 4, generator=g).double()
    xc, yc = (t.flatten(1) - t.flatten(1).mean(0) for t in (x, y))
    direct = float((yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))
    assert linear_cka(x, y) == pytest.approx(direct, rel=1e-10)
    assert cka_from_grams(centred_gram(x), centred_gram(y)) == pytest.approx(direct, rel=1e-10)


# ---------------------------------------------------------------- the distance is LDIFS's penalty


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_the_distance_equals_ldifs_own_penalty_on_the_same_batch(tower):
    """A training step of LDIFS (reference: the pre-trained encoder, taps normalised along the
    features): the mean over layers of the drift's distances, on the step's batch, between the
    encoder as it ran that step and the reference, is the penalty LDIFS added to the loss."""
    from methods.ldifs import LDIFS

    seen = []

    def capture(strategy):  # after LDIFS's before_backward: the weights of this very forward
        ldifs = next(p for p in strategy.plugins if isinstance(p, LDIFS))
        seen.append((copy.deepcopy(strategy.model.visual), ldifs.reference, strategy.mb_x.clone(), ldifs.last_distance))

    setup = micro_setup(tower)
    setup.sequence.stages = setup.sequence.stages[:1]
    hparams = {"ldifs": {"reference": "pretrained", "norm_axis": "features"}}
    run(setup, "ldifs", hparams, spies=(Spy(before_backward=capture),))
    visual, reference, x, penalty = seen[-1]  # the second step: the encoder has moved
    assert float(penalty) > 0
    with torch.no_grad(), single_thread():
        taps = image_taps(visual)
        live, ref = TapRecorder(taps), TapRecorder(image_taps(reference))
        visual.train()  # as LDIFS ran both towers (a ResNet's BatchNorm on the batch's statistics)
        visual(x)
        reference(x)
        current, frozen = live.take(), ref.take()
    grams = ([centred_gram(t) for t in current], [centred_gram(t) for t in frozen])
    distances = [d for d, _ in layer_measures(current, frozen, taps, grams)]
    assert sum(distances) / len(distances) == pytest.approx(float(penalty), rel=1e-5)


# ---------------------------------------------------------------- stage 0 and a micro run


def test_the_pretrained_encoder_against_its_own_taps_is_distance_0_and_cka_1():
    setup = micro_setup("resnet")
    measurement = FeatureDrift(setup.tracker, setup.bundle.model.visual, 256)
    with single_thread():
        taps, first = measurement.measure(setup.bundle.model.visual)
        _, again = measurement.measure(copy.deepcopy(setup.bundle.model.visual))
    for name in measurement.batches:
        grams = (first.grams[name], again.grams[name])
        for distance, cka in layer_measures(first.taps[name], again.taps[name], taps, grams):
            assert abs(distance) < 1e-6 and cka == pytest.approx(1.0, abs=1e-9)
    rows = measurement.stage0_rows("m", 0)
    assert {(r["measure"], r["value"]) for r in rows} == {("dist_pretrained", 0.0), ("cka_pretrained", 1.0)}


def _check_rows(df: pd.DataFrame, methods: list[str], tasks: list[str], layers: int, stages: int) -> None:
    """Every (method, stage, task, layer, measure) once: stage 0 has the two pre-trained measures, later stages all four."""
    assert list(df.columns) == list(DRIFT_COLUMNS)
    per_stage = df.groupby(["method", "stage"]).size().to_dict()
    expected = {(m, s): len(tasks) * layers * (2 if s == 0 else 4) for m in methods for s in range(stages + 1)}
    assert per_stage == expected
    assert set(df["eval_task"]) == set(tasks)
    cka = df[df["measure"].str.startswith("cka")]["value"]
    distances = df[df["measure"].str.startswith("dist")]["value"]
    assert cka.between(-1e-9, 1 + 1e-9).all() and (distances > -1e-6).all()  # 2 - 2 cos: float32 rounding only
    first = df[(df["stage"] == 1)].pivot_table(
        index=["method", "eval_task", "layer"], columns="measure", values="value"
    )
    assert (
        first["dist_previous"] == first["dist_pretrained"]
    ).all()  # stage 1's previous encoder is the pre-trained one


def test_the_runner_joins_the_parts_and_the_figures_are_drawn_from_the_csv(tmp_path):
    """What the runner does at the end, on two (method, seed)s run with a folder: one CSV in
    results order, the zero-shot shortcut's rows, the figures and the leaderboard's links."""
    from benchmark.reporting.drift_plots import plot_feature_drift
    from benchmark.reporting.drift_table import drift_links_html

    setup = micro_setup("resnet")
    with single_thread():
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
        results = [
            scheduler.run_method(setup, spec, 0, stage0, StageCheckpoints(tmp_path, spec, 0))
            for spec in ("finetune", "zeroshot")
        ]
    assert drift.write_feature_drift(tmp_path, setup, results) == tmp_path / FEATURE_DRIFT_CSV
    df = load_drift_csv(tmp_path / FEATURE_DRIFT_CSV)
    assert list(pd.unique(df["method"])) == ["finetune", "zeroshot"]
    _check_rows(df, ["finetune", "zeroshot"], list(setup.tracker.sets), layers=5, stages=2)
    assert set(df.loc[df["method"] == "zeroshot", "value"]) == {0.0, 1.0}  # the encoder never changed
    names = {p.name for p in plot_feature_drift(tmp_path)}
    assert {"drift_last_stage.png", "drift_cka_finetune.png", "drift_cka_zeroshot.svg"} <= names
    assert 'href="plots/drift_cka_finetune.png"' in drift_links_html(tmp_path)


@pytest.mark.slow
def test_a_micro_run_writes_feature_drift_csv_plots_and_links(micro_cfg, tmp_path):
    from benchmark.reporting.publish import publish
    from benchmark.reporting.reports import main as redraw
    from benchmark.run.runner import run as run_benchmark

    micro_cfg.methods = ["zeroshot", "finetune"]
    micro_cfg.eval.drift_images = 16
    folder = run_benchmark(micro_cfg, progress=False)
    df = load_drift_csv(folder / FEATURE_DRIFT_CSV)
    tasks = list(pd.unique(pd.read_csv(folder / "accuracy_long.csv")["eval_task"]))
    _check_rows(df, ["zeroshot", "finetune"], tasks, layers=5, stages=2)
    zeroshot, finetune = df[df["method"] == "zeroshot"], df[df["method"] == "finetune"]
    assert set(zeroshot.loc[zeroshot["measure"].str.startswith("cka"), "value"]) == {1.0}
    assert (finetune.loc[(finetune["stage"] == 2) & (finetune["measure"] == "dist_pretrained"), "value"] > 0).all()
    plots = {"drift_last_stage.png", "drift_cka_zeroshot.png", "drift_cka_finetune.png"}
    assert plots <= {p.name for p in (folder / PLOTS_DIR).iterdir()}
    assert 'href="plots/drift_cka_finetune.png"' in (folder / "leaderboard.html").read_text()
    assert "drift_last_stage.png" in (folder / "report.md").read_text()
    for name in plots:
        (folder / PLOTS_DIR / name).unlink()
    assert redraw([str(folder)]) == 0  # python -m benchmark.reporting.reports RUN redraws them from the CSV
    assert plots <= {p.name for p in (folder / PLOTS_DIR).iterdir()}
    (folder / "manifest.json").write_text('{"git_revision": "0123abc"}\n')  # as if from a commit
    publish(folder, tmp_path / "ref")  # the table and the heatmaps of the board's methods
    assert (tmp_path / "ref" / FEATURE_DRIFT_CSV).read_bytes() == (folder / FEATURE_DRIFT_CSV).read_bytes()
    assert {"drift_cka_zeroshot.png", "drift_cka_finetune.png"} <= {
        p.name for p in (tmp_path / "ref" / "plots").iterdir()
    }


def test_drift_images_0_turns_it_off(tmp_path):
    setup = micro_setup("vit")
    setup.cfg.eval.drift_images = 0
    result, _ = run(setup, "finetune")
    assert drift.drift_of(setup) is None and "drift_seconds" not in result.stages[-1]
    assert drift.write_feature_drift(tmp_path, setup, [result]) is None and not list(tmp_path.iterdir())


# ---------------------------------------------------------------- previous stage, resume, scenarios


def _rows(setup, spec: str) -> pd.DataFrame:
    return pd.DataFrame(drift.drift_of(setup).rows[(spec, 0)])


def test_previous_stage_taps_are_the_last_stage_encoders():
    """dist/cka_previous at stage 2 against the encoder the tracker saw after stage 1, measured afresh."""
    setup = micro_setup("vit")
    run(setup, "finetune")
    measurement = drift.drift_of(setup)
    after_1 = copy.deepcopy(setup.bundle.model.visual)
    after_1.load_state_dict(setup.tracker.encoders[1])
    after_2 = copy.deepcopy(setup.bundle.model.visual)
    after_2.load_state_dict(setup.tracker.encoders[2])
    with single_thread():
        taps, one = measurement.measure(after_1)
        _, two = measurement.measure(after_2)
    df = _rows(setup, "finetune")
    for name in measurement.batches:
        grams = (two.grams[name], one.grams[name])
        for layer, (distance, cka) in zip(
            measurement.layers, layer_measures(two.taps[name], one.taps[name], taps, grams)
        ):
            got = df[(df["stage"] == 2) & (df["eval_task"] == name) & (df["layer"] == layer)].set_index("measure")[
                "value"
            ]
            assert got["dist_previous"] == pytest.approx(distance, rel=1e-6)
            assert got["cka_previous"] == pytest.approx(cka, rel=1e-9)


def test_resume_after_stage_1_gives_the_same_drift_rows(tmp_path):
    """Killed during stage 2: the resumed run measures the stage-1 encoder from its checkpoint."""
    setup = micro_setup("resnet")
    with single_thread():
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
        scheduler.run_method(setup, "finetune", 0, stage0, StageCheckpoints(tmp_path, "finetune", 0, keep=True))
        ckpt = StageCheckpoints(tmp_path, "finetune", 0).path
        part = drift.part_path(StageCheckpoints(tmp_path, "finetune", 0))
        full = drift.read_rows(part)
        shutil.copy(ckpt.with_name(f"{ckpt.stem}.stage1.pt"), ckpt)  # as if killed during stage 2
        forwards = drift.drift_of(setup).forwards
        scheduler.run_method(setup, "finetune", 0, stage0, StageCheckpoints(tmp_path, "finetune", 0))
    tasks = len(setup.tracker.sets)
    assert drift.drift_of(setup).forwards - forwards == 2 * tasks  # the stage-1 encoder once, then stage 2
    assert drift.read_rows(part) == full


@pytest.mark.parametrize(
    "tower, spec, cil",
    [("vit", "lora", False), ("vit", "wise_ft", False), ("resnet", "zscl", False), ("vit", "prototype", True)],
)
def test_methods_that_change_the_tower_and_class_incremental(tower, spec, cil):
    setup = micro_setup(tower, class_incremental=cil)
    result, _ = run(setup, spec)
    assert result.status == "ok"
    df = _rows(setup, spec)
    _check_rows(df, [spec], list(setup.tracker.sets), len(drift.drift_of(setup).layers), 2)


def test_a_plugin_method_is_measured(tmp_path):
    from benchmark.run.plugins import load_plugins

    name = f"drift_plugin_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(
        textwrap.dedent(f'''
        from methods import Method, register_method

        @register_method("{name}")
        class Mine(Method):
            needs_encoder_training = True
        ''')
    )
    load_plugins([str(path)])
    try:
        setup = micro_setup("vit")
        run(setup, name)
        _check_rows(_rows(setup, name), [name], list(setup.tracker.sets), 3, 2)
    finally:
        METHODS.unregister(name)


# ---------------------------------------------------------------- cost


def test_cost_one_forward_per_task_and_stage_and_the_pretrained_taps_once_per_run():
    """Two methods, two stages: the pre-trained encoder once, each stage's encoder once per
    task (one batch: drift_images <= eval.batch_size), and no old encoder run again."""
    setup = micro_setup("resnet")
    for spec in ("finetune", "ldifs"):
        run(setup, spec)
    tasks = len(setup.tracker.sets)
    assert drift.drift_of(setup).forwards == tasks * (1 + 2 * 2)


def test_the_config_key_is_checked_and_leaves_default_run_names_alone():
    from benchmark.config import RunConfig, config_hash, from_dict
    from benchmark.errors import UserError

    default = RunConfig()
    assert config_hash(from_dict(RunConfig, {"eval": {"drift_images": 128}})) == config_hash(default)
    assert config_hash(from_dict(RunConfig, {"eval": {"drift_images": 0}})) != config_hash(default)
    with pytest.raises(UserError, match="eval.drift_images=-1 must be >= 0"):
        from_dict(RunConfig, {"eval": {"drift_images": -1}})
