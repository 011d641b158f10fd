"""Which test images become properties: first, class_balanced (paper 001), fgsm_agreement
(paper 002), and the selection recorded in the specs."""

import csv

import numpy as np
import pytest
import torch

from vfbench.errors import VfbenchError
from vfbench.export import fgsm_robust_matrix, select_images, write_specs
from vfbench.models import build_model

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
    robust = np.random.default_rng(1).random((2, 60)) < 0.7
    largest = select_images(selection, labels, 30, 3, robust)
    for n in (3, 9, 15, 27):
        assert select_images(selection, labels, n, 3, robust) == largest[:n]


def test_fgsm_agreement_keeps_images_where_all_variants_agree():
    robust = np.array([[True, False, True, False, True],
                       [True, False, False, False, True],
                       [True, False, True, True, True]])
    # image 0: robust on all; 1: attacked on all; 2 and 3: the variants disagree; 4: robust
    assert select_images("fgsm_agreement", Y[:5], 3, 3, robust) == [0, 1, 4]
    with pytest.raises(VfbenchError, match="only 3 test images, 4 wanted"):
        select_images("fgsm_agreement", Y[:5], 4, 3, robust)
    with pytest.raises(VfbenchError, match="needs the models' FGSM outcomes"):
        select_images("fgsm_agreement", Y[:5], 3, 3)


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
