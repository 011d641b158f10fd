"""External VNN-COMP tools: the script calls, the result file, and trust only where it is due.

The tool here is a shell script answering from a file the test writes, so each verdict path is
exercised with a known answer.
"""

from __future__ import annotations

import stat
import time

import numpy as np
import pytest
import torch

from vfbench.attacks import pgd_attack
from vfbench.errors import VfbenchError
from vfbench.specs import vnnlib_text
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.verifiers import VERIFIERS
from vfbench.verify.vnncomp import parse_result

RUN = """#!/bin/bash
# VNN-COMP: run_instance.sh v1 <category> <onnx> <vnnlib> <result_file> <timeout>
here="$(cd "$(dirname "$0")" && pwd)"
echo "$@" > "$here/run_args.txt"
echo "${VFBENCH_TOOL_SETTING:-unset}" > "$here/env.txt"
cp "$4" "$here/seen.vnnlib"
if [ -f "$here/sleep" ]; then sleep "$(cat "$here/sleep")"; fi
if [ -f "$here/answer.txt" ]; then cp "$here/answer.txt" "$5"; fi
if [ -f "$here/status" ]; then exit "$(cat "$here/status")"; fi
"""
PREPARE = """#!/bin/bash
here="$(cd "$(dirname "$0")" && pwd)"
echo "$@" >> "$here/prepare_args.txt"
"""
EPS = 0.05


def _script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tool(tmp_path):
    folder = tmp_path / "fake-tool"
    folder.mkdir()
    _script(folder / "run_instance.sh", RUN)
    _script(folder / "prepare_instance.sh", PREPARE)
    return folder


@pytest.fixture(scope="module")
def mlp(mlp_onnx):
    return load_onnx(mlp_onnx)


@pytest.fixture(scope="module")
def instance(synthetic):
    x, y = synthetic
    return x[207], int(y[207])  # not robust at EPS: PGD finds a counterexample


def _answer(tool, text):
    (tool / "answer.txt").write_text(text)


def _assignment(x: np.ndarray, y: np.ndarray) -> str:
    lines = [f"(X_{i} {v!r})" for i, v in enumerate(x.reshape(-1).tolist())]
    lines += [f"(Y_{j} {v!r})" for j, v in enumerate(y.reshape(-1).tolist())]
    return "sat\n(" + "\n ".join(lines) + ")\n"


def _verify(mlp, tool, instance, timeout_s=30.0, eps=EPS, **options):
    x, label = instance
    verifier = VERIFIERS["vnncomp"](mlp, {"pgd_steps": 0, "tool": str(tool), **options}, "cpu",
                                    name="fake")
    return verifier.verify(x, label, eps, timeout_s, image=7)


def test_unsat_is_verified_on_the_tools_word(mlp, mlp_onnx, tool, instance):
    _answer(tool, "unsat\n")
    record = _verify(mlp, tool, instance)
    assert record["status"] == "verified" and record["external"] == "fake-tool"
    args = (tool / "run_args.txt").read_text().split()
    assert args[:3] == ["v1", "vfbench", str(mlp_onnx)] and args[5] == "30"
    assert (tool / "prepare_args.txt").read_text().split()[:3] == ["v1", "vfbench",
                                                                    str(mlp_onnx)]
    x, label = instance
    assert (tool / "seen.vnnlib").read_text() == vnnlib_text(x.numpy(), label, EPS, 3)


