"""Every bad input a nightly cron run can meet gets one clear line, its own exit code, and changes nothing.

Each case below breaks one thing in an otherwise good ``extend`` run and asserts: the exit code;
a message naming the file (and line, where there is one); no Python traceback; the input
checkpoint byte-identical (sha256 of the file); no output file; and not one new file in the
directory (no temp file, no lock file). Runs in-process through CliRunner: no case but the
diverging one reaches training, so TensorFlow is imported at most once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from embretrain.checkpoint import Checkpoint
from embretrain.checkpoint import native
from embretrain.cli import main
from embretrain.errors import EXIT_CHECKPOINT, EXIT_DATA, EXIT_INTERNAL, EXIT_USAGE

N_OLD, DIM = 12, 8
OLD = [f"e{i:02d}" for i in range(N_OLD)]
NEW = ["n0", "n1", "n2"]
RELS = ["r0", "r1"]
DELTA = [("n0", "r0", "e01"), ("e02", "r1", "n1"), ("n2", "r0", "n0"), ("n1", "r1", "e03")]


def make_ckpt(entity=None, relation=None, entities=OLD) -> Checkpoint:
    """A transe checkpoint built from numbers, not training: these tests must not need TensorFlow."""
    rng = np.random.default_rng(0)
    return Checkpoint(
        model="transe",
        entities=list(entities),
        relations=list(RELS),
        entity_tables={"entity_embeddings": rng.normal(size=(len(entities), DIM)).astype(np.float32)
                       if entity is None else entity},
        relation_tables={"relation_embeddings": rng.normal(size=(len(RELS), DIM)).astype(np.float32)
                         if relation is None else relation},
        params={"norm": 1, "gamma": 12.0},
    )


def tsv(rows) -> bytes:
    return "".join("\t".join(r) + "\n" for r in rows).encode()


@dataclass
class Case:
    """One broken input: ``setup(dir)`` breaks it and returns extra CLI args (replacing defaults)."""

    id: str
    setup: Callable[[Path], dict]
    code: int
    names: Callable[[Path], str]  # the text the message must contain: "file" or "file:line"


def _delta(content: bytes):
    def setup(d: Path) -> dict:
        (d / "delta.tsv").write_bytes(content)
        return {}

    return setup


def _names(content: bytes):
    def setup(d: Path) -> dict:
        (d / "new.tsv").write_bytes(content)
        return {}

    return setup


def _ckpt_bytes(transform):
    def setup(d: Path) -> dict:
        p = d / "base.h5"
        p.write_bytes(transform(p.read_bytes()))
        return {}

    return setup


def _ckpt_obj(ckpt: Checkpoint):
    def setup(d: Path) -> dict:
        native.save(ckpt, d / "base.h5")  # valid checksums: only the content is wrong
        return {}

    return setup


def _flip_table_byte(d: Path) -> dict:
    p = d / "base.h5"
    with h5py.File(p, "r") as f:
        offset = f["entity_embeddings"].id.get_offset()  # contiguous dataset: raw float bytes start here
    data = bytearray(p.read_bytes())
    data[offset + 5 * DIM * 4 + 1] ^= 0x40  # one bit of row 5
    p.write_bytes(bytes(data))
    return {}


def _edit_h5(fn):
    def setup(d: Path) -> dict:
        with h5py.File(d / "base.h5", "r+") as f:
            fn(f)
        return {}

    return setup


def _drop_last_name(f: h5py.File) -> None:
    del f["entities"]
    f.create_dataset("entities", data=np.array(OLD[:-1], dtype=object), dtype=h5py.string_dtype())


def _npy_file(d: Path) -> dict:
    np.save(d / "table.npy", np.zeros((N_OLD, DIM), np.float32))
    (d / "table.npy").replace(d / "base.h5")
    return {}


def _plain_hdf5(d: Path) -> dict:
    (d / "base.h5").unlink()
    with h5py.File(d / "base.h5", "w") as f:
        f["weights"] = np.zeros((3, 3), np.float32)
    return {}


def _replace_with_dir(name: str):
    def setup(d: Path) -> dict:
        (d / name).unlink()
        (d / name).mkdir()
        return {}

    return setup


def _remove(name: str):
    def setup(d: Path) -> dict:
        (d / name).unlink()
        return {}

    return setup


def _args(**kw):
    return lambda d: kw


def _unwritable_out(d: Path) -> dict:
    if os.geteuid() == 0:
        # root writes through any mode bits; sysfs refuses new files even to root
        return {"--out": "/sys/embretrain-test-merged.h5"}
    ro = d / "ro"
    ro.mkdir(mode=0o500)
    return {"--out": str(ro / "merged.h5")}


def _nan_row(table_shape, row, value):
    t = np.random.default_rng(1).normal(size=table_shape).astype(np.float32)
    t[row, 3] = value
    return t


CASES = [
    # --- the delta (triples) file
    Case("delta-wrong-field-count", _delta(tsv(DELTA[:2]) + b"n0\tr0\n" + tsv(DELTA[2:])), EXIT_DATA,
         lambda d: f"{d / 'delta.tsv'}:3"),
    Case("delta-empty-field", _delta(tsv(DELTA[:1]) + b"n0\t\te01\n"), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}:2"),
    Case("delta-invalid-utf8", _delta(tsv(DELTA[:3]) + b"n0\tr0\te\xff\xfe01\n"), EXIT_DATA,
         lambda d: f"{d / 'delta.tsv'}:4"),
    Case("delta-bom", _delta(b"\xef\xbb\xbf" + tsv(DELTA)), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}:1"),
    Case("delta-huge-line", _delta(tsv(DELTA[:1]) + b"n0\tr0\t" + b"x" * (2 << 20) + b"\n"), EXIT_DATA,
         lambda d: f"{d / 'delta.tsv'}:2"),
    Case("delta-nul", _delta(tsv(DELTA[:1]) + b"n0\tr\x000\te01\n"), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}:2"),
    Case("delta-empty-file", _delta(b""), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}"),
    Case("delta-blank-lines-only", _delta(b"\n\n\n"), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}"),
    Case("delta-missing", _remove("delta.tsv"), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}"),
    Case("delta-is-a-directory", _replace_with_dir("delta.tsv"), EXIT_DATA, lambda d: f"{d / 'delta.tsv'}"),
    Case("delta-unknown-entity", _delta(tsv(DELTA + [("n0", "r0", "ghost")])), EXIT_DATA,
         lambda d: f"{d / 'delta.tsv'}:5"),
    Case("delta-unknown-relation", _delta(tsv(DELTA[:1] + [("n0", "r9", "e01")])), EXIT_DATA,
         lambda d: f"{d / 'delta.tsv'}:2"),
    Case("delta-gzip-garbage", lambda d: {"--data": str(_write(d / "delta.tsv.gz", b"\x1f\x8bnot gzip"))},
         EXIT_DATA, lambda d: f"{d / 'delta.tsv.gz'}"),
    # --- the new-entities file
    Case("names-empty-file", _names(b""), EXIT_DATA, lambda d: f"{d / 'new.tsv'}"),
    Case("names-missing", _remove("new.tsv"), EXIT_DATA, lambda d: f"{d / 'new.tsv'}"),
    Case("names-is-a-directory", _replace_with_dir("new.tsv"), EXIT_DATA, lambda d: f"{d / 'new.tsv'}"),
    Case("names-duplicate", _names(b"n0\nn1\nn2\nn1\n"), EXIT_DATA, lambda d: f"{d / 'new.tsv'}:4"),
    Case("names-invalid-utf8", _names(b"n0\nn\xc3\x281\n"), EXIT_DATA, lambda d: f"{d / 'new.tsv'}:2"),
    Case("names-two-fields", _names(b"n0\nn1\textra\n"), EXIT_DATA, lambda d: f"{d / 'new.tsv'}:2"),
    Case("new-relations-missing", _args(**{"--new-relations": "RELS_MISSING"}), EXIT_DATA,
         lambda d: "RELS_MISSING"),
    # --- the checkpoint
    Case("ckpt-missing", _remove("base.h5"), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-is-a-directory", _replace_with_dir("base.h5"), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-truncated", _ckpt_bytes(lambda b: b[: len(b) // 2]), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-empty-file", _ckpt_bytes(lambda b: b""), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-flipped-table-byte", _flip_table_byte, EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-other-format-tsv", _ckpt_bytes(lambda b: tsv(DELTA)), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-other-format-npy", _npy_file, EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-plain-hdf5", _plain_hdf5, EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-dim-attr-mismatch", _edit_h5(lambda f: f.attrs.__setitem__("dim", DIM * 2)), EXIT_CHECKPOINT,
         lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-rows-vs-names-mismatch", _edit_h5(_drop_last_name), EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-nan-in-old-table", _ckpt_obj(make_ckpt(entity=_nan_row((N_OLD, DIM), 7, np.nan))), EXIT_CHECKPOINT,
         lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-inf-in-relation-table", _ckpt_obj(make_ckpt(relation=_nan_row((len(RELS), DIM), 1, np.inf))),
         EXIT_CHECKPOINT, lambda d: f"{d / 'base.h5'}"),
    Case("ckpt-unknown-model", _edit_h5(lambda f: f.attrs.__setitem__("model", "word2vec")), EXIT_CHECKPOINT,
         lambda d: f"{d / 'base.h5'}"),
    # --- the outputs
    Case("out-dir-not-writable", _unwritable_out, EXIT_USAGE, lambda d: "merged.h5"),
    Case("out-in-missing-dir", lambda d: {"--out": str(d / "nope" / "merged.h5")}, EXIT_USAGE,
         lambda d: f"{d / 'nope'}"),
    Case("out-is-a-directory", lambda d: ((d / "outdir").mkdir(), {"--out": str(d / "outdir")})[1], EXIT_USAGE,
         lambda d: "outdir"),
    Case("out-parent-is-a-file", lambda d: {"--out": str(d / "delta.tsv" / "merged.h5")}, EXIT_USAGE,
         lambda d: f"{d / 'delta.tsv'}"),
    Case("report-in-missing-dir", lambda d: {"--report": str(d / "nope" / "report.json")}, EXIT_USAGE,
         lambda d: f"{d / 'nope'}"),
    # --- options
    Case("config-missing", lambda d: {"--config": str(d / "preset.toml")}, EXIT_USAGE, lambda d: "preset.toml"),
    Case("lr-not-positive", lambda d: {"--lr": "0"}, EXIT_USAGE, lambda d: "--lr"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.fixture
def workdir(tmp_path):
    native.save(make_ckpt(), tmp_path / "base.h5")
    (tmp_path / "new.tsv").write_bytes(tsv([(n,) for n in NEW]))
    (tmp_path / "delta.tsv").write_bytes(tsv(DELTA))
    return tmp_path


def _run(d: Path, overrides: dict):
    args = {
        "--ckpt": str(d / "base.h5"),
        "--new-entities": str(d / "new.tsv"),
        "--data": str(d / "delta.tsv"),
        "--out": str(d / "merged.h5"),
        "--epochs": "1",
        "--batch-size": "4",
        "--negatives": "2",
    }
    args.update(overrides)
    argv = ["extend"] + [x for k, v in args.items() for x in (k, v)]
    return CliRunner().invoke(main, argv), Path(args["--out"])


def test_at_least_25_cases():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_good_input_passes_preflight_and_the_battery_is_not_vacuous(workdir, monkeypatch):
    """The same fixture with nothing broken gets past every check (stopped just before training)."""
    from embretrain import api

    def stop(*a, **k):
        raise SystemExit(99)

    monkeypatch.setattr(api, "_fit_new_rows", stop)
    result, out = _run(workdir, {})
    assert result.exit_code == 99, result.output


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(workdir, case):
    d = workdir
    overrides = case.setup(d)
    if "RELS_MISSING" in overrides.values():
        overrides["--new-relations"] = str(d / "RELS_MISSING")
    ckpt_before = _sha256(d / "base.h5")
    files_before = _listing(d)

    result, out = _run(d, overrides)
    text = result.output

    assert result.exit_code == case.code, text
    assert case.names(d) in text, text
    assert "Traceback" not in text
    assert [line.lower().startswith("error") for line in text.splitlines()].count(True) == 1, text  # one clean line
    assert _sha256(d / "base.h5") == ckpt_before
    assert not out.is_file()  # (one case makes --out an existing directory on purpose)
    assert _listing(d) == files_before  # no output, no temp file, no lock file


def test_diverging_training_writes_nothing(workdir):
    """A learning rate that overflows float32: NaN/Inf is caught before anything is written."""
    before = _sha256(workdir / "base.h5")
    files_before = _listing(workdir)
    report = workdir / "report.json"
    result, out = _run(workdir, {"--lr": "1e38", "--optimizer": "sgd", "--epochs": "3", "--report": str(report)})
    assert result.exit_code == EXIT_INTERNAL, result.output
    assert "nothing was written" in result.output
    assert "Traceback" not in result.output
    assert _sha256(workdir / "base.h5") == before
    assert not out.is_file()  # (one case makes --out an existing directory on purpose)
    assert _listing(workdir) == files_before | {"report.json"}  # the failure is reported for monitoring
    import json

    summary = json.loads(report.read_text())
    assert summary["status"] == "error" and summary["exit_code"] == EXIT_INTERNAL
    assert "NaN or Inf" in summary["error"] or "diverged" in summary["error"]
