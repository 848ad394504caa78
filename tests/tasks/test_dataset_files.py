"""Dataset files that exist but are malformed: one line naming the file and what is wrong."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from test_torchvision_tasks import _write_cifar10, _write_mnist, no_md5  # noqa: F401 -- the fixture

from benchmark.errors import UserError
from tasks import TASKS, TaskContext


def _error(name: str, root: Path) -> str:
    with pytest.raises(UserError) as err:
        TASKS.get(name)(TaskContext(data_root=root))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_cifar_pickle_with_other_keys(tmp_path, no_md5):  # noqa: F811
    _write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps({"images": [], "targets": []}))
    message = _error("cifar10", tmp_path)
    assert str(bad) in message and "'images'" in message and "data+labels" in message


def test_cifar_pickle_truncated(tmp_path, no_md5):  # noqa: F811
    _write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(bad.read_bytes()[:40])
    message = _error("cifar10", tmp_path)
    assert str(bad) in message and "not a readable pickle" in message


def test_zero_byte_mnist_idx_file(tmp_path):
    _write_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    bad.write_bytes(b"")
    message = _error("mnist", tmp_path)
    assert str(bad) in message and "0 bytes" in message


def test_truncated_mnist_idx_file(tmp_path):
    _write_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-3])
    message = _error("mnist", tmp_path)
    assert str(bad) in message and "truncated" in message


def test_truncated_mat_file(tmp_path, no_md5):  # noqa: F811
    import scipy.io

    folder = tmp_path / "svhn"
    folder.mkdir()
    for split in ("train", "test"):
        data = {"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.arange(1, 6)[:, None]}
        scipy.io.savemat(folder / f"{split}_32x32.mat", data)
    bad = folder / "train_32x32.mat"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    message = _error("svhn", tmp_path)
    assert str(bad) in message and "MATLAB" in message
