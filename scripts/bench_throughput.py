"""Training throughput (positives/s) and test MRR: embretrain against PyKEEN, measured side by side in one run.

Same data (FB15k-237 by default), same model (TransE with its preset's L2 distance, TransE-L1 and DistMult, dim 200),
same settings (32 negatives per
positive, batch 1024, the lr of embretrain's preset, same epochs; each tool's optimizer: embretrain's default for the
model, PyKEEN's Adam) for:

- embretrain's default step (negatives shared by chunks of the model's default ``negative_chunk`` positives: 64 for
  TransE, 8 for DistMult and ComplEx; its default optimizer),
- embretrain with independent negatives (``negative_chunk`` 1: the sampling PyKEEN does),
- PyKEEN's sLCWA loop with its basic negative sampler (when ``pykeen`` is installed: ``pip install -e '.[bench]'``).

Each run is a fresh child process (scripts/throughput_runs.py). The tools alternate round by round (round 1 runs them
in one order, round 2 in the reverse order, ...), so load from other jobs on the machine falls on both, and the ratio
to PyKEEN is computed per round from runs of that round. The machine's arithmetic peak is measured at the start of
every round (a float32 numpy matrix product), and each step's useful arithmetic is counted analytically
(:func:`flops_per_positive`) to report the fraction of that peak it reaches.

    python scripts/bench_throughput.py                                  # full run: 2 rounds, 3 epochs, both models
    python scripts/bench_throughput.py --limit 20000 --epochs 2 --rounds 1   # a quick check of the harness
    python scripts/bench_throughput.py --mrr-epochs 1,3,5,10             # also test MRR after each epoch count
    python scripts/bench_throughput.py --mrr-epochs 3 --mrr-seeds 1,2,3,4  # ... over 5 seeds, paired with PyKEEN's
    python scripts/bench_throughput.py --docs-from docs/throughput/fb15k-237.json   # rewrite the docs section
    python scripts/bench_throughput.py --ladder                         # what each change to the step bought
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/benchdocs.py, scripts/throughput_*.py

from benchdocs import replace_section  # noqa: E402
from embretrain.config import Settings  # noqa: E402  (no TensorFlow import)

DATA = ROOT.parent / "shared" / "data" / "fb15k-237"
RUNNER = Path(__file__).resolve().parent / "throughput_runs.py"
LADDER_JSON = ROOT / "docs" / "speed" / "bench_throughput.json"

# A --models entry: a model's preset, or one of these variants of it (the preset with these settings changed)
VARIANTS = {"transe-l1": ("transe", {"norm": 1})}


def model_spec(name: str) -> tuple[str, dict]:
    """``(model, settings over its preset)`` of a ``--models`` entry."""
    return VARIANTS.get(name, (name, {}))


DEFAULT_STEP = "embretrain, shared negatives (default, chunks of {chunk})"
# (label, tool, embretrain settings on top of the model's preset); the default step's chunk is the model's own
# default (:func:`model_defaults`), filled in per model by :func:`runnable`
CONFIGS = [
    (DEFAULT_STEP, "embretrain", {"negative_chunk": None}),
    ("embretrain, independent negatives (chunk 1)", "embretrain", {"negative_chunk": 1}),
    ("PyKEEN sLCWA, basic sampler", "pykeen", {}),
]
PEER = "pykeen"
PEER_MODELS = ("transe", "distmult")  # the models scripts/throughput_runs.py builds a PyKEEN twin of


def flops_per_positive(model: str, dim: int, negatives: int) -> int:
    """Useful floating-point operations per positive of one training step, forward and backward.

    Forward, per positive, with d = ``dim`` and K = ``negatives``:

    - TransE (L1 or L2): the positive's distance ``h + r - t`` (2d), its abs or square (d) and sum (d) = 4d; the query
      ``h + r`` or ``t - r`` (d); each negative ``q - e`` (d), abs or square (d), sum (d) = 3d. Total (5 + 3K) d.
    - DistMult: the positive's ``sum(h * r * t)`` (3d); the query ``h * r`` (d); each negative a dot product (2d).
      Total (4 + 2K) d.
    - ComplEx (d floats = d/2 complex numbers): the positive's ``Re(sum(h * r * conj(t)))``: a complex product per
      number (6 operations: 3d) and the real part of a dot product (4 per number: 2d) = 5d; the query ``h * r`` (3d);
      each negative a real dot product over the d floats (2d). Total (8 + 2K) d.

    Backward is counted as twice the forward (one product for each input's gradient), so a step is 3x the forward.
    The loss over K scores (O(K), under 1% here) and the optimizer update are not counted: they differ by tool
    (embretrain's Adam touches the looked-up rows, PyKEEN's every row), and this is the arithmetic the model needs,
    the same for every tool, so the fraction of peak compares like with like.
    """
    model = model_spec(model)[0]
    if model == "transe":
        forward = (5 + 3 * negatives) * dim
    elif model == "distmult":
        forward = (4 + 2 * negatives) * dim
    elif model == "complex":
        forward = (8 + 2 * negatives) * dim
    else:
        raise ValueError(f"no FLOP count for model {model!r} (transe, distmult, complex)")
    return 3 * forward


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's arithmetic peak as this run sees it: the best of ``repeats`` float32 ``[n, n] @ [n, n]`` products
    (2 n^3 operations each) through numpy's BLAS, with its default threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def prepare_data(src: Path, dst: Path, limit: int | None, test_limit: int | None = None) -> dict:
    """Write train.txt (the first ``limit`` lines, or all), and valid.txt / test.txt cut to triples whose entities and
    relation occur in that train.txt, into ``dst``: both tools then read identical files and rank the same triples
    (each would otherwise drop unknown names its own way). ``test_limit`` keeps the first N of those test triples."""
    dst.mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in (src / "train.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    train = lines[:limit] if limit else lines
    (dst / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    ents, rels = set(), set()
    for ln in train:
        h, r, t = ln.split("\t")
        ents.update((h, t))
        rels.add(r)
    counts = {"train": len(train), "entities": len(ents), "relations": len(rels)}
    for split in ("valid", "test"):
        kept, dropped = [], 0
        for ln in (src / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            if not ln.strip():
                continue
            h, r, t = ln.split("\t")
            if h in ents and t in ents and r in rels:
                kept.append(ln)
            else:
                dropped += 1
        if split == "test" and test_limit:
            dropped, kept = dropped + max(0, len(kept) - test_limit), kept[:test_limit]
        (dst / f"{split}.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
        counts[split], counts[f"{split}_dropped"] = len(kept), dropped
    return counts


def effective_settings(model: str, args, extra: dict) -> dict:
    """embretrain's settings for ``model`` (its preset in embretrain/presets/, then this run's options): the single
    source both tools are configured from."""
    from embretrain.config import resolve_settings  # no TensorFlow import

    return resolve_settings(preset_file(model), overrides(args, extra, model)).to_dict()


def preset_file(model: str) -> Path:
    return ROOT / "embretrain" / "presets" / f"{model_spec(model)[0]}.toml"


# The objective both tools implement alike, whatever a preset's quality recipe says (the DistMult preset trains with
# softmax over 1,024 shared negatives, N3 and a decaying lr, which PyKEEN's sLCWA loop has no twin for): embretrain's
# logistic loss = PyKEEN's NSSALoss, an L2 penalty of the preset's weight (0 when the preset's penalty is N3), a
# constant learning rate; embretrain's default optimizer for the model (:func:`overrides`; PyKEEN: Adam).
COMMON_OBJECTIVE = {"loss": "logistic", "regularizer": "l2", "lr_decay": 1.0}


def overrides(args, extra: dict, model: str) -> dict:
    from embretrain.config import load_preset  # no TensorFlow import

    base, variant = model_spec(model)
    common = {**COMMON_OBJECTIVE, "optimizer": model_defaults(model).optimizer, **variant}
    if load_preset(base).get("regularizer") == "n3":
        common["regularization"] = 0.0
    # threads 0 = each tool's own default (TensorFlow's choice; PyTorch: one per core)
    return {**common, "dim": args.dim, "negatives": args.negatives, "batch_size": args.batch_size,
            "epochs": args.epochs, "seed": args.seed, "threads": args.threads, **extra}


def child_run(tool: str, extra: dict, model: str, args, data: Path, **more) -> tuple[dict, dict]:
    """``(spec, result)`` of one child process (scripts/throughput_runs.py) training ``model`` with ``tool``."""
    spec = {"tool": tool, "data": str(data), "evaluate": not args.no_evaluate,
            "config_file": str(preset_file(model)), "overrides": overrides(args, extra, model),
            "settings": effective_settings(model, args, extra), **more}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, str(RUNNER), json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return spec, json.loads(proc.stdout.strip().splitlines()[-1])  # libraries may print above the result line


def run_one(label: str, tool: str, extra: dict, model: str, args, data: Path) -> dict:
    """One child process: train ``model`` with ``tool``, return its timings and test figures."""
    print(f"  {model}: {label} ...", file=sys.stderr, flush=True)
    spec, out = child_run(tool, extra, model, args, data)
    epochs = out["epoch_seconds"]
    # the first epoch includes tracing (TensorFlow) or set-up (PyKEEN): steady = median of the others
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    s = spec["settings"]
    flops = flops_per_positive(model, s["dim"], s["negatives"])
    row = {"label": label, "tool": tool, "model": model, "negative_chunk": s["negative_chunk"] if tool != PEER else 1,
           **out, "steady_epoch_s": round(steady, 3), "positives_per_s": round(out["examples"] / steady),
           "flops_per_positive": flops, "gflops": round(out["examples"] / steady * flops / 1e9, 6)}
    for key in ("test_mrr", "test_hits10"):
        if key in row:
            row[key] = round(row[key], 4)
    print(f"    {row['positives_per_s']:,} positives/s, test MRR {row.get('test_mrr', '-')}", file=sys.stderr)
    return row


def run_curve(label: str, tool: str, extra: dict, model: str, args, data: Path, epochs: list[int]) -> dict:
    """One child process: ``tool``'s test MRR after each of ``epochs`` (untimed; see scripts/throughput_runs.py)."""
    print(f"  {model}: {label}, test MRR after {epochs} epochs ...", file=sys.stderr, flush=True)
    _, out = child_run(tool, extra, model, args, data, eval_epochs=epochs)
    mrr = {str(e): round(out["curve"][str(e)], 4) for e in epochs}  # every count asked for, or a KeyError
    print(f"    {mrr}", file=sys.stderr)
    return {"label": label, "tool": tool, "model": model, "mrr": mrr}


