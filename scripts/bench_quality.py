#!/usr/bin/env python
"""Quality benchmark: are entities added by ``extend`` as good as a full retrain would make them?

Protocol (issue 3), on a dataset of ``train``/``valid``/``test`` TSV files, with a seed:

1. Choose a fraction of the train entities as "new" (``--fraction``, default 10%). Base = train triples
   whose entities are all old. Delta = train triples touching at least one new entity. Test-new = test
   triples touching a new entity that occurs in the delta (every name known to the grown model);
   test-old = test triples whose entities and relation are all in the base.
2. Through the CLI (``embretrain ... --json`` in a subprocess: what users run, process start included):
   ``train`` on base; ``extend`` with the new entities and the delta (one or more variants); a full
   retrain (``train`` on base + delta, same settings and epochs); a no-training baseline (``extend
   --epochs 0``: new rows left at their initial value).
3. ``embretrain evaluate --json`` (filtered against train + valid + test): MRR, Hits@1, Hits@10 on
   test-new and test-old, wall time of every run, and a check that the old rows came out bit-identical.
   Writes ``results.json`` and ``results.md`` into ``--out-dir``.
4. ``--chain N --chain-fraction 0.025``: the vocabulary grows in N nights, each ``extend`` growing the
   previous night's output (how the tool is used from cron); figures after every night, and the last
   night compared with a full retrain on everything.

    python scripts/bench_quality.py --dataset wn18rr --model transe --epochs 30 --out-dir bench/wn-transe
    python scripts/bench_quality.py --from-json bench/wn-transe/results.json   # re-render the Markdown
    python scripts/bench_quality.py --update-docs docs/BENCHMARKS.md --from-json docs/quality/*.json

``--diagnose`` (one step) also runs the main extend from the full retrain's old rows (a control: what
``extend`` makes of old rows that were trained knowing the delta) and breaks new-entity MRR down by the
new entity's number of delta triples, to tell a weak method from information the frozen rows lack.

Extend runs that give no ``--init`` start from Glorot (``--init xavier``), whatever the preset says.
``--reuse`` keeps base/full checkpoints already in ``--out-dir`` (same split and settings) so extend
variants can be compared without paying for the two trainings again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Split", "make_split", "make_chain", "run_benchmark", "render_markdown", "update_docs", "main"]

logger = logging.getLogger("bench_quality")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/benchdocs.py

DATA_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DATASETS = {"fb15k-237": "fb15k-237", "wn18rr": "wn18rr"}

Triple = tuple[str, str, str]


# ---------------------------------------------------------------------------------------------
# data and splits
def read_tsv(path: Path) -> list[Triple]:
    with open(path, encoding="utf-8") as fh:
        return [tuple(line.rstrip("\n").split("\t")) for line in fh if line.strip()]  # type: ignore[misc]


def write_tsv(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines("\t".join(r) + "\n" if isinstance(r, tuple) else f"{r}\n" for r in rows)
    return path


def dataset_dir(name: str) -> Path:
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
    counts = [int(round(f * n)) for f in fractions]
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


# ---------------------------------------------------------------------------------------------
# running the CLI
class Runner:
    """Runs ``embretrain`` commands, as a subprocess (the default: wall time as users see it) or in-process."""

    def __init__(self, in_process: bool = False, echo=None):
        self.in_process = in_process
        self.echo = echo or (lambda msg: logger.info(msg))

    def __call__(self, args: list[str]) -> tuple[dict[str, Any], float]:
        args = [*args, "--json"]
        self.echo("$ embretrain " + " ".join(shlex.quote(a) for a in args))
        t0 = time.perf_counter()
        if self.in_process:
            from click.testing import CliRunner

            from embretrain.cli import main as cli_main

            res = CliRunner().invoke(cli_main, ["-q", *args], catch_exceptions=False)
            code, out, err = res.exit_code, res.stdout, getattr(res, "stderr", "")
        else:
            env = dict(os.environ)
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            exe = Path(sys.executable).with_name("embretrain")
            cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embretrain"]
            proc = subprocess.run([*cmd, "-q", *args], capture_output=True, text=True, env=env)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        wall = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"embretrain {' '.join(args)} failed with exit code {code}:\n{err}\n{out}")
        return json.loads(out[out.index("{"):]), wall


def setting_args(opts: argparse.Namespace) -> list[str]:
    """Options given to every train/extend run (the same budget for every contestant)."""
    out: list[str] = []
    if opts.config:
        out += ["--config", opts.config]
    for name in ("epochs", "batch_size", "lr", "negatives", "adversarial_temperature", "seed", "threads"):
        value = getattr(opts, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out + shlex.split(opts.train_args or "")


def model_args(opts: argparse.Namespace) -> list[str]:
    out = []
    if opts.model:
        out += ["--model", opts.model]
    if opts.dim:
        out += ["--dim", str(opts.dim)]
    return out


def parse_variants(opts: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``[(label, extra extend args)]``: the main extend run, then ``--variant LABEL=ARGS`` ones."""
    main_args = shlex.split(opts.extend_args or "")
    if opts.extend_epochs is not None:
        main_args = ["--epochs", str(opts.extend_epochs), *main_args]
    variants = [("extend", main_args)]
    for spec in opts.variant or []:
        label, _, args = spec.partition("=")
        variants.append((label.strip(), shlex.split(args)))
    return variants


