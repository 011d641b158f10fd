"""VNNLIB 1.0 reading (the forms VNN-COMP benchmarks use), writing, and the robustness property."""

import gzip
import re

import numpy as np
import pytest

from vfbench.errors import VfbenchError
from vfbench.properties import Property, robustness_property
from vfbench.specs import vnnlib_text as export_vnnlib_text
from vfbench.vnnlib import parse_vnnlib, positional, read_vnnlib, vnnlib_text

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
BOX = "(assert (<= X_0 1.0))\n(assert (>= X_0 -1.0))\n(assert (<= X_1 2e-1))\n(assert (>= X_1 0))\n"


def parse(body, **kw):
    return parse_vnnlib(HEADER + BOX + body, "t.vnnlib", **kw)


def test_robustness_property_reads_back_exactly_as_the_export_writes_it():
    x = np.random.default_rng(0).random((1, 3, 3)).astype(np.float32)
    x[0, 0, 0] = 0.0  # clipped at 0
    x[0, 1, 1] = 1.0  # clipped at 1
    x[0, 2, 2] = 8.19e-06  # tiny: positional notation
    text = export_vnnlib_text(x, 2, 0.02, 4)
    assert not re.search(r"\de-?\d", text.replace("X_", "").replace("Y_", ""))
    assert "(assert (or (and (>= Y_0 Y_2)) (and (>= Y_1 Y_2)) (and (>= Y_3 Y_2))))" in text
    (prop,) = parse_vnnlib(text, "p", input_shape=(1, 3, 3), num_outputs=4)
    want = robustness_property(x, 2, 0.02, 4)
    assert np.array_equal(prop.lower, want.lower) and np.array_equal(prop.upper, want.upper)
    assert want.lower[0, 0, 0] == 0 and want.upper[0, 1, 1] == 1
    assert len(prop.disjuncts) == 3
    for (A, b), (A2, b2) in zip(prop.disjuncts, want.disjuncts, strict=True):
        assert np.array_equal(A, A2) and np.array_equal(b, b2)
    # unsafe iff another class scores >= the label, ties included
    assert prop.is_unsafe([0, 0, 1, 1]) and prop.is_unsafe([0, 0.5, 0.4, 0])
    assert not prop.is_unsafe([0, 0, 1, 0.999])


@pytest.mark.parametrize("value", [8.19e-06, 0.1, 1 / 3, -2.5e-12, 123456.789, 0.0, 1e22])
def test_positional_numbers_read_back_to_the_same_float(value):
    text = positional(value)
    assert "e" not in text and float(text) == value


def test_forms_used_by_vnncomp_benchmarks():
    body = ("; comment line\n(assert (or\n\t(and (>= Y_0 Y_1) (<= Y_2 Y_0))  ; trailing comment\n"
            "\t(and (<= (+ Y_1 (* -2 Y_2)) 3.5E-1) (>= (- Y_0 Y_1) -1))\n))")  # no final newline
    (prop,) = parse(body)
    assert prop.lower.tolist() == [-1.0, 0.0] and prop.upper.tolist() == [1.0, 0.2]
    (A1, b1), (A2, b2) = prop.disjuncts
    assert A1.tolist() == [[-1, 1, 0], [-1, 0, 1]] and b1.tolist() == [0, 0]
    assert A2.tolist() == [[0, 1, -2], [-1, 1, 0]] and b2.tolist() == [0.35, 1]
    assert prop.is_unsafe([1, 3, 1]) is False  # first: y0 >= y1 fails; second: 3 - 2 > .35
    assert prop.is_unsafe([1, 1.5, 1])  # second disjunct: 1.5-2 <= .35 and .5 <= 1


def test_constant_on_the_left_and_strict_comparisons():
    (prop,) = parse_vnnlib(HEADER + "(assert (>= 1 X_0))(assert (< -1 X_0))(assert (<= X_1 1))"
                           "(assert (> X_1 0))(assert (< 0.5 Y_2))", "t")
    assert prop.lower.tolist() == [-1, 0] and prop.upper.tolist() == [1, 1]
    assert prop.disjuncts[0][0].tolist() == [[0, 0, -1]] and prop.disjuncts[0][1].tolist() == [-0.5]


