"""The embedded default's tiny CLIP is a file of the repository: loaded, never pretrained,
checked by its sha256; and torch's CPU kernels are pinned to one instruction set."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.config import load_yaml
from benchmark.errors import UserError
from benchmark.models import pretrain

ROOT = Path(__file__).parents[2]
EMBEDDED = ROOT / "benchmark" / "presets" / "embedded.yaml"
REFERENCE = ROOT / "docs" / "reference" / "embedded-default" / "accuracy_long.csv"  # published by the suite


def test_the_embedded_preset_names_the_shipped_model():
    cfg = load_yaml(EMBEDDED).model
    folder = pretrain.shipped_model(cfg)
    assert folder == pretrain.SHIPPED / "tiny-rn"
    record = json.loads((folder / pretrain.RECORD).read_text())
    assert record["world_version"] == pretrain.WORLD_VERSION and record["pretrain"]["images"] == 12000


def test_tampered_weights_are_one_line(tmp_path):
    cfg = load_yaml(EMBEDDED).model
    shutil.copytree(pretrain.SHIPPED / "tiny-rn", tmp_path / "tiny-rn")
    weights = tmp_path / "tiny-rn" / pretrain.SHIPPED_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError) as err:
        pretrain.shipped_model(cfg, root=tmp_path)
    assert "\n" not in str(err.value) and "sha256" in str(err.value) and "git checkout" in str(err.value)


def test_another_pretraining_config_is_not_the_shipped_model():
    cfg = load_yaml(EMBEDDED).model
    cfg.pretrain.epochs = 1  # the user's own pretraining: built into the model cache instead
    assert pretrain.shipped_model(cfg) is None


@pytest.mark.slow
def test_default_stage0_from_an_empty_cache_equals_the_shipped_reference(tmp_path, monkeypatch):
    """No pretraining, and the pre-trained model's rows are the published ones."""
    from benchmark.run.runner import check_inputs, prepare

    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("the default run pretrained"))
    cfg = load_yaml(EMBEDDED)
    cfg.model.cache_dir = str(tmp_path / "empty-cache")
    sequence, _ = check_inputs(cfg)
    setup = prepare(cfg, sequence, progress=False)
    stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
    import pandas as pd

    ref = pd.read_csv(REFERENCE)
    ref = ref[(ref.stage == 0) & (ref.method == "finetune") & (ref.seed == 0)]
    keys = ["eval_task", "kind", "accuracy", "ece", "split"]
    assert [{k: row[k] for k in keys} for row in stage0] == ref[keys].to_dict("records")


def _capability(env: dict) -> str:
    code = "import os, benchmark, torch; print(torch.backends.cpu.get_cpu_capability(), os.environ.get('MKL_CBWR'))"
    pins = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "LDIFS_BENCH_CPU_ISA")
    full = {k: v for k, v in os.environ.items() if k not in pins}
    out = subprocess.run([sys.executable, "-c", code], env={**full, **env}, capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip()


def _has_avx2() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and " avx2" in cpuinfo.read_text()


@pytest.mark.skipif(not _has_avx2(), reason="needs an x86 CPU with AVX2")
def test_importing_the_suite_pins_cpu_kernels_to_avx2():
    assert _capability({}) == "AVX2 AVX2"
    assert _capability({"LDIFS_BENCH_CPU_ISA": "native"}).endswith(" None")  # the opt-out sets nothing
