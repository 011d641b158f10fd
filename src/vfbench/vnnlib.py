"""VNNLIB 1.0 (the VNN-COMP benchmarks' form) and 2.0 read into Properties, and Properties written
out.

Read: ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``; ``(assert F)`` where F nests
``and``/``or`` over atoms ``(<= s t)`` / ``(>= s t)`` (``<``/``>`` read as non-strict, as VNN-COMP
grades them). An atom is either an input bound (one X_i against a constant, either side) or a
linear constraint over outputs: terms are Y_j, numbers, ``(+ ...)``, ``(- a b)``, ``(- a)``,
``(* c t)``. Numbers in plain or scientific notation; ``;`` comments; any whitespace; a final
newline or not; ``.gz`` files as they are. The asserts are conjoined and brought to a
disjunction of conjunctions; conjunctions are grouped by their input box, so a file with a
disjunction over input boxes (``(or (and <box 1> <outputs 1>) ...)``) reads as several
Properties. Anything else is a VfbenchError naming the file, the line and what is wrong.

VNNLIB 2.0 (a file opening with ``(vnnlib-version <2.0>)``) is parsed by PyPI's ``vnnlib``
(optional: the ``vnnlib2`` extra) into the same atoms (``_read_v2``), then read as above.

Written: every number in positional notation with the fewest digits that read back to the same
float64 (some readers reject ``8.19e-06``).
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from vfbench.errors import VfbenchError
from vfbench.properties import Property

_VARIABLE = re.compile(r"^([XY])_(\d+)$")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
COMPARISONS = {"<=": 1, "<": 1, ">=": -1, ">": -1}  # lhs - rhs <= 0 (1) or rhs - lhs <= 0 (-1)
MAX_DISJUNCTS = 100_000  # beyond this a formula's disjunctive form is refused, not built


@dataclass
class _Sexp:
    items: list  # of _Sexp or (token, line)
    line: int


@dataclass
class _Atom:
    """``coeffs @ (X or Y) <= bound``; for an input bound, one X index and its side."""

    kind: str  # 'X' or 'Y'
    coeffs: dict[int, float]
    bound: float
    line: int


class _Reader:
    def __init__(self, text: str, where: str):
        self.where = where
        self.text = text

    def fail(self, line: int, what: str):
        raise VfbenchError(f"{self.where}:{line}: {what}")

    # --- s-expressions --------------------------------------------------------------------

    def parse(self) -> list[_Sexp]:
        stack: list[_Sexp] = []
        top: list[_Sexp] = []
        for number, raw in enumerate(self.text.splitlines(), start=1):
            code = raw.split(";", 1)[0]
            for token in _TOKEN.findall(code):
                if token == "(":
                    stack.append(_Sexp([], number))
                elif token == ")":
                    if not stack:
                        self.fail(number, "')' without a matching '('")
                    done = stack.pop()
                    (stack[-1].items if stack else top).append(done)
                elif not stack:
                    self.fail(number, f"{token!r} outside any expression")
                else:
                    stack[-1].items.append((token, number))
        if stack:
            self.fail(stack[-1].line, "'(' never closed")
        if not top:
            raise VfbenchError(f"{self.where}: no declarations or assertions")
        return top

    @staticmethod
    def head(sexp: _Sexp) -> str | None:
        first = sexp.items[0] if sexp.items else None
        return first[0] if isinstance(first, tuple) else None

    def number(self, item, line: int) -> float | None:
        if not isinstance(item, tuple):
            return None
        try:
            value = float(item[0])
        except ValueError:
            return None
        if not np.isfinite(value):
            self.fail(line, f"{item[0]!r} is not a finite number")
        return value

    # --- declarations and formulas ------------------------------------------------------------

    def read(self) -> tuple[dict[str, set[int]], list[list[_Atom]]]:
        declared: dict[str, set[int]] = {"X": set(), "Y": set()}
        common: list[_Atom] = []
        alternatives: list[list[list[_Atom]]] = []
        for sexp in self.parse():
            head = self.head(sexp)
            if head == "declare-const":
                self.declare(sexp, declared)
            elif head == "assert":
                if len(sexp.items) != 2:
                    self.fail(sexp.line, "assert takes exactly one formula")
                dnf = self.formula(sexp.items[1], declared, sexp.line)
                if len(dnf) == 1:
                    common.extend(dnf[0])
                else:
                    alternatives.append(dnf)
            else:
                self.fail(sexp.line, f"expected declare-const or assert, got {head!r}")
        return declared, _conjoined(common, alternatives, self.where)

    def declare(self, sexp: _Sexp, declared) -> None:
        items = sexp.items
        if len(items) != 3 or not all(isinstance(i, tuple) for i in items):
            self.fail(sexp.line, "expected (declare-const NAME Real)")
        name, sort = items[1][0], items[2][0]
        match = _VARIABLE.match(name)
        if not match:
            self.fail(sexp.line, f"variable {name!r}: only X_i (inputs) and Y_j (outputs)")
        if sort != "Real":
            self.fail(sexp.line, f"variable {name} of sort {sort!r}; only Real is supported")
        kind, index = match.group(1), int(match.group(2))
        if index in declared[kind]:
            self.fail(sexp.line, f"{name} declared twice")
        declared[kind].add(index)

    def formula(self, item, declared, line: int) -> list[list[_Atom]]:
        """The formula's disjunctive normal form: a list of conjunctions of atoms."""
        if not isinstance(item, _Sexp) or not item.items:
            self.fail(line, f"expected a formula, got {item[0] if item else '()'}")
        head = self.head(item)
        args = item.items[1:]
        if head == "and":
            out: list[list[_Atom]] = [[]]
            for arg in args:
                child = self.formula(arg, declared, item.line)
                if len(out) * len(child) > MAX_DISJUNCTS:
                    self.fail(item.line, f"expands to more than {MAX_DISJUNCTS} disjuncts")
                out = [a + b for a in out for b in child]
            return out
        if head == "or":
            if not args:
                self.fail(item.line, "empty (or)")
            return [conj for arg in args for conj in self.formula(arg, declared, item.line)]
        if head in COMPARISONS:
            return [[self.atom(item, declared)]]
        self.fail(item.line, f"unsupported formula {head!r} (supported: and, or, <=, >=, <, >)")

    def term(self, item, declared, line: int) -> tuple[dict[tuple[str, int], float], float]:
        """A linear term: ({(kind, index): coefficient}, constant)."""
        value = self.number(item, line)
        if value is not None:
            return {}, value
        if isinstance(item, tuple):
            match = _VARIABLE.match(item[0])
            if not match:
                self.fail(item[1], f"unknown symbol {item[0]!r}")
            kind, index = match.group(1), int(match.group(2))
            if index not in declared[kind]:
                self.fail(item[1], f"{item[0]} is used but not declared")
            return {(kind, index): 1.0}, 0.0
        head, args = self.head(item), item.items[1:]
        parts = [self.term(a, declared, item.line) for a in args]
        if head == "+" and parts:
            return _combine(parts, [1.0] * len(parts))
        if head == "-" and len(parts) == 1:
            return _combine(parts, [-1.0])
        if head == "-" and len(parts) >= 2:
            return _combine(parts, [1.0] + [-1.0] * (len(parts) - 1))
        if head == "*" and len(parts) == 2:
            constant = [k for k, (coeffs, _) in enumerate(parts) if not coeffs]
            if not constant:
                self.fail(item.line, "(* ...) of two variables is not linear")
            c = parts[constant[0]][1]
            other = parts[1 - constant[0]]
            return {k: c * v for k, v in other[0].items()}, c * other[1]
        self.fail(item.line, f"unsupported term {head!r} with {len(args)} argument(s)")

    def atom(self, item: _Sexp, declared) -> _Atom:
        if len(item.items) != 3:
            self.fail(item.line, f"({self.head(item)} ...) takes two arguments")
        (left, lc), (right, rc) = (self.term(a, declared, item.line) for a in item.items[1:])
        sign = COMPARISONS[self.head(item)]
        coeffs = dict(left)
        for key, value in right.items():
            coeffs[key] = coeffs.get(key, 0.0) - value
        coeffs = {k: sign * v for k, v in coeffs.items() if v != 0.0}
        bound = sign * (rc - lc)
        kinds = {kind for kind, _ in coeffs}
        if not coeffs:
            self.fail(item.line, "a comparison of constants only")
        if kinds == {"X", "Y"}:
            self.fail(item.line, "a constraint mixing inputs X and outputs Y is not supported")
        kind = kinds.pop()
        if kind == "X" and len(coeffs) != 1:
            self.fail(item.line, "only bounds on single inputs (X_i against a constant) are "
                                 "supported, not linear constraints over inputs")
        return _Atom(kind, {index: v for (_, index), v in coeffs.items()}, bound, item.line)


