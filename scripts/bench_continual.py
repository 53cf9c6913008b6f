#!/usr/bin/env python
"""Continual benchmark: a graph revealed in snapshots, the first trained, every later one grown with ``extend``.

Protocol (issue 16, "Growth over many nights"; after LKGE's ENTITY dataset, Cui et al., AAAI 2023):

- Every triple of the dataset (train + valid + test, pooled) is an edge between two entities. A breadth-first
  walk (seeded start and neighbour order; a new seeded start when a component is exhausted) orders the
  entities; the order is cut into ``--snapshots`` equal parts, snapshot i revealing part i.
- Snapshot i's triples are those whose entities are all revealed by snapshot i and were not all revealed before;
  they are shuffled and split 3:1:1 into train/valid/test. A valid/test triple naming an entity or relation no
  training triple of snapshots 0..i has is moved to training: the model could not rank it (counted).
- Snapshot 0: ``embretrain train`` on its training triples. Snapshot i > 0: ``embretrain extend`` of the previous
  checkpoint with the names first seen in its training triples (``--new-entities``, and ``--new-relations`` when
  it has any) and the delta: its training triples touching a new entity or relation. The rest (old entities and
  relation only) cannot move a frozen row and are dropped (counted). Every extend output is checked to keep the
  input's rows bit-identical.
- The final checkpoint ranks each snapshot's test triples against every entity it knows, filtered with every
  snapshot's train/valid/test (so later entities crowding out older answers is counted). Because old rows are
  frozen, checkpoint i is exactly the final model cut back to the entities of snapshots 0..i, so ranking
  snapshot i's test with checkpoint i is LKGE's older protocol (candidates: the entities visible at snapshot i)
  for the same final model; both are reported. "mean" is LKGE's whole-MRR: per-snapshot MRR weighted by test
  triples.

Each variant (``--variant NAME=ARGS``) grows its own chain from the same snapshot-0 checkpoint; ARGS are the
extend options (empty: the README's headline command, no options). ``train`` and ``extend`` run through the CLI
in subprocesses (``--in-process`` for tests), so their wall times include process start and TensorFlow import;
scoring (not timed) goes through ``embretrain.api`` in this process.

    python scripts/bench_continual.py --out-dir bench/continual --json docs/continual/fb15k-237-transe.json
    python scripts/bench_continual.py --max-entities 2000 --out-dir bench/continual-small   # timing on a subset
    python scripts/bench_continual.py --from-json docs/continual/*.json --update-docs docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package scripts/quality and scripts/benchdocs.py

from quality.protocol import Triple, dataset_dir, read_tsv, sample, write_tsv  # noqa: E402
from quality.runner import FIGURES, Runner, old_rows_identical  # noqa: E402

__all__ = ["ANCHORS", "Snapshot", "bfs_order", "build_snapshots", "main", "render_markdown", "run_benchmark"]

logger = logging.getLogger(__name__)

HEADING = "## Growth over many nights"
RATIOS = (3, 1, 1)  # train : valid : test of each snapshot's triples (LKGE)
# Published TransE dim-200 figures on LKGE's own FB15k-237 ENTITY split (whole MRR over 5 snapshots, final model,
# candidates: the entities visible at each test's snapshot). Another split and protocol: context, not a target met.
ANCHORS = {"PNN (frozen old rows)": 0.229, "LKGE": 0.234, "IncDE": 0.253}
DEFAULT_VARIANTS = ("preset=--preset transe", "headline=")
INTRO = """\
Nights of growth on FB15k-237 (issue 16), built and run by `scripts/bench_continual.py`. The protocol follows
LKGE's ENTITY dataset (Cui et al., AAAI 2023) as far as its public description goes: the whole graph (train + valid +
test pooled) is revealed in 5 snapshots of equal entity count, in the order a breadth-first walk from a seeded entity
meets the entities; a snapshot's triples are those whose entities are all revealed by then and were not all revealed
before, split 3:1:1 at random into train/valid/test. Snapshot 0 is trained with `embretrain train`; each later one
is grown with `embretrain extend --ckpt prev.h5 --new-entities new.tsv --data delta.tsv --out next.h5`, the delta
being the snapshot's training triples that touch a new entity or relation (plus `--new-relations` when the snapshot
brings one). The final checkpoint then ranks every snapshot's test triples against **every entity it knows**,
filtered with all snapshots' train/valid/test (so new entities crowding out older answers is counted); *mean* is
LKGE's whole-MRR, the per-snapshot MRRs weighted by test triples. Old rows are frozen, so snapshot i's checkpoint
*is* the final model cut back to the entities of snapshots 0..i: ranking test i with it is LKGE's older protocol
(candidates: the entities visible at snapshot i) for the same final model, given in brackets.

