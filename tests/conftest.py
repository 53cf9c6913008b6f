"""Shared tiny fixtures: a toy graph written to tmp_path, and a trained base checkpoint."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_tsv(path: Path, rows) -> Path:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
    return path


def toy_graph(n_old: int = 30, n_new: int = 6, seed: int = 0):
    """(base triples, new entity names, delta triples): entities e000.., relations r0..r2.

    The delta mixes triples touching new entities with some old-only ones (which extend must drop).
    """
    rng = random.Random(seed)
    old = [f"e{i:03d}" for i in range(n_old)]
    new = [f"n{i:03d}" for i in range(n_new)]
    rels = ["r0", "r1", "r2"]
    base = [(rng.choice(old), rng.choice(rels), rng.choice(old)) for _ in range(6 * n_old)]
    # make sure every old entity and relation appears in base (vocab = names in base)
    base += [(e, rels[i % 3], old[(i + 1) % n_old]) for i, e in enumerate(old)]
    delta = []
    for i, e in enumerate(new[:-1]):  # the last new entity gets no triple at all
        delta.append((e, rels[i % 3], rng.choice(old)))
        delta.append((rng.choice(old), rels[(i + 1) % 3], e))
    delta.append((new[0], "r1", new[1]))
    delta += [(old[0], "r0", old[1]), (old[2], "r2", old[3])]  # carry no signal
    return base, new, delta


def cluster_graph(seed: int = 0, n: int = 120, clusters: int = 6, *, interleaved: bool = True,
                  last_relation: str | None = None) -> list[tuple[str, str, str]]:
    """A graph a model can learn, shuffled: r0 links entities of one cluster, r1 cluster c to cluster c + 1.

    ``interleaved``: each of an entity's four r0 links is followed by an r1 link (the benchmark tests' graph);
    otherwise four r0 links, then one r1 link, or within the last cluster one ``last_relation`` link.
    """
    rng = random.Random(seed)
    ents = [f"c{i % clusters}_e{i:03d}" for i in range(n)]
    by_cluster = {c: [e for e in ents if e.startswith(f"c{c}_")] for c in range(clusters)}
    triples = set()
    for e in ents:
        c = int(e[1:e.index("_")])
        for _ in range(4):
            triples.add((e, "r0", rng.choice([x for x in by_cluster[c] if x != e])))
            if interleaved and c + 1 < clusters:
                triples.add((e, "r1", rng.choice(by_cluster[c + 1])))
        if not interleaved and c + 1 < clusters:
            triples.add((e, "r1", rng.choice(by_cluster[c + 1])))
        elif not interleaved and last_relation:
            triples.add((e, last_relation, rng.choice(by_cluster[c])))
    triples = sorted(triples)
    rng.shuffle(triples)
    return triples


@pytest.fixture
def toy(tmp_path):
    base, new, delta = toy_graph()
    return {
        "dir": tmp_path,
        "train": write_tsv(tmp_path / "train.tsv", base),
        "new": write_tsv(tmp_path / "new.tsv", [(n,) for n in new]),
        "delta": write_tsv(tmp_path / "delta.tsv", delta),
        "new_names": new,
        "base_rows": base,
        "delta_rows": delta,
    }
