"""The ladder: what each change to embretrain's step bought, one variant per fresh `embretrain train` process.

Run through ``python scripts/bench_throughput.py --ladder`` (FB15k-237, TransE, dim 200, 32 negatives, batch 1024):
each row changes one thing (from the row before, or from the default). ``--baseline-rev REV`` first times the step
of an earlier git revision in the same run. The head-to-head with PyKEEN is the main mode of bench_throughput.py.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["LADDER", "checkout", "run_variant", "render"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fb15k-237"

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
    cmd = [sys.executable, "-m", "embretrain", "-q", "train", "--config", str(ROOT / "embretrain" / "presets" / "transe.toml"),
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
    """The ladder as a markdown table (no peer column: a peer's figure counts only when measured in the same run)."""
    base = rows[0]["positives_per_s"]
    mrr = any("test_mrr" in r for r in rows)
    lines = ["| variant | steady epoch s | positives/s | vs first row |" + (" test MRR |" if mrr else ""),
             "|---|---:|---:|---:|" + ("---:|" if mrr else "")]
    for r in rows:
        line = f"| {r['variant']} | {r['steady_epoch_s']:.2f} | {r['positives_per_s']:,} | {r['positives_per_s'] / base:.2f}x |"
        if mrr:
            line += f" {r.get('test_mrr', '')} |"
        lines.append(line)
    return "\n".join(lines)
