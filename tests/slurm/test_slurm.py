"""The real Snakefile on a tiny campaign submitted to a SLURM cluster through profiles/slurm:
every job completes and is in `sacct`; the shards go as one job array; the table equals a local
run's; verification jobs get a GPU, and more GPUs than the node has are refused; a shard killed
by scancel fails the run, and naming it reruns that shard and what depends on it, nothing else.

Needs a cluster (`sudo bash scripts/cluster/up.sh` on this machine: one node, 2 fake GPUs).
The tests share one campaign; each leaves it complete.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_helpers import (
    FAST_POLLING,
    REPO,
    SNAKEMAKE,
    finish,
    require_cluster,
    run_id,
    sacct_jobs,
    slurm_env,
    snakemake,
    start_snakemake,
)
from tiny_campaign import tiny_campaign

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MODEL = "mnist5k/net1/natural/none"
EPS = "0.01"
SHARDS = 3
TINY = {
    **tiny_campaign(images=2 * SHARDS, shard_size=2, eps=float(EPS)),
    # What a GPU cluster campaign asks for, scaled to the 2-CPU test node.
    "resources": {
        "verify_shard": {"gpu": 1, "cpus_per_gpu": 1, "mem_mb": 1500},
        "train_base": {"mem_mb": 2000},
        "transform": {"mem_mb": 2000},
        "evaluate": {"mem_mb": 2000},
    },
}


def results(workdir: Path) -> Path:
    return workdir / "results" / TINY["campaign"]


def shard_path(workdir: Path, k: int) -> Path:
    return results(workdir) / f"verify/{MODEL}/crown/eps{EPS}/shard{k}.jsonl"


def relative(workdir: Path, path: Path) -> str:
    return str(path.relative_to(workdir))


def mtimes(workdir: Path) -> dict[str, int]:
    return {relative(workdir, p): p.stat().st_mtime_ns
            for p in results(workdir).rglob("*") if p.is_file()}


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {p for p in after if before.get(p) != after[p]}


def rules_run(output: str) -> list[str]:
    """The rules of the SLURM jobs one Snakemake run submitted, from accounting."""
    return sorted(job["rule"] for job in sacct_jobs(run_id(output)))


def local_rules_run(output: str) -> list[str]:
    """The rules one Snakemake run executed in its own process (`localrules`), besides `all`."""
    return sorted(set(re.findall(r"localrule (\w+):", output)) - {"all"})


def deterministic_table(workdir: Path) -> pd.DataFrame:
    """The summary table without its timing columns (wall-clock, not reproducible)."""
    table = pd.read_csv(results(workdir) / "tables/summary.csv")
    return table[[c for c in table.columns if "time" not in c.lower()]]


def write_config(workdir: Path) -> Path:
    workdir.mkdir(parents=True)
    (workdir / "c.yaml").write_text(yaml.safe_dump(TINY))
    return workdir


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The tiny campaign run once through profiles/slurm, and once more on this machine through
    profiles/local (meanwhile: the SLURM run mostly waits for status checks).
    Returns (SLURM workdir, local workdir, the SLURM run's output)."""
    require_cluster()
    root = tmp_path_factory.mktemp("slurm")
    on_slurm, here = write_config(root / "on_slurm"), write_config(root / "here")
    local_run = start_snakemake(here, "--cores", "1", profile="local")
    try:
        slurm_run = snakemake(on_slurm)
    finally:
        local = finish(local_run, check=False)
    assert local.returncode == 0, f"the local run failed:\n{local.stdout[-8000:]}"
    return on_slurm, here, slurm_run.stdout


def test_every_job_completes_on_slurm_and_is_in_sacct(campaign):
    workdir, _, output = campaign
    jobs = sacct_jobs(run_id(output))
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", output))
    arrays = re.findall(r"SLURM job ID (\d+)\. The individual task IDs are (\d+)-(\d+)", output)
    submitted |= {f"{a}_{k}" for a, first, last in arrays for k in range(int(first), int(last) + 1)}
    assert {j["JobID"] for j in jobs} == submitted != set()
    assert {j["State"] for j in jobs} == {"COMPLETED"}, jobs
    rules = [j["rule"] for j in jobs]
    assert rules.count("verify_shard") == SHARDS
    # the profile's group: one job runs a model's transform, fold_bn and export_onnx
    for rule in ("train_base", "model_export_onnx_fold_bn_transform", "evaluate"):
        assert rules.count(rule) == 1, rules
    assert len(rules) == SHARDS + 3, rules
    # light steps run in the main process, not as cluster jobs
    assert local_rules_run(output) == ["fetch_data", "make_instances", "make_specs",
                                       "merge_verify", "plots", "specs_package", "tables"]
    # The profile keeps the logs of successful jobs too (an array's: <array id>_<task>.log).
    assert len(list((workdir / "logs/slurm/rule_verify_shard").rglob("*.log"))) == SHARDS
    records = pd.read_parquet(results(workdir) / f"verify/{MODEL}/crown/eps{EPS}.parquet")
    assert sorted(records["image"]) == list(range(2 * SHARDS))


