"""``embretrain demo``: the whole story on a bundled toy graph, in well under a minute.

Train a base model, grow it with 40 people who "arrived tonight", evaluate the new people
against an untrained (Xavier-only) start, and prove every old row came out bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from importlib.resources import files
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "demo_data_dir"]

logger = logging.getLogger(__name__)


def demo_data_dir() -> Path:
    """Folder of the bundled example: train.tsv, new.tsv, delta.tsv, test.tsv."""
    return Path(str(files("embretrain") / "demo_data"))


def run_demo(workdir: str | None = None, *, echo=print, as_json: bool = False) -> dict:
    from . import api
    from .config import resolve_settings

    data = demo_data_dir()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="embretrain-demo-")
        workdir = tmp.name
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a, **k: None) if as_json else echo
    settings = resolve_settings(
        None, {"model": "transe", "dim": 32, "epochs": 40, "batch_size": 256, "negatives": 16, "lr": 0.02,
               "norm": 2, "gamma": 6.0}
    )
    say(f"1/4 training a base TransE model on {data / 'train.tsv'} ...")
    base, s_train = api.train(data / "train.tsv", settings, progress=False)
    api.save(base, out / "base.h5")
    say(f"    {s_train['entities']} entities, {s_train['relations']} relations, {s_train['examples']} triples, "
        f"{s_train['seconds']['train']:.1f} s -> {out / 'base.h5'}")

    say("2/4 extending with 40 new people (new.tsv) trained on their triples (delta.tsv) ...")
    base = api.load(out / "base.h5")
    grown, s_ext = api.extend(base, data / "new.tsv", data / "delta.tsv", settings, progress=False)
    api.save(grown, out / "merged.h5")
    untrained, _ = api.extend(base, data / "new.tsv", data / "delta.tsv",
                              dataclasses.replace(settings, epochs=0), progress=False)
    say(f"    +{s_ext['entities_added']} entities from {s_ext['examples_used']} triples "
        f"({s_ext['examples_dropped_no_new']} dropped: no new entity), {s_ext['seconds']['train']:.1f} s -> {out / 'merged.h5'}")

    say("3/4 evaluating on held-out triples of the new people (filtered MRR) ...")
    known = [data / "train.tsv", data / "delta.tsv"]
    ev_new = api.evaluate(grown, data / "test.tsv", known, new_only=True)
    ev_init = api.evaluate(untrained, data / "test.tsv", known, new_only=True)
    say(f"    new people, trained rows: MRR {ev_new['mrr']:.3f}  Hits@10 {ev_new['hits@10']:.3f}  "
        f"({ev_new['test_examples']} test triples)")
    say(f"    new people, Xavier start: MRR {ev_init['mrr']:.3f}  Hits@10 {ev_init['hits@10']:.3f}")

    say("4/4 checking that every old row is bit-identical ...")
    a, b = api.load(out / "base.h5"), api.load(out / "merged.h5")
    identical = {
        name: bool(np.array_equal(table, b.tables()[name][: table.shape[0]]))
        for name, table in a.tables().items()
    }
    same_vocab = b.entities[: a.n_entities] == a.entities
    for name, ok in identical.items():
        say(f"    {name}: {a.tables()[name].shape[0]} old rows {'bit-identical' if ok else 'CHANGED'}")
    result = {
        "train": s_train,
        "extend": s_ext,
        "new_entities_trained": ev_new,
        "new_entities_xavier_only": ev_init,
        "old_rows_identical": identical,
        "old_vocabulary_prefix": same_vocab,
        "workdir": str(out) if tmp is None else None,
    }
    if as_json:
        echo(json.dumps(result, indent=2, default=str))
    ok = all(identical.values()) and same_vocab
    say("done: old rows untouched, new rows learned." if ok else "FAILED: old rows changed")
    if tmp is not None:
        tmp.cleanup()
    if not ok:
        from .errors import EmbretrainError

        raise EmbretrainError("demo: old rows changed; this is a bug")
    return result
