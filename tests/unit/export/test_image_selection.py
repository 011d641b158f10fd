"""Which test images become properties: first, class_balanced (paper 001), fgsm_agreement
(paper 002), and the selection recorded in the specs."""

import csv

import numpy as np
import pytest
import torch
from run_script import run_script
from tiny_data import write_tiny_npz

from vfbench.data import load_dataset
from vfbench.errors import VfbenchError
from vfbench.io import save_checkpoint
from vfbench.models import build_model
from vfbench.specs import fgsm_robust_matrix, read_images_csv, select_images, write_specs

Y = np.array([0, 1, 1, 2, 0, 2, 1, 0, 2, 2])


def test_first_takes_the_first_n():
    assert select_images("first", Y, 4, 3) == [0, 1, 2, 3]


def test_class_balanced_takes_k_per_class_rank_by_rank():
    # class 0: images 0, 4, 7; class 1: 1, 2, 6; class 2: 3, 5, 8, 9
    assert select_images("class_balanced", Y, 6, 3) == [0, 1, 3, 4, 2, 5]
    assert select_images("class_balanced", Y, 9, 3) == [0, 1, 3, 4, 2, 5, 7, 6, 8]
    with pytest.raises(VfbenchError, match="multiple of the 3 classes"):
        select_images("class_balanced", Y, 4, 3)
    with pytest.raises(VfbenchError, match="class 0 has only 3"):
        select_images("class_balanced", np.concatenate([Y, [1, 2]]), 12, 3)


@pytest.mark.parametrize("selection", ["first", "class_balanced", "fgsm_agreement"])
def test_a_selections_first_images_are_its_pick_of_that_size(selection):
    """What lets a run verify the first n images of a larger spec (a model's or verifier's
    `images`): each selection of n is the first n of any larger one."""
    labels = np.random.default_rng(0).integers(0, 3, 60)
    robust = {"net": np.random.default_rng(1).random((2, 60)) < 0.7}
    largest = select_images(selection, labels, 30, 3, robust)
    for n in (3, 9, 15, 27):
        assert select_images(selection, labels, n, 3, robust) == largest[:n]


def test_fgsm_agreement_keeps_images_where_all_variants_agree():
    robust = np.array([[True, False, True, False, True],
                       [True, False, False, False, True],
                       [True, False, True, True, True]])
    # image 0: robust on all; 1: attacked on all; 2 and 3: the variants disagree; 4: robust
    assert select_images("fgsm_agreement", Y[:5], 3, 3, {"net1": robust}) == [0, 1, 4]
    with pytest.raises(VfbenchError, match="only 3 test images, 4 wanted"):
        select_images("fgsm_agreement", Y[:5], 4, 3, {"net1": robust})
    with pytest.raises(VfbenchError, match="needs the models' FGSM outcomes"):
        select_images("fgsm_agreement", Y[:5], 3, 3)


def test_fgsm_agreement_is_per_network():
    """Paper 002 asks the variants of one network to agree, not NET1's with NET2's: an image
    robust on every NET1 variant and attacked on every NET2 variant qualifies."""
    net1 = np.array([[True, True, False, True],
                     [True, True, False, False]])
    net2 = np.array([[False, True, False, True],
                     [False, True, False, True],
                     [False, False, False, True]])
    # image 0: each network agrees (NET1 robust, NET2 attacked); 1: NET2's variants disagree;
    # 2: attacked on all; 3: NET1's variants disagree
    assert select_images("fgsm_agreement", Y[:4], 2, 3, {"net1": net1, "net2": net2}) == [0, 2]
    # one group of all five variants (the old, per-dataset rule) would drop image 0
    assert select_images("fgsm_agreement", Y[:4], 1, 3,
                         {"all": np.concatenate([net1, net2])}) == [2]
    with pytest.raises(VfbenchError, match=r"\(net1: 2, net2: 3\) on only 2 test images"):
        select_images("fgsm_agreement", Y[:4], 3, 3, {"net1": net1, "net2": net2})


def test_unknown_selection_and_too_many_images_are_errors():
    with pytest.raises(VfbenchError, match="unknown image selection 'random'"):
        select_images("random", Y, 3, 3)
    with pytest.raises(VfbenchError, match="only 10 images"):
        select_images("first", Y, 11, 3)


def test_fgsm_robust_matrix_matches_a_direct_fgsm():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 1, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 3, 12)
    models = [build_model("net1", input_shape=(1, 4, 4), num_classes=3, mean=(0.5,),
                          std=(0.25,), hidden=(8,)).eval() for _ in range(2)]
    robust = fgsm_robust_matrix(models, x, y, 0.1, batch_size=5)
    assert robust.shape == (2, 12) and robust.dtype == bool
    for m, model in enumerate(models):
        xt = torch.from_numpy(x.astype(np.float32) / 255)
        yt = torch.from_numpy(y)
        xa = xt.detach().clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xa), yt).backward()
        x_adv = (xt + 0.1 * xa.grad.sign()).clamp(0, 1)
        with torch.no_grad():
            want = (model(xt).argmax(1) == yt) & (model(x_adv).argmax(1) == yt)
        assert robust[m].tolist() == want.tolist()


def test_specs_record_the_selection(tmp_path):
    x = np.zeros((10, 1, 2, 2), dtype=np.uint8)
    write_specs(x, Y, [0, 1, 3], 0.1, 3, tmp_path / "vnnlib", tmp_path / "images.csv",
                selection="class_balanced")
    with open(tmp_path / "images.csv", newline="") as fh:
        assert {row["selection"] for row in csv.DictReader(fh)} == {"class_balanced"}
    first = (tmp_path / "vnnlib" / "img3.vnnlib").read_text().splitlines()[0]
    assert first == "; test image 3, image selection class_balanced"


def test_make_specs_groups_the_variants_by_network(tmp_path, capsys):
    """scripts/make_specs.py (as the rule runs it, --networks from spec_networks): two
    identical variants per network always agree with each other, so every image qualifies; one
    group of all four (no --networks) keeps only the images where the two networks agree."""
    data = write_tiny_npz(tmp_path / "tiny.npz", 32, 40)
    dataset = load_dataset(data)
    kwargs = {"input_shape": (1, 4, 4), "num_classes": 3, "mean": dataset.mean,
              "std": dataset.std, "hidden": [8]}
    paths, nets = [], []
    for seed, network in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        model = build_model("net1", **kwargs)
        nets.append(model.eval())
        for variant in ("base", "pruned"):
            path = tmp_path / f"{network}-{variant}.pt"
            save_checkpoint(path, model=model, arch="net1", arch_kwargs=kwargs, config={},
                            metrics={})
            paths.append(path)
    robust = fgsm_robust_matrix(nets, dataset.x_test, dataset.y_test, 0.3)
    across = np.flatnonzero(robust[0] == robust[1]).tolist()
    assert 0 < len(across) < 30  # the two networks disagree on some of the first images

    def make_specs(out, *networks):
        run_script("make_specs.py", "--data", data, "--eps", 0.3, "--images", len(across),
                   "--selection", "fgsm_agreement", "--models", *paths,
                   "--networks", *networks, "--out-dir", out / "vnnlib",
                   "--out-images", out / "images.csv")
        return [int(row["image"]) for row in read_images_csv(out / "images.csv")]

    assert make_specs(tmp_path / "per_network", "a", "a", "b", "b") == list(range(len(across)))
    assert make_specs(tmp_path / "one_group") == across
    with pytest.raises(SystemExit):
        make_specs(tmp_path / "bad", "a", "a", "b")
    assert "error: make_specs: 3 --networks for 4 --models" in capsys.readouterr().err