def old_rows_identical(before: Path, after: Path) -> bool:
    """Every row of every table of ``before`` is bit-identical in ``after`` (and names kept their ids)."""
    from embretrain import api

    a, b = api.load(before), api.load(after)
    if b.entities[: a.n_entities] != a.entities or b.relations[: a.n_relations] != a.relations:
        return False
    return all(np.array_equal(t, b.tables()[k][: t.shape[0]]) for k, t in a.tables().items())


def _figures(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in ("mrr", "hits@1", "hits@10", "test_examples")}


# ---------------------------------------------------------------------------------------------
# the benchmark
def _preset_model(config: str | None) -> str | None:
    """The model a ``--config`` preset names (what the runs used when ``--model`` is not given)."""
    if not config:
        return None
    from embretrain.config import load_toml

    return load_toml(config).get("model")


def run_benchmark(opts: argparse.Namespace, runner: Runner | None = None) -> dict[str, Any]:
    runner = runner or Runner(in_process=opts.in_process)
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ddir = dataset_dir(opts.dataset)
    train, valid, test = (read_tsv(ddir / f"{s}.txt") for s in ("train", "valid", "test"))
    known_files = [ddir / "train.txt", ddir / "valid.txt", ddir / "test.txt"]
    if opts.max_train:
        # --quick: a connected-ish subset (first lines) keeps the protocol, not the figures
        train = train[: opts.max_train]
        test = test[: opts.max_test] if opts.max_test else test
        known_files = [write_tsv(out / "known.tsv", train + valid + test)]
    fractions = [opts.chain_fraction] * opts.chain if opts.chain else [opts.fraction]
    nights = make_chain(train, fractions, opts.seed)
    base = nights[0]
    all_new_final = nights[-1].entities - base.entities

    common = setting_args(opts)
    fingerprint = hashlib.sha256(
        json.dumps([str(ddir), len(train), fractions, opts.seed, common, model_args(opts)]).encode()
    ).hexdigest()[:16]
    cache = out / "cache.json"
    cached = json.loads(cache.read_text()) if opts.reuse and cache.is_file() else {}
    if cached.get("fingerprint") != fingerprint:
        cached = {"fingerprint": fingerprint}
    if opts.reuse_from:
        # e.g. a chain whose nights add up to the same new entities as a one-step run: same base, same full
        other = json.loads((Path(opts.reuse_from) / "cache.json").read_text())
        if other.get("base", {}).get("examples") == len(base.included) and \
                other.get("full", {}).get("examples") == len(nights[-1].included):
            cached = {**other, "fingerprint": fingerprint}
        else:
            logger.warning("--reuse-from %s: different base or full data, not reused", opts.reuse_from)

    def evaluate(ckpt: Path, test_file: Path) -> dict[str, Any]:
        known = [a for f in known_files for a in ("--known", str(f))]
        ev, _ = runner(["evaluate", "--ckpt", str(ckpt), "--test", str(test_file), *known])
        return _figures(ev)

    def train_once(key: str, data: list[Triple]) -> dict[str, Any]:
        ckpt = out / f"{key}.h5"
        if key in cached and Path(cached[key]["ckpt"]).is_file():
            logger.info("reusing %s", cached[key]["ckpt"])
            return cached[key]
        summary, wall = runner(["train", "--data", str(write_tsv(out / f"{key}.tsv", data)), "--out", str(ckpt),
                                *model_args(opts), *common])
        cached[key] = {"ckpt": str(ckpt), "wall_s": round(wall, 2), "train_s": summary["seconds"]["train"],
                       "epochs": summary["epochs"], "examples": summary["examples"]}
        cache.write_text(json.dumps(cached, indent=2))
        return cached[key]

    result: dict[str, Any] = {
        "dataset": opts.dataset if opts.dataset in DATASETS else ddir.name,
        "model": opts.model or _preset_model(opts.config),
        "seed": opts.seed,
        "fractions": fractions,
        "settings_args": common,
        "model_args": model_args(opts),
        "command": "python scripts/bench_quality.py " + " ".join(shlex.quote(a) for a in opts.argv),
        "title": opts.title,
        "counts": {
            "entities_train": len(nights[-1].entities),
            "entities_base": len(base.entities),
            "triples_base": len(base.included),
            "nights": [{"new_entities": len(n.new_entities), "new_relations": len(n.new_relations),
                        "delta_triples": len(n.delta)} for n in nights[1:]],
        },
        "runs": [],
        "nights": [],
    }
    rows = result["runs"]
    b = train_once("base", base.included)
    full = train_once("full", nights[-1].included)

    # test sets of the whole run (new since the base) and of the base
    _, t_all, t_old = test_sets(test, base, nights[-1], all_new_final)
    if opts.old_sample and len(t_old) > opts.old_sample:
        # old-only figures are a sanity check (old rows cannot move); a seeded sample keeps them cheap
        keep = np.sort(np.random.default_rng(opts.seed).choice(len(t_old), opts.old_sample, replace=False))
        t_old = [t_old[i] for i in keep]
    f_new = write_tsv(out / "test-new.tsv", t_all)
    f_old = write_tsv(out / "test-old.tsv", t_old)
    result["counts"].update({"test_new": len(t_all), "test_old": len(t_old)})

    k_old = f"old{len(t_old)}"
    base_old = cached.get(f"base_{k_old}") or evaluate(Path(b["ckpt"]), f_old)
    full_new = cached.get("full_new") or evaluate(Path(full["ckpt"]), f_new)
    full_old = cached.get(f"full_{k_old}") or evaluate(Path(full["ckpt"]), f_old)
    cached.update({f"base_{k_old}": base_old, "full_new": full_new, f"full_{k_old}": full_old})
    cache.write_text(json.dumps(cached, indent=2))
    rows.append({"run": "train on base", "wall_s": b["wall_s"], "train_s": b["train_s"], "epochs": b["epochs"],
                 "examples": b["examples"], "new": None, "old": base_old})
    rows.append({"run": "full retrain", "wall_s": full["wall_s"], "train_s": full["train_s"], "epochs": full["epochs"],
                 "examples": full["examples"], "new": full_new, "old": full_old})

    def extend_run(label: str, extra: list[str], first: Path) -> dict[str, Any]:
        """Every night of ``extend`` with ``extra`` options from ``first``: the row of the table (and its nights)."""
        prev = first
        wall_total = train_total = 0.0
        per_night = []
        all_identical = True
        for night in nights[1:]:
            tag = re.sub(r"[^\w.-]+", "_", f"{label}-n{night.night}")  # a plain file name whatever the label
            ent_file = write_tsv(out / f"new-entities-{night.night}.tsv", night.new_entities)
            args = ["extend", "--ckpt", str(prev), "--new-entities", str(ent_file),
                    "--data", str(write_tsv(out / f"delta-{night.night}.tsv", night.delta)),
                    "--out", str(out / f"{tag}.h5")]
            if night.new_relations:
                args += ["--new-relations", str(write_tsv(out / f"new-relations-{night.night}.tsv", night.new_relations))]
            # a run that names no --init starts from Glorot even when the preset names a closed form, so the
            # commands in docs/BENCHMARKS.md measure the same thing after a preset changes
            start = [] if "--init" in extra else ["--init", "xavier"]
            summary, wall = runner([*args, *common, *start, *extra])
            ckpt = out / f"{tag}.h5"
            identical = old_rows_identical(prev, ckpt)
            all_identical = all_identical and identical
            wall_total += wall
            train_total += summary["seconds"]["train"]
            if len(nights) > 2:  # chain: figures after every night
                t_tonight, t_sofar, _ = test_sets(test, base, night, night.entities - base.entities)
                per_night.append({
                    "variant": label, "night": night.night, "wall_s": round(wall, 2),
                    "train_s": summary["seconds"]["train"], "epochs": summary["epochs"],
                    "new_entities": len(night.new_entities), "delta_triples": len(night.delta),
                    "old_rows_identical": identical,
                    "new_tonight": evaluate(ckpt, write_tsv(out / f"test-new-{night.night}.tsv", t_tonight)),
                    "new_so_far": evaluate(ckpt, write_tsv(out / f"test-sofar-{night.night}.tsv", t_sofar)),
                })
            prev = ckpt
        row = {"run": label, "args": extra, "wall_s": round(wall_total, 2), "train_s": round(train_total, 3),
               "epochs": summary["epochs"], "examples": summary["examples_used"], "ckpt": str(prev),
               "old_rows_identical": all_identical, "new": evaluate(prev, f_new),
               "old": evaluate(prev, f_old) if not opts.skip_old_eval or label == "extend" else None}
        row["mrr_vs_full"] = row["new"]["mrr"] / full_new["mrr"] if full_new["mrr"] else None
        row["time_vs_full"] = row["wall_s"] / full["wall_s"]
        result["nights"] += per_night
        return row

    variants = [("no training (xavier)", ["--epochs", "0"])] if not opts.no_baseline else []
    variants += parse_variants(opts)
    for label, extra in variants:
        rows.append(extend_run(label, extra, Path(b["ckpt"])))
        (out / "results.json").write_text(json.dumps(result, indent=2))
    if opts.diagnose:
        diagnose(result, nights, Path(b["ckpt"]), Path(full["ckpt"]), out, t_all, extend_run, evaluate)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(render_markdown(result))
    return result


