"""The campaign's tables and figures, from its results (``vfbench.results``).

- ``entries``: each layout's declaration (options with defaults, what it reads) and the start-up
  check of a campaign's ``tables`` / ``plots`` blocks; light, read when the DAG is read.
- ``selection``: which models, verifiers and eps a layout picks from its options; light, shared by
  the declarations and the layouts.
- ``cells``: a cell's value, from ``vfbench.metrics``.
- ``layouts``: the tables, one module per paper (``TABLES``); ``plots``: the figures (``PLOTS``).
- ``render``: CSV, Markdown and LaTeX; ``provenance``: what every output states about its inputs.
- ``command``: the command line of the tables and plots rules.
"""
