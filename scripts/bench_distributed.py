"""Throughput of `embretrain extend`: local vs a parameter-server cluster on this machine.

Writes a synthetic TransE checkpoint (random old rows) and a delta, then runs the real CLI:

- ``local``: ``embretrain extend ... --json`` in a child process;
- ``ps``: a real cluster of separate processes on 127.0.0.1, ``--ps`` parameter servers and
  ``--workers`` workers each started with ``embretrain server --role ...`` and its own TF_CONFIG,
  then the chief ``embretrain extend --strategy parameter-server --shards N --json``.

Every process is started here and ended here (by pid). Reports the steady epoch (the last one; the
first includes tracing), triples/s, the overhead factor, and each process's peak resident memory
(``VmHWM``: the chief's as it exits, each server's just before it is stopped); prints a Markdown
table and writes JSON. ``--old-rows on-disk`` runs both with the old rows left in the input file.
On one small box the cluster is slower (every lookup and update is a gRPC round trip between
processes sharing the same cores); the point is that it works and what the overhead is.

    python scripts/bench_distributed.py                   # 100k old rows, 5k new, 50k triples
    python scripts/bench_distributed.py --quick           # seconds, for a smoke test
    python scripts/bench_distributed.py --old 400000 --dim 128 --epochs 1 --old-rows on-disk   # memory: a 200 MB table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embretrain import api  # noqa: E402
from embretrain.checkpoint import Checkpoint  # noqa: E402


def make_inputs(work: Path, n_old: int, n_new: int, n_triples: int, n_rel: int, dim: int, seed: int = 0):
    """old.h5 (random TransE rows), new.tsv, delta.tsv (each triple: one new entity, one old or new partner)."""
    rng = np.random.default_rng(seed)
    ckpt = Checkpoint(
        model="transe",
        entities=[f"e{i}" for i in range(n_old)],
        relations=[f"r{i}" for i in range(n_rel)],
        entity_tables={"entity_embeddings": rng.uniform(-0.1, 0.1, (n_old, dim)).astype(np.float32)},
        relation_tables={"relation_embeddings": rng.uniform(-0.1, 0.1, (n_rel, dim)).astype(np.float32)},
        params={"norm": 1, "gamma": 12.0},
    )
    api.save(ckpt, work / "old.h5")
    (work / "new.tsv").write_text("".join(f"new{i}\n" for i in range(n_new)))
    heads, rels = rng.integers(0, n_new, n_triples), rng.integers(0, n_rel, n_triples)
    partners = rng.integers(0, n_old, n_triples)
    new_partner, flip = rng.random(n_triples) < 0.1, rng.random(n_triples) < 0.5
    lines = []
    for h, r, p, is_new, fl in zip(heads, rels, partners, new_partner, flip):
        other = f"new{p % n_new}" if is_new else f"e{p}"
        a, b = (other, f"new{h}") if fl else (f"new{h}", other)
        lines.append(f"{a}\tr{r}\t{b}\n")
    (work / "delta.tsv").write_text("".join(lines))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(address: str, timeout: float = 60.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no server listening on {address} after {timeout:.0f} s")


# The chief runs the CLI and, as it exits, writes its peak resident memory (VmHWM: this process's own,
# unlike a child's ru_maxrss, which may count the pages of the process that forked it).
_CHIEF = (
    "import atexit, os, sys\n"
    "def hwm():\n"
    "    with open(os.environ['EMBRETRAIN_BENCH_HWM'], 'w') as f:\n"
    "        f.write(str(peak_kb()))\n"
    "def peak_kb():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1])\n"
    "atexit.register(hwm)\n"
    "from embretrain.cli import main\n"
    "main(prog_name='embretrain')\n"
)


def peak_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a running process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run_extend(work: Path, args, extra: list[str], env: dict) -> dict:
    out, hwm = work / "merged.h5", work / "chief.hwm"
    argv = [sys.executable, "-c", _CHIEF, "-q", "extend", "--ckpt", str(work / "old.h5"),
            "--new-entities", str(work / "new.tsv"), "--data", str(work / "delta.tsv"), "--out", str(out),
            "--json", "--no-progress", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--negatives", str(args.negatives), "--old-rows", args.old_rows, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(env, EMBRETRAIN_BENCH_HWM=str(hwm)),
                          timeout=args.timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"extend failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    out.unlink()
    epochs = summary.get("epoch_seconds") or [summary["seconds"]["train"] / max(summary["epochs"], 1)]
    steady = epochs[-1]
    return {
        "epoch_s": round(steady, 3),
        "first_epoch_s": round(epochs[0], 3),
        "train_s": summary["seconds"]["train"],
        "wall_s": round(wall, 3),
        "triples_per_s": round(summary["examples_used"] / steady, 1),
        "examples": summary["examples_used"],
        "final_loss": summary["final_loss"],
        "chief_peak_mb": round(int(hwm.read_text()) / 1024, 1),
    }


def run_cluster(work: Path, args, env: dict) -> dict:
    """Start ps and worker processes (``embretrain server``), run the chief, end every server by pid."""
    cluster = {
        "chief": [f"127.0.0.1:{_free_port()}"],
        "worker": [f"127.0.0.1:{_free_port()}" for _ in range(args.workers)],
        "ps": [f"127.0.0.1:{_free_port()}" for _ in range(args.ps)],
    }
    servers = []
    try:
        for role in ("ps", "worker"):
            for index in range(len(cluster[role])):
                tf_config = json.dumps({"cluster": cluster, "task": {"type": role, "index": index}})
                servers.append((role, subprocess.Popen(
                    [sys.executable, "-m", "embretrain", "-q", "server", "--role", role],
                    env=dict(env, TF_CONFIG=tf_config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )))
        for address in cluster["ps"] + cluster["worker"]:
            _wait_listening(address)
        chief_env = dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
        row = run_extend(work, args, ["--strategy", "parameter-server", "--shards", str(args.shards)], chief_env)
        for role in ("ps", "worker"):
            row[f"{role}_peak_mb"] = [peak_mb(proc.pid) for r, proc in servers if r == role]
        return row
    finally:
        for _, proc in servers:  # gRPC servers never exit by themselves
            proc.terminate()
        for _, proc in servers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=int, default=100_000, help="old entities (frozen rows)")
    ap.add_argument("--new", type=int, default=5_000, help="new entities")
    ap.add_argument("--triples", type=int, default=50_000, help="delta triples")
    ap.add_argument("--relations", type=int, default=50)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2, help="the last epoch is reported (the first includes tracing)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--negatives", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ps", type=int, default=2)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run before it is killed")
    ap.add_argument("--old-rows", choices=("memory", "on-disk"), default="memory", help="extend --old-rows, both runs")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/embretrain-bench-distributed"))
    ap.add_argument("--json-out", type=Path, default=ROOT / "bench-out" / "bench_distributed.json")
    args = ap.parse_args()
    if args.quick:
        args.old, args.new, args.triples, args.dim = 2_000, 200, 2_000, 16

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    make_inputs(work, args.old, args.new, args.triples, args.relations, args.dim)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    env.pop("TF_CONFIG", None)

    rows = []
    print(f"local: {args.old} old rows, {args.new} new, {args.triples} triples, dim {args.dim} ...", file=sys.stderr)
    rows.append({"strategy": "local", "layout": "1 process", **run_extend(work, args, [], env)})
    layout = f"{args.workers} workers + {args.ps} ps + chief, {args.shards} shards/table"
    print(f"parameter-server: {layout} ...", file=sys.stderr)
    rows.append({"strategy": "parameter-server", "layout": layout, **run_cluster(work, args, env)})
    for row in rows:
        row["throughput_vs_local"] = round(row["triples_per_s"] / rows[0]["triples_per_s"], 3)

    table_mb = round(args.old * args.dim * 4 / 2**20, 1)
    print(f"old entity table: {table_mb} MB; --old-rows {args.old_rows}")
    print("| strategy | layout | steady epoch (s) | first epoch (s) | triples/s | throughput vs local "
          "| chief peak (MB) | ps peak (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ps_peak = " / ".join(f"{mb:.0f}" for mb in r.get("ps_peak_mb", [])) or "-"
        print(f"| {r['strategy']} | {r['layout']} | {r['epoch_s']:.2f} | {r['first_epoch_s']:.2f} | "
              f"{r['triples_per_s']:,.0f} | {r['throughput_vs_local']:.2f}x | {r['chief_peak_mb']:.0f} | {ps_peak} |")
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]},  # other jobs share the cores
        "workload": {k: getattr(args, k) for k in ("old", "new", "triples", "relations", "dim", "epochs",
                                                   "batch_size", "negatives", "workers", "ps", "shards", "old_rows")},
        "old_table_mb": table_mb,
        "runs": rows,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}", file=sys.stderr)


if __name__ == "__main__":
    main()
