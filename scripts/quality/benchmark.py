"""The quality benchmark's sequence of runs, and the ``results.json`` it writes into ``--out-dir``.

``train`` on the base; a full retrain (``train`` on base + delta, same settings and epochs); a no-training
baseline (``extend --epochs 0``: new rows left at their initial value); ``extend`` with the new entities and
the delta (the main run, then each ``--variant``), night after night in a chain, each growing the previous
night's output. Every checkpoint is scored by ``evaluate`` (filtered against train + valid + test) on
test-new and test-old, and every ``extend`` output is checked to keep the old rows bit-identical.
``--diagnose`` adds a control (the main extend from the full retrain's old rows) and new-entity MRR by the
new entity's number of delta triples.

Which triples go where is :mod:`protocol`'s; how a command runs is :mod:`runner`'s; this module only
orders the runs and records them. The main extend run (and the control) is the README's headline command,
``embretrain extend --ckpt --new-entities --data --out`` with no settings: it trains like the base (its
lineage) and follows the model's extend recipe, as a user's does; ``--extend-args``/``--extend-epochs`` add
to it, and ``--threads`` (the machine's, not a setting) is passed on so wall times compare. The variants and
the baseline get every run's settings (``--config``, ``--epochs``, ...) and, unless they name ``--init``,
start from Glorot (``--init xavier``) whatever the recipe says, so the variant commands in
docs/BENCHMARKS.md measure the same thing after a preset changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
from pathlib import Path
from typing import Any

from .cache import RunCache, fingerprint
from .protocol import (
    DATASETS,
    Split,
    Triple,
    dataset_dir,
    degree_buckets,
    make_chain,
    read_tsv,
    sample,
    test_sets,
    write_tsv,
)
from .render import render_markdown
from .runner import Runner, old_rows_identical, preset_model, restrict_checkpoint

__all__ = ["BASELINE", "CONTROL", "Benchmark", "model_args", "parse_variants", "run_benchmark", "setting_args"]

logger = logging.getLogger(__name__)

BASELINE = "no training (xavier)"
CONTROL = "control: extend from the full retrain's old rows"


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
    """Options of the two trainings only (an extend takes its model from the checkpoint)."""
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


def run_benchmark(opts: argparse.Namespace, runner: Runner | None = None) -> dict[str, Any]:
    """Every run of one benchmark; writes ``results.json``, ``results.md`` and ``cache.json`` and returns the results."""
    return Benchmark(opts, runner or Runner(in_process=opts.in_process)).run()


class Benchmark:
    """One benchmark's data, files and results; each method is one kind of run."""

    def __init__(self, opts: argparse.Namespace, runner: Runner):
        self.opts, self.runner = opts, runner
        self.out = out = Path(opts.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ddir = dataset_dir(opts.dataset)
        train, valid, test = (read_tsv(ddir / f"{s}.txt") for s in ("train", "valid", "test"))
        self.known_files = [ddir / "train.txt", ddir / "valid.txt", ddir / "test.txt"]
        if opts.max_train:
            # --quick: a connected-ish subset (first lines) keeps the protocol, not the figures
            train = train[: opts.max_train]
            test = test[: opts.max_test] if opts.max_test else test
            self.known_files = [write_tsv(out / "known.tsv", train + valid + test)]
        self.test = test
        fractions = [opts.chain_fraction] * opts.chain if opts.chain else [opts.fraction]
        self.nights = nights = make_chain(train, fractions, opts.seed)
        self.common, self.model_args = setting_args(opts), model_args(opts)
        key = fingerprint(str(ddir), len(train), fractions, opts.seed, self.common, self.model_args)
        self.cache = RunCache.open(out, key, opts.reuse)
        # e.g. a chain whose nights add up to the same new entities as a one-step run: same base, same full
        if opts.reuse_from and not self.cache.adopt(Path(opts.reuse_from), len(nights[0].included), len(nights[-1].included)):
            logger.warning("--reuse-from %s: different base or full data, not reused", opts.reuse_from)
        self.result: dict[str, Any] = {
            "dataset": opts.dataset if opts.dataset in DATASETS else ddir.name,
            "model": opts.model or preset_model(opts.config),
            "seed": opts.seed,
            "fractions": fractions,
            "settings_args": self.common,
            "model_args": self.model_args,
            "command": "python scripts/bench_quality.py " + " ".join(shlex.quote(a) for a in opts.argv),
            "title": opts.title,
            "counts": {
                "entities_train": len(nights[-1].entities),
                "entities_base": len(nights[0].entities),
                "triples_base": len(nights[0].included),
                "nights": [{"new_entities": len(n.new_entities), "new_relations": len(n.new_relations),
                            "delta_triples": len(n.delta)} for n in nights[1:]],
            },
            "runs": [],
            "nights": [],
        }

    def run(self) -> dict[str, Any]:
        opts, out, result, rows = self.opts, self.out, self.result, self.result["runs"]
        base = self.nights[0]
        b = self.train_once("base", base.included)
        self.full = full = self.train_once("full", self.nights[-1].included)

        # test sets of the whole run (new since the base) and of the base
        _, t_all, t_old = test_sets(self.test, base, self.nights[-1], self.nights[-1].entities - base.entities)
        t_old = sample(t_old, opts.old_sample, opts.seed)
        self.f_new = write_tsv(out / "test-new.tsv", t_all)
        self.f_old = write_tsv(out / "test-old.tsv", t_old)
        result["counts"].update({"test_new": len(t_all), "test_old": len(t_old)})

        k_old = f"old{len(t_old)}"
        base_old = self.cache.figures(f"base_{k_old}", lambda: self.evaluate(Path(b["ckpt"]), self.f_old))
        self.full_new = self.cache.figures("full_new", lambda: self.evaluate(Path(full["ckpt"]), self.f_new))
        full_old = self.cache.figures(f"full_{k_old}", lambda: self.evaluate(Path(full["ckpt"]), self.f_old))
        self.cache.save()  # also what was adopted from --reuse-from, so this folder can be reused in turn
        rows.append({"run": "train on base", "wall_s": b["wall_s"], "train_s": b["train_s"], "epochs": b["epochs"],
                     "examples": b["examples"], "new": None, "old": base_old})
        rows.append({"run": "full retrain", "wall_s": full["wall_s"], "train_s": full["train_s"], "epochs": full["epochs"],
                     "examples": full["examples"], "new": self.full_new, "old": full_old})

        variants = [(BASELINE, ["--epochs", "0"])] if not opts.no_baseline else []
        for label, extra in variants + parse_variants(opts):
            rows.append(self.extend_run(label, extra, Path(b["ckpt"]), headline=label == "extend"))
            (out / "results.json").write_text(json.dumps(result, indent=2))
        if opts.diagnose:
            self.diagnose(Path(b["ckpt"]), Path(full["ckpt"]), t_all)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "results.md").write_text(render_markdown(result))
        return result

    def evaluate(self, ckpt: Path, test_file: Path) -> dict[str, Any]:
        return self.runner.evaluate(ckpt, test_file, self.known_files)

    def train_once(self, key: str, data: list[Triple]) -> dict[str, Any]:
        """``train`` on ``data`` into ``<key>.h5``, or the cached run of the same settings."""
        def run() -> dict[str, Any]:
            ckpt = self.out / f"{key}.h5"
            summary, wall = self.runner.train(write_tsv(self.out / f"{key}.tsv", data), ckpt, [*self.model_args, *self.common])
            return {"ckpt": str(ckpt), "wall_s": round(wall, 2), "train_s": summary["seconds"]["train"],
                    "epochs": summary["epochs"], "examples": summary["examples"]}

        return self.cache.training(key, run)

    def extend_args(self, extra: list[str], headline: bool) -> list[str]:
        """The options of one extend run: the headline command's (none but ``--threads``) plus ``extra``, or every
        run's settings, a Glorot start unless ``extra`` names ``--init``, and ``extra``."""
        if headline:
            return [*(["--threads", str(self.opts.threads)] if self.opts.threads is not None else []), *extra]
        # a run that names no --init starts from Glorot even when the recipe names a closed form, so the
        # commands in docs/BENCHMARKS.md measure the same thing after a preset changes
        return [*self.common, *([] if "--init" in extra else ["--init", "xavier"]), *extra]

    def extend_run(self, label: str, extra: list[str], first: Path, headline: bool = False) -> dict[str, Any]:
        """Every night of ``extend`` with ``extra`` options from ``first``: the row of the table (and its nights).

        ``headline``: the README's command (see :meth:`extend_args`); its row keeps the ``settings_source`` of
        its last night, what the headline command resolved to."""
        out, base = self.out, self.nights[0]
        prev = first
        wall_total = train_total = 0.0
        per_night = []
        all_identical = True
        for night in self.nights[1:]:
            tag = re.sub(r"[^\w.-]+", "_", f"{label}-n{night.night}")  # a plain file name whatever the label
            ckpt = out / f"{tag}.h5"
            ent_file = write_tsv(out / f"new-entities-{night.night}.tsv", night.new_entities)
            delta_file = write_tsv(out / f"delta-{night.night}.tsv", night.delta)
            rel_file = write_tsv(out / f"new-relations-{night.night}.tsv", night.new_relations) if night.new_relations else None
            args = self.extend_args(extra, headline)
            summary, wall = self.runner.extend(prev, ent_file, delta_file, ckpt, rel_file, args)
            identical = old_rows_identical(prev, ckpt)
            all_identical = all_identical and identical
            wall_total += wall
            train_total += summary["seconds"]["train"]
            if len(self.nights) > 2:  # chain: figures after every night
                t_tonight, t_sofar, _ = test_sets(self.test, base, night, night.entities - base.entities)
                per_night.append({
                    "variant": label, "night": night.night, "wall_s": round(wall, 2),
                    "train_s": summary["seconds"]["train"], "epochs": summary["epochs"],
                    "new_entities": len(night.new_entities), "delta_triples": len(night.delta),
                    "old_rows_identical": identical,
                    "new_tonight": self.evaluate(ckpt, write_tsv(out / f"test-new-{night.night}.tsv", t_tonight)),
                    "new_so_far": self.evaluate(ckpt, write_tsv(out / f"test-sofar-{night.night}.tsv", t_sofar)),
                })
            prev = ckpt
        row = {"run": label, "args": extra, "wall_s": round(wall_total, 2), "train_s": round(train_total, 3),
               "epochs": summary["epochs"], "examples": summary["examples_used"], "ckpt": str(prev),
               "old_rows_identical": all_identical, "new": self.evaluate(prev, self.f_new),
               "old": self.evaluate(prev, self.f_old) if not self.opts.skip_old_eval or label == "extend" else None}
        if headline:
            row["settings_source"] = summary.get("settings_source")
        row["mrr_vs_full"] = row["new"]["mrr"] / self.full_new["mrr"] if self.full_new["mrr"] else None
        row["time_vs_full"] = row["wall_s"] / self.full["wall_s"]
        self.result["nights"] += per_night
        return row

    def diagnose(self, base_ckpt: Path, full_ckpt: Path, t_new: list[Triple]) -> None:
        """``--diagnose``: where the gap to the full retrain comes from.

        1. The control: the main extend run started from the full retrain's old rows (cut to the base
           vocabulary) instead of the base's. Same method, same delta; only what the frozen rows know differs.
           If the control matches the full retrain while extend does not, the gap is information the base's
           old rows never saw (the delta's links between old and new entities), which no new-row placement
           can add while old rows stay bit-identical.
        2. New-entity MRR by the new entity's number of delta triples, for full retrain, extend and control.
        """
        if len(self.nights) != 2:
            logger.warning("--diagnose applies to one-step runs, not to --chain; skipped")
            return
        night: Split = self.nights[-1]
        rows = self.result["runs"]
        main = next(r for r in rows if r["run"] == "extend")
        control_start = restrict_checkpoint(full_ckpt, base_ckpt, self.out / "full-old-rows.h5")
        control = self.extend_run(CONTROL, main["args"], control_start, headline=True)
        control["control"] = True
        rows.append(control)
        buckets = degree_buckets(t_new, night.delta, set(night.new_entities))
        ckpts = {"full retrain": full_ckpt, "extend": Path(main["ckpt"]), "control": Path(control["ckpt"])}
        self.result["by_degree"] = []
        for name, triples in buckets.items():
            if not triples:
                continue
            f = write_tsv(self.out / f"test-new-degree-{name}.tsv", triples)
            self.result["by_degree"].append({"delta_triples": name, "test": len(triples),
                                             **{k: self.evaluate(c, f)["mrr"] for k, c in ckpts.items()}})
