"""scripts/scores.py and scripts/transform.py as the rules call them (run in-process)."""

import json

import numpy as np
import pytest
from run_script import run_script

from vfbench.io import load_checkpoint, save_checkpoint
from vfbench.transforms.scores import load_scores


@pytest.fixture(scope="module")
def files(tmp_path_factory, dataset, mlp):
    folder = tmp_path_factory.mktemp("transform_scripts")
    data = folder / "synthetic.npz"
    np.savez(data, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test,
             y_test=dataset.y_test)
    model, ckpt = mlp
    base = folder / "base.pt"
    save_checkpoint(base, model=model, arch=ckpt["arch"], arch_kwargs=ckpt["arch_kwargs"],
                    config=ckpt["config"], metrics={"train_acc": 1.0})
    return folder, data, base


def test_scores_then_transform(files, mlp):
    folder, data, base = files
    entry = {"method": "graft", "eps": 0.05, "images": 40, "epochs": 1}
    paths = []
    for score in ("instability-crown-eps0.05-n40", "gap-n40"):
        paths.append(folder / f"{score}.npz")
        run_script("scores.py", "--checkpoint", base, "--data", data, "--score", score,
                "--out", paths[-1])
        assert load_scores(paths[-1]).spec.id == score
    run_script("transform.py", "--checkpoint", base, "--data", data, "--entry-json",
            json.dumps(entry), "--scores", *paths, "--out", folder / "model.pt",
            "--out-report", folder / "report.json")
    report = json.loads((folder / "report.json").read_text())
    assert report["scores"] == {"instability": "instability-crown-eps0.05-n40",
                                "significance": "gap-n40"}
    model, ckpt = load_checkpoint(folder / "model.pt")
    assert ckpt["config"]["transform"]["method"] == "graft"
    assert ckpt["config"]["train"] == mlp[1]["config"]["train"]  # base config carried over
    assert ckpt["metrics"]["transform_seconds"] > 0
    grafted = sum(int(v.sum()) for k, v in model.state_dict().items() if k.endswith(".mask"))
    assert grafted == report["totals"]["n_grafted"] == 24


def test_pruned_checkpoint_rebuilds_and_bad_entries_exit_1(files, capsys):
    folder, data, base = files
    run_script("transform.py", "--checkpoint", base, "--data", data, "--entry-json",
            json.dumps({"method": "weight_prune", "rho": 0.5, "epochs": 1}),
            "--out", folder / "wp.pt", "--out-report", folder / "wp.json")
    model, ckpt = load_checkpoint(folder / "wp.pt")
    assert ckpt["config"]["transform"]["rho"] == 0.5
    with pytest.raises(SystemExit) as exit_info:
        run_script("transform.py", "--checkpoint", base, "--data", data, "--entry-json",
                json.dumps({"method": "graft", "ratio": 0.5}), "--out", folder / "bad.pt",
                "--out-report", folder / "bad.json")
    assert exit_info.value.code == 1
    assert "needs the eps" in capsys.readouterr().err
    assert not (folder / "bad.pt").exists()
