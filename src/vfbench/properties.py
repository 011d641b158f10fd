"""A verification property as a VNNLIB file states it, and the robustness ball as one of them.

A ``Property`` is an input box and an unsafe output region:

- ``lower``/``upper``: float64 arrays in the shape of one ONNX input without its batch
  dimension (``OnnxModel.input_shape``), in the ONNX input's own space: nothing is clipped to
  [0, 1] or normalised here. Flattened in C order they are X_0, X_1, ...
- ``disjuncts``: a list of ``(A, b)`` with A of shape (m, K) over the K outputs Y_0..Y_{K-1} and
  b of shape (m,). The outputs y are *unsafe* (a counterexample, VNN-COMP ``sat``) iff some
  disjunct holds entirely: ``A @ y <= b`` row by row. Non-strict, as VNN-COMP grades it: a tie
  ``Y_j == Y_label`` satisfies ``(>= Y_j Y_label)``.

"verified" means no input of the box has unsafe outputs; "falsified" comes with an input of the
box whose outputs (onnxruntime, float32) are unsafe.

A VNNLIB file may state a disjunction over input boxes too; it then reads as a list of
Properties, unsafe iff any of them is (``vfbench.vnnlib.read_vnnlib``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vfbench.errors import VfbenchError


@dataclass
class Property:
    lower: np.ndarray
    upper: np.ndarray
    disjuncts: list[tuple[np.ndarray, np.ndarray]]
    # What the property is, for messages and files (e.g. "robustness: label 3, eps 0.02").
    description: str = ""
    # The robustness ball's label when the property is one (campaign records need it).
    label: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.lower = np.asarray(self.lower, dtype=np.float64)
        self.upper = np.asarray(self.upper, dtype=np.float64)
        if self.lower.shape != self.upper.shape:
            raise VfbenchError(f"property {self.description!r}: lower {self.lower.shape} and "
                               f"upper {self.upper.shape} bounds differ in shape")
        if not (np.isfinite(self.lower).all() and np.isfinite(self.upper).all()):
            raise VfbenchError(f"property {self.description!r}: the input box is not finite")
        empty = np.flatnonzero(self.lower.reshape(-1) > self.upper.reshape(-1))
        if empty.size:
            i = int(empty[0])
            raise VfbenchError(f"property {self.description!r}: empty input box, X_{i} has "
                               f"lower {float(self.lower.reshape(-1)[i])!r} > upper "
                               f"{float(self.upper.reshape(-1)[i])!r}")
        if not self.disjuncts:
            raise VfbenchError(f"property {self.description!r}: no output condition")
        checked = []
        for A, b in self.disjuncts:
            A = np.atleast_2d(np.asarray(A, dtype=np.float64))
            b = np.asarray(b, dtype=np.float64).reshape(-1)
            if A.shape[0] != b.shape[0] or A.shape[1] != self.num_outputs_of(self.disjuncts):
                raise VfbenchError(f"property {self.description!r}: a disjunct has A "
                                   f"{A.shape} and b {b.shape}")
            checked.append((A, b))
        self.disjuncts = checked

    @staticmethod
    def num_outputs_of(disjuncts) -> int:
        return int(np.atleast_2d(np.asarray(disjuncts[0][0])).shape[1])

    @property
    def num_outputs(self) -> int:
        return self.num_outputs_of(self.disjuncts)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.lower.shape)

    def unsafe_slack(self, y: np.ndarray) -> float:
        """max over disjuncts of min over rows of (b - A @ y), in float64: >= 0 exactly when the
        outputs ``y`` (K,) are unsafe. What a falsifier maximises."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return max(float((b - A @ y).min()) for A, b in self.disjuncts)

    def is_unsafe(self, y: np.ndarray) -> bool:
        return self.unsafe_slack(y) >= 0

    def contains(self, x: np.ndarray) -> bool:
        """Whether the point (its float32 values compared in float64) lies in the box."""
        x = np.asarray(x, dtype=np.float64).reshape(self.lower.shape)
        return bool(((x >= self.lower) & (x <= self.upper)).all())

    def clip_into_box(self, x: np.ndarray) -> np.ndarray:
        """``x`` as float32 in the input shape, moved (by at most one float32 step past the
        float64 clipping) so that every value lies in [lower, upper]."""
        point = np.clip(np.asarray(x, dtype=np.float64).reshape(self.lower.shape),
                        self.lower, self.upper).astype(np.float32)
        point = np.where(point < self.lower, np.nextafter(point, np.float32(np.inf)), point)
        point = np.where(point > self.upper, np.nextafter(point, np.float32(-np.inf)), point)
        return point.astype(np.float32)


def robustness_property(x: np.ndarray, label: int, eps: float, num_classes: int) -> Property:
    """The campaign's property around image ``x`` (pixel space): the box is the L-inf ball of
    radius eps clipped to [0, 1] (computed in float64 from the float32 pixels), unsafe iff some
    other class scores at least the label's: one disjunct ``y_label - y_j <= 0`` per j."""
    label = int(label)
    if not 0 <= label < num_classes:
        raise VfbenchError(f"label {label} outside 0..{num_classes - 1}")
    center = np.asarray(x, dtype=np.float32).astype(np.float64)
    eye = np.eye(num_classes)
    disjuncts = [((eye[label] - eye[j])[None], np.zeros(1))
                 for j in range(num_classes) if j != label]
    return Property(np.clip(center - eps, 0.0, 1.0), np.clip(center + eps, 0.0, 1.0), disjuncts,
                    description=f"robustness: label {label}, eps {eps!r}, {center.size} inputs "
                                "in [0, 1]", label=label)
