"""Quick experiment: DistMult FB15k-237, embretrain step variants (chunk, pool), timed + MRR after N epochs."""
import argparse, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, "/work/wt-pool/scripts"); sys.path.insert(0, "/work/wt-pool")
import bench_throughput as bt

ap = argparse.ArgumentParser()
ap.add_argument("--variants", required=True, help="chunk:pool,...")
ap.add_argument("--model", default="distmult")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out", required=True)
ap.add_argument("--data", default=str(bt.DATA))
a = ap.parse_args()
args = argparse.Namespace(dim=200, negatives=32, batch_size=1024, epochs=a.epochs, seed=a.seed, threads=0,
                          no_evaluate=False)
data = Path(tempfile.mkdtemp()) / "d"
bt.prepare_data(Path(a.data), data, None, 2000)
rows = []
for v in a.variants.split(","):
    parts = v.split(":")
    tool = "pykeen" if parts[0] == "pk" else "embretrain"
    c, p = (1, 0) if tool == "pykeen" else (int(parts[0]), int(parts[1]))
    extra = {} if tool == "pykeen" else {"negative_chunk": c, "negative_pool": p}
    for kv in parts[2 if tool == "embretrain" else 1:]:
        k_, v_ = kv.split("=")
        extra[k_] = float(v_) if "." in v_ or "e-" in v_ else int(v_)
    row = bt.run_one(f"{tool} chunk {c} pool {p}", tool, extra, a.model, args, data)
    row.update(chunk=c, pool=p, seed=a.seed, epochs=a.epochs, extra=extra)
    print(json.dumps({k: row[k] for k in ("tool", "extra", "seed", "epochs", "steady_epoch_s", "positives_per_s", "test_mrr")}), flush=True)
    rows.append(row)
    Path(a.out).write_text(json.dumps(rows, indent=1))
