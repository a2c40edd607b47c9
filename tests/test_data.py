import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import dalv
from dalv.data import ActivePool, DatasetNotFoundError, load


def test_digits_and_mnist5k_are_real_and_in_unit_range():
    for name, n_train, n_test, shape in [
        ("digits", 1347, 450, (1, 8, 8)),
        ("mnist5k", 4000, 1000, (1, 28, 28)),
    ]:
        d = load(name)
        assert (len(d.x_train), len(d.x_test)) == (n_train, n_test)
        assert d.input_shape == shape and d.n_classes == 10
        assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
        assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
        assert float(d.x_train.max()) > 0.9  # really rescaled pixels, not zeros
        # stratified: every class present in both splits in similar proportion
        tr = np.bincount(d.y_train.numpy(), minlength=10) / len(d.y_train)
        te = np.bincount(d.y_test.numpy(), minlength=10) / len(d.y_test)
        assert np.abs(tr - te).max() < 0.02


def test_mnist5k_split_is_fixed():
    a, b = load("mnist5k"), load("mnist5k")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_unknown_dataset_lists_choices():
    with pytest.raises(
        ValueError, match="digits, mnist5k, mnist, fashion_mnist, cifar10"
    ):
        load("imagenet")


def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(
    "name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_idx_loader_reads_torchvision_layout(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xtr, ytr = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    xte, yte = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    _write_idx(raw / "train-images-idx3-ubyte", xtr)
    _write_idx(raw / "train-labels-idx1-ubyte", ytr, gz=True)  # gzipped files work too
    _write_idx(raw / "t10k-images-idx3-ubyte", xte)
    _write_idx(raw / "t10k-labels-idx1-ubyte", yte)
    d = load(name, root=tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), xtr / 255.0, atol=1e-6)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)


def test_cifar_loader_reads_python_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = (
            rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            rng.integers(0, 10, 4).tolist(),
        )
        batches[f] = (x, y)
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": x, "labels": y}, fh)
    d = load("cifar10", root=tmp_path)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(
        d.x_test.reshape(4, -1).numpy(), batches["test_batch"][0] / 255.0, atol=1e-6
    )
    assert d.classes[0] == "airplane"


def test_missing_dataset_offline_names_folder_and_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(DatasetNotFoundError) as e:
        load("mnist", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg


def test_corrupt_idx_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in dalv.data.MNIST_FILES:
        (raw / f).write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        load("mnist", root=tmp_path)


def test_pool_refuses_to_label_twice_and_bad_indices(digits):
    p = ActivePool(digits.x_train, digits.y_train)
    y = p.label(np.array([3, 5]), round=0)
    assert torch.equal(y, digits.y_train[[3, 5]])
    assert p.n_labeled == 2 and 3 not in p.unlabeled_idx
    with pytest.raises(ValueError, match="already labelled"):
        p.label(np.array([5, 7]), round=1)
    assert p.labeled_at[7] == ActivePool.UNLABELLED  # nothing half-applied
    with pytest.raises(ValueError, match="duplicates"):
        p.label(np.array([8, 8]), round=1)
    with pytest.raises(ValueError, match="out of range"):
        p.label(np.array([len(p)]), round=1)
    p.label(np.array([9]), round=1)
    assert p.acquired_idx.tolist() == [9]


def _write_mnist_like(folder, seed, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3),
    }
    for name, arr in arrays.items():
        _write_idx(folder / name, arr, gz=gz)
    return arrays


def _no_download(monkeypatch):
    import torchvision.datasets as tvd

    def refuse(*a, **k):
        raise AssertionError("no download should be tried")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(tvd, cls, refuse)


