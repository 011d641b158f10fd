"""`vfbench plan` from a built wheel, outside the repository: the schema ships as package data."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_plan_runs_from_a_wheel_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves the checkout untouched
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(next((tmp_path / "dist").glob("vfbench-*.whl"))) as wheel:
        wheel.extractall(site)
    assert (site / "vfbench" / "schemas" / "config.schema.yaml").is_file()

    config = tmp_path / "campaign.yaml"
    shutil.copy(REPO / "config" / "config.yaml", config)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import vfbench; "
            "assert vfbench.__file__.startswith(sys.argv[1]), vfbench.__file__; "
            "from vfbench.cli import main; sys.exit(main(['plan', sys.argv[2]]))")
    plan = subprocess.run([sys.executable, "-c", code, str(site), str(config)], cwd=work,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "campaign default" in plan.stdout and "verify_shard" in plan.stdout