def _combine(parts, signs):
    coeffs: dict = {}
    constant = 0.0
    for (c, k), s in zip(parts, signs, strict=True):
        for key, value in c.items():
            coeffs[key] = coeffs.get(key, 0.0) + s * value
        constant += s * k
    return coeffs, constant


def _conjoined(common: list[_Atom], alternatives: list[list[list[_Atom]]], where: str
               ) -> list[list[_Atom]]:
    """The conjunction of the asserts (``common`` atoms, and one disjunctive form per assert
    that has several disjuncts) as one disjunction of conjunctions."""
    size = 1
    for dnf in alternatives:
        size *= len(dnf)
        if size > MAX_DISJUNCTS:
            raise VfbenchError(f"{where}: the asserts expand to more than {MAX_DISJUNCTS} "
                               "disjuncts")
    return [common + [a for conj in choice for a in conj] for choice in product(*alternatives)]


# --- VNNLIB 2.0, through PyPI's vnnlib ------------------------------------------------------

_V2_HEADER = re.compile(r"^\s*(;[^\n]*\n\s*)*\(\s*vnnlib-version\b")


def is_vnnlib2(text: str) -> bool:
    """A VNNLIB 2.0 file opens with ``(vnnlib-version <2.0>)`` (after comments)."""
    return bool(_V2_HEADER.match(text))