CONTROL = "control: extend from the full retrain's old rows"
DEGREE_BUCKETS = (("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6+", 6, None))


def restrict_checkpoint(source: Path, like: Path, dest: Path) -> Path:
    """``source``'s rows of the entities and relations ``like`` has, in ``like``'s order, written to ``dest``.

    The control of ``--diagnose``: the full retrain's checkpoint cut back to the base vocabulary is what
    the base would have been had its old rows been trained knowing the delta.
    """
    from embretrain import api
    from embretrain.checkpoint import Checkpoint

    src, ref = api.load(source), api.load(like)
    ent = {n: i for i, n in enumerate(src.entities)}
    rel = {n: i for i, n in enumerate(src.relations)}
    e_ids = np.array([ent[n] for n in ref.entities], dtype=np.int64)
    r_ids = np.array([rel[n] for n in ref.relations], dtype=np.int64)
    api.save(Checkpoint(
        model=src.model, entities=list(ref.entities), relations=list(ref.relations),
        entity_tables={k: np.ascontiguousarray(np.asarray(t)[e_ids]) for k, t in src.entity_tables.items()},
        relation_tables={k: np.ascontiguousarray(np.asarray(t)[r_ids]) for k, t in src.relation_tables.items()},
        params=dict(src.params),
    ), dest)
    return dest


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


