"""The W&B logger gets each (method, seed)'s accuracy matrices as tables and heatmaps as
images, checked with a fake ``wandb`` (no wandb run, no network)."""

from __future__ import annotations

import types

from test_leaderboard import seed_rows

from benchmark.loop.tracking import log_accuracy_matrices
from benchmark.training.wandb_logger import OfflineWandBLogger


class FakeWandb(types.SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(logged=[])

    def Table(self, columns, data):  # noqa: N802  wandb's name
        return ("table", columns, data)

    def Image(self, path):  # noqa: N802  wandb's name
        with open(path, "rb") as stream:
            return ("image", stream.read(8))

    def log(self, values):
        self.logged.append(values)


def test_the_accuracy_matrix_goes_to_wandb_as_a_table_and_a_heatmap():
    logger = object.__new__(OfflineWandBLogger)  # no wandb.init: the fake takes its calls
    logger.wandb = FakeWandb()
    columns = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy", "status"]
    rows = [dict(zip(columns, row)) for row in seed_rows("ldifs", 0, 85.0, -1.0, -2.0)]
    log_accuracy_matrices([logger], "ldifs/seed0/", "ldifs", rows)
    logged = {key: value for entry in logger.wandb.logged for key, value in entry.items()}
    kind, header, data = logged["ldifs/seed0/accuracy_matrix/head/matrix"]
    assert kind == "table" and header == ["stage", "shapes", "digits", "textures"]
    assert data[2][:3] == [2, 80.0, 90.0] and data[2][3] is None  # no head on the eval-only task
    assert logged["ldifs/seed0/accuracy_matrix/lp/matrix"][2][2][3] == 69.0
    for kind in ("head", "lp", "zs"):
        assert logged[f"ldifs/seed0/accuracy_matrix/{kind}/heatmap"] == ("image", b"\x89PNG\r\n\x1a\n")