def _read_v2(text: str, where: str) -> tuple[dict[str, set[int]], list[list[_Atom]]]:
    """(declared, conjunctions) as ``_Reader.read`` gives them, from a VNNLIB 2.0 file parsed
    by PyPI's ``vnnlib`` (the 2.0 reference parser): one network with one input and one output
    tensor (flattened in C order to X_i / Y_j); comparisons <=, <, >=, > (strict read as
    non-strict, as in 1.0); each one an input bound or a linear constraint over outputs."""
    try:
        import vnnlib as v2
    except ImportError as exc:
        raise VfbenchError(f"{where}: a VNNLIB 2.0 file needs PyPI's vnnlib package: pip "
                           "install 'vnnlib==1.0.2' (or the extra: vfbench[vnnlib2])") from exc
    try:
        query = v2.parse_query_string(text)
    except v2.VNNLibException as exc:
        raise VfbenchError(f"{where}: VNNLIB 2.0: {exc}") from exc
    if len(query.networks) != 1:
        raise VfbenchError(f"{where}: VNNLIB 2.0 with {len(query.networks)} networks; one "
                           "is supported")
    (network,) = query.networks
    if len(network.inputs) != 1 or len(network.outputs) != 1 or network.hidden:
        raise VfbenchError(f"{where}: network {network.name}: one input and one output tensor "
                           "(and no hidden ones) are supported")
    shapes = {"X": list(network.inputs[0].shape), "Y": list(network.outputs[0].shape)}
    declared = {kind: set(range(int(np.prod(shape)))) for kind, shape in shapes.items()}
    kinds = {"Input": "X", "Output": "Y"}

    def atom(comparison) -> _Atom:
        name = type(comparison).__name__
        sign = {"LessEqual": 1, "LessThan": 1, "GreaterEqual": -1, "GreaterThan": -1}.get(name)
        if sign is None:
            raise VfbenchError(f"{where}: comparison {comparison} ({name}) is not supported; "
                               "only <=, <, >=, >")
        coeffs: dict[tuple[str, int], float] = {}
        constant, line = 0.0, 0
        for side, s in ((comparison.lhs, sign), (comparison.rhs, -sign)):
            linear = side.to_linear_expr()
            constant += s * linear.constant
            for term in linear.terms:
                kind = kinds.get(term.var.kind.name)
                if kind is None:
                    raise VfbenchError(f"{where}:{term.var.line}: {term.var_name} is not the "
                                       "network's input or output")
                flat = int(np.ravel_multi_index(tuple(term.var.indices), shapes[kind]))
                coeffs[(kind, flat)] = coeffs.get((kind, flat), 0.0) + s * term.coeff
                line = term.var.line
        coeffs = {k: c for k, c in coeffs.items() if c != 0.0}
        kinds_used = {k for k, _ in coeffs}
        if not kinds_used:
            raise VfbenchError(f"{where}:{line}: {comparison} compares constants only")
        if kinds_used == {"X"} and len(coeffs) != 1:
            raise VfbenchError(f"{where}:{line}: {comparison}: an input constraint must bound "
                               "one input by a constant")
        if len(kinds_used) > 1:
            raise VfbenchError(f"{where}:{line}: {comparison} mixes inputs and outputs")
        return _Atom(kinds_used.pop(), {i: c for (_, i), c in coeffs.items()}, -constant, line)

    common: list[_Atom] = []
    alternatives = []
    for assertion in query.assertions:
        dnf = [[atom(c) for c in conj] for conj in assertion.expr.to_dnf()]
        if len(dnf) == 1:
            common.extend(dnf[0])
        else:
            alternatives.append(dnf)
    return declared, _conjoined(common, alternatives, where)


