"""The CLI flows a user runs, through click's CliRunner (and a subprocess for start-up cost)."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_tsv
from embretrain.cli import main

COMMANDS = ["train", "extend", "evaluate", "inspect", "demo"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_help_is_instant_and_does_not_import_tensorflow():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom embretrain.cli import main\n"
        f"for cmd in [[]] + [[c] for c in {COMMANDS!r}]:\n"
        "    r = CliRunner().invoke(main, cmd + ['--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "    assert 'Example' in r.output, cmd\n"
        "assert 'tensorflow' not in sys.modules\nprint('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_help_lists_exit_codes():
    assert "Exit codes" in run("--help").output


def test_train_extend_evaluate_inspect(toy):
    d = toy["dir"]
    r = run("train", "--data", toy["train"], "--out", d / "base.h5", "--preset", "ci-smoke", "--model", "transe",
            "--dim", 8, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["entities"] == 30 and summary["epochs"] == 2  # epochs from the preset, dim from the CLI
    with h5py.File(d / "base.h5") as f:
        assert f["entity_embeddings"].shape == (30, 8) and f.attrs["model"] == "transe"

    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"],
            "--out", d / "merged.h5", "--preset", "ci-smoke", "--epochs", 3, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["entities_added"] == 6 and summary["epochs"] == 3
    assert summary["entities_untrained"] == 1 and summary["examples_dropped_no_new"] == 2
    assert list(summary["seconds"]) == ["load_checkpoint", "load_data", "train", "write", "total"]  # disjoint parts
    with h5py.File(d / "base.h5") as a, h5py.File(d / "merged.h5") as b:
        assert np.array_equal(b["entity_embeddings"][:30], a["entity_embeddings"][:])
        assert np.array_equal(b["relation_embeddings"][:], a["relation_embeddings"][:])

    r = run("evaluate", "--ckpt", d / "merged.h5", "--test", toy["delta"], "--known", toy["train"], "--new-only", "--json")
    assert r.exit_code == 0, r.output
    figures = json.loads(r.stdout)
    assert figures["test_examples"] == 11 and figures["test_filtered_out_not_new"] == 2
    assert 0 < figures["mrr"] <= 1

    r = run("inspect", d / "merged.h5")
    assert r.exit_code == 0, r.output
    assert "lineage: 2 run(s)" in r.output and "extend" in r.output and "checksums: ok" in r.output

    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"], "--out", d / "m2.h5")
    assert r.exit_code == 0, r.output
    assert "entities added: 6" in r.output  # human-readable summary


def test_malformed_delta_names_file_and_line_and_writes_nothing(toy):
    d = toy["dir"]
    assert run("train", "--data", toy["train"], "--out", d / "base.h5", "--dim", 4, "--epochs", 1).exit_code == 0
    bad = d / "bad.tsv"
    bad.write_text("n000\tr0\te001\nn001\tr1\n")
    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", bad, "--out", d / "out.h5")
    assert r.exit_code == 3
    assert f"{bad}:2: expected 3 tab-separated fields" in r.output
    assert not (d / "out.h5").exists()


def test_unknown_entity_error_and_skip_unknown(toy):
    d = toy["dir"]
    assert run("train", "--data", toy["train"], "--out", d / "base.h5", "--dim", 4, "--epochs", 1).exit_code == 0
    bad = write_tsv(d / "d.tsv", [("n000", "r0", "e001"), ("n000", "r9", "e001")])
    args = ["extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", bad, "--out", d / "o.h5",
            "--epochs", 1]
    r = run(*args)
    assert r.exit_code == 3 and "d.tsv:2: unknown relation 'r9'" in r.output
    r = run(*args, "--skip-unknown", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["examples_skipped_unknown"] == 1


def test_corrupt_checkpoint_is_exit_4(toy):
    d = toy["dir"]
    assert run("train", "--data", toy["train"], "--out", d / "base.h5", "--dim", 4, "--epochs", 1).exit_code == 0
    with h5py.File(d / "base.h5", "r+") as f:
        f["entity_embeddings"][0, 0] += 1.0
    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"], "--out", d / "o.h5")
    assert r.exit_code == 4 and "checksum" in r.output
    r = run("inspect", d / "base.h5")
    assert "MISMATCH" in r.output


def test_extend_needs_new_names(toy):
    r = run("extend", "--ckpt", "x.h5", "--data", toy["delta"], "--out", toy["dir"] / "o.h5")
    assert r.exit_code == 2 and "--new-entities" in r.output


def test_demo_runs_and_proves_old_rows_identical(tmp_path):
    r = run("demo", "--workdir", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert all(out["old_rows_identical"].values()) and out["old_vocabulary_prefix"]
    assert out["new_entities_trained"]["mrr"] > out["new_entities_xavier_only"]["mrr"]
    assert (tmp_path / "merged.h5").exists()


def test_extend_report_carries_the_neighbour_sanity_figure(toy):
    base, out, report = toy["dir"] / "base.h5", toy["dir"] / "out.h5", toy["dir"] / "report.json"
    r = run("train", "--data", toy["train"], "--out", base, "--preset", "ci-smoke")
    assert r.exit_code == 0, r.output
    r = run("extend", "--ckpt", base, "--new-entities", toy["new"], "--data", toy["delta"], "--out", out,
            "--preset", "ci-smoke", "--report", report)
    assert r.exit_code == 0, r.output
    figure = json.loads(report.read_text())["neighbour_sanity"]
    # every new entity but the last has delta lines (conftest.toy_graph); the least alike are named
    assert figure["new_entities"] == len(toy["new_names"]) and figure["with_delta_neighbours"] == len(toy["new_names"]) - 1
    assert 0 <= figure["share_delta_neighbour_in_top_k"] <= 1
    assert {x["name"] for x in figure["least_like_neighbours"]} <= set(toy["new_names"][:-1])
