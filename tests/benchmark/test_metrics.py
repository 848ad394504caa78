"""Continual-learning metrics checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.reporting import metrics

# T = 3 sequence tasks; rows = stage 0 (pre-trained) .. stage 3, column j trained at stage j+1.
R = np.array(
    [
        [50.0, 40.0, 30.0],  # stage 0: before fine-tuning
        [80.0, 45.0, 35.0],  # stage 1: trained task 0
        [84.0, 90.0, 38.0],  # stage 2: trained task 1 (task 0 went *up*, so max-forgetting != initial-final)
        [66.0, 87.0, 93.0],  # stage 3: trained task 2
    ]
)

# T = 1: a single task, nothing earlier or later to compare with.
R_SINGLE = np.array([[40.0], [70.0]])


def test_average_accuracy():
    # stage 1: 80; stage 2: (84 + 90) / 2 = 87; stage 3: (66 + 87 + 93) / 3 = 246 / 3 = 82
    np.testing.assert_allclose(metrics.average_accuracy(R), [80.0, 87.0, 82.0])
    np.testing.assert_allclose(metrics.average_accuracy(R_SINGLE), [70.0])


def test_last_accuracy_and_mtil_last():
    # (66 + 87 + 93) / 3 = 82
    assert metrics.last_accuracy(R) == pytest.approx(82.0)
    assert metrics.mtil_last(R) == pytest.approx(82.0)
    assert metrics.last_accuracy(R_SINGLE) == pytest.approx(70.0)


def test_forgetting_initial_final():
    # task 0: R[1,0] - R[3,0] = 80 - 66 = 14; task 1: R[2,1] - R[3,1] = 90 - 87 = 3
    np.testing.assert_allclose(metrics.forgetting_initial_final(R), [14.0, 3.0])
    assert metrics.forgetting_initial_final(R_SINGLE).shape == (0,)


def test_forgetting_max():
    # task 0: max(R[1,0], R[2,0]) - R[3,0] = max(80, 84) - 66 = 18
    # task 1: max(R[2,1]) - R[3,1] = 90 - 87 = 3
    np.testing.assert_allclose(metrics.forgetting_max(R), [18.0, 3.0])
    assert metrics.forgetting_max(R_SINGLE).shape == (0,)


def test_forgetting_max_ignores_stages_before_training_and_the_last_stage():
    high_before_training = R.copy()
    high_before_training[0, 0] = 99.0  # stage 0: not yet trained, must not count
    high_before_training[1, 1] = 99.0  # stage 1: task 1 not yet trained, must not count
    np.testing.assert_allclose(metrics.forgetting_max(high_before_training), [18.0, 3.0])
    improved_at_the_end = R.copy()
    improved_at_the_end[3, 0] = 95.0  # final stage is excluded from the max: 84 - 95 = -11
    np.testing.assert_allclose(metrics.forgetting_max(improved_at_the_end), [-11.0, 3.0])


def test_backward_transfer():
    # mean(R[3,0] - R[1,0], R[3,1] - R[2,1]) = mean(66 - 80, 87 - 90) = mean(-14, -3) = -8.5
    assert metrics.backward_transfer(R) == pytest.approx(-8.5)
    assert math.isnan(metrics.backward_transfer(R_SINGLE))


def test_forward_transfer():
    # mean(R[1,1] - R[0,1], R[2,2] - R[0,2]) = mean(45 - 40, 38 - 30) = mean(5, 8) = 6.5
    assert metrics.forward_transfer(R) == pytest.approx(6.5)
    assert math.isnan(metrics.forward_transfer(R_SINGLE))


def test_mtil_transfer_is_zscls_column_mean():
    # ZSCL averages each column over the stages before it is trained, then the columns:
    # column 1: R[1,1] = 45; column 2: (R[1,2] + R[2,2]) / 2 = (35 + 38) / 2 = 36.5
    assert metrics.mtil_transfer(R) == pytest.approx((45.0 + 36.5) / 2)  # 40.75
    assert math.isnan(metrics.mtil_transfer(R_SINGLE))


def test_mtil_transfer_pooled():
    # untrained entries of rows 1..3 pooled: R[1,1] = 45, R[1,2] = 35, R[2,2] = 38 -> 118 / 3
    assert metrics.mtil_transfer_pooled(R) == pytest.approx(118.0 / 3.0)
    assert math.isnan(metrics.mtil_transfer_pooled(R_SINGLE))


def zscl_notebook_transfer(acc: np.ndarray) -> float:
    """A transcription of ZSCL's results notebook (Thunderbeee/ZSCL): ``acc`` has one row per
    stage after training (no pre-trained row); Transfer = mean over i >= 1 of mean(acc[:i, i])."""
    return float(np.mean([np.mean(acc[:i, i]) for i in range(1, acc.shape[1])]))


@pytest.mark.parametrize("tasks", [2, 5, 11])
def test_mtil_transfer_matches_zscl_on_random_matrices(tasks):
    R_random = np.random.default_rng(tasks).uniform(0, 100, (tasks + 1, tasks))
    assert metrics.mtil_transfer(R_random) == pytest.approx(zscl_notebook_transfer(R_random[1:]))


def test_mtil_avg():
    # rows 1..3 sum to 160 + 212 + 246 = 618 over 9 entries
    assert metrics.mtil_avg(R) == pytest.approx(618.0 / 9.0)
    assert metrics.mtil_avg(R_SINGLE) == pytest.approx(70.0)


def test_nan_propagates():
    missing = R.copy()
    missing[3, 0] = np.nan
    assert math.isnan(metrics.last_accuracy(missing))
    assert math.isnan(metrics.backward_transfer(missing))
    assert math.isnan(metrics.forgetting_max(missing)[0])
    assert metrics.forgetting_max(missing)[1] == pytest.approx(3.0)


@pytest.mark.parametrize(
    "function",
    [
        metrics.average_accuracy,
        metrics.last_accuracy,
        metrics.forgetting_initial_final,
        metrics.forgetting_max,
        metrics.backward_transfer,
        metrics.forward_transfer,
        metrics.mtil_transfer,
        metrics.mtil_avg,
        metrics.mtil_last,
    ],
)
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 3)),
        np.zeros((4, 2)),
        np.zeros(4),
        np.zeros((1, 0)),
        np.zeros((2, 1, 1)),
    ],
)
def test_sequence_metrics_reject_bad_shapes(function, bad):
    with pytest.raises(ValueError, match=r"\[T\+1, T\]"):
        function(bad)


# S = 2 stages, K = 4 columns: two sequence tasks (stages 1 and 2) and two eval-only tasks.
A = np.array(
    [
        [50.0, 60.0, 70.0, 80.0],
        [55.0, 58.0, 65.0, 80.0],
        [40.0, 70.0, 60.0, 85.0],
    ]
)
TRAINED_STAGE = [1, 2, -1, -1]


def test_concept_forgetting():
    # each row minus row 0: [55-50, 58-60, 65-70, 80-80], [40-50, 70-60, 60-70, 85-80]
    expected = [[0, 0, 0, 0], [5, -2, -5, 0], [-10, 10, -10, 5]]
    np.testing.assert_allclose(metrics.concept_forgetting(A), expected)
    np.testing.assert_allclose(metrics.concept_forgetting(A[:1]), [[0, 0, 0, 0]])


def test_concept_forgetting_rejects_bad_shapes():
    for bad in (np.zeros(3), np.zeros((0, 3)), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match=r"\[S\+1, K\]"):
            metrics.concept_forgetting(bad)


def test_untrained_mask():
    expected = [
        [True, True, True, True],  # stage 0: nothing trained
        [False, True, True, True],  # stage 1: column 0 trained
        [False, False, True, True],  # stage 2: columns 0, 1 trained; eval-only never
    ]
    np.testing.assert_array_equal(metrics.untrained_mask(2, TRAINED_STAGE), expected)
    np.testing.assert_array_equal(metrics.untrained_mask(2, [1, 2, None, -1]), expected)


@pytest.mark.parametrize("trained_stage", [[0, 1], [1, 3], [-2, 1]])
def test_untrained_mask_rejects_bad_stages(trained_stage):
    with pytest.raises(ValueError, match="trained_stage"):
        metrics.untrained_mask(2, trained_stage)


def test_untrained_mask_rejects_negative_stage_count():
    with pytest.raises(ValueError, match="num_stages"):
        metrics.untrained_mask(-1, [])


def test_mean_over_untrained():
    deltas = metrics.concept_forgetting(A)
    # stage 0: all zeros -> 0; stage 1: mean(-2, -5, 0) = -7/3; stage 2: mean(-10, 5) = -2.5
    np.testing.assert_allclose(metrics.mean_over_untrained(deltas, TRAINED_STAGE), [0.0, -7.0 / 3.0, -2.5])


def test_mean_over_untrained_is_nan_where_everything_is_trained():
    deltas = metrics.concept_forgetting(A[:, :2])
    # stage 1: only column 1 untrained -> -2; stage 2: none untrained -> nan
    result = metrics.mean_over_untrained(deltas, [1, 2])
    np.testing.assert_allclose(result[:2], [0.0, -2.0])
    assert math.isnan(result[2])


def test_mean_over_untrained_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 entries but D has 4 columns"):
        metrics.mean_over_untrained(A, [1, 2, -1])