def diagnose(result, nights, base_ckpt: Path, full_ckpt: Path, out: Path, t_new, extend_run, evaluate) -> None:
    """``--diagnose``: where the gap to the full retrain comes from.

    1. The control: the main extend run started from the full retrain's old rows (cut to the base
       vocabulary) instead of the base's. Same method, same delta; only what the frozen rows know differs.
       If the control matches the full retrain while extend does not, the gap is information the base's
       old rows never saw (the delta's links between old and new entities), which no new-row placement
       can add while old rows stay bit-identical.
    2. New-entity MRR by the new entity's number of delta triples, for full retrain, extend and control.
    """
    if len(nights) != 2:
        logger.warning("--diagnose applies to one-step runs, not to --chain; skipped")
        return
    rows = result["runs"]
    main = next(r for r in rows if r["run"] == "extend")
    control_start = restrict_checkpoint(full_ckpt, base_ckpt, out / "full-old-rows.h5")
    control = extend_run(CONTROL, main["args"], control_start)
    control["control"] = True
    rows.append(control)
    buckets = degree_buckets(t_new, nights[-1].delta, set(nights[-1].new_entities))
    ckpts = {"full retrain": full_ckpt, "extend": Path(main["ckpt"]), "control": Path(control["ckpt"])}
    result["by_degree"] = []
    for name, triples in buckets.items():
        if not triples:
            continue
        f = write_tsv(out / f"test-new-degree-{name}.tsv", triples)
        result["by_degree"].append({"delta_triples": name, "test": len(triples),
                                    **{k: evaluate(c, f)["mrr"] for k, c in ckpts.items()}})