def read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt") as fh:
                return fh.read()
        return path.read_text()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise VfbenchError(f"{path}: cannot read ({exc})") from exc


def read_vnnlib(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None,
                num_outputs: int | None = None) -> list[Property]:
    """The Properties a VNNLIB file states (one per distinct input box), unsafe iff any is.

    ``input_shape`` (one input, no batch dimension) and ``num_outputs``: the ONNX model's; the
    file's X/Y declarations must match them in number.
    """
    return parse_vnnlib(read_text(path), str(path), input_shape, num_outputs)


def parse_vnnlib(text: str, where: str = "<vnnlib>", input_shape: tuple[int, ...] | None = None,
                 num_outputs: int | None = None) -> list[Property]:
    declared, conjunctions = (_read_v2(text, where) if is_vnnlib2(text)
                              else _Reader(text, where).read())
    n_in, n_out = _check_declared(declared, where, input_shape, num_outputs)
    shape = tuple(input_shape) if input_shape is not None else (n_in,)
    boxes: dict[tuple, tuple[np.ndarray, np.ndarray, list]] = {}
    for conj in conjunctions:
        lower, upper = np.full(n_in, -np.inf), np.full(n_in, np.inf)
        lower_line, upper_line = np.zeros(n_in, int), np.zeros(n_in, int)
        rows, bounds = [], []
        for atom in conj:
            if atom.kind == "X":
                ((i, c),) = atom.coeffs.items()
                value = atom.bound / c
                if c > 0 and value < upper[i]:
                    upper[i], upper_line[i] = value, atom.line
                elif c < 0 and value > lower[i]:
                    lower[i], lower_line[i] = value, atom.line
            else:
                row = np.zeros(n_out)
                for j, v in atom.coeffs.items():
                    row[j] = v
                rows.append(row)
                bounds.append(atom.bound)
        unbounded = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
        if unbounded.size:
            i = int(unbounded[0])
            side = "lower" if not np.isfinite(lower[i]) else "upper"
            raise VfbenchError(f"{where}: X_{i} has no {side} bound ({unbounded.size} inputs "
                               "unbounded); every input needs both")
        empty = np.flatnonzero(lower > upper)
        if empty.size:
            i = int(empty[0])
            raise VfbenchError(f"{where}:{max(lower_line[i], upper_line[i])}: empty input box: "
                               f"X_{i} >= {float(lower[i])!r} (line {lower_line[i]}) and "
                               f"<= {float(upper[i])!r} (line {upper_line[i]})")
        if not rows:
            raise VfbenchError(f"{where}: a disjunct constrains no output Y: the unsafe "
                               "region would be the whole box")
        key = (lower.tobytes(), upper.tobytes())
        entry = boxes.setdefault(key, (lower, upper, []))
        entry[2].append((np.stack(rows), np.array(bounds)))
    return [Property(lower.reshape(shape), upper.reshape(shape), disjuncts,
                     description=f"{where}" + (f" (input box {k + 1} of {len(boxes)})"
                                               if len(boxes) > 1 else ""))
            for k, (lower, upper, disjuncts) in enumerate(boxes.values())]


