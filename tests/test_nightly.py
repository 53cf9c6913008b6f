"""scripts/nightly.sh, as cron runs it: grow, verify, keep versions, log; a rerun is a no-op; failures roll back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint, native

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "nightly.sh"
BIN = Path(sys.executable).parent
OLD = [f"e{i:02d}" for i in range(20)]
RELS = ["r0", "r1"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def site(tmp_path):
    rng = np.random.default_rng(0)
    pub = tmp_path / "models" / "published.h5"
    pub.parent.mkdir()
    native.save(
        Checkpoint(
            model="transe", entities=OLD, relations=RELS,
            entity_tables={"entity_embeddings": rng.normal(size=(20, 8)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(2, 8)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        pub,
    )
    day = tmp_path / "incoming" / "2024-05-01"
    day.mkdir(parents=True)
    (day / "new_entities.tsv").write_text("n0\nn1\nn2\n")
    (day / "delta.tsv").write_text("n0\tr0\te01\ne02\tr1\tn1\nn2\tr0\tn0\nn1\tr1\te03\n")
    return pub, day


def _nightly(pub: Path, day: Path, **env):
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0",
            "EMBRETRAIN": str(BIN / "embretrain"), "KEEP": "3",
            "EXTEND_ARGS": "--epochs 1 --batch-size 4 --negatives 2", **env}
    return subprocess.run(["bash", str(SCRIPT), str(pub), str(day)], env=full, capture_output=True, text=True,
                          timeout=600)


def _logs(pub: Path) -> tuple[str, dict]:
    logs = pub.parent / "logs"
    (log,) = logs.glob("nightly-*.log")
    (report,) = logs.glob("nightly-*.json")
    return log.read_text(), json.loads(report.read_text())


def test_grow_verify_then_rerun_is_a_noop(site):
    pub, day = site
    original = _sha256(pub)

    first = _nightly(pub, day)
    assert first.returncode == 0, first.stderr
    grown = native.load(pub)
    assert grown.entities == OLD + ["n0", "n1", "n2"]
    assert _sha256(pub.with_name("published.h5.1")) == original  # the previous version is kept
    log, report = _logs(pub)
    assert report["status"] == "ok" and report["entities_added"] == 3
    assert "verified and published" in log and ("OK" in log)
    assert "Traceback" not in first.stderr

    after_first = _sha256(pub)
    second = _nightly(pub, day)
    assert second.returncode == 0, second.stderr
    assert _sha256(pub) == after_first  # nothing rewritten
    assert not pub.with_name("published.h5.2").exists()  # and no backup rotated
    log, report = _logs(pub)
    assert report["status"] == "nothing_to_do"
    assert "nothing to do" in log and "already applied" in second.stderr

    # --strict through EXTEND_ARGS turns the no-op into exit 7 for those who want to be told
    strict = _nightly(pub, day, EXTEND_ARGS="--strict")
    assert strict.returncode == 7, strict.stderr
    assert _sha256(pub) == after_first


def test_bad_day_fails_with_embretrains_code_and_changes_nothing(site):
    pub, day = site
    original = _sha256(pub)
    (day / "delta.tsv").write_text("n0\tr0\n")
    result = _nightly(pub, day)
    assert result.returncode == 3, result.stderr
    assert f"{day / 'delta.tsv'}:1" in result.stderr and "FAILED" in result.stderr
    assert _sha256(pub) == original
    assert sorted(p.name for p in pub.parent.iterdir()) == ["logs", "published.h5", "published.h5.nightly.lock"]


def test_failed_verification_rolls_back(site, tmp_path):
    pub, day = site
    original = _sha256(pub)
    fake = tmp_path / "embretrain-verify-fails"  # the real CLI, except that `verify` says the rows differ
    fake.write_text(f'#!/bin/sh\nif [ "$1" = verify ]; then [ "$2" = --help ] && exit 0; echo "DIFFERS: e00"; exit 1; fi\n'
                    f'exec "{BIN / "embretrain"}" "$@"\n')
    fake.chmod(0o755)
    result = _nightly(pub, day, EMBRETRAIN=str(fake))
    assert result.returncode == 6, result.stderr
    assert "rolled back" in result.stderr
    assert _sha256(pub) == original
    rejected = list(pub.parent.glob("published.h5.rejected-*"))
    assert len(rejected) == 1 and native.load(rejected[0]).n_entities == 23