def test_verification_shards_are_submitted_as_one_job_array(campaign):
    """profiles/slurm submits the shards that are ready together as one SLURM array (one sbatch
    call, one queue entry), every other rule as jobs of their own."""
    _, _, output = campaign
    # (the executor may log the line twice: plain and through its logger)
    arrays = sorted(set(re.findall(
        r"Submitted array job with Snakemake IDs \S+ and SLURM job ID (\d+)", output)))
    assert len(arrays) == 1, output[-4000:]
    by_rule: dict[str, list[str]] = {}
    for job in sacct_jobs(run_id(output)):
        by_rule.setdefault(job["rule"], []).append(job["JobID"])
    assert sorted(by_rule["verify_shard"]) == [f"{arrays[0]}_{k}" for k in range(1, SHARDS + 1)]
    assert all("_" not in job_id for rule, ids in by_rule.items() if rule != "verify_shard"
               for job_id in ids), by_rule
    workdir = campaign[0]
    logs = sorted(p.name for p in (workdir / "logs/slurm/rule_verify_shard").glob("*.log"))
    assert logs == [f"{arrays[0]}_{k}.log" for k in range(1, SHARDS + 1)]


def test_the_slurm_table_equals_the_local_runs_table(campaign):
    on_slurm, here, _ = campaign
    table = deterministic_table(on_slurm)
    assert len(table) >= 1 and len(table.columns) >= 3
    pd.testing.assert_frame_equal(table, deterministic_table(here))


def test_verification_jobs_are_granted_a_gpu_and_no_other_job_is(campaign):
    _, _, output = campaign
    for job in sacct_jobs(run_id(output)):
        assert ("gres/gpu=1" in job["AllocTRES"]) == (job["rule"] == "verify_shard"), job


def test_a_gpu_job_sees_its_gpu_and_more_gpus_than_the_node_has_are_refused(tmp_path):
    """What a rule's `gpu` resource becomes: --gpus=N; the job sees CUDA_VISIBLE_DEVICES."""
    require_cluster()
    (tmp_path / "Snakefile").write_text(
        'rule probe:\n'
        '    output: "gpu{n}.txt"\n'
        '    resources: gpu=lambda wc: int(wc.n), cpus_per_gpu=1, mem_mb=200, runtime=2\n'
        '    shell: "echo ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"\n')

    def probe(gpus: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*SNAKEMAKE, "-s", str(tmp_path / "Snakefile"), "--profile",
             str(REPO / "profiles/slurm"), "--directory", str(tmp_path), f"gpu{gpus}.txt",
             "--retries", "0", *FAST_POLLING],
            capture_output=True, text=True, timeout=300, env=slurm_env())

    granted = probe(1)
    assert granted.returncode == 0, granted.stderr[-3000:]
    assert (tmp_path / "gpu1.txt").read_text().strip() == "0"
    refused = probe(3)  # the node has 2
    assert refused.returncode != 0
    assert "Requested node configuration is not available" in refused.stderr, refused.stderr
    assert not (tmp_path / "gpu3.txt").exists()


def test_a_cancelled_shard_fails_the_run_and_naming_it_reruns_it_and_its_dependents_only(
        campaign):
    workdir, _, _ = campaign
    shards = [shard_path(workdir, k) for k in range(SHARDS)]
    target = relative(workdir, shards[1])
    shards[1].unlink()

    # The shard's job is killed while it runs: the run fails and says why.
    run = start_snakemake(workdir, target, "all")
    victim = wait_for_running_job(run, f"_wildcards_{MODEL.replace('/', '_')}_crown_{EPS}_1")
    subprocess.run(["scancel", victim], check=True)
    cancelled = finish(run, check=False)
    assert cancelled.returncode != 0
    assert f"SLURM-job '{victim}' failed, SLURM status is: 'CANCELLED'" in cancelled.stdout
    assert not shards[1].exists()

    # The same command again: that shard (on SLURM), the merge of its shards, tables and plots
    # (local rules); no other job, no other output touched (finished shards are not redone).
    before = mtimes(workdir)
    rerun = snakemake(workdir, target, "all")
    after = mtimes(workdir)
    assert rules_run(rerun.stdout) == ["verify_shard"]
    assert local_rules_run(rerun.stdout) == ["merge_verify", "plots", "tables"]
    root = relative(workdir, results(workdir))
    expected = {target, f"{root}/verify/{MODEL}/crown/eps{EPS}.parquet"} | {
        p for p in after if p.startswith((f"{root}/tables/", f"{root}/plots/"))}
    assert {p for p in changed(before, after) if not p.startswith(f"{root}/logs/")} == expected
    records = pd.read_parquet(results(workdir) / f"verify/{MODEL}/crown/eps{EPS}.parquet")
    assert sorted(records["image"]) == list(range(2 * SHARDS))


def wait_for_running_job(run: subprocess.Popen, comment_suffix: str, timeout_s: float = 240) -> str:
    """The SLURM job ID of the first running job whose comment ends with ``comment_suffix``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise AssertionError(f"snakemake ended first:\n{finish(run, check=False).stdout}")
        queue = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"],
                               capture_output=True, text=True, check=True).stdout
        for line in queue.splitlines():
            job_id, comment = line.split("|", 1)
            if comment.endswith(comment_suffix):
                return job_id
        time.sleep(0.2)
    raise AssertionError(f"no running job with comment ending {comment_suffix!r} in {timeout_s} s")
