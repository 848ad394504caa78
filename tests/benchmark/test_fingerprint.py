"""python -m benchmark.tools.fingerprint: bit-level hashes that are the same for the same
computation, change when a bit changes, and a command with the suite's discipline."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from benchmark.models.preprocess import BatchPreprocess
from benchmark.tools import fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
from methods_testkit import tiny_clip  # noqa: E402


@pytest.fixture(scope="module")
def visual_and_preprocess():
    visual = tiny_clip(tower="resnet").visual
    return visual, BatchPreprocess(32, (0.5,) * 3, (0.25,) * 3)


def test_quick_lines_repeat_and_leave_the_model_alone(visual_and_preprocess):
    visual, prep = visual_and_preprocess
    before = copy.deepcopy(visual.state_dict())
    first, second = list(fingerprint.quick_lines(visual, prep)), list(fingerprint.quick_lines(visual, prep))
    assert first == second and len(first) == 3 + fingerprint.STEPS
    assert all(torch.equal(before[k], v) for k, v in visual.state_dict().items())  # steps ran on a copy


def test_one_changed_bit_changes_the_weights_line_and_the_digest(visual_and_preprocess):
    visual, prep = visual_and_preprocess
    nudged = copy.deepcopy(visual)
    with torch.no_grad():
        p = next(nudged.parameters())
        first = (0,) * p.dim()
        p[first] = torch.nextafter(p[first], torch.tensor(float("inf")))  # one ulp
    a, b = list(fingerprint.quick_lines(visual, prep)), list(fingerprint.quick_lines(nudged, prep))
    assert a[0] != b[0] and fingerprint.digest(a) != fingerprint.digest(b)


def test_tensor_hash_is_bit_exact():
    x = torch.arange(6, dtype=torch.float32)
    assert fingerprint.tensor_hash(x) == fingerprint.tensor_hash(x.clone())
    assert fingerprint.tensor_hash(x) != fingerprint.tensor_hash(x + 1e-6)


def test_out_never_replaces_a_file(tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    assert fingerprint.main(["--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and str(mine) in err[0]
    assert mine.read_text() == "my notes\n"
    assert fingerprint.main(["--out", str(tmp_path / "missing" / "f.txt")]) == 2
    assert fingerprint.main(["--bogus"]) == 2


def test_quick_fingerprint_of_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "fp.txt"
    assert fingerprint.main(["--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines == capsys.readouterr().out.splitlines()
    quick = lines[: lines.index(next(line for line in lines if line.startswith("digest ")))]
    assert lines[len(quick)] == f"digest {fingerprint.digest(quick)}"
    assert lines[0].startswith("torch ") and lines[2].startswith("weights ")
