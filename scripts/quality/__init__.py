"""The quality benchmark of ``scripts/bench_quality.py``, one idea per module.

``protocol`` (what is measured: datasets, the split into base and new entities, the test sets) ·
``runner`` (the only module that calls embretrain: its CLI, timed, and its API for checkpoints) ·
``cache`` (base and full-retrain runs kept between invocations, keyed by their settings) ·
``benchmark`` (the order of the runs and the ``results.json`` they make) ·
``render`` (``results.json`` -> the Markdown tables of docs/BENCHMARKS.md, in a fixed order).
Data flows one way: protocol -> runner/cache -> benchmark -> render; render never runs anything.
"""