def _check_declared(declared, where, input_shape, num_outputs) -> tuple[int, int]:
    sizes = {}
    for kind, expected, what in (("X", None if input_shape is None
                                  else int(np.prod(input_shape)), "input"),
                                 ("Y", num_outputs, "output")):
        indices = declared[kind]
        n = len(indices)
        if indices != set(range(n)):
            missing = min(set(range(max(indices) + 1)) - indices)
            raise VfbenchError(f"{where}: {kind}_{missing} is not declared (the {what}s must be "
                               f"{kind}_0 .. {kind}_{max(indices)})")
        if n == 0:
            raise VfbenchError(f"{where}: declares no {what} variables {kind}_i")
        if expected is not None and n != expected:
            raise VfbenchError(f"{where}: declares {n} {what}s {kind}_0..{kind}_{n - 1} but the "
                               f"ONNX model has {expected}")
        sizes[kind] = n
    return sizes["X"], sizes["Y"]


# --- writing --------------------------------------------------------------------------------

def positional(value: float) -> str:
    """``value`` in positional notation, the fewest digits that read back to the same float64."""
    return np.format_float_positional(float(value), unique=True, trim="0")


def _output_constraint(row: np.ndarray, bound: float) -> str:
    """``row @ y <= bound`` in the forms tools read: positive terms on the left, the bound and
    the negated negative terms on the right, a plain ``Y_j`` for a unit coefficient. (Marabou
    2.0's reader fails on a product inside a sum, ``(+ (* 2.0 Y_1) ...)``; it reads ``(* 2.0
    Y_1)`` alone on a side and sums of plain variables and constants. A side that needs a
    product inside a sum is still written, as valid VNNLIB.)"""
    nonzero = np.flatnonzero(row)
    # y_a - y_b <= 0 is written as VNN-COMP benchmarks write it: (>= Y_b Y_a)
    if bound == 0 and len(nonzero) == 2 and sorted(row[nonzero]) == [-1.0, 1.0]:
        a = int(nonzero[row[nonzero] > 0][0])
        b = int(nonzero[row[nonzero] < 0][0])
        return f"(>= Y_{b} Y_{a})"

    def term(j: int, coeff: float) -> str:
        return f"Y_{j}" if coeff == 1.0 else f"(* {positional(coeff)} Y_{j})"

    def side(items: list[str]) -> str:
        return items[0] if len(items) == 1 else f"(+ {' '.join(items)})"

    left = [term(j, row[j]) for j in nonzero if row[j] > 0]
    right = [term(j, -row[j]) for j in nonzero if row[j] < 0]
    if not left:  # every coefficient negative: -sum <= b is sum >= -b
        return f"(>= {side(right)} {positional(-bound)})"
    constant = [positional(bound)] if bound != 0 or not right else []
    return f"(<= {side(left)} {side(constant + right)})"


def vnnlib_text(properties: Property | list[Property], comment: str | None = None) -> str:
    """VNNLIB 1.0 text stating ``properties`` (unsafe iff any is)."""
    props = [properties] if isinstance(properties, Property) else list(properties)
    n_in = props[0].lower.size
    n_out = props[0].num_outputs
    lines = [f"; {line}" for line in (comment or props[0].description).splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]

    def outputs(prop: Property) -> list[str]:
        return ["(and " + " ".join(_output_constraint(r, b) for r, b in zip(A, b_, strict=True))
                + ")" for A, b_ in prop.disjuncts]

    if len(props) == 1:
        prop = props[0]
        for i, (lo, hi) in enumerate(zip(prop.lower.reshape(-1), prop.upper.reshape(-1),
                                         strict=True)):
            lines.append(f"(assert (<= X_{i} {positional(hi)}))")
            lines.append(f"(assert (>= X_{i} {positional(lo)}))")
        lines.append("(assert (or " + " ".join(outputs(prop)) + "))")
    else:
        cases = []
        for prop in props:
            box = " ".join(f"(<= X_{i} {positional(hi)}) (>= X_{i} {positional(lo)})"
                           for i, (lo, hi) in enumerate(zip(prop.lower.reshape(-1),
                                                            prop.upper.reshape(-1), strict=True)))
            cases += [f"(and {box} {o[5:-1]})" for o in outputs(prop)]
        lines.append("(assert (or " + " ".join(cases) + "))")
    return "\n".join(lines) + "\n"
