"""The jobs that only list or merge specs (make_instances, merge_verify) import no torch: each
of the campaign's ~4-5 s of torch start-up per such job was most of its time (benchmarks/README.md,
profile_campaign.py)."""

import subprocess
import sys


def test_specs_and_records_modules_import_without_torch():
    code = ("import sys, vfbench.specs, vfbench.verify.records; "
            "heavy = {'torch', 'onnxruntime', 'auto_LiRPA'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
