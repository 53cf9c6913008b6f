"""The benchmark's only door into embretrain: its commands, run and timed, and the checkpoint checks.

``train``, ``extend`` and ``evaluate`` go through the CLI (``embretrain ... --json``), in a subprocess by
default so that wall times are what users see (process start, TensorFlow import, checkpoint load and
write included), or in this process through click's CliRunner (tests; wall times not comparable).
Comparing and cutting checkpoints goes through ``embretrain.api``. This module knows embretrain's flags
and nothing of the protocol: which data a run gets is the caller's business.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Runner", "old_rows_identical", "preset_model", "restrict_checkpoint"]

logger = logging.getLogger(__name__)

FIGURES = ("mrr", "hits@1", "hits@10", "test_examples")  # what results.json keeps of an evaluate summary


class Runner:
    """Runs ``embretrain`` commands, as a subprocess (the default: wall time as users see it) or in-process."""

    def __init__(self, in_process: bool = False, echo=None):
        self.in_process = in_process
        self.echo = echo or (lambda msg: logger.info(msg))

    def __call__(self, args: list[str]) -> tuple[dict[str, Any], float]:
        """(the command's ``--json`` summary, wall seconds); a failed command raises ``RuntimeError`` with its output."""
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
            proc = subprocess.run([*cmd, "-q", *args], check=False, capture_output=True, text=True, env=env)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        wall = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"embretrain {' '.join(args)} failed with exit code {code}:\n{err}\n{out}")
        return json.loads(out[out.index("{"):]), wall

    def train(self, data: Path, out: Path, args: list[str]) -> tuple[dict[str, Any], float]:
        """``embretrain train`` on ``data`` into ``out``: (summary, wall seconds)."""
        return self(["train", "--data", str(data), "--out", str(out), *args])

    def extend(self, ckpt: Path, new_entities: Path, data: Path, out: Path, new_relations: Path | None,
               args: list[str]) -> tuple[dict[str, Any], float]:
        """``embretrain extend`` of ``ckpt`` with the names in ``new_entities`` (and ``new_relations``) and the
        triples in ``data``, into ``out``: (summary, wall seconds). With no ``args`` this is the README's headline
        command: the settings come from ``ckpt``'s lineage and its model's extend recipe."""
        cmd = ["extend", "--ckpt", str(ckpt), "--new-entities", str(new_entities), "--data", str(data), "--out", str(out)]
        if new_relations is not None:
            cmd += ["--new-relations", str(new_relations)]
        return self([*cmd, *args])

    def evaluate(self, ckpt: Path, test: Path, known: list[Path]) -> dict[str, Any]:
        """Filtered MRR, Hits@1, Hits@10 and the number of test triples of ``ckpt`` on ``test``."""
        filters = [a for f in known for a in ("--known", str(f))]
        summary, _ = self(["evaluate", "--ckpt", str(ckpt), "--test", str(test), *filters])
        return {k: summary.get(k) for k in FIGURES}


def preset_model(config: str | None) -> str | None:
    """The model a ``--config`` preset names (what the runs used when ``--model`` is not given)."""
    if not config:
        return None
    from embretrain.config import load_toml

    return load_toml(config).get("model")


def old_rows_identical(before: Path, after: Path) -> bool:
    """Every row of every table of ``before`` is bit-identical in ``after`` (and names kept their ids)."""
    from embretrain import api

    a, b = api.load(before), api.load(after)
    if b.entities[: a.n_entities] != a.entities or b.relations[: a.n_relations] != a.relations:
        return False
    return all(np.array_equal(t, b.tables()[k][: t.shape[0]]) for k, t in a.tables().items())


def restrict_checkpoint(source: Path, like: Path, dest: Path) -> Path:
    """``source``'s rows of the entities and relations ``like`` has, in ``like``'s order, written to ``dest``.

    The control of ``--diagnose``: the full retrain's checkpoint cut back to the base vocabulary is what
    the base would have been had its old rows been trained knowing the delta. It keeps ``like``'s lineage,
    so a headline ``extend`` of it trains with the settings an ``extend`` of ``like`` does.
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
        params=dict(src.params), lineage=list(ref.lineage),
    ), dest)
    return dest