def test_sat_with_a_true_counterexample_is_falsified(mlp, tool, instance):
    x, label = instance
    adv = pgd_attack(mlp, x[None], torch.tensor([label]), EPS, steps=50, restarts=3,
                     loss="margin", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = mlp(adv)
    assert int(logits.argmax()) != label
    _answer(tool, _assignment(adv.numpy(), logits.numpy()))
    record = _verify(mlp, tool, instance)
    assert record["status"] == "falsified" and record["external"] is None
    np.testing.assert_allclose(np.asarray(record["counterexample"]), adv[0].numpy(), atol=1e-6)


def test_sat_with_a_wrong_counterexample_is_unknown_with_the_reason(mlp, tool, instance):
    x, _ = instance
    _answer(tool, _assignment(x.numpy(), np.zeros(3)))  # the image itself: correctly classified
    record = _verify(mlp, tool, instance, eps=0.001)  # robust there: no refinement rescues it
    assert record["status"] == "unknown" and "PGD steps" in record["error"]


def test_a_counterexample_on_the_decision_boundary_is_refined(mlp, tool, instance):
    """Marabou-style: the tool's point lies where onnxruntime still (barely) gives the label."""
    x, label = instance
    adv = pgd_attack(mlp, x[None], torch.tensor([label]), EPS, steps=50, restarts=3,
                     loss="margin", generator=torch.Generator().manual_seed(0))[0]

    def wrong(point):
        with torch.no_grad():
            logits = mlp(torch.as_tensor(point)[None])[0]
        return bool(torch.cat([logits[:label], logits[label + 1:]]).max() > logits[label])

    low, high = 0.0, 1.0  # bisect the segment image -> adversarial point to the boundary
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (low, mid) if wrong(x + mid * (adv - x)) else (mid, high)
    boundary = x + low * (adv - x)
    assert not wrong(boundary)
    _answer(tool, _assignment(boundary.numpy(), np.zeros(3)))
    record = _verify(mlp, tool, instance)
    assert record["status"] == "falsified" and record["error"] is None
    assert wrong(np.asarray(record["counterexample"], dtype=np.float32))


def test_a_failing_tool_is_an_error_even_with_a_result(mlp, tool, instance):
    _answer(tool, "unsat\n")
    (tool / "status").write_text("3")
    record = _verify(mlp, tool, instance)
    assert record["status"] == "error" and "exited with status 3" in record["error"]


def test_prepare_runs_once_per_model_and_env_reaches_the_tool(mlp, tool, instance, synthetic):
    _answer(tool, "unsat\n")
    x, y = synthetic
    verifier = VERIFIERS["vnncomp"](mlp, {"pgd_steps": 0, "tool": str(tool),
                                          "env": {"VFBENCH_TOOL_SETTING": 1}}, name="fake")
    (tool / "sleep").write_text("1.5")  # prepare's time is not an image's
    records = [verifier.verify(x[i], int(y[i]), EPS, 30.0, image=i) for i in (200, 201)]
    assert [r["status"] for r in records] == ["verified", "verified"]
    assert len((tool / "prepare_args.txt").read_text().splitlines()) == 1
    assert verifier.prepare_time_s is not None
    assert (tool / "env.txt").read_text().strip() == "1"


@pytest.mark.parametrize("answer, status", [("timeout", "timeout"), ("timed-out", "timeout"),
                                            ("holds", "verified"), ("unknown", "unknown"),
                                            ("error", "error"), ("banana", "error"),
                                            ("sat\n((X_0 0.5))", "error")])
def test_other_answers(mlp, tool, instance, answer, status):
    _answer(tool, answer + "\n")
    assert _verify(mlp, tool, instance)["status"] == status


def test_no_result_file_is_an_error(mlp, tool, instance):
    record = _verify(mlp, tool, instance)
    assert record["status"] == "error" and "no result file" in record["error"]


def test_a_tool_running_past_its_timeout_is_killed(mlp, tool, instance):
    (tool / "sleep").write_text("60")
    _answer(tool, "unsat\n")
    start = time.perf_counter()
    record = _verify(mlp, tool, instance, timeout_s=1.0, grace_s=1)
    assert record["status"] == "timeout" and time.perf_counter() - start < 20


def test_a_tool_needs_its_scripts(mlp, tool, tmp_path):
    with pytest.raises(VfbenchError, match="'tool'"):
        VERIFIERS["vnncomp"](mlp, {}, "cpu")
    (tool / "prepare_instance.sh").chmod(0o644)
    with pytest.raises(VfbenchError, match="not executable"):
        VERIFIERS["vnncomp"](mlp, {"tool": str(tool)}, "cpu")
    with pytest.raises(VfbenchError, match="not found"):
        VERIFIERS["vnncomp"](mlp, {"tool": str(tmp_path / "nowhere")}, "cpu")


def test_parse_result():
    result = parse_result("sat\n((X_1 0.25)\n (X_0 1e-3)\n (Y_0 -2) (Y_1 3.5))\n", 2)
    assert result.verdict == "sat"
    np.testing.assert_allclose(result.x, [1e-3, 0.25])
    np.testing.assert_allclose(result.y, [-2, 3.5])
    assert parse_result("UNSAT\n", 2).verdict == "unsat"
    # VNNLIB 2.0 tools write SMT-LIB definitions, negative values as (- v)
    result = parse_result("sat\n(define-fun X_0 () Real 0.5)\n(define-fun X_1 () Real (- 2e-3))"
                          "\n(define-fun Y_0 () Real 1.0)", 2)
    np.testing.assert_allclose(result.x, [0.5, -2e-3])
    np.testing.assert_allclose(result.y, [1.0])
    with pytest.raises(VfbenchError, match="X_1"):
        parse_result("sat\n((X_0 0.1))", 2)
    with pytest.raises(VfbenchError, match="empty"):
        parse_result("\n", 2)


def test_vfbench_own_tool_folder_through_the_adapter(mlp, instance, tmp_path):
    """vfbench entered as a VNN-COMP tool (vnncomp/ at the repository root), called by its
    own vnncomp adapter: the same verdict as its crown verifier directly."""
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[3] / "vnncomp"
    x, label = instance
    options = {"pgd_steps": 0, "tool": str(tool), "grace_s": 60,
               "env": {"VFBENCH_PYTHON": sys.executable, "VFBENCH_VERIFIER": "crown"}}
    through_tool = VERIFIERS["vnncomp"](mlp, options, name="vfbench").verify(x, label, 0.01, 60)
    direct = VERIFIERS["crown"](mlp, {"pgd_steps": 0}).verify(x, label, 0.01, 60)
    assert through_tool["status"] == direct["status"] == "verified"
    assert through_tool["external"] == "vnncomp"
