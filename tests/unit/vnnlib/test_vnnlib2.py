"""VNNLIB 2.0 through PyPI's vnnlib (the format's reference parser): read into the same
Properties as the equivalent 1.0 file; bad 2.0 input is an error naming the file."""

import numpy as np
import pytest

from vfbench.errors import VfbenchError
from vfbench.vnnlib import is_vnnlib2, parse_vnnlib

pytest.importorskip("vnnlib")

V2 = """; a 2.0 file
(vnnlib-version <2.0>)
(declare-network N
  (declare-input X float32 [2, 2])
  (declare-output Y float32 [3])
)
(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 0.5)
             (>= X[1,0] 0.2) (<= X[1,0] 0.25) (<= X[1,1] 3.0) (> X[1,1] 1.5)))
(assert (or (and (>= Y[1] Y[0]) (>= (+ Y[2] 0.5) Y[0])) (<= (* 2.0 Y[2]) -3.5)))
"""

V1 = """(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const X_2 Real)
(declare-const X_3 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_0 -1.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 0.5))
(assert (>= X_2 0.2))\n(assert (<= X_2 0.25))\n(assert (<= X_3 3))\n(assert (>= X_3 1.5))
(assert (or (and (>= Y_1 Y_0) (>= (+ Y_2 0.5) Y_0)) (and (<= (* 2.0 Y_2) -3.5))))
"""


def test_a_2_0_file_reads_as_its_1_0_twin():
    assert is_vnnlib2(V2) and not is_vnnlib2(V1)
    (two,) = parse_vnnlib(V2, "two.vnnlib", (2, 2), 3)
    (one,) = parse_vnnlib(V1, "one.vnnlib", (2, 2), 3)
    np.testing.assert_array_equal(two.lower, one.lower)
    np.testing.assert_array_equal(two.upper, one.upper)
    assert len(two.disjuncts) == len(one.disjuncts) == 2
    for (a2, b2), (a1, b1) in zip(two.disjuncts, one.disjuncts, strict=True):
        np.testing.assert_allclose(a2, a1)
        np.testing.assert_allclose(b2, b1)
    assert two.is_unsafe(np.array([0.0, 0.0, -0.5]))  # the conjunction, with its tie
    assert not two.is_unsafe(np.array([0.0, 1.0, -0.6]))


@pytest.mark.parametrize("text, message", [
    (V2.replace("(declare-output Y float32 [3])", "(declare-output Y float32 [3]"),
     "two.vnnlib: VNNLIB 2.0"),
    (V2.replace("(<= (* 2.0 Y[2]) -3.5)", "(== Y[2] -3.5)"), "two.vnnlib"),
    (V2.replace("(>= Y[1] Y[0])", "(>= Y[1] X[0,0])"), "mixes inputs and outputs"),
])
def test_bad_2_0_input_is_an_error_naming_the_file(text, message):
    with pytest.raises(VfbenchError, match=message):
        parse_vnnlib(text, "two.vnnlib", (2, 2), 3)


def test_a_2_0_file_must_match_the_model():
    with pytest.raises(VfbenchError, match="declares 3 outputs"):
        parse_vnnlib(V2, "two.vnnlib", (2, 2), 4)