def test_disjunction_over_input_boxes_gives_one_property_per_box(tmp_path):
    text = (HEADER + "(assert (or (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (>= Y_0 Y_1))"
            " (and (<= X_0 3) (>= X_0 2) (<= X_1 1) (>= X_1 0) (>= Y_2 Y_1))"
            " (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (>= Y_0 Y_2))))")
    path = tmp_path / "p.vnnlib.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    props = read_vnnlib(path, input_shape=(1, 2, 1), num_outputs=3)
    assert len(props) == 2
    assert props[0].input_shape == (1, 2, 1) and len(props[0].disjuncts) == 2
    assert props[1].lower.reshape(-1).tolist() == [2, 0]
    again = parse_vnnlib(vnnlib_text(props), "again", (1, 2, 1), 3)
    assert [len(p.disjuncts) for p in again] == [2, 1]
    assert np.array_equal(again[1].upper, props[1].upper)


def test_general_property_round_trips_through_the_writer():
    prop = Property(np.array([[-3.5, 1e-7]]), np.array([[2.0, 8.19e-06]]),
                    [(np.array([[1.0, -0.25, 0.0], [0, 0, 1.0]]), np.array([0.5, -1e-9]))])
    text = vnnlib_text(prop)
    assert not re.search(r"\d[eE]", text.replace("X_", "").replace("Y_", ""))
    (back,) = parse_vnnlib(text, "w", (1, 2), 3)
    assert np.array_equal(back.lower, prop.lower) and np.array_equal(back.upper, prop.upper)
    assert np.array_equal(back.disjuncts[0][0], prop.disjuncts[0][0])
    assert np.array_equal(back.disjuncts[0][1], prop.disjuncts[0][1])


@pytest.mark.parametrize("body, message", [
    ("(assert (>= Y_0 Y_1)", r"t.vnnlib:10: '\(' never closed"),
    ("(assert (>= Y_0 Y_1)))", r"t.vnnlib:10: '\)' without"),
    ("(assert (>= Y_0 Y_7))", r":10: Y_7 is used but not declared"),
    ("(assert (>= Y_0 (* Y_1 Y_2)))", r":10: \(\* \.\.\.\) of two variables"),
    ("(assert (>= (+ X_0 Y_1) 0))", ":10: a constraint mixing inputs"),
    ("(assert (>= (+ X_0 X_1) 0))", ":10: only bounds on single inputs"),
    ("(assert (not (>= Y_0 Y_1)))", r":10: unsupported formula 'not'"),
    ("(assert (>= Y_0 nan))", r":10: 'nan' is not a finite number"),
    ("(assert (>= Y_0 1e))", r":10: unknown symbol '1e'"),
    ("(assert (>= X_0 1.5))\n(assert (>= Y_0 Y_1))", r":10: empty input box: X_0 >= 1.5"),
    ("(check-sat)", ":10: expected declare-const or assert"),
    ("(declare-const Z_0 Real)", r":10: variable 'Z_0'"),
    ("(declare-const X_0 Real)", ":10: X_0 declared twice"),
    ("", "constrains no output"),
])
def test_bad_files_name_line_and_problem(body, message):
    with pytest.raises(VfbenchError, match=message):
        parse(body)


def test_counts_must_match_the_model():
    with pytest.raises(VfbenchError, match="declares 2 inputs X_0..X_1 but the ONNX model has 4"):
        parse("(assert (>= Y_0 Y_1))", input_shape=(1, 2, 2))
    with pytest.raises(VfbenchError, match="declares 3 outputs .* has 10"):
        parse("(assert (>= Y_0 Y_1))", num_outputs=10)
    with pytest.raises(VfbenchError, match="X_1 has no lower bound"):
        parse_vnnlib(HEADER + "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))"
                     "(assert (>= Y_0 Y_1))", "t")
    with pytest.raises(VfbenchError, match="X_0 is not declared"):
        parse_vnnlib("(declare-const X_1 Real)(declare-const Y_0 Real)", "t")


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(VfbenchError, match="cannot read"):
        read_vnnlib(tmp_path / "none.vnnlib")
    (tmp_path / "bad.vnnlib.gz").write_text("not gzip")
    with pytest.raises(VfbenchError, match="bad.vnnlib.gz: cannot read"):
        read_vnnlib(tmp_path / "bad.vnnlib.gz")
