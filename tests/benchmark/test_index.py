"""results/index.csv and results/latest (benchmark.run.index), and readable run folder names."""

from __future__ import annotations

import threading

import pytest

from benchmark.config import RunConfig, config_hash
from benchmark.errors import UserError
from benchmark.run.index import INDEX_CSV, read_index, record_run
from benchmark.run.runner import default_run_name
from benchmark.rundir import check_run_name


def test_rows_are_added_and_updated_by_folder_and_latest_follows(tmp_path):
    record_run(tmp_path, {"folder": "a-1", "status": "running", "methods": ["finetune", "ldifs"], "seeds": [0, 1]})
    record_run(tmp_path, {"folder": "b-2", "status": "running", "command": "run_benchmark.py --seeds 0,1"})
    record_run(tmp_path, {"folder": "a-1", "status": "complete", "wall_seconds": 3.5}, latest=True)
    rows = {row["folder"]: row for row in read_index(tmp_path)}
    assert rows["a-1"]["status"] == "complete" and rows["a-1"]["wall_seconds"] == "3.5"
    assert rows["b-2"]["command"] == "run_benchmark.py --seeds 0,1"  # a comma inside a field stays one field
    assert len(rows) == 2 and (tmp_path / "latest").readlink().name == "a-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.csv", "latest"]  # no lock or temporary file


def test_concurrent_writers_lose_no_row(tmp_path):
    threads = [threading.Thread(target=record_run, args=(tmp_path, {"folder": f"run-{i}"})) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(row["folder"] for row in read_index(tmp_path)) == sorted(f"run-{i}" for i in range(12))


def test_a_latest_that_is_not_a_link_is_left_alone(tmp_path):
    (tmp_path / "latest").mkdir()
    record_run(tmp_path, {"folder": "a-1"}, latest=True)
    assert (tmp_path / "latest").is_dir() and (tmp_path / INDEX_CSV).is_file()


def test_default_folder_names_say_what_ran():
    cfg = RunConfig(methods=["finetune", "ldifs+replay"])
    assert default_run_name(cfg, "micro") == f"micro-finetune_ldifs-replay-{config_hash(cfg)}"
    many = RunConfig(methods=["zeroshot", "finetune", "ldifs", "l2sp"])
    assert default_run_name(many, "micro").startswith("micro-4methods-")
    check_run_name(default_run_name(cfg, "micro"))


@pytest.mark.parametrize("name", ["latest", "index.csv"])
def test_the_index_and_latest_names_are_reserved(name):
    with pytest.raises(UserError, match="reserved"):
        check_run_name(name)
