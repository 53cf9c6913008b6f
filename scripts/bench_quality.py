#!/usr/bin/env python
"""Quality benchmark: are entities added by ``extend`` as good as a full retrain would make them?

With a seed, a share of a dataset's train entities is made new (``--fraction``, or ``--chain N`` nights of
``--chain-fraction``); then, through the CLI (``embretrain ... --json`` in a subprocess: what users run, process
start included): ``train`` on the base, ``extend`` with the new entities and the delta (one or more variants),
a full retrain on base + delta with the same settings, and a no-training baseline; ``evaluate`` scores
new-entity and old-only test triples and every extend output is checked to keep the old rows bit-identical.
Writes ``results.json`` and ``results.md`` into ``--out-dir``.

    python scripts/bench_quality.py --dataset wn18rr --model transe --epochs 30 --out-dir bench/wn-transe
    python scripts/bench_quality.py --from-json bench/wn-transe/results.json   # re-render the Markdown
    python scripts/bench_quality.py --update-docs docs/BENCHMARKS.md --from-json docs/quality/*.json

``--diagnose`` (one step) also runs the main extend from the full retrain's old rows (a control) and breaks
new-entity MRR down by the new entity's number of delta triples. ``--reuse`` keeps base/full checkpoints
already in ``--out-dir`` (same split and settings) so extend variants can be compared without paying for
the two trainings again.

This file parses the command line and composes the package ``scripts/quality/``: ``protocol`` (what is
measured), ``runner`` (embretrain's commands, timed), ``cache`` (base/full runs kept between invocations),
``benchmark`` (the runs and ``results.json``) and ``render`` (the Markdown).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package scripts/quality and scripts/benchdocs.py

from quality.benchmark import run_benchmark
from quality.render import render_markdown, update_docs

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="wn18rr", help="fb15k-237, wn18rr (from ../shared/data) or a folder with train/valid/test.txt")
    p.add_argument("--out-dir", default="bench/quality", help="checkpoints, splits, results.json and results.md go here")
    p.add_argument("--fraction", type=float, default=0.10, help="share of train entities made new [0.10]")
    p.add_argument("--chain", type=int, default=0, help="grow in N nights of --chain-fraction each instead of one step")
    p.add_argument("--chain-fraction", type=float, default=0.025)
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of every run")
    p.add_argument("--model", choices=["transe", "distmult", "complex", "rotate"])
    p.add_argument("--config", help="TOML preset given to every train/extend run")
    p.add_argument("--dim", type=int)
    p.add_argument("--epochs", type=int, help="epochs of base train, full retrain and (unless --extend-epochs) extend")
    p.add_argument("--extend-epochs", type=int, help="epochs of the main extend run")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--negatives", type=int)
    p.add_argument("--adversarial-temperature", type=float)
    p.add_argument("--threads", type=int)
    p.add_argument("--train-args", help="more options for every train/extend run, e.g. '--loss margin'")
    p.add_argument("--extend-args", help="more options for the main extend run, e.g. '--init neighbors --valid-fraction 0.1'")
    p.add_argument("--variant", action="append", help="another extend run: 'LABEL=OPTIONS' (repeatable)")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-training baseline")
    p.add_argument("--diagnose", action="store_true",
                   help="also run the main extend from the full retrain's old rows (the control) and break new-entity "
                        "MRR down by the new entity's number of delta triples")
    p.add_argument("--old-sample", type=int, default=1000, help="score at most N old-only test triples (seeded sample) [1000]; 0 = all")
    p.add_argument("--skip-old-eval", action="store_true", help="score test-old only for the main extend run")
    p.add_argument("--reuse", action="store_true", help="reuse base/full checkpoints of an identical earlier run in --out-dir")
    p.add_argument("--reuse-from", help="reuse base/full checkpoints (and their figures) of a run in this folder with the same base and full data")
    p.add_argument("--title", help="a note shown with this run's table (e.g. 'idle machine'); runs with different titles are not merged")
    p.add_argument("--quick", action="store_true", help="tiny run (a data subset, dim 16, 2 epochs) to check the pipeline")
    p.add_argument("--max-train", type=int, help="use only the first N train triples")
    p.add_argument("--max-test", type=int)
    p.add_argument("--in-process", action="store_true", help="run the CLI in this process (tests; wall times not comparable)")
    p.add_argument("--from-json", nargs="+", help="only render the Markdown of existing results.json files")
    p.add_argument("--update-docs", help="with --from-json: replace the '## Quality' section of this file")
    p.add_argument("--notes", help="with --update-docs: Markdown (findings, no figures) put after the summary table")
    opts = p.parse_args(argv)
    opts.argv = list(sys.argv[1:] if argv is None else argv)
    if opts.quick:
        opts.dim = opts.dim or 16
        opts.epochs = opts.epochs if opts.epochs is not None else 2
        opts.max_train = opts.max_train or 20000
        opts.max_test = opts.max_test or 2000
    return opts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    opts = parse_args(argv)
    if opts.from_json:
        results = [json.loads(Path(f).read_text()) for f in opts.from_json]
        if opts.update_docs:
            notes = Path(opts.notes).read_text(encoding="utf-8") if opts.notes else ""
            update_docs(Path(opts.update_docs), results, notes)
        else:
            sys.stdout.write("".join(render_markdown(r) for r in results))
        return 0
    result = run_benchmark(opts)
    sys.stdout.write(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
