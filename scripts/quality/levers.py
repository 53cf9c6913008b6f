"""Measure training levers on a link-prediction dataset: short `train` runs, filtered MRR by epoch, CPU time.

One run per invocation (so runs can be compared side by side with the same seed); appends one JSON record
to --out. The MRR is filtered (train + valid + test known), realistic ties, head and tail pooled, on the
first --test-n triples of test.txt (or valid.txt with --split valid), measured after the epochs in --eval-at.

Example:
    python scripts/quality/levers.py --dataset fb15k-237 --config embretrain/presets/transe.toml --epochs 10 \
        --eval-at 5,10 --set negatives=256 --set negative_chunk=256 --name neg256 --out docs/quality/levers.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("EMBRETRAIN_DATA", "/work/shared/data"))


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fb15k-237")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], help="setting=value (a Settings field)")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--eval-at", default="", help="comma-separated epochs to rank after (the last is always ranked)")
    ap.add_argument("--test-n", type=int, default=2000)
    ap.add_argument("--split", default="test", choices=["test", "valid"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from embretrain.api import _fit_new_rows, _scorer
    from embretrain.config import resolve_settings
    from embretrain.delta import scratch_delta
    from embretrain.evaluate import filtered_ranks, metrics
    from embretrain.levers import Lever

    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: _value(v) for k, v in overrides.items()}
    overrides["epochs"] = args.epochs
    settings = resolve_settings(args.config, overrides)
    scorer = _scorer(settings.model, settings)
    root = DATA / args.dataset
    delta = scratch_delta(scorer, str(root / "train.txt"))
    ents, rels = delta.entities, delta.relations

    def ids(name):
        out = []
        for line in (root / name).read_text().splitlines():
            h, r, t = line.split("\t")
            if h in ents and t in ents and r in rels:
                out.append((ents[h], rels[r], ents[t]))
        return np.asarray(out, dtype=np.int64)

    known = [delta.ids, ids("valid.txt"), ids("test.txt")]
    test = ids(f"{args.split}.txt")[: args.test_n]
    eval_at = {int(e) for e in args.eval_at.split(",") if e} | {args.epochs}
    curve = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    spent = [0.0, 0.0]  # cpu, wall seconds spent ranking: not training time

    class Probe(Lever):
        def before_fit(self, emb):
            self.emb = emb

        def on_epoch(self, epoch, loss):
            if epoch in eval_at:
                c0, w0 = time.process_time(), time.perf_counter()
                cpu, wall = c0 - cpu0 - spent[0], w0 - wall0 - spent[1]
                ranks = filtered_ranks(scorer, self.emb.entity.new_rows(), self.emb.relation.new_rows(), test, known)
                m = metrics(ranks)
                curve.append({"epoch": epoch, "loss": round(loss, 5), "cpu_min": round(cpu / 60, 2),
                              "wall_min": round(wall / 60, 2), "mrr": round(m["mrr"], 4),
                              "hits@10": round(m["hits@10"], 4)})
                spent[0] += time.process_time() - c0
                spent[1] += time.perf_counter() - w0
                print(json.dumps({"name": args.name, **curve[-1]}), flush=True)
            return False

    ent_old, rel_old = delta.kind.empty_tables(scorer, settings)
    _fit_new_rows(scorer, settings, (ent_old, rel_old), delta, [Probe()], progress=False, strategy="local", shards=0)
    record = {"name": args.name, "dataset": args.dataset, "config": args.config, "set": overrides,
              "split": args.split, "test_n": int(len(test)), "settings": settings.to_dict(), "curve": curve,
              "command": "python scripts/quality/levers.py " + " ".join(os.sys.argv[1:])}
    with open(args.out, "a") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