Where we depart from LKGE: its construction script is not published (only the resulting files), so our walk, seed
and split are our own and the snapshots are not LKGE's. A valid/test triple naming an entity or relation that no
training triple of snapshots 0..i has is moved to training (LKGE keeps such entities as untrained rows). Training
triples among old entities and an old relation only could not change a frozen row and would be dropped by `extend`;
under this construction there are none (every triple of snapshot i names an entity revealed at i), the table
counts them anyway. The snapshots' valid splits are not used for early stopping (LKGE stops on a validation set its
loader reads from `test.txt`, `src/data_load/KnowledgeGraph.py`); a `--valid-fraction` chain holds out a slice of
each night's delta instead. The anchors (TransE, dim 200: {anchors}) are on LKGE's own split with its
candidate protocol: context, not a like-for-like comparison. Wall times are from a 2-core machine shared with
other jobs at the time: inflated and noisy. Generated from `docs/continual/*.json` (and `notes.md` beside them) by
`python scripts/bench_continual.py --from-json docs/continual/*.json --notes docs/continual/notes.md \\
--update-docs docs/BENCHMARKS.md`."""


@dataclass
class Snapshot:
    """One snapshot: what the walk revealed, its own triples split 3:1:1, and what ``extend`` gets of them."""

    index: int
    revealed: list[str]  # entities the walk revealed in this snapshot, in walk order
    train: list[Triple]
    valid: list[Triple]
    test: list[Triple]
    moved_to_train: int = 0  # valid/test triples moved to train: they named something no training triple had
    new_entities: list[str] = field(default_factory=list)  # first seen in this snapshot's train, in file order
    new_relations: list[str] = field(default_factory=list)
    delta: list[Triple] = field(default_factory=list)  # train triples touching a new entity or relation
    dropped: list[Triple] = field(default_factory=list)  # train triples of old entities and an old relation

    def counts(self) -> dict[str, int]:
        return {"revealed": len(self.revealed), "train": len(self.train), "valid": len(self.valid),
                "test": len(self.test), "moved_to_train": self.moved_to_train,
                "new_entities": len(self.new_entities), "new_relations": len(self.new_relations),
                "delta": len(self.delta), "dropped": len(self.dropped)}


def bfs_order(triples: list[Triple], seed: int) -> list[str]:
    """Every entity of ``triples`` once, in the order a breadth-first walk over the undirected graph meets them.

    Start and neighbour order are drawn with ``seed`` (not the file's order); when a component is exhausted the
    walk restarts at the next unvisited entity of a seeded permutation.
    """
    rng = np.random.default_rng(seed)
    names = sorted({x for h, _, t in triples for x in (h, t)})
    index = {n: i for i, n in enumerate(names)}
    adjacency: list[set[int]] = [set() for _ in names]
    for h, _, t in triples:
        if h != t:
            adjacency[index[h]].add(index[t])
            adjacency[index[t]].add(index[h])
    seen = np.zeros(len(names), dtype=bool)
    order: list[int] = []
    for start in rng.permutation(len(names)):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([int(start)])
        while queue:
            node = queue.popleft()
            order.append(node)
            neighbours = np.array(sorted(adjacency[node]), dtype=np.int64)
            for nb in neighbours[rng.permutation(len(neighbours))]:
                if not seen[nb]:
                    seen[nb] = True
                    queue.append(int(nb))
    return [names[i] for i in order]


def build_snapshots(triples: list[Triple], n_snapshots: int = 5, seed: int = 0,
                    max_entities: int = 0) -> list[Snapshot]:
    """The walk's entities cut into ``n_snapshots`` equal parts, each part's triples split 3:1:1 (see the module doc).

    ``max_entities`` > 0 keeps only the walk's first entities (and the triples among them): a smaller graph of
    the same shape, to time the benchmark before the full run.
    """
    triples = list(dict.fromkeys(triples))  # a triple listed twice would land in two splits
    order = bfs_order(triples, seed)
    if max_entities:
        order = order[:max_entities]
    parts = np.array_split(np.arange(len(order)), n_snapshots)
    snapshot_of = {order[i]: k for k, part in enumerate(parts) for i in part}
    by_snapshot: list[list[Triple]] = [[] for _ in range(n_snapshots)]
    for tr in triples:
        if tr[0] in snapshot_of and tr[2] in snapshot_of:
            by_snapshot[max(snapshot_of[tr[0]], snapshot_of[tr[2]])].append(tr)
    rng = np.random.default_rng(seed + 1)
    snapshots: list[Snapshot] = []
    ents_before: set[str] = set()
    rels_before: set[str] = set()
    for k, own in enumerate(by_snapshot):
        own = [own[i] for i in rng.permutation(len(own))]
        n_train = round(len(own) * RATIOS[0] / sum(RATIOS))
        n_valid = round(len(own) * RATIOS[1] / sum(RATIOS))
        train, valid, test = own[:n_train], own[n_train:n_train + n_valid], own[n_train + n_valid:]
        ents = ents_before | {x for h, _, t in train for x in (h, t)}
        rels = rels_before | {r for _, r, _ in train}
        kept: dict[str, list[Triple]] = {"valid": [], "test": []}
        moved = 0
        for name, rows in (("valid", valid), ("test", test)):
            for tr in rows:
                if tr[0] in ents and tr[2] in ents and tr[1] in rels:
                    kept[name].append(tr)
                else:  # the model would have no row for it; in training its names are learnt instead
                    train.append(tr)
                    ents.update((tr[0], tr[2]))
                    rels.add(tr[1])
                    moved += 1
        snap = Snapshot(k, [order[i] for i in parts[k]], train, kept["valid"], kept["test"], moved)
        snap.new_entities = [x for x in dict.fromkeys(x for h, _, t in train for x in (h, t)) if x not in ents_before]
        snap.new_relations = [r for r in dict.fromkeys(r for _, r, _ in train) if r not in rels_before]
        new_e, new_r = set(snap.new_entities), set(snap.new_relations)
        for tr in train:
            (snap.delta if tr[0] in new_e or tr[2] in new_e or tr[1] in new_r else snap.dropped).append(tr)
        snapshots.append(snap)
        ents_before, rels_before = ents, rels
    return snapshots


def write_snapshots(snapshots: list[Snapshot], root: Path) -> list[dict[str, Path]]:
    """Each snapshot's files under ``root/<i>/``: train, valid, test, delta, new_entities, new_relations."""
    out = []
    for s in snapshots:
        d = root / str(s.index)
        d.mkdir(parents=True, exist_ok=True)
        out.append({
            "train": write_tsv(d / "train.tsv", s.train), "valid": write_tsv(d / "valid.tsv", s.valid),
            "test": write_tsv(d / "test.tsv", s.test), "delta": write_tsv(d / "delta.tsv", s.delta),
            "new_entities": write_tsv(d / "new_entities.tsv", s.new_entities),
            "new_relations": write_tsv(d / "new_relations.tsv", s.new_relations),
        })
    return out


def _weighted(figures: list[dict[str, Any]]) -> float:
    n = sum(f["test_examples"] for f in figures)
    return sum(f["mrr"] * f["test_examples"] for f in figures) / n if n else float("nan")


def _evaluate(ckpt: Path, tests: list[Path], known: Path) -> list[dict[str, Any]]:
    """Filtered MRR, Hits@1/10 and test size of ``ckpt`` on each of ``tests``.

    Through ``embretrain.api`` in this process, one load per checkpoint: scoring is not what is timed, and forty
    ``evaluate`` subprocesses (TensorFlow import, 300k filter triples read each time) would double the run.
    """
    from embretrain import api

    model = api.load(str(ckpt))
    out = []
    for test in tests:
        figures = api.evaluate(model, str(test), [str(known)])
        out.append({k: figures[k] for k in (*FIGURES, "test_skipped_unknown")})
    return out


def _score(ckpts: list[Path], files: list[dict[str, Path]], known: Path) -> dict[str, Any]:
    """Each snapshot's test by the final checkpoint (all entities) and by its own checkpoint (LKGE's candidates)."""
    final = _evaluate(ckpts[-1], [f["test"] for f in files], known)
    at_snapshot = [_evaluate(ckpts[i], [f["test"]], known)[0] for i, f in enumerate(files)]
    return {
        "mean_mrr": _weighted(final), "mean_mrr_unweighted": float(np.mean([f["mrr"] for f in final])),
        "mean_mrr_lkge_candidates": _weighted(at_snapshot),
        "per_snapshot": [{"snapshot": i, "final": final[i], "lkge_candidates": at_snapshot[i]}
                         for i in range(len(files))],
    }


def run_benchmark(opts: argparse.Namespace, runner: Runner | None = None) -> dict[str, Any]:
    """Build the snapshots, train snapshot 0, grow each variant's chain, score; the results as a dict."""
    runner = runner or Runner(in_process=opts.in_process, echo=logger.info)
    out_dir = Path(opts.out_dir)
    data = dataset_dir(opts.dataset)
    triples = [tr for f in ("train.txt", "valid.txt", "test.txt") for tr in read_tsv(data / f)]
    t0 = time.perf_counter()
    snapshots = build_snapshots(triples, opts.snapshots, opts.seed, opts.max_entities)
    files = write_snapshots(snapshots, out_dir / "snapshots")
    # the filter: every snapshot's train/valid/test, i.e. every triple of the graph that was kept
    known = write_tsv(out_dir / "snapshots" / "all.tsv", [tr for s in snapshots for tr in s.train + s.valid + s.test])
    for s, f in zip(snapshots, files):  # the triples scored: all of test, or a seeded sample (ranking is the cost)
        f["test"] = write_tsv(f["test"].with_name("test_scored.tsv"), sample(s.test, opts.test_sample, opts.seed))
    logger.info("snapshots built in %.1f s: %s", time.perf_counter() - t0, [s.counts() for s in snapshots])

    train_args = shlex.split(opts.train_args)
    base = out_dir / "snapshot0.h5"
    summary, wall = runner.train(files[0]["train"], base, train_args)
    trained = {"wall_s": round(wall, 2), "train_s": summary["seconds"]["train"], "epochs": summary.get("epochs"),
               "examples": len(snapshots[0].train)}
    results: dict[str, Any] = {
        "dataset": opts.dataset, "seed": opts.seed, "snapshots": opts.snapshots, "max_entities": opts.max_entities,
        "test_sample": opts.test_sample, "label": opts.label,
        "command": "python scripts/bench_continual.py " + " ".join(shlex.quote(a) for a in opts.argv),
        "train_args": train_args, "counts": [s.counts() for s in snapshots], "train": trained, "variants": [],
        "anchors": ANCHORS, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for spec in opts.variant:
        name, _, args = spec.partition("=")
        extend_args = shlex.split(args)
        ckpts, steps = [base], []
        for s, f in zip(snapshots[1:], files[1:]):
            out = out_dir / f"{name}-snapshot{s.index}.h5"
            summary, wall = runner.extend(ckpts[-1], f["new_entities"], f["delta"], out,
                                          f["new_relations"] if s.new_relations else None, extend_args)
            steps.append({"snapshot": s.index, "wall_s": round(wall, 2), "train_s": summary["seconds"]["train"],
                          "epochs": summary.get("epochs"), "delta": len(s.delta),
                          "old_rows_identical": old_rows_identical(ckpts[-1], out)})
            ckpts.append(out)
        variant = {"name": name, "extend_args": extend_args, "extend": steps,
                   "extend_wall_s": round(sum(st["wall_s"] for st in steps), 2)}
        variant.update(_score(ckpts, files, known))
        results["variants"].append(variant)
        logger.info("%s: mean MRR %.4f", name, variant["mean_mrr"])
    if opts.full_retrain:
        every_train = write_tsv(out_dir / "all_train.tsv", [tr for s in snapshots for tr in s.train])
        full = out_dir / "full.h5"
        summary, wall = runner.train(every_train, full, train_args)
        figures = _evaluate(full, [f["test"] for f in files], known)
        results["full_retrain"] = {"wall_s": round(wall, 2), "train_s": summary["seconds"]["train"],
                                   "examples": sum(len(s.train) for s in snapshots), "mean_mrr": _weighted(figures),
                                   "per_snapshot": figures}
    results["total_wall_s"] = round(time.perf_counter() - t0, 1)
    return results


def _table(res: dict[str, Any]) -> list[str]:
    """One result's tables: the snapshots' counts, then one row per extend chain (and the full retrain)."""
    n = len(res["counts"])
    title = f"### {res['dataset']}, seed {res['seed']}" + (f", first {res['max_entities']} entities of the walk"
                                                            if res.get("max_entities") else "")
    if res.get("label"):  # several runs of one dataset and seed (e.g. more chains later) get distinct headings
        title += f": {res['label']}"
    lines = [title, "", f"Command: `{res['command']}` (snapshot-0 train options: `{' '.join(res['train_args'])}`).",
             "", "| snapshot | revealed | new entities | new relations | train | delta | dropped (old only) "
             "| moved to train | valid | test |", "|" + "---:|" * 10]
    for i, c in enumerate(res["counts"]):
        lines.append(f"| {i} | {c['revealed']} | {c['new_entities']} | {c['new_relations']} | {c['train']} | "
                     f"{c['delta'] if i else '-'} | {c['dropped'] if i else '-'} | {c['moved_to_train']} | "
                     f"{c['valid']} | {c['test']} |")
    tr = res["train"]
    lines += ["", f"Snapshot 0: `train`, {tr['epochs']} epochs on {tr['examples']} triples: {tr['wall_s']:.0f} s wall.",
              "", "| extend chain | extend options | mean MRR, final model, all entities | unweighted mean | "
              "mean MRR, LKGE candidates | " + " | ".join(f"MRR {i}" for i in range(n))
              + f" | extend wall s, snapshots 1..{n - 1} | old rows identical |",
              "|---|---|---:|---:|---:|" + "---:|" * n + "---|---|"]
    for v in res["variants"]:
        per = " | ".join(f"{p['final']['mrr']:.3f} ({p['lkge_candidates']['mrr']:.3f})" for p in v["per_snapshot"])
        walls = " + ".join(f"{st['wall_s']:.0f}" for st in v["extend"])
        same = "yes" if all(st["old_rows_identical"] for st in v["extend"]) else "**no**"
        options = f"`{' '.join(v['extend_args'])}`" if v["extend_args"] else "none (the README's headline command)"
        lines.append(f"| {v['name']} | {options} | **{v['mean_mrr']:.3f}** | {v['mean_mrr_unweighted']:.3f} | "
                     f"{v['mean_mrr_lkge_candidates']:.3f} | {per} | {walls} = {v['extend_wall_s']:.0f} | {same} |")
    if res.get("full_retrain"):
        f = res["full_retrain"]
        per = " | ".join(f"{p['mrr']:.3f}" for p in f["per_snapshot"])
        lines.append(f"| full retrain (reference) | `train` on all snapshots' train ({f['examples']} triples) | "
                     f"{f['mean_mrr']:.3f} | - | - | {per} | {f['wall_s']:.0f} (one `train`) | - |")
    scored = (f"a seeded sample of {res['test_sample']} test triples per snapshot (filtered with every triple)"
              if res.get("test_sample") else "every test triple")
    lines += ["", f"MRR i: snapshot i's test ranked by the final model among all its entities (in brackets: by "
              f"snapshot i's own checkpoint, LKGE's candidates); scored: {scored}.",
              f"Whole benchmark (snapshots, every run and evaluation): {res['total_wall_s']:.0f} s wall.", ""]
    return lines


def render_markdown(results: list[dict[str, Any]], notes: str = "") -> str:
    """The ``## Growth over many nights`` section of docs/BENCHMARKS.md from results (and hand-written notes)."""
    lines = [HEADING, "", INTRO.format(anchors=", ".join(f"{k} {v:.3f}" for k, v in ANCHORS.items())), ""]
    for res in sorted(results, key=lambda r: (r.get("max_entities") or 0, r["seed"], r["command"])):
        lines += _table(res)
    if notes.strip():
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="fb15k-237", help="../shared/data name, or a folder of train/valid/test.txt")
    p.add_argument("--snapshots", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="walk start, neighbour order and the 3:1:1 split")
    p.add_argument("--max-entities", type=int, default=0, help="the walk's first N entities only (timing); 0: all")
    p.add_argument("--train-args", default="--preset transe", help="options of the snapshot-0 train")
    p.add_argument("--variant", action="append", metavar="NAME=ARGS",
                   help=f"an extend chain and its options (repeatable); default: {' and '.join(DEFAULT_VARIANTS)}")
    p.add_argument("--test-sample", type=int, default=0,
                   help="score a seeded sample of at most N test triples per snapshot (filters still use all); 0: all")
    p.add_argument("--full-retrain", action="store_true", help="also train from scratch on every snapshot's train")
    p.add_argument("--label", default="", help="appended to the run's heading in the docs (several runs of one seed)")
    p.add_argument("--out-dir", default="bench/continual")
    p.add_argument("--json", help="also write the results to this file (e.g. docs/continual/fb15k-237-transe.json)")
    p.add_argument("--in-process", action="store_true", help="run the CLI in this process (tests; wall times differ)")
    p.add_argument("--from-json", nargs="+", help="render these results instead of running")
    p.add_argument("--update-docs", help="replace the section of this Markdown file (docs/BENCHMARKS.md)")
    p.add_argument("--notes", help="Markdown appended to the section (what the figures say: docs/continual/notes.md)")
    opts = p.parse_args(argv)
    opts.variant = opts.variant or list(DEFAULT_VARIANTS)
    opts.argv = argv
    return opts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.from_json:
        results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in opts.from_json]
    else:
        Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
        results = [run_benchmark(opts)]
        text = json.dumps(results[0], indent=1, default=str) + "\n"
        (Path(opts.out_dir) / "results.json").write_text(text, encoding="utf-8")
        if opts.json:
            Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
            Path(opts.json).write_text(text, encoding="utf-8")
    markdown = render_markdown(results, Path(opts.notes).read_text(encoding="utf-8") if opts.notes else "")
    if opts.update_docs:
        from benchdocs import replace_section

        replace_section(HEADING, markdown, Path(opts.update_docs))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
