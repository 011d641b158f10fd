#!/usr/bin/env python
"""Dense vs compact loading of a per-neuron-masked cnn_4layer (MNIST shape): file size, size in
memory, load time, CROWN and bab CPU seconds per image, on the same exported ONNX file.

The model: cnn_4layer on 1x28x28 (random weights), both conv sites grafted per neuron (a random
half of the neurons, random slopes and intercepts, as linearity grafting leaves them), exported
by the export step's own code (``export_onnx``: the dense form, with compact hints). ``dense``
loads it as written (``load_onnx(path, compact=False)``), ``compact`` as vfbench's verifiers do.
Both run in the same process, interleaved per image, so the ratio is what to read under load.
Times are CPU seconds of this (single-threaded) process. bab: ``bab_s`` is the mean over the
images both forms decide; its timeout is wall-clock, so on images either times out the figure is
domains per CPU second (``dom/s``).

    .venv/bin/python benchmarks/compact_conv.py --images 5 --eps 0.005 --timeout 30
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import onnx
import torch

from vfbench.export import export_onnx
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes
from vfbench.runtime import set_threads
from vfbench.verify import lirpa
from vfbench.verify.onnx_import import load_onnx
from vfbench.verify.verifiers import BabVerifier, CrownVerifier

SHAPE = (1, 28, 28)


def masked_cnn(seed: int = 0, graft: bool = True) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("cnn_4layer", input_shape=SHAPE, num_classes=10, mean=(0.1307,),
                        std=(0.3081,)).eval()
    if not graft:
        return model
    gen = torch.Generator().manual_seed(seed)
    for name in list(site_shapes(model))[:2]:  # the two conv sites
        shape = site_shapes(model)[name]
        site = GraftedReLU(shape, (torch.rand(shape, generator=gen) < 0.5).float())
        with torch.no_grad():
            site.a.copy_(torch.rand(shape, generator=gen) * 2 - 1)
            site.b.copy_(torch.rand(shape, generator=gen) * 0.2 - 0.1)
        set_site(model, name, site)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.005)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    set_threads(1)
    model = masked_cnn()
    x = torch.rand(args.images, *SHAPE, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "masked.onnx"
        export_onnx(model, path, x)
        export_onnx(masked_cnn(graft=False), Path(tmp) / "plain.onnx", x)
        hints = sum(len(n.doc_string) for n in onnx.load(str(path)).graph.node)
        print(f"file {os.path.getsize(path) / 1e6:.2f} MB (hints {hints / 1e6:.3f} MB; the "
              f"model without masks {os.path.getsize(Path(tmp) / 'plain.onnx') / 1e6:.2f} MB)"
              f", load average "
              f"{os.getloadavg()[0]:.1f}, {torch.get_num_threads()} thread(s), "
              f"{args.images} images, eps {args.eps}, bab timeout {args.timeout} s")
        forms = {}
        for name, compact in (("dense", False), ("compact", True)):
            start = time.process_time()
            module = load_onnx(path, compact=compact)
            load = time.process_time() - start
            size = sum(t.numel() * t.element_size()
                       for t in [*module.parameters(), *module.buffers()])
            forms[name] = {"load": load, "MB": size / 1e6,
                           "crown": CrownVerifier(module, {"pgd_steps": 0}),
                           "bab": BabVerifier(module, {"pgd_steps": 0}), "crown_s": 0.0,
                           "bab_cpu": [], "status": [], "domains": []}
        labels = model(x).argmax(1).tolist()
        for form in forms.values():  # warm-up
            lirpa.compute_margin_bounds(form["crown"].bm, x[:1], args.eps, labels[:1], "crown")
        for i in range(args.images):
            for form in forms.values():
                start = time.process_time()
                lirpa.compute_margin_bounds(form["crown"].bm, x[i:i + 1], args.eps,
                                            labels[i:i + 1], "crown")
                form["crown_s"] += (time.process_time() - start) / args.images
                start = time.process_time()
                record = form["bab"].verify(x[i], labels[i], args.eps, args.timeout, image=i)
                form["bab_cpu"].append(time.process_time() - start)
                form["status"].append(record["status"])
                form["domains"].append(record["domains"])
    dense, compact = forms["dense"], forms["compact"]
    decided = [i for i in range(args.images) if "timeout" not in
               (dense["status"][i], compact["status"][i])]
    for form in forms.values():
        form["bab_s"] = sum(form["bab_cpu"][i] for i in decided) / max(1, len(decided))
        timed_out = [i for i in range(args.images) if i not in decided]
        cpu = sum(form["bab_cpu"][i] for i in timed_out)
        form["rate"] = sum(form["domains"][i] for i in timed_out) / cpu if cpu else 0.0
    print(f"{'form':8} {'MB':>6} {'load_s':>7} {'crown_s':>8} {'bab_s':>8} {'dom/s':>6}  "
          "bab statuses (domains)")
    for name, form in forms.items():
        print(f"{name:8} {form['MB']:6.2f} {form['load']:7.2f} {form['crown_s']:8.3f} "
              f"{form['bab_s']:8.2f} {form['rate']:6.1f}  "
              f"{list(zip(form['status'], form['domains'], strict=True))}")
    print(f"ratio dense/compact: crown {dense['crown_s'] / compact['crown_s']:.1f}x, bab "
          f"{dense['bab_s'] / compact['bab_s']:.1f}x on the {len(decided)} images both decide; "
          f"domains per CPU second where one timed out: {compact['rate']:.1f} vs "
          f"{dense['rate']:.1f}; same bab statuses: {dense['status'] == compact['status']}")

if __name__ == "__main__":
    main()
