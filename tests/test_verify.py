"""``embretrain verify OLD NEW``: exit 0 for a pure extension, exit 1 naming the first differing
entity otherwise; native files are verified without importing TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from embretrain.checkpoint import CONTEXT_TABLE, ENTITY_TABLE, native
from embretrain.checkpoint.base import Checkpoint
from embretrain.cli import main
from embretrain.verify import compare

OLD = ["a", "b", "c", "d"]


def _ckpt(names, seed=0, n_rows=None) -> Checkpoint:
    rng = np.random.default_rng(seed)
    n = len(names)
    return Checkpoint(
        model="dot", entities=list(names), relations=[],
        entity_tables={ENTITY_TABLE: rng.standard_normal((n, 3)).astype(np.float32),
                       CONTEXT_TABLE: rng.standard_normal((n, 3)).astype(np.float32)},
    )


def _grow(old: Checkpoint, new_names, seed=1) -> Checkpoint:
    rng = np.random.default_rng(seed)
    k = len(new_names)
    return Checkpoint(
        model=old.model, entities=old.entities + list(new_names), relations=[],
        entity_tables={name: np.concatenate([t, rng.standard_normal((k, t.shape[1])).astype(np.float32)])
                       for name, t in old.entity_tables.items()},
    )


@pytest.fixture
def pair(tmp_path):
    old = _ckpt(OLD)
    native.save(old, tmp_path / "old.h5")
    native.save(_grow(old, ["x", "y"]), tmp_path / "new.h5")
    return old, tmp_path / "old.h5", tmp_path / "new.h5"


def test_pure_extension_passes_without_tensorflow(pair):
    _, old, new = pair
    code = (
        "import sys; from click.testing import CliRunner; from embretrain.cli import main; "
        f"r = CliRunner().invoke(main, ['-q', 'verify', {str(old)!r}, {str(new)!r}, '--json']); "
        "print(r.output); print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(r.exit_code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out, tf_flag = proc.stdout.rsplit("\n", 2)[0], proc.stdout.split()[-1]
    assert tf_flag == "noTF"
    result = json.loads(out)
    assert result["ok"] and result["checked"] == {"entities": 4, "relations": 0, "tables": 2, "variables": 0}


def test_changed_row_names_the_entity(pair, tmp_path):
    old, old_path, new_path = pair
    grown = native.load(new_path)
    grown.entity_tables[CONTEXT_TABLE][2, 1] = np.nextafter(grown.entity_tables[CONTEXT_TABLE][2, 1], np.float32(9))
    native.save(grown, tmp_path / "bad.h5")
    result = CliRunner().invoke(main, ["-q", "verify", str(old_path), str(tmp_path / "bad.h5")])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "DIFFERS: table 'context_embeddings': row 2 (entity 'c') differs"


def test_sign_of_zero_and_reordered_names_are_caught():
    old = _ckpt(OLD)
    old.entity_tables[ENTITY_TABLE][1, 0] = 0.0
    new = _grow(old, ["x"])
    new.entity_tables[ENTITY_TABLE][1, 0] = -0.0  # == 0.0 as a float, different bits
    result = compare(old, new)
    assert not result.ok and result.first_entity == "b"

    swapped = _grow(old, ["x"])
    swapped.entities[0], swapped.entities[1] = "b", "a"
    result = compare(old, swapped)
    assert not result.ok and result.first_entity == "a"
    assert result.message == "entity row 0: OLD has 'a', NEW has 'b'"

    shrunk = _ckpt(OLD[:3])
    assert compare(old, shrunk).message == "entity row 3: OLD has 'd', NEW has nothing (NEW has only 3 entity names)"


def test_missing_checkpoint_is_an_error_not_a_difference(pair, tmp_path):
    _, old, _ = pair
    result = CliRunner().invoke(main, ["-q", "verify", str(old), str(tmp_path / "nope.h5")])
    assert result.exit_code == 4, result.output
    assert "no such checkpoint" in result.output


def test_verify_reads_native_files_without_the_loader(pair, monkeypatch, tmp_path):
    """An independent witness: a loader that lies (here: one that cannot run at all) cannot make verify agree."""
    _, old, new = pair

    def no_loader(*args, **kwargs):
        raise AssertionError("verify must not go through checkpoint.load")

    monkeypatch.setattr(native, "load", no_loader)
    result = CliRunner().invoke(main, ["-q", "verify", str(old), str(new)])
    assert result.exit_code == 0, result.output
    # A file it cannot read is exit 4, never an answer.
    (tmp_path / "cut.h5").write_bytes(new.read_bytes()[:2000])
    result = CliRunner().invoke(main, ["-q", "verify", str(old), str(tmp_path / "cut.h5")])
    assert result.exit_code == 4, result.output
    assert "cut.h5" in result.output
