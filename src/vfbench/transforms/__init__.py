"""The ``transform`` stage: methods that make a trained model easier to verify.

``methods.TRANSFORMS`` maps a config entry's ``method`` to
``fn(model, ckpt, dataset, entry, device, scores) -> TransformResult(model, arch_kwargs, report)``:

* ``none`` - the model unchanged;
* ``graft`` - linearity grafting and its variants (paper 000);
* ``activation_prune`` - SAP / GAP / Hydra activation pruning (paper 000's baselines);
* ``neuron_prune`` / ``weight_prune`` - paper 002's Algorithms 1 and 2 (presets SET1-SET3).

``resolve_transform_entry`` fills and checks an entry; ``needs_scores`` lists the score outputs
(ids for ``scripts/scores.py``) an entry reads; ``DEFAULTS`` documents every option. This package's
top level is light (no torch; the Snakefile imports it): import ``vfbench.transforms.methods``
for the methods themselves.
"""

from vfbench.transforms.entries import (
    DEFAULTS,
    PRESETS,
    needs_scores,
    resolve_transform_entry,
)

__all__ = ["DEFAULTS", "PRESETS", "needs_scores", "resolve_transform_entry"]
