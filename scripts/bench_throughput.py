"""Training throughput (positives/s) at PyKEEN's configuration, and what each change to the step bought.

Issue 6 compares with PyKEEN 1.11 on this machine's CPU: FB15k-237, TransE, dim 200, 32 negatives per
positive, batch 1024 -- PyKEEN did about 16k positives/s there (17 s per epoch, 2 threads). This script trains
that configuration through the real CLI (one child process per variant, so thread settings and environment
apply from the start), in one run, and reports the steady epoch of each variant:

    embretrain train --config configs/transe.toml --data train.txt --dim 200 --negatives 32 --batch-size 1024 ...

Each row of the ladder changes one thing (from the row before, or from the default), so the table says what each bought.
With ``--evaluate`` each variant's model is also ranked on the test split (filtered MRR), to show a faster step
did not buy its speed with quality at the same number of epochs.

    python scripts/bench_throughput.py                        # the ladder, 3 epochs each
    python scripts/bench_throughput.py --epochs 10 --evaluate # plus test MRR per variant
    python scripts/bench_throughput.py --baseline-rev afe566c # first row: the step as it was at that commit
    python scripts/bench_throughput.py --docs-from docs/speed/bench_throughput.json   # rewrite the docs section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/benchdocs.py

from benchdocs import replace_section  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fb15k-237"
PYKEEN_POSITIVES_PER_S = 16_000  # the measurement of PyKEEN 1.11 on this machine (not rerun here)

# (label, extra CLI options, extra environment): each rung changes one thing from the one before. The environment is
# what users get (TensorFlow's defaults, oneDNN custom ops on) unless a rung says otherwise.
LADDER = [
    ("independent negatives (one draw per positive)", ["--negative-chunk", "1"], {}),
    ("+ shared negatives, chunks of 64 positives (the default)", ["--negative-chunk", "64"], {}),
    ("+ 1 intra-op thread instead of TensorFlow's choice", ["--negative-chunk", "64", "--threads", "1"], {}),
    ("chunks of 64, oneDNN custom ops off (TF_ENABLE_ONEDNN_OPTS=0)", ["--negative-chunk", "64"], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ("chunks of 256", ["--negative-chunk", "256"], {}),
]


def checkout(rev: str, work: Path) -> Path:
    """A read-only copy of the package at git revision ``rev`` (``git archive``), to time an earlier step in the same run."""
    folder = work / f"rev-{rev}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "embretrain"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run_variant(label: str, extra: list[str], env_extra: dict[str, str], args, work: Path) -> dict:
    out = work / "model.h5"
    cmd = [sys.executable, "-m", "embretrain", "-q", "train", "--config", str(ROOT / "configs" / "transe.toml"),
           "--data", str(Path(args.data) / "train.txt"), "--out", str(out), "--dim", str(args.dim),
           "--negatives", str(args.negatives), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--seed", "0", "--json", "--no-progress", *extra]
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}  # TensorFlow's default unless a rung sets it
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **env_extra})
    if "PYTHONPATH" in env_extra:  # an earlier revision: its own package first on the path
        env["PYTHONPATH"] = env_extra["PYTHONPATH"] + os.pathsep + os.environ.get("PYTHONPATH", "")
    print(f"{label}: {' '.join(extra)} {env_extra or ''}", file=sys.stderr)
    # `python -m` puts the working directory first on sys.path: run an earlier revision from its own folder
    cwd = env_extra.get("PYTHONPATH", str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    version = subprocess.run([sys.executable, "-c", "import embretrain; print(embretrain.__file__)"],
                             capture_output=True, text=True, env=env, cwd=cwd).stdout.strip()
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    epochs = summary["epoch_seconds"]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    row = {
        "variant": label,
        "package": version,
        "options": " ".join(extra),
        "env": {k: v for k, v in env_extra.items() if k != "PYTHONPATH"},
        "examples": summary["examples"],
        "first_epoch_s": epochs[0],
        "steady_epoch_s": round(steady, 3),
        "positives_per_s": round(summary["examples"] / steady),
        "final_loss": summary["final_loss"],
    }
    if args.evaluate:
        ev = subprocess.run(
            [sys.executable, "-m", "embretrain", "-q", "evaluate", "--ckpt", str(out),
             "--test", str(Path(args.data) / "test.txt"), "--known", str(Path(args.data) / "train.txt"),
             "--known", str(Path(args.data) / "valid.txt"), "--json"],
            capture_output=True, text=True, env=env,
        )
        if ev.returncode != 0:
            raise SystemExit(f"evaluate failed:\n{ev.stderr[-3000:]}")
        row["test_mrr"] = round(json.loads(ev.stdout)["mrr"], 4)
    out.unlink(missing_ok=True)
    print(json.dumps(row), file=sys.stderr)
    return row


def render(rows: list[dict]) -> str:
    base = rows[0]["positives_per_s"]
    mrr = any("test_mrr" in r for r in rows)
    lines = ["| variant | steady epoch s | positives/s | vs first row | vs PyKEEN 16k/s |" + (" test MRR |" if mrr else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if mrr else "")]
    for r in rows:
        line = (f"| {r['variant']} | {r['steady_epoch_s']:.2f} | {r['positives_per_s']:,} | "
                f"{r['positives_per_s'] / base:.2f}x | {r['positives_per_s'] / PYKEEN_POSITIVES_PER_S:.2f}x |")
        if mrr:
            line += f" {r.get('test_mrr', '')} |"
        lines.append(line)
    return "\n".join(lines)


def docs_section(result: dict) -> str:
    meta = result["meta"]
    return (
        "## Throughput\n\n"
        f"Measured with `{meta['command']}` on {meta['machine']} (one run; each variant is a fresh `embretrain train` "
        f"process). Configuration as in issue 6's PyKEEN comparison: FB15k-237 ({meta['examples']:,} training triples), "
        f"TransE, dim {meta['dim']}, {meta['negatives']} negatives per positive, batch {meta['batch_size']}, "
        f"lazy Adam, {meta['epochs']} epochs; steady epoch = median of the epochs after the first (which includes tracing). "
        f"PyKEEN 1.11 did about {PYKEEN_POSITIVES_PER_S:,} positives/s on this machine (the issue's figure; not rerun here).\n\n"
        + result["markdown"] + "\n\n" + result.get("notes", "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="folder with train.txt (and test.txt, valid.txt for --evaluate)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--negatives", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--evaluate", action="store_true", help="also rank the test split (filtered MRR) per variant")
    ap.add_argument("--baseline-rev", help="first time the step of this git revision (e.g. the commit before a change)")
    ap.add_argument("--only", help="comma-separated ladder indices to run (default: all)")
    ap.add_argument("--json-out", default=str(ROOT / "bench-out" / "bench_throughput.json"))
    ap.add_argument("--docs-from", metavar="JSON", help="only rewrite the '## Throughput' section of docs/BENCHMARKS.md")
    args = ap.parse_args()
    if args.docs_from:
        replace_section("## Throughput", docs_section(json.loads(Path(args.docs_from).read_text())))
        return
    ladder = LADDER if not args.only else [LADDER[int(i)] for i in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            old = checkout(args.baseline_rev, Path(tmp))
            ladder = [(f"step of revision {args.baseline_rev} (before this work)", [], {"PYTHONPATH": str(old)}), *ladder]
        rows = [run_variant(label, extra, env, args, Path(tmp)) for label, extra, env in ladder]
    table = render(rows)
    print(table)
    meta = {
        "command": "python scripts/bench_throughput.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "time": time.strftime("%Y-%m-%d %H:%M"),
        "examples": rows[0]["examples"], "dim": args.dim, "negatives": args.negatives,
        "batch_size": args.batch_size, "epochs": args.epochs,
    }
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"meta": meta, "rows": rows, "markdown": table}, indent=2))
    print(f"\nwrote {args.json_out}", file=sys.stderr)


if __name__ == "__main__":
    main()