# ---------------------------------------------------------------------------------------------
# report
def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The Markdown table of one ``results.json`` (what docs/BENCHMARKS.md shows)."""
    c = result["counts"]
    nights = c["nights"]
    lines = [
        f"**{result['dataset']}, {result['model'] or 'transe'}** "
        f"(seed {result['seed']}, {' + '.join(f'{f:.1%}' for f in result['fractions'])} new entities: "
        f"{sum(n['new_entities'] for n in nights)} entities, {sum(n['delta_triples'] for n in nights)} delta triples; "
        f"base {c['entities_base']} entities, {c['triples_base']} triples; "
        f"test-new {c['test_new']}, test-old {c['test_old']} triples)",
        "",
        *[f"`{cmd}`  " for cmd in result.get("commands") or [result["command"]]],
        "",
        "| run | extend args | epochs | wall s | train s | new MRR | new H@1 | new H@10 | old MRR | old H@10 "
        "| MRR / full | wall / full | old rows identical |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    full = next(r for r in result["runs"] if r["run"] == "full retrain")
    for r in result["runs"]:
        new, old = r.get("new") or {}, r.get("old") or {}
        ratio = r.get("mrr_vs_full")
        tratio = r.get("time_vs_full")
        target = ""
        if ratio is not None and not r.get("control"):
            met = ratio >= 0.95 and tratio <= 1 / 20 and r.get("old_rows_identical") and _old_ok(r, full)
            target = " (target met)" if met else ""
        lines.append(
            f"| {r['run']}{target} | {' '.join(r.get('args') or []) or '-'} | {r['epochs']} | {_f(r['wall_s'], 1)} "
            f"| {_f(r['train_s'], 1)} | {_f(new.get('mrr'))} | {_f(new.get('hits@1'))} | {_f(new.get('hits@10'))} "
            f"| {_f(old.get('mrr'))} | {_f(old.get('hits@10'))} | {_f(ratio, 2)} "
            f"| {'-' if tratio is None else '1/' + format(1 / tratio, '.1f')} "
            f"| {'-' if 'old_rows_identical' not in r else ('yes' if r['old_rows_identical'] else 'NO')} |"
        )
    if result.get("by_degree"):
        lines += ["", "New-entity MRR by the new entity's number of delta triples (`--diagnose`; the control starts "
                      "`extend` from the full retrain's old rows, so it is not an `extend` users can run):", "",
                  "| delta triples per new entity | test triples | full retrain | extend | control |",
                  "|---|---:|---:|---:|---:|"]
        for d in result["by_degree"]:
            lines.append(f"| {d['delta_triples']} | {d['test']} | {_f(d['full retrain'])} | {_f(d['extend'])} "
                         f"| {_f(d['control'])} |")
    if result.get("nights"):
        lines += ["", "Chain, night by night:", "",
                  "| variant | night | new entities | delta triples | wall s | MRR new tonight | MRR new so far "
                  "| H@10 new so far | old rows identical |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for n in result["nights"]:
            lines.append(
                f"| {n['variant']} | {n['night']} | {n['new_entities']} | {n['delta_triples']} | {_f(n['wall_s'], 1)} "
                f"| {_f(n['new_tonight']['mrr'])} | {_f(n['new_so_far']['mrr'])} | {_f(n['new_so_far']['hits@10'])} "
                f"| {'yes' if n['old_rows_identical'] else 'NO'} |"
            )
        lines += ["", f"Full retrain on everything after the last night: new MRR {_f(full['new']['mrr'])}, "
                      f"wall {_f(full['wall_s'], 1)} s."]
    return "\n".join(lines) + "\n"


QUALITY_INTRO = """\
Does `extend` make new entities as useful as a full retrain would, at a fraction of the cost?
`scripts/bench_quality.py` answers on FB15k-237 and WN18RR (issue 3). With a seed it makes 10% of the train
entities "new": the base is every train triple among old entities, the delta every train triple touching a
new entity. Then, all through the CLI (`embretrain ... --json` subprocesses, so wall times include process
start, TensorFlow import, checkpoint load and write): `train` on the base; `extend` with the new entities
and the delta (several variants); a full retrain on base + delta with the same settings and epochs; and a
no-training baseline (`extend --epochs 0`, new rows left at their Glorot start). `embretrain evaluate`
ranks test triples touching a new entity (*new*) and test triples among base entities only (*old*),
filtered against train + valid + test, realistic ranks for ties.

