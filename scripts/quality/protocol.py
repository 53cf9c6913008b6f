"""What the quality benchmark measures: the dataset, which entities are "new", and the triples scored.

Protocol (issue 3), on a dataset of ``train``/``valid``/``test`` TSV files, with a seed:

- A fraction of the train entities is made "new" (one step, or one share per night of a chain). Base = train
  triples whose entities are all old. Delta = train triples touching at least one new entity.
- Test-new = test triples touching a new entity, every name known to the grown model (so every new entity
  in them occurs in the delta); test-old = test triples whose entities and relation are all in the base.

This module only decides sets of triples; it runs nothing and never imports embretrain.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "DEGREE_BUCKETS", "Split", "Triple", "dataset_dir", "degree_buckets", "make_chain", "make_split",
           "read_tsv", "sample", "test_sets", "write_tsv"]

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASETS = {"fb15k-237": "fb15k-237", "wn18rr": "wn18rr"}
# (label, fewest, most delta triples of a new entity); None: no upper bound
DEGREE_BUCKETS = (("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6+", 6, None))

Triple = tuple[str, str, str]


def read_tsv(path: Path) -> list[Triple]:
    with open(path, encoding="utf-8") as fh:
        return [tuple(line.rstrip("\n").split("\t")) for line in fh if line.strip()]  # type: ignore[misc]


def write_tsv(path: Path, rows) -> Path:
    """Triples (tuples) or names (one a line) to ``path``; returns ``path`` so a call can stand in an argument list."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines("\t".join(r) + "\n" if isinstance(r, tuple) else f"{r}\n" for r in rows)
    return path


def dataset_dir(name: str) -> Path:
    """The folder of a named dataset (from ../shared/data) or ``name`` itself, checked to hold the three files."""
    path = DATA_ROOT / DATASETS[name] if name in DATASETS else Path(name)
    for f in ("train.txt", "valid.txt", "test.txt"):
        if not (path / f).is_file():
            raise SystemExit(f"{path}: expected train.txt, valid.txt and test.txt (a folder or one of {list(DATASETS)})")
    return path


class Split:
    """One night: the vocabulary before/after, the delta, and the test triples to score."""

    def __init__(self, night: int, included: list[Triple], delta: list[Triple], ents_before: set, rels_before: set):
        self.night = night
        self.included = included  # every train triple the model has seen after this night
        self.delta = delta
        self.entities = {x for h, _, t in included for x in (h, t)}
        self.relations = {r for _, r, _ in included}
        # names in order of first appearance in the delta: a deterministic file
        self.new_entities = [x for x in dict.fromkeys(x for h, _, t in delta for x in (h, t)) if x not in ents_before]
        self.new_relations = [r for r in dict.fromkeys(r for _, r, _ in delta) if r not in rels_before]

    def known(self, triple: Triple) -> bool:
        h, r, t = triple
        return h in self.entities and t in self.entities and r in self.relations


def make_chain(train: list[Triple], fractions: list[float], seed: int) -> list[Split]:
    """Night 0 (the base) then one :class:`Split` per fraction of new entities.

    Entities are shuffled with ``seed``; night i makes the next ``fractions[i]`` of them known. A triple is
    included once all its entities are known, so an old entity whose every triple touches a new one
    first appears with the delta that brings it (it is new to the model too).
    """
    names = sorted({x for h, _, t in train for x in (h, t)})
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(names)
    counts = [round(f * n) for f in fractions]
    night_of: dict[str, int] = {}
    start = 0
    for i, c in enumerate(counts, 1):
        for j in order[start : start + c]:
            night_of[names[j]] = i
        start += c
    nights: list[Split] = []
    ents_before: set = set()
    rels_before: set = set()
    seen = 0
    for i in range(len(counts) + 1):
        included = [tr for tr in train if max(night_of.get(tr[0], 0), night_of.get(tr[2], 0)) <= i]
        delta = [tr for tr in train if max(night_of.get(tr[0], 0), night_of.get(tr[2], 0)) == i]
        split = Split(i, included, delta, ents_before, rels_before)
        nights.append(split)
        ents_before, rels_before = split.entities, split.relations
        seen = len(included)
    assert seen == len(train)
    return nights


def make_split(train: list[Triple], fraction: float, seed: int) -> tuple[Split, Split]:
    """(base, night 1) for the one-step benchmark."""
    base, night = make_chain(train, [fraction], seed)
    return base, night


def test_sets(test: list[Triple], base: Split, night: Split, all_new: set) -> tuple[list[Triple], list[Triple], list[Triple]]:
    """(new tonight, new since the base, old-only) test triples, every name known after ``night``."""
    new_tonight = set(night.new_entities)
    known = [tr for tr in test if night.known(tr)]
    t_new = [tr for tr in known if tr[0] in new_tonight or tr[2] in new_tonight]
    t_all = [tr for tr in known if tr[0] in all_new or tr[2] in all_new]
    t_old = [tr for tr in test if base.known(tr)]
    return t_new, t_all, t_old


def sample(triples: list[Triple], size: int, seed: int) -> list[Triple]:
    """At most ``size`` of ``triples`` (0: all), a seeded sample kept in file order.

    Old-only figures are a sanity check (old rows cannot move); a sample keeps them cheap.
    """
    if not size or len(triples) <= size:
        return triples
    keep = np.sort(np.random.default_rng(seed).choice(len(triples), size, replace=False))
    return [triples[i] for i in keep]


def degree_buckets(test: list[Triple], delta: list[Triple], new: set) -> dict[str, list[Triple]]:
    """Test triples by how many delta triples their new entity has (the fewer of two new ones)."""
    degree: dict[str, int] = defaultdict(int)
    for h, _, t in delta:
        for e in {h, t} & new:
            degree[e] += 1
    out: dict[str, list[Triple]] = {name: [] for name, _, _ in DEGREE_BUCKETS}
    for tr in test:
        d = min(degree[e] for e in (tr[0], tr[2]) if e in new)
        for name, lo, hi in DEGREE_BUCKETS:
            if d >= lo and (hi is None or d <= hi):
                out[name].append(tr)
    return out