def test_fashion_mnist_is_read_from_debians_folder(tmp_path, monkeypatch):
    # apt-get install dataset-fashion-mnist: four gzipped IDX files, no raw/ folder
    system = tmp_path / "usr-share-datasets"
    arrays = _write_mnist_like(system / "fashion-mnist", seed=1)
    monkeypatch.setenv("DALV_SYSTEM_DATASETS", str(system))
    _no_download(monkeypatch)
    root = tmp_path / "cache"
    d = load("fashion_mnist", root=root)
    assert d.x_train.shape == (6, 1, 28, 28) and d.classes[-1] == "Ankle boot"
    np.testing.assert_array_equal(d.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert dalv.data.locate("fashion_mnist", root) == system / "fashion-mnist"
    assert not root.exists()  # read in place, nothing copied or made
    # the data root wins when it has the files too
    mine = _write_mnist_like(root / "FashionMNIST" / "raw", seed=2, gz=False)
    d = load("fashion_mnist", root=root)
    np.testing.assert_array_equal(d.y_train.numpy(), mine["train-labels-idx1-ubyte"])
    # the Debian folder is Fashion-MNIST's only: MNIST does not look there
    assert dalv.data.locate("mnist", root) is None


def test_debian_folder_is_the_default_location(monkeypatch):
    from pathlib import Path

    monkeypatch.delenv("DALV_SYSTEM_DATASETS", raising=False)
    expect = Path("/usr/share/datasets/fashion-mnist")
    assert dalv.data.system_folder("fashion_mnist") == expect
    assert dalv.data.system_folder("mnist") is None


def test_fashion_mnist_offline_names_both_ways_in_two_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("DALV_SYSTEM_DATASETS", str(tmp_path / "none"))
    monkeypatch.setattr(dalv.data, "_offline", lambda dataset: True)
    _no_download(monkeypatch)
    with pytest.raises(DatasetNotFoundError) as e:
        load("fashion_mnist", root=tmp_path / "c")
    lines = str(e.value).splitlines()
    assert len(lines) == 2
    assert str(tmp_path / "c" / "FashionMNIST" / "raw") in lines[0]
    assert "train-images-idx3-ubyte" in lines[0] and "no internet" in lines[0]
    assert "`dalv download fashion_mnist`" in lines[1]
    assert "`apt-get install dataset-fashion-mnist`" in lines[1]
    assert str(tmp_path / "none" / "fashion-mnist") in lines[1]
    assert not (tmp_path / "c").exists()


def test_failed_download_leaves_no_empty_folders_and_a_clean_reason(
    tmp_path, monkeypatch
):
    import torchvision.datasets as tvd

    def torchvision_offline(root, train, download):
        (tmp_path / "cache" / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(dalv.data, "_offline", lambda dataset: False)
    monkeypatch.setattr(tvd, "MNIST", torchvision_offline)
    keep = tmp_path / "cache"
    keep.mkdir()
    (keep / "other.txt").write_text("mine")
    with pytest.raises(DatasetNotFoundError) as e:
        load("mnist", root=keep)
    msg = str(e.value)
    assert "(no internet connection)" in msg and "<" not in msg
    assert sorted(p.name for p in keep.iterdir()) == ["other.txt"]


def test_download_failure_reason_is_one_short_clause():
    from dalv.data import _reason

    assert _reason(OSError("network unreachable")) == "OSError: network unreachable"
    long = RuntimeError("HTTP Error 403: Forbidden " + "x " * 100 + "\nmore\nlines")
    r = _reason(long)
    assert r.startswith("RuntimeError: HTTP Error 403: Forbidden") and len(r) < 100
    assert "\n" not in r


def test_download_hosts_are_torchvisions():
    from urllib.parse import urlparse

    import torchvision.datasets as tvd

    hosts = dalv.data.DOWNLOAD_HOSTS
    assert hosts["mnist"] == tuple(urlparse(m).hostname for m in tvd.MNIST.mirrors)
    fashion = tuple(urlparse(m).hostname for m in tvd.FashionMNIST.mirrors)
    assert hosts["fashion_mnist"] == fashion
    assert hosts["cifar10"] == (urlparse(tvd.CIFAR10.url).hostname,)
