"""Record the golden hashes of tests/test_golden.py: run every run of tests/golden/runs.py and write
tests/golden/expected.json.

Regenerate only when a change of output bytes is intended, and say which and why in the commit:

    python scripts/record_golden.py            # runs the list twice, refuses if the two disagree
    python scripts/record_golden.py --data     # also rewrite the committed input TSVs (never needed normally)

The run list, the input programs and the way outputs are hashed live in tests/golden/runs.py, which the
test imports too: one list.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"
sys.path.insert(0, str(GOLDEN))

import runs  # noqa: E402  (tests/golden/runs.py)


def write_data(d: Path) -> None:
    """The committed inputs: ~60 old entities, 6 relations, ~400 base triples, ~300 pairs (stable: random.Random)."""
    rng = random.Random(20240615)
    old = [f"e{i:02d}" for i in range(60)]
    new = [f"n{i:02d}" for i in range(12)]
    rels = [f"r{i}" for i in range(6)]

    def tsv(name, rows):
        (d / name).write_text("".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")

    base = [(e, rels[i % 6], old[(i * 7 + 1) % 60]) for i, e in enumerate(old)]  # every name appears
    base += [(rng.choice(old), rng.choice(rels), rng.choice(old)) for _ in range(340)]
    delta = []
    for i, n in enumerate(new[:-1]):  # the last new entity has no line: it keeps its initial row
        for j in range(4):
            o = rng.choice(old)
            delta.append((n, rels[(i + j) % 6], o) if j % 2 else (o, rels[(i + j) % 6], n))
    delta += [(new[0], "r1", new[1]), (new[2], "r3", new[3])]
    delta += [(old[0], "r0", old[1]), (old[5], "r2", old[9])]  # carry no signal: dropped
    tsv("train.tsv", base)
    tsv("new.txt", [(n,) for n in new])
    tsv("delta.tsv", delta)
    tsv("new_relations.txt", [("r6",), ("r7",)])
    # r6 links old entities only (a new relation alone carries signal); r7 also touches a new entity
    tsv("delta_newrel.tsv", delta + [(rng.choice(old), "r6", rng.choice(old)) for _ in range(8)]
        + [(new[4], "r7", rng.choice(old)) for _ in range(4)])
    tsv("entities.txt", [(e,) for e in old])  # vocabulary of the foreign (TF/Keras) tables

    pairs = [(e, old[(i * 11 + 3) % 60]) for i, e in enumerate(old)]
    pairs += [(rng.choice(old), rng.choice(old)) + ((rng.choice([0.5, 2, 3]),) if k % 5 == 0 else ())
              for k in range(240)]
    new_items = [f"item{i:02d}" for i in range(10)]
    dpairs = []
    for i, n in enumerate(new_items[:-1]):
        for j in range(5):
            dpairs.append((n, rng.choice(old)) if j % 2 else (rng.choice(old), n))
    dpairs += [(new_items[0], new_items[1], 2), (old[3], old[4])]
    tsv("pairs.tsv", pairs)
    tsv("new_items.txt", [(n,) for n in new_items])
    tsv("delta_pairs.tsv", dpairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="store_true", help="rewrite the input TSVs in tests/golden/ first")
    ap.add_argument("--once", action="store_true", help="run the list once (skip the determinism check)")
    args = ap.parse_args()
    if args.data:
        write_data(GOLDEN)
    results = []
    for attempt in range(1 if args.once else 2):
        with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
            t0 = time.perf_counter()
            results.append(runs.run_all(Path(tmp)))
            print(f"pass {attempt + 1}: {len(results[-1])} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    bad = [name for name, got in results[0].items() if "error" in got]
    if bad:
        for name in bad:
            print(f"{name}: {results[0][name]['error']}", file=sys.stderr)
        return 1
    if len(results) == 2:
        differ = [name for name in results[0] if results[0][name] != results[1][name]]
        if differ:
            print("not deterministic, expected.json left unchanged: " + ", ".join(differ), file=sys.stderr)
            return 1
    runs.EXPECTED.write_text(json.dumps(results[0], indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {runs.EXPECTED}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
