"""Time of `embretrain neighbors` for 10 names on a 1M x 128 table (in memory) and a 10M x 128 table (on disk).

For each size the script writes a native TransE checkpoint of random rows with ``embretrain.api.save`` (in a
child process, so this one stays small and the file stays in the page cache), then measures in child processes:

* ``memory`` (1M by default): ``api.load(path)`` reads the table into memory, ``neighbors.report`` searches it;
* ``cli`` (every size): ``embretrain neighbors FILE NAME x10 --json`` as a user runs it, which leaves a native
  table on disk and streams it (``--old-rows on-disk``), wall time including Python start-up;
* ``cli --data`` (with ``--with-data``): the same plus the model's top tails/heads under each name's relation.

Each row gives load, name lookup and search seconds (from the report), wall seconds and the child's peak RSS (VmHWM).
The files are deleted afterwards. Prints a Markdown table and writes JSON.

    python scripts/bench_neighbors.py                              # 1M in memory + on disk, 10M on disk
    python scripts/bench_neighbors.py --sizes 100000 --memory-max 100000 --out bench-out/nb-small.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_REL = 10


def make_checkpoint(path: str, n: int, dim: int, seed: int = 0) -> None:
    """A native TransE checkpoint of random rows, written with api.save (the table sits in memory while it is written)."""
    import numpy as np

    from embretrain import api
    from embretrain.checkpoint import ENTITY_TABLE, RELATION_TABLE, Checkpoint

    rng = np.random.default_rng(seed)
    table = np.empty((n, dim), dtype=np.float32)
    step = 1 << 20
    for start in range(0, n, step):  # in steps: no float64 temporary of the whole table
        table[start : start + step] = rng.standard_normal((min(step, n - start), dim), dtype=np.float32)
    ckpt = Checkpoint(
        model="transe",
        entities=[f"e{i}" for i in range(n)],
        relations=[f"r{i}" for i in range(N_REL)],
        entity_tables={ENTITY_TABLE: table},
        relation_tables={RELATION_TABLE: rng.standard_normal((N_REL, dim), dtype=np.float32)},
        params={"norm": 1, "gamma": 12.0},
        lineage=[{"command": "bench", "entities_before": n - 1000, "entities_added": 1000}],
    )
    api.save(ckpt, path)


def query_names(n: int, count: int) -> list[str]:
    """``count`` names spread over the table (the last one among the last run's additions)."""
    return [f"e{(i * (n - 1)) // (count - 1)}" for i in range(count)]


def write_data(path: Path, names: list[str], n: int) -> None:
    """A delta mentioning every queried name: each its own most frequent relation."""
    lines = []
    for j, name in enumerate(names):
        for m in range(3):
            lines.append(f"{name}\tr{j % N_REL}\te{(j * 7919 + m * 104729) % n}\n")
    path.write_text("".join(lines), encoding="utf-8")


_CHILD = (
    "import atexit, json, sys, time\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('BENCH_PEAK_RSS_KB=' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
    "mode, path, k, data, *names = sys.argv[1:]\n"
    "if mode == 'cli':\n"
    "    sys.argv = ['embretrain', '-q', 'neighbors', path, *names, '--k', k, '--json'] + (['--data', data] if data else [])\n"
    "    from embretrain.cli import main\n"
    "    main()\n"
    "else:\n"
    "    from embretrain import api\n"
    "    from embretrain.neighbors import report\n"
    "    t0 = time.perf_counter()\n"
    "    ckpt = api.load(path)\n"
    "    t_load = time.perf_counter() - t0\n"
    "    out = report(ckpt, names, k=int(k), data=data or None)\n"
    "    out['seconds']['load'] = round(t_load, 3)\n"
    "    print(json.dumps(out))\n"
)


def run_child(mode: str, path: Path, names: list[str], k: int, data: Path | None) -> dict:
    argv = [sys.executable, "-c", _CHILD, mode, str(path), str(k), str(data or ""), *names]
    t0 = time.perf_counter()
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    peak = [int(line.split("=")[1]) for line in done.stderr.splitlines() if line.startswith("BENCH_PEAK_RSS_KB=")]
    assert len(result["entities"]) == len(names) and all(len(e["neighbors"]) == k for e in result["entities"])
    if data is not None:
        assert all(len(e["relation"]["top"]) == k for e in result["entities"])
    return {
        "load_s": result["seconds"]["load"],
        "names_s": result["seconds"].get("names"),  # absent in reports older than this field
        "search_s": result["seconds"]["search"],
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(peak[-1] / 1024) if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--memory-max", type=int, default=1_000_000, help="Also time the in-memory load for sizes up to this.")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--names", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--with-data", action="store_true", help="Also time --data (top tails/heads, TransE L1).")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="Where the checkpoints are written (then deleted).")
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "neighbors.json"))
    parser.add_argument("--make", nargs=2, metavar=("PATH", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_checkpoint(args.make[0], int(args.make[1]), args.dim)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-neighbors-", dir=args.dir))
    rows = []
    try:
        for n in args.sizes:
            path = work / f"random-{n}.h5"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--make", str(path), str(n), "--dim", str(args.dim)], check=True)
            t_write = round(time.perf_counter() - t0, 1)
            names = query_names(n, args.names)
            data = work / "delta.tsv"
            write_data(data, names, n)
            modes = [("memory", None)] if n <= args.memory_max else []
            modes += [("cli", None)] + ([("cli", data)] if args.with_data else [])
            for mode, d in modes:
                r = run_child(mode, path, names, args.k, d)
                r.update(rows=n, dim=args.dim, names=args.names, k=args.k, file_gb=round(path.stat().st_size / 1e9, 2),
                         write_s=t_write, mode=("memory" if mode == "memory" else "on-disk (CLI)") + (" --data" if d else ""))
                rows.append(r)
                print(json.dumps(r), flush=True)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "command": " ".join(["python", "scripts/bench_neighbors.py", *sys.argv[1:]]), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print("| rows x dim | file | mode | load s | names s | search s | wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rows']:,} x {r['dim']} | {r['file_gb']} GB | {r['mode']} | {r['load_s']} | {r['names_s']} | {r['search_s']} | "
              f"{r['wall_s']} | {r['peak_rss_mb']} |")
    print(f"\n{args.names} names, k={args.k}; written to {args.out}")


if __name__ == "__main__":
    main()