Target: new-entity MRR of extend >= 0.95 x the full retrain's, extend wall time <= 1/20 of the full
retrain's, old rows bit-identical ("old rows identical" compares every old row of every table of the
input and output checkpoints with `np.array_equal`). The *old* columns rank old test triples among every
entity of the checkpoint; after `extend` the new entities are candidates too, so those figures can move
a little although no old row did (the base row shows them over the base vocabulary).
Figures are from a 2-core machine shared with other jobs: wall times are noisy, ratios are from one run.
Every table below is generated from the JSON next to it (`docs/quality/*.json`) by
`python scripts/bench_quality.py --update-docs docs/BENCHMARKS.md --notes docs/quality/notes.md --from-json docs/quality/*.json`.
"""


DIAGNOSIS_INTRO = """\
`--diagnose` runs the same `extend` twice: from the base (what users run) and, as a control, from the full
retrain's rows of the old entities (the full checkpoint cut back to the base vocabulary). Same method, same delta,
same new entities; the only difference is whether the frozen old rows were trained knowing the delta's links. The
last two columns compare full retrain and `extend` on new entities with many and with one delta triple.
"""


def _old_ok(run: dict[str, Any], full: dict[str, Any]) -> bool | None:
    """Old-only MRR (ranked among every entity, new ones included) at least 0.95 x the full retrain's; None: not scored."""
    if not run.get("old") or not full.get("old"):
        return None
    return run["old"]["mrr"] >= 0.95 * full["old"]["mrr"]