def model_defaults(model: str) -> Settings:
    """The settings a run of ``model`` gets when it names nothing (its model defaults; not its preset's): the default
    step's chunk and optimizer."""
    from embretrain.config import resolve_settings  # no TensorFlow import

    return resolve_settings(overrides={"model": model_spec(model)[0]})


def runnable(models: list[str], configs: list[tuple]) -> list[tuple[str, tuple]]:
    """``(model, config)`` pairs in order, without PyKEEN for a model it has no twin of (scripts/throughput_runs.py);
    the default step gets the model's default chunk."""
    out = []
    for model in models:
        for label, tool, extra in configs:
            if tool == PEER and model_spec(model)[0] not in PEER_MODELS:
                continue
            if label == DEFAULT_STEP:
                chunk = model_defaults(model).negative_chunk
                label, extra = label.format(chunk=chunk), {**extra, "negative_chunk": chunk}
            out.append((model, (label, tool, extra)))
    return out


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("embretrain", "tensorflow", "torch", "pykeen"):
        try:
            from importlib.metadata import version

            out[name] = version(name if name != "tensorflow" else _tf_dist())
        except Exception:  # not installed: the peer is optional  # noqa: BLE001
            out[name] = None
    return out


def _tf_dist() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            version(dist)
            return dist
        except PackageNotFoundError:
            continue
    return "tensorflow"


