"""vfbench as a VNN-COMP tool: a benchmark of small networks made here (inputs in a normalised
space outside [0, 1], ``(<= Y_label Y_j)`` terms, an input of shape (1, n, 1), gzipped files),
verified by bab, milp and marabou through ``verify-benchmark``; they agree wherever two decide,
every counterexample passes an independent onnxruntime check, a killed run resumes, and bad
input is an error, never a verdict."""

from __future__ import annotations

import gzip
import re
import shutil
import time
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from vfbench.cli import main
from vfbench.verify import benchmark as benchmark_module
from vfbench.verify.benchmark import read_results, verify_benchmark

DECIDED = ("sat", "unsat")


class Column(nn.Module):
    """Takes (B, n, 1)."""

    def __init__(self, n, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n, 8), nn.ReLU(), nn.Linear(8, 8),
                                 nn.ReLU(), nn.Linear(8, classes))

    def forward(self, x):
        return self.net(x)


def _export(model, example, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])


def _box_lines(lo, hi):
    out = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        out += [f"(assert (>= X_{i}\t{a:.9e}))", f"(assert (<= X_{i} {b:.9e}))"]
    return out


def _robust(lo, hi, label, classes, flipped=False):
    """Unsafe: another class >= label; written (<= Y_label Y_j) when ``flipped``."""
    lines = _box_lines(lo, hi) + [f"(declare-const Y_{j} Real)" for j in range(classes)]
    terms = [f"(and (<= Y_{label} Y_{j}))" if flipped else f"(and (>= Y_{j} Y_{label}))"
             for j in range(classes) if j != label]
    return "; generated\n" + "\n".join(lines) + "\n(assert (or " + " ".join(terms) + "))"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The benchmark folder, and per instance (onnx, input shape, box, label)."""
    folder = tmp_path_factory.mktemp("bench")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    nets = {
        "normalised": (nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(),
                                     nn.Linear(10, 3)), (1, 4)),
        "flipped": (nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)), (1, 5)),
        "column": (Column(6, 4), (1, 6, 1)),
    }
    rows, meta = [], {}
    for name, (net, shape) in nets.items():
        onnx_name = f"{name}.onnx"
        _export(net, torch.zeros(shape), folder / onnx_name)
        if name == "column":  # read as it is, gzipped
            (folder / f"{onnx_name}.gz").write_bytes(gzip.compress((folder / onnx_name)
                                                                   .read_bytes()))
            (folder / onnx_name).unlink()
            onnx_name += ".gz"
        n = int(np.prod(shape))
        for k, eps in enumerate((0.02, 0.1, 0.3, 1.0)):
            # normalised space: centres around -1.5 .. 2.5, no clipping to [0, 1]
            center = (torch.rand(n, generator=gen) * 4 - 1.5).double().numpy()
            with torch.no_grad():
                label = int(net(torch.as_tensor(center, dtype=torch.float32)
                                .reshape(shape)).argmax())
            lo, hi = center - eps, center + eps
            text = _robust(lo, hi, label, 3 if name != "column" else 4,
                           flipped=name == "flipped")
            vnnlib = f"{name}_{k}.vnnlib"
            if k == 3:
                (folder / f"{vnnlib}.gz").write_bytes(gzip.compress(text.encode()))
                vnnlib += ".gz"
            else:
                (folder / vnnlib).write_text(text)
            rows.append(f"{onnx_name},{vnnlib},20")
            meta[(onnx_name, vnnlib)] = (shape, lo, hi, label)
    assert (lo < 0).any() or (hi > 1).any()
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder, meta


def _onnx_session(folder, onnx_name):
    data = (folder / onnx_name).read_bytes()
    if onnx_name.endswith(".gz"):
        data = gzip.decompress(data)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _check_counterexample(folder, path, shape, lo, hi, label):
    """Independent of vfbench: parse the file, replay it in onnxruntime, check the box and that
    some other class scores at least the label."""
    text = path.read_text()
    assert text.startswith("sat\n")
    x = np.array([float(v) for v in re.findall(r"\(X_\d+ ([^)]+)\)", text)])
    assert x.size == lo.size and (x >= lo).all() and (x <= hi).all()
    return x


@pytest.fixture(scope="module")
def runs(bench):
    folder, _ = bench
    out = {}
    for method in ("bab", "milp", "marabou"):
        if method == "marabou":
            pytest.importorskip("maraboupy")
        summary = verify_benchmark(folder, method=method, options={"pgd_steps": 0}
                                   if method != "marabou" else None, progress=False)
        out[method] = (summary, read_results(summary["results"]))
    return out


def test_bab_milp_and_marabou_agree_and_counterexamples_replay(bench, runs):
    folder, meta = bench
    by_instance: dict = {}
    for method, (summary, rows) in runs.items():
        assert summary["error"] == 0, summary["errors"]
        assert len(rows) == len(meta)
        for row in rows:
            by_instance.setdefault((row["onnx"], row["vnnlib"]), {})[method] = row["result"]
    decided_twice = 0
    for key, results in by_instance.items():
        decided = {r for r in results.values() if r in DECIDED}
        assert len(decided) <= 1, (key, results)
        decided_twice += sum(r in DECIDED for r in results.values()) >= 2
    assert decided_twice >= len(meta) - 2
    assert {r for results in by_instance.values() for r in results.values()} >= {"sat", "unsat"}
    checked = 0
    for method in runs:
        for path in sorted((folder / f"results_{method}_counterexamples").glob("*")):
            key = list(meta)[int(path.name.split("_")[0])]  # named by the row index
            shape, lo, hi, label = meta[key]
            x = _check_counterexample(folder, path, shape, lo, hi, label)
            y = _onnx_session(folder, key[0]).run(
                None, {"x": x.astype(np.float32).reshape(shape)})[0][0]
            assert np.delete(y, label).max() >= y[label]
            checked += 1
    assert checked >= 3


def test_cli_verify_one_instance(bench, tmp_path, capsys):
    folder, meta = bench
    onnx_name, vnnlib = next(k for k in meta if k[0] == "flipped.onnx")
    code = main(["verify", "--onnx", str(folder / onnx_name), "--vnnlib", str(folder / vnnlib),
                 "--verifier", "crown", "--timeout", "20", "--result", str(tmp_path / "r.txt")])
    assert code == 0
    first = (tmp_path / "r.txt").read_text().split()[0]
    assert first in ("sat", "unsat", "unknown") and capsys.readouterr().out.startswith(first)


def test_bad_vnnlib_and_unsupported_op_are_errors_not_verdicts(bench, tmp_path, capsys):
    folder, _ = bench
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad, ignore=shutil.ignore_patterns("results*", ".results*"))
    (bad / "flipped_0.vnnlib").write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)")
    code = main(["verify", "--onnx", str(bad / "flipped.onnx"), "--vnnlib",
                 str(bad / "flipped_0.vnnlib"), "--result", str(tmp_path / "r.txt")])
    err = capsys.readouterr().err
    assert code == 1 and "flipped_0.vnnlib:2: '(' never closed" in err
    assert not (tmp_path / "r.txt").exists()
    # an op the importer does not take (Sigmoid on the input's path)
    _export(nn.Sequential(nn.Linear(5, 3), nn.Sigmoid()), torch.zeros(1, 5), bad / "flipped.onnx")
    (bad / "instances.csv").write_text("flipped.onnx,flipped_1.vnnlib,20\n"
                                       "flipped.onnx,flipped_0.vnnlib,20\n")
    code = main(["verify-benchmark", str(bad), "--verifier", "crown", "--out",
                 str(tmp_path / "res.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "Sigmoid" in err
    rows = read_results(tmp_path / "res.csv")
    assert [r["result"] for r in rows] == ["error", "error"]


def test_a_killed_run_resumes_without_redoing_finished_instances(bench, tmp_path, monkeypatch):
    folder, meta = bench
    calls = []
    real = benchmark_module.verify_instance

    def counting(onnx, vnnlib, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the kill, mid-run
        calls.append(str(vnnlib))
        return real(onnx, vnnlib, *args, **kwargs)

    monkeypatch.setattr(benchmark_module, "verify_instance", counting)
    out = tmp_path / "results.csv"
    with pytest.raises(KeyboardInterrupt):
        verify_benchmark(folder, method="crown", out=out, progress=False)
    assert not out.exists() and len(calls) == 3
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(benchmark_module, "verify_instance",
                        lambda *a, **k: (calls.append(str(a[1])), real(*a, **k))[1])
    summary = verify_benchmark(folder, method="crown", out=out, progress=False)
    assert summary["instances"] == len(meta) and len(calls) == len(meta) - 3
    assert not set(first) & set(calls)


def test_verify_benchmark_on_a_campaigns_specs_reproduces_its_bab_records(
        trained_mlp, synthetic, tmp_path):
    """The campaign's own VNN-COMP package (export step's ONNX, make_specs' VNNLIB,
    make_instances' instances.csv): verify-benchmark gives the verdicts of the campaign's bab
    records (misclassified: the image itself is a counterexample, sat)."""
    from vfbench.export import export_onnx
    from vfbench.fold import fold_batchnorm
    from vfbench.specs import write_instances, write_specs
    from vfbench.verify.shard import verify_shard

    x, y = synthetic
    pixels = (x.numpy() * 255).round().astype(np.uint8)
    images, eps = list(range(220, 232)), 0.05
    root = tmp_path / "results"
    onnx_path = root / "onnx/m.onnx"
    export_onnx(fold_batchnorm(trained_mlp)[0], onnx_path, x[:64])
    specs = root / f"specs/eps{eps}"
    write_specs(pixels, y.numpy(), images, eps, 3, specs / "vnnlib", specs / "images.csv")
    write_instances(onnx_path, [specs / "images.csv"], 30, root, root / "specs/instances.csv")
    instances = [(i, pixels[i].astype(np.float32) / np.float32(255), int(y[i])) for i in images]
    records = verify_shard(onnx_path, instances, eps, "bab", None, 30.0, tmp_path / "j.jsonl")
    summary = verify_benchmark(root, root / "specs/instances.csv", "bab", progress=False,
                               out=tmp_path / "results_bab.csv")
    results = [r["result"] for r in read_results(summary["results"])]
    expected = {"verified": "unsat", "falsified": "sat", "misclassified": "sat"}
    pairs = [(expected.get(r["status"], r["status"]), got)
             for r, got in zip(records, results, strict=True)]
    assert {a for a, _ in pairs} >= {"sat", "unsat"}
    assert all(a == b for a, b in pairs if a in DECIDED and b in DECIDED), pairs
    assert sum(a == b for a, b in pairs) >= len(pairs) - 1


def test_each_model_is_loaded_once_and_its_loading_is_prepare_time(bench, tmp_path,
                                                                     monkeypatch):
    """The rows of one ONNX file share one load (the run's ModelCache); the loading time is
    the row's prepare_time and not part of its run_time (the decision, which the timeout
    bounds). Loading is slowed by 3 s here to tell the two apart (and the decision is CROWN
    alone, no PGD: tens of milliseconds)."""
    from vfbench.verify import instance

    folder, meta = bench
    loads = []
    real = instance.load_onnx

    def slow_load(path):
        loads.append(str(path))
        if not str(path).endswith("box0.onnx"):  # the user's network, not a wrapper
            time.sleep(3.0)
        return real(path)

    monkeypatch.setattr(instance, "load_onnx", slow_load)
    summary = verify_benchmark(folder, method="crown", options={"pgd_steps": 0},
                               out=tmp_path / "r.csv", progress=False)
    rows = read_results(summary["results"])
    models = [r["onnx"] for r in rows]
    assert len([p for p in loads if not p.endswith("box0.onnx")]) == len(set(models)) == 3
    for k, row in enumerate(rows):
        if k == 0 or models[k - 1] != row["onnx"]:  # the model's first row paid the load
            assert row["prepare_time"] >= 3.0, (k, row)
        assert row["run_time"] < 3.0, row
    assert summary["total_prepare_s"] >= 9.0 and summary["error"] == 0