def summary_table(results: list[dict[str, Any]]) -> str:
    """One line per dataset x model: the best extend run within 1/20 of the time whose old-only figures held."""
    lines = ["| dataset | model | best extend run (within 1/20 of the full retrain's wall time, old-only MRR held) "
             "| new MRR extend | new MRR full | MRR / full | wall / full | old MRR extend / full | old rows identical "
             "| target |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for res in results:
        runs = [r for r in res["runs"] if "mrr_vs_full" in r and not r["run"].startswith("no training")
                and not r.get("control")]
        full = next(r for r in res["runs"] if r["run"] == "full retrain")
        fast = [r for r in runs if r["time_vs_full"] <= 1 / 20]
        eligible = [r for r in fast if _old_ok(r, full)] or fast or runs
        best = max(eligible, key=lambda r: r["mrr_vs_full"] or 0)
        old_ok = _old_ok(best, full)
        met = best["mrr_vs_full"] >= 0.95 and best["time_vs_full"] <= 1 / 20 and best["old_rows_identical"] and old_ok
        old = "not scored" if old_ok is None else f"{best['old']['mrr']:.3f} / {full['old']['mrr']:.3f}"
        lines.append(
            f"| {res['dataset']}{' (' + res['title'] + ')' if res.get('title') else ''} "
            f"| {res['model']}{' (chain)' if res.get('nights') else ''} "
            f"| {best['run']}: `{' '.join(best['args']) or 'defaults'}` "
            f"| {_f(best['new']['mrr'])} | {_f(full['new']['mrr'])} | {_f(best['mrr_vs_full'], 2)} "
            f"| 1/{1 / best['time_vs_full']:.1f} | {old} | {'yes' if best['old_rows_identical'] else 'NO'} "
            f"| {'met' if met else 'missed'} |"
        )
    return "\n".join(lines) + "\n"


def diagnosis_table(results: list[dict[str, Any]]) -> str:
    """One line per ``--diagnose`` run: extend and the control (from the full retrain's old rows) against the full retrain."""
    lines = ["| dataset | model | seed | extend args | new MRR full | extend | extend / full | control | control / full "
             "| full / extend, 6+ delta triples | full / extend, 1 delta triple |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        if not res.get("by_degree"):
            continue
        full = next(r for r in res["runs"] if r["run"] == "full retrain")
        ext = next(r for r in res["runs"] if r["run"] == "extend")
        ctl = next(r for r in res["runs"] if r.get("control"))
        deg = {d["delta_triples"]: d for d in res["by_degree"]}

        def gap(bucket: str) -> str:
            d = deg.get(bucket)
            return _f(d["full retrain"] / d["extend"], 2) if d and d["extend"] else "-"

        lines.append(
            f"| {res['dataset']} | {res['model']} | {res['seed']} | `{' '.join(ext['args']) or 'defaults'}` "
            f"| {_f(full['new']['mrr'])} | {_f(ext['new']['mrr'])} | {_f(ext['mrr_vs_full'], 2)} "
            f"| {_f(ctl['new']['mrr'])} | {_f(ctl['mrr_vs_full'], 2)} | {gap('6+')} | {gap('1')} |"
        )
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def merge_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold runs that share a base and a full retrain (``--reuse-from``) into one result with every command."""
    merged: dict[str, dict[str, Any]] = {}
    for res in results:
        key = json.dumps([res.get("title"), res["dataset"], res["model"], res["fractions"], res["seed"], res.get("settings_args"),
                          res.get("model_args"), res["counts"]])
        if key not in merged:
            merged[key] = {**res, "runs": list(res["runs"]), "commands": [res["command"]]}
            continue
        into = merged[key]
        into["commands"].append(res["command"])
        labels = {r["run"] for r in into["runs"]}
        for run in res["runs"]:
            if run["run"] in ("train on base", "full retrain"):
                continue
            if run["run"] in labels:
                run = {**run, "run": f"{run['run']} ({' '.join(run.get('args') or [])})"}
            into["runs"].append(run)
            labels.add(run["run"])
        into["nights"] = into.get("nights", []) + res.get("nights", [])
    return list(merged.values())


_MODEL_ORDER = ("transe", "distmult", "complex", "rotate")


def _doc_order(res: dict[str, Any]) -> tuple:
    """Tables in a fixed order whatever order the JSON files came in: dataset, model, seed, title."""
    ds = list(DATASETS).index(res["dataset"]) if res["dataset"] in DATASETS else len(DATASETS)
    model = _MODEL_ORDER.index(res["model"]) if res["model"] in _MODEL_ORDER else len(_MODEL_ORDER)
    return (ds, res["dataset"], model, res["model"] or "", res["seed"], res.get("title") or "")


def quality_section(results: list[dict[str, Any]], notes: str = "") -> str:
    results = sorted(merge_results(results), key=_doc_order)
    parts = ["## Quality\n", QUALITY_INTRO, "### Summary\n", summary_table(results)]
    diagnosis = diagnosis_table(results)
    if diagnosis:
        parts += ["### Where the gap comes from (`--diagnose`)\n", DIAGNOSIS_INTRO, diagnosis]
    if notes:
        parts.append(notes.strip() + "\n")
    for res in results:
        title = f" ({res['title']})" if res.get("title") else ""
        parts += [f"### {res['dataset']}, {res['model']}{' (chain)' if res.get('nights') else ''}{title}\n",
                  render_markdown(res)]
    return "\n".join(parts)


def update_docs(path: Path, results: list[dict[str, Any]], notes: str = "") -> None:
    """Replace the ``## Quality`` section of ``path`` (up to the next ``## `` heading); other sections stay."""
    from benchdocs import replace_section

    replace_section("## Quality", quality_section(results, notes), path)


# ---------------------------------------------------------------------------------------------
# command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="wn18rr", help="fb15k-237, wn18rr (from ../shared/data) or a folder with train/valid/test.txt")
    p.add_argument("--out-dir", default="bench/quality", help="checkpoints, splits, results.json and results.md go here")
    p.add_argument("--fraction", type=float, default=0.10, help="share of train entities made new [0.10]")
    p.add_argument("--chain", type=int, default=0, help="grow in N nights of --chain-fraction each instead of one step")
    p.add_argument("--chain-fraction", type=float, default=0.025)
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of every run")
    p.add_argument("--model", choices=["transe", "distmult", "complex", "rotate"])
    p.add_argument("--config", help="TOML preset given to every train/extend run")
    p.add_argument("--dim", type=int)
    p.add_argument("--epochs", type=int, help="epochs of base train, full retrain and (unless --extend-epochs) extend")
    p.add_argument("--extend-epochs", type=int, help="epochs of the main extend run")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--negatives", type=int)
    p.add_argument("--adversarial-temperature", type=float)
    p.add_argument("--threads", type=int)
    p.add_argument("--train-args", help="more options for every train/extend run, e.g. '--loss margin'")
    p.add_argument("--extend-args", help="more options for the main extend run, e.g. '--init neighbors --valid-fraction 0.1'")
    p.add_argument("--variant", action="append", help="another extend run: 'LABEL=OPTIONS' (repeatable)")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-training baseline")
    p.add_argument("--diagnose", action="store_true",
                   help="also run the main extend from the full retrain's old rows (the control) and break new-entity "
                        "MRR down by the new entity's number of delta triples")
    p.add_argument("--old-sample", type=int, default=1000, help="score at most N old-only test triples (seeded sample) [1000]; 0 = all")
    p.add_argument("--skip-old-eval", action="store_true", help="score test-old only for the main extend run")
    p.add_argument("--reuse", action="store_true", help="reuse base/full checkpoints of an identical earlier run in --out-dir")
    p.add_argument("--reuse-from", help="reuse base/full checkpoints (and their figures) of a run in this folder with the same base and full data")
    p.add_argument("--title", help="a note shown with this run's table (e.g. 'idle machine'); runs with different titles are not merged")
    p.add_argument("--quick", action="store_true", help="tiny run (a data subset, dim 16, 2 epochs) to check the pipeline")
    p.add_argument("--max-train", type=int, help="use only the first N train triples")
    p.add_argument("--max-test", type=int)
    p.add_argument("--in-process", action="store_true", help="run the CLI in this process (tests; wall times not comparable)")
    p.add_argument("--from-json", nargs="+", help="only render the Markdown of existing results.json files")
    p.add_argument("--update-docs", help="with --from-json: replace the '## Quality' section of this file")
    p.add_argument("--notes", help="with --update-docs: Markdown (findings, no figures) put after the summary table")
    opts = p.parse_args(argv)
    opts.argv = list(sys.argv[1:] if argv is None else argv)
    if opts.quick:
        opts.dim = opts.dim or 16
        opts.epochs = opts.epochs if opts.epochs is not None else 2
        opts.max_train = opts.max_train or 20000
        opts.max_test = opts.max_test or 2000
    return opts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    opts = parse_args(argv)
    if opts.from_json:
        results = [json.loads(Path(f).read_text()) for f in opts.from_json]
        if opts.update_docs:
            notes = Path(opts.notes).read_text(encoding="utf-8") if opts.notes else ""
            update_docs(Path(opts.update_docs), results, notes)
        else:
            sys.stdout.write("".join(render_markdown(r) for r in results))
        return 0
    result = run_benchmark(opts)
    sys.stdout.write(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