def bench(args) -> dict:
    tools = args.tools.split(",")
    if PEER in tools and importlib.util.find_spec("pykeen") is None:
        print("pykeen is not installed (pip install -e '.[bench]'): timing embretrain only", file=sys.stderr)
        tools.remove(PEER)
    configs = [c for c in CONFIGS if c[1] in tools]
    if args.chunks:  # more embretrain steps: negatives shared by chunks of these sizes (MRR against chunk size)
        configs[1:1] = [(f"embretrain, shared negatives (chunks of {c})", "embretrain", {"negative_chunk": c})
                        for c in (int(x) for x in args.chunks.split(","))]
    models = args.models.split(",")
    runs, peaks = [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        counts = prepare_data(Path(args.data), data, args.limit, args.test_limit)
        for rnd in range(args.rounds):
            peak = matmul_peak_gflops()
            peaks.append({"round": rnd + 1, "gflops": round(peak, 1)})
            print(f"round {rnd + 1}/{args.rounds}: matmul peak {peak:.1f} GFLOP/s", file=sys.stderr)
            order = configs if rnd % 2 == 0 else configs[::-1]  # alternate who goes first
            for model, (label, tool, extra) in runnable(models, order):
                row = run_one(label, tool, extra, model, args, data)
                row.update(round=rnd + 1, peak_fraction=round(row["gflops"] / peak, 7))
                runs.append(row)
        curves = []
        if args.mrr_epochs:  # equal epochs, several counts: a step that learns slower or overfits later shows here
            epochs = sorted({int(x) for x in args.mrr_epochs.split(",")})
            for seed in curve_seeds(args):  # one seed's MRR differs from another's by about the gap in question
                seeded = argparse.Namespace(**{**vars(args), "seed": seed})
                for model, (label, tool, extra) in runnable(models, configs):
                    curves.append({**run_curve(label, tool, extra, model, seeded, data, epochs), "seed": seed})
    meta = {
        "command": "python scripts/bench_throughput.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "time": time.strftime("%Y-%m-%d %H:%M"), "data": str(args.data), "limit": args.limit,
        "test_limit": args.test_limit, "threads": args.threads, "counts": counts,
        "epochs": args.epochs, "rounds": args.rounds, "dim": args.dim, "negatives": args.negatives,
        "batch_size": args.batch_size, "seed": args.seed, "versions": versions(),
        "settings": {m: effective_settings(m, args, {}) for m in models},
        # other jobs on the machine: PyTorch's OpenMP threads slow down far more under load than TensorFlow's pool
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
    }
    result = {"meta": meta, "peaks": peaks, "runs": runs, "ratios": ratios(runs)}
    if curves:
        result["curves"] = curves
        result["seed_summary"] = seed_summary(curves)
    result["markdown"] = render(result)
    return result


def ratios(runs: list[dict]) -> list[dict]:
    """Per round and model: each embretrain configuration's positives/s and test MRR over PyKEEN's in that round."""
    out = []
    for r in runs:
        if r["tool"] == PEER:
            continue
        peer = next((p for p in runs if p["tool"] == PEER and p["round"] == r["round"] and p["model"] == r["model"]),
                    None)
        if peer is None:
            continue
        row = {"round": r["round"], "model": r["model"], "label": r["label"],
               "speed_ratio": round(r["positives_per_s"] / peer["positives_per_s"], 2)}
        if "test_mrr" in r and "test_mrr" in peer:
            row["mrr_difference"] = round(r["test_mrr"] - peer["test_mrr"], 4)
        out.append(row)
    return out


def render(result: dict) -> str:
    """Markdown: one row per run (round by round), then the per-round ratios to PyKEEN."""
    lines = ["| round | model | tool / step | steady epoch s | positives/s | GFLOP/s | of peak | test MRR | Hits@10 |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        mrr = f"{r['test_mrr']:.4f}" if "test_mrr" in r else "-"
        hits = f"{r['test_hits10']:.4f}" if "test_hits10" in r else "-"
        lines.append(f"| {r['round']} | {r['model']} | {r['label']} | {r['steady_epoch_s']:.2f} | "
                     f"{r['positives_per_s']:,} | {r['gflops']:.2f} | {100 * r['peak_fraction']:.2f}% | {mrr} | {hits} |")
    if result["ratios"]:
        lines += ["", "| round | model | embretrain step | positives/s vs PyKEEN (same round) | test MRR minus PyKEEN's |",
                  "|---:|---|---|---:|---:|"]
        for q in result["ratios"]:
            diff = f"{q['mrr_difference']:+.4f}" if "mrr_difference" in q else "-"
            lines.append(f"| {q['round']} | {q['model']} | {q['label']} | {q['speed_ratio']:.2f}x | {diff} |")
    if result.get("curves"):
        seed = result["meta"]["seed"]
        lines += ["", f"Test MRR after each number of epochs (`--mrr-epochs`; untimed, seed {seed}: embretrain trains "
                  "once per count, PyKEEN ranks after those epochs of one run):", "",
                  render_curves([c for c in result["curves"] if c.get("seed", seed) == seed])]
        if len({c.get("seed", seed) for c in result["curves"]}) > 1:
            lines += ["", "The same over seeds (`--mrr-seeds`): mean test MRR +- its standard error, and the mean of the "
                      "per-seed differences from PyKEEN (same seed, same epochs) +- its standard error:", "",
                      render_seed_summary(result["seed_summary"])]
    return "\n".join(lines)


def curve_seeds(args) -> list[int]:
    """``--seed`` first, then ``--mrr-seeds``' others, each once."""
    more = [int(x) for x in args.mrr_seeds.split(",")] if args.mrr_seeds else []
    return list(dict.fromkeys([args.seed, *more]))


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def seed_summary(curves: list[dict]) -> list[dict]:
    """Per model, step and epoch count: MRR mean +- standard error over seeds, and the difference from PyKEEN's run
    of the same seed (paired: the seed's test-set luck and data order fall on both), mean +- standard error."""
    out = []
    steps = list(dict.fromkeys((c["model"], c["label"], c["tool"]) for c in curves))
    for model, label, tool in steps:
        mine = {c.get("seed"): c["mrr"] for c in curves if (c["model"], c["label"]) == (model, label)}
        peer = {c.get("seed"): c["mrr"] for c in curves if c["model"] == model and c["tool"] == PEER}
        for epochs in sorted({int(e) for m in mine.values() for e in m}):
            key = str(epochs)
            values = [m[key] for m in mine.values() if key in m]
            mean, se = _mean_se(values)
            row = {"model": model, "label": label, "tool": tool, "epochs": epochs, "seeds": len(values),
                   "mrr_mean": round(mean, 4), "mrr_se": round(se, 4)}
            paired = [m[key] - peer[s][key] for s, m in mine.items() if key in m and s in peer and key in peer[s]]
            if tool != PEER and paired:
                d, d_se = _mean_se(paired)
                row.update(difference_mean=round(d, 4), difference_se=round(d_se, 4), pairs=len(paired))
            out.append(row)
    return out


def render_seed_summary(rows: list[dict]) -> str:
    lines = ["| model | tool / step | epochs | seeds | test MRR | minus PyKEEN's (paired by seed) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        diff = (f"{r['difference_mean']:+.4f} +- {r['difference_se']:.4f}" if "difference_mean" in r else "-")
        lines.append(f"| {r['model']} | {r['label']} | {r['epochs']} | {r['seeds']} | "
                     f"{r['mrr_mean']:.4f} +- {r['mrr_se']:.4f} | {diff} |")
    return "\n".join(lines)


def render_curves(curves: list[dict]) -> str:
    """Test MRR after each epoch count (``--mrr-epochs``), per model and step, and the best of them."""
    epochs = sorted({int(e) for c in curves for e in c["mrr"]})
    lines = ["| model | tool / step | " + " | ".join(f"after {e}" for e in epochs) + " | best |",
             "|---|---|" + "---:|" * (len(epochs) + 1)]
    for c in curves:
        cells = [f"{c['mrr'][str(e)]:.4f}" if str(e) in c["mrr"] else "-" for e in epochs]
        lines.append(f"| {c['model']} | {c['label']} | " + " | ".join(cells) + f" | {max(c['mrr'].values()):.4f} |")
    return "\n".join(lines)


def _model_words(meta: dict) -> str:
    """Per model: its distance and self-adversarial temperature, from the run's recorded settings."""
    words = []
    for name, s in meta.get("settings", {}).items():
        norm = f"L{s['norm']}, " if s["model"] in ("transe", "rotate") else ""
        temp = s.get("adversarial_temperature", 0)
        words.append(f"{name}: {norm}" + (f"self-adversarial temperature {temp:g}" if temp else "uniform negatives")
                     + f", embretrain's optimizer {s['optimizer']} (PyKEEN: Adam)")
    return "; ".join(words)


def docs_section(result: dict, ladder: dict | None, source: str = "docs/throughput/fb15k-237.json") -> str:
    """The '## Throughput' section of docs/BENCHMARKS.md from a run's JSON (``source``) and the ladder's."""
    meta, c = result["meta"], result["meta"]["counts"]
    v = meta["versions"]
    peaks = ", ".join(f"{p['gflops']:.0f}" for p in result["peaks"])
    smoke = (f"**A check of the harness, not a benchmark**: the first {meta['limit']:,} training triples only, so the "
             "figures below say the script works end to end, not how fast either tool is at full size. The full run: "
             "`python scripts/bench_throughput.py --json-out docs/throughput/fb15k-237.json` "
             "(2 rounds, 3 epochs, TransE with its preset's L2 distance, TransE-L1 and DistMult).\n\n") if meta["limit"] else ""
    text = (
        "## Throughput\n\n"
        f"{smoke}"
        f"Measured with `{meta['command']}` on {meta['machine']}, in one run "
        f"(JSON: `{source}`). Data: {Path(meta['data']).name} train ({c['train']:,} triples, "
        f"{c['entities']:,} entities); test MRR ranks {c['test']:,} test triples (those whose names occur in train"
        + (f", the first {meta['test_limit']:,}" if meta.get("test_limit") else "")
        + f"; filtered against train + valid + test, realistic ranks, head and tail pooled). Both tools: dim {meta['dim']}, "
        f"{meta['negatives']} uniform negatives per positive corrupting its head or tail, batch {meta['batch_size']}, "
        f"the lr of embretrain's preset, {meta['epochs']} epochs, the same loss (embretrain's logistic loss = "
        f"PyKEEN's `NSSALoss`; {_model_words(meta)}), Glorot starts, no unit-norm constraint "
        "(scripts/throughput_runs.py says what is left different). "
        f"Versions: embretrain {v.get('embretrain')}, TensorFlow {v.get('tensorflow')}, PyTorch {v.get('torch')}, "
        f"PyKEEN {v.get('pykeen')}; threads: "
        + (f"{meta['threads']} for both" if meta.get("threads") else "each tool's default")
        + ". Every run is a fresh process; the tools alternate round by round so load from other "
        "jobs on this shared machine falls on both; ratios are within one round. Steady epoch = median of the epochs after "
        "the first (which includes tracing or set-up).\n\n"
        f"Arithmetic peak, measured at the start of each round (float32 2048 x 2048 matrix product, numpy): {peaks} GFLOP/s. "
        "GFLOP/s counts the arithmetic the model needs per positive, forward and backward (TransE, L1 or L2: 3 x (5 + 3K) x d, "
        "DistMult: 3 x (4 + 2K) x d for K negatives, d = dim; optimizer updates not counted, see "
        "`flops_per_positive` in scripts/bench_throughput.py), the same for every tool.\n\n"
        + result["markdown"] + "\n"
        + (f"\n{result['notes']}\n" if result.get("notes") else "")
    )
    if ladder:
        text += (
            "\n### What each change to embretrain's step bought\n\n"
            f"Measured with `{ladder['meta']['command']}` (the ladder mode, now `--ladder`; JSON in "
            "`docs/speed/bench_throughput.json`), TransE, same configuration, each variant a fresh `embretrain train` "
            "process. No peer column: a peer's figure counts only when measured in the same run (the table above).\n\n"
            + ladder["markdown_no_peer"] + "\n\n" + (ROOT / "docs" / "speed" / "throughput-notes.md").read_text()
        )
    return text


def ladder_result(path: Path) -> dict | None:
    """The ladder's JSON, re-rendered without any peer figure it may carry."""
    if not path.is_file():
        return None
    from throughput_ladder import render as render_ladder

    ladder = json.loads(path.read_text())
    ladder["markdown_no_peer"] = render_ladder(ladder["rows"])
    return ladder


def run_ladder(args) -> None:
    from throughput_ladder import LADDER, checkout, run_variant
    from throughput_ladder import render as render_ladder

    ladder = LADDER if not args.only else [LADDER[int(i)] for i in args.only.split(",")]
    args.evaluate = not args.no_evaluate
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            old = checkout(args.baseline_rev, Path(tmp))
            ladder = [(f"step of revision {args.baseline_rev} (before this work)", [], {"PYTHONPATH": str(old)}), *ladder]
        rows = [run_variant(label, extra, env, args, Path(tmp)) for label, extra, env in ladder]
    table = render_ladder(rows)
    print(table)
    meta = {"command": "python scripts/bench_throughput.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "time": time.strftime("%Y-%m-%d %H:%M"), "examples": rows[0]["examples"], "dim": args.dim,
            "negatives": args.negatives, "batch_size": args.batch_size, "epochs": args.epochs}
    out = Path(args.json_out or ROOT / "bench-out" / "bench_throughput_ladder.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "markdown": table}, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="folder with train.txt, valid.txt, test.txt")
    ap.add_argument("--limit", type=int, help="train on the first N triples of train.txt only (a quick check)")
    ap.add_argument("--models", default="transe,transe-l1,distmult",
                    help="comma-separated: transe (its preset's norm), transe-l1, distmult, complex (embretrain only)")
    ap.add_argument("--chunks", help="also embretrain with negatives shared by chunks of these sizes, e.g. 16,32")
    ap.add_argument("--tools", default="embretrain,pykeen", help="comma-separated: embretrain, pykeen")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--negatives", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-limit", type=int, help="rank only the first N test triples (both tools the same N)")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads for both tools (TensorFlow, PyTorch); 0 = each tool's default")
    ap.add_argument("--no-evaluate", action="store_true", help="skip test MRR (timings only)")
    ap.add_argument("--mrr-epochs", help="also each step's test MRR after these epoch counts, e.g. 1,3,5,10 (untimed)")
    ap.add_argument("--mrr-seeds", help="with --mrr-epochs: the same for these seeds too, e.g. 1,2,3,4 (mean +- "
                    "standard error per step, and the difference from PyKEEN paired by seed)")
    ap.add_argument("--json-out", help="default: bench-out/bench_throughput.json")
    ap.add_argument("--docs-from", metavar="JSON", help="only rewrite the '## Throughput' section of docs/BENCHMARKS.md")
    ap.add_argument("--ladder", action="store_true", help="embretrain's ladder of step variants instead (TransE)")
    ap.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)  # the ladder's old spelling: default now
    ap.add_argument("--baseline-rev", help="--ladder: first time the step of this git revision")
    ap.add_argument("--only", help="--ladder: comma-separated ladder indices to run (default: all)")
    args = ap.parse_args(argv)
    if args.mrr_seeds and not args.mrr_epochs:
        ap.error("--mrr-seeds needs --mrr-epochs (the epoch counts to rank after)")
    if args.docs_from:
        result = json.loads(Path(args.docs_from).read_text())
        replace_section("## Throughput", docs_section(result, ladder_result(LADDER_JSON), args.docs_from))
        return
    if args.ladder:
        run_ladder(args)
        return
    result = bench(args)
    print(result["markdown"])
    out = Path(args.json_out or ROOT / "bench-out" / "bench_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
