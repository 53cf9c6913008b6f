"""Where one training step's time goes: sampling, lookup, scoring + loss, gradient, sparse update.

The step of ``embretrain train`` (the local executor's: scoring and loss XLA-compiled, lookups and the sparse update
outside) is rebuilt as five nested ``tf.function``s, each doing one part more than the one before: (1) draw the
negatives, (2) + look up every row the batch needs, (3) + score and reduce the loss (:func:`embretrain.losses.batch_loss`,
the step's own code), (4) + its gradient, (5) + the sparse optimizer's update (the whole step). They are timed
interleaved (``--repeats`` rounds of ``--calls`` calls each, median ms per call) on batches of the real training data,
and each part is the difference of two neighbours: read the shares, not single milliseconds, on a shared machine.

    python scripts/profile_step.py                               # TransE preset (L2), chunks of 64 and chunk 1
    python scripts/profile_step.py --model distmult --set negatives=32 --json-out bench-out/profile.json

Hand-written rather than TensorFlow's profiler: its trace needs TensorBoard's profile plugin to read, and it reports
kernels, not the parts of our step a lever acts on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from quality.levers import _value  # "key=value" as int, float or str, as levers.py's --set reads it

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fb15k-237" / "train.txt"
PARTS = ("sampling", "lookup", "scoring + loss", "gradient", "sparse update")


class _Grab(Exception):
    """Stops the fit once the tables exist: the profile needs them, not the training."""


def build(model: str, overrides: dict, data: Path):
    """``(emb, settings, ids)``: the split tables ``embretrain train`` would build on ``data``, all rows trainable."""
    from embretrain.api import _fit_new_rows, _scorer
    from embretrain.config import resolve_settings
    from embretrain.delta import scratch_delta
    from embretrain.levers import Lever

    settings = resolve_settings(ROOT / "embretrain" / "presets" / f"{model}.toml", overrides)
    scorer = _scorer(settings.model, settings)
    delta = scratch_delta(scorer, str(data))
    grabbed = {}

    class Grab(Lever):
        def before_fit(self, emb):
            grabbed["emb"] = emb
            raise _Grab

    try:
        _fit_new_rows(scorer, settings, delta.kind.empty_tables(scorer, settings), delta, [Grab()], progress=False,
                      strategy="local", shards=0)
    except _Grab:
        pass
    return grabbed["emb"], settings, delta.ids


def profile(emb, settings, ids, *, repeats: int, calls: int, compiled_dedupe: bool = True) -> dict:
    import numpy as np
    import tensorflow as tf

    from embretrain.losses import _chunking, batch_loss
    from embretrain.optim import make_optimizer

    variables = emb.trainable()
    optimizer = make_optimizer(settings.optimizer, settings.lr, compiled=compiled_dedupe)
    optimizer.build(variables)
    rng = tf.random.Generator.from_seed(settings.seed)
    b, k = settings.batch_size, settings.negatives
    order = np.random.default_rng(settings.seed).permutation(len(ids))
    batches = [tf.constant(ids[order[i * b:(i + 1) * b]]) for i in range(min(32, len(ids) // b))]
    weights = tf.ones([b], tf.float32)

    @tf.function
    def sampling(batch):
        chunk, n_chunks = _chunking(settings, b)
        neg = emb.sample_negatives(rng, [n_chunks, k])
        return tf.reduce_sum(neg) + tf.cast(tf.reduce_sum(tf.cast(rng.uniform([b]) < 0.5, tf.int32)), tf.int64)

    @tf.function
    def lookup(batch):
        chunk, n_chunks = _chunking(settings, b)
        neg = emb.sample_negatives(rng, [n_chunks, k])
        rng.uniform([b])
        vecs = emb.entity.lookup(tf.concat([batch[:, 0], batch[:, 2], tf.reshape(neg, [-1])], axis=0))
        return tf.reduce_sum(vecs[:, 0]) + tf.reduce_sum(emb.relation.lookup(batch[:, 1])[:, 0])

    @tf.function
    def loss(batch):
        return batch_loss(emb, batch, weights, rng, settings, compiled=True)

    @tf.function
    def gradient(batch):
        with tf.GradientTape() as tape:
            value = batch_loss(emb, batch, weights, rng, settings, compiled=True)
        grads = tape.gradient(value, variables)
        return value + tf.add_n([tf.reduce_sum(g.values[:, 0]) for g in grads if g is not None])

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            value = batch_loss(emb, batch, weights, rng, settings, compiled=True)
        optimizer.apply(tape.gradient(value, variables), variables)
        return value

    fns = [sampling, lookup, loss, gradient, step]
    for fn in fns:  # trace and compile outside the timing
        for batch in batches[:2]:
            float(fn(batch))
    times = {i: [] for i in range(len(fns))}
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for c in range(calls):
                float(fn(batches[c % len(batches)]))
            times[i].append((time.perf_counter() - t0) / calls * 1e3)
    cumulative = [statistics.median(times[i]) for i in range(len(fns))]
    parts = {name: round(cumulative[i] - (cumulative[i - 1] if i else 0.0), 2) for i, name in enumerate(PARTS)}
    return {"step_ms": round(cumulative[-1], 2), "cumulative_ms": [round(x, 2) for x in cumulative], "parts_ms": parts,
            "positives_per_s_of_step": round(b / cumulative[-1] * 1e3)}


def render(rows: list[dict]) -> str:
    out = ["| model, negatives | " + " | ".join(PARTS) + " | step ms | positives/s of the step |",
           "|---|" + "---:|" * (len(PARTS) + 2)]
    for r in rows:
        parts = " | ".join(f"{r['parts_ms'][p]:.1f}" for p in PARTS)
        out.append(f"| {r['label']} | {parts} | {r['step_ms']:.1f} | {r['positives_per_s_of_step']:,} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="transe", help="a shipped preset's name")
    ap.add_argument("--set", action="append", default=[], help="setting=value over the preset (repeatable)")
    ap.add_argument("--chunks", default="64,1", help="negative_chunk values to profile, comma-separated")
    ap.add_argument("--negatives", type=int, default=32)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--plain-dedupe", action="store_true",
                    help="sum repeated rows' gradients with TensorFlow's kernel instead of XLA (the step before it)")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    base = {"negatives": args.negatives, "loss": "logistic", "epochs": 1}
    base.update({k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    rows = []
    for chunk in (int(c) for c in args.chunks.split(",")):
        emb, settings, ids = build(args.model, {**base, "negative_chunk": chunk}, Path(args.data))
        row = profile(emb, settings, ids, repeats=args.repeats, calls=args.calls,
                      compiled_dedupe=not args.plain_dedupe)
        norm = f"-L{settings.norm}" if settings.model in ("transe", "rotate", "transh") else ""
        dedupe = ", plain dedupe" if args.plain_dedupe else ""
        row.update(label=f"{settings.model}{norm}, {settings.negatives} negatives, chunk {chunk}{dedupe}",
                   settings=settings.to_dict())
        rows.append(row)
        print(render([row]).splitlines()[-1], flush=True)
    table = render(rows)
    print(table)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"command": "python scripts/profile_step.py " + " ".join(
            os.sys.argv[1:]), "rows": rows, "markdown": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
