"""A full disk: every format's save fails with one line and exit 6, leaves nothing, and never crashes.

HDF5 cannot recover from a failed write (the process dies in a later close with a segmentation fault;
see embretrain/checkpoint/h5write.py). The filesystem here is real: a small tmpfs mounted in a mount
namespace of the test's own (``unshare --user --map-root-user --mount``, no privileges needed where
user namespaces are allowed), partly filled with a ballast file so that each save meets a different
amount of free space, from none to more than it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint, native
from embretrain.errors import EXIT_INTERNAL

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
N, DIM = 12_000, 64  # a 3 MB table, 12k names: a few MB of tmpfs


def _namespace_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespace_works(), reason="needs unshare with user and mount namespaces to make a small filesystem"
)


def _in_small_fs(size: str, mount: Path, script: str, timeout: int = 600) -> subprocess.CompletedProcess:
    mount.mkdir()
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "{mount}" && {script}'],
        env=ENV, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("diskfull")
    rng = np.random.default_rng(0)
    native.save(
        Checkpoint(
            model="transe", entities=[f"entity/{i:06d}" for i in range(N)], relations=["r0", "r1"],
            entity_tables={"entity_embeddings": rng.normal(size=(N, DIM)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(2, DIM)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        d / "base.h5",
    )
    return d / "base.h5"


def test_every_format_fails_cleanly_or_writes_the_same_bytes_at_any_free_space(source, tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    harness = Path(__file__).with_name("disk_full_harness.py")
    proc = _in_small_fs("16m", tmp_path / "small",
                        f'"{sys.executable}" "{harness}" "{source}" "{tmp_path / "small"}" "{ref}"')
    assert proc.returncode == 0, f"the harness died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    assert "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {r["case"] for r in results} == {"h5", "h5-on-disk", "keras", "tf"}
    for case in ("h5", "h5-on-disk", "keras", "tf"):
        runs = [r for r in results if r["case"] == case]
        for r in runs:
            if r["ok"]:
                assert r["same_bytes"], r  # what a save with room to spare writes (the golden bytes pin that one)
                assert r["same_rows"], r  # and the loader reads back the rows that were saved
            else:
                assert r["exit_code"] == EXIT_INTERNAL, r
                assert r["error"].startswith("cannot write ") and "nothing was written" in r["error"], r
                assert "\n" not in r["error"] and "errno" not in r["error"], r  # one sentence, not HDF5's stack
                assert r["left"] == [], r  # no temp file, no sidecar, no partial output
        assert not runs[0]["ok"] and runs[-1]["ok"], runs  # none free fails; enough free succeeds
        # some saves got past the up-front check and met the full disk while writing: the path that crashed
        assert any(not r["ok"] and "needs at least" not in r["error"] for r in runs), runs
        first_ok = min(r["free"] for r in runs if r["ok"])
        assert all(r["ok"] for r in runs if r["free"] >= first_ok), runs
        assert first_ok <= runs[0]["need"] + (1 << 20), runs  # never refuses with a MiB more than needed free


def test_the_cli_says_one_line_and_exits_6_on_a_full_disk(source, tmp_path):
    d = tmp_path
    (d / "new.tsv").write_text("".join(f"new{i}\n" for i in range(50)))
    (d / "delta.tsv").write_text("".join(f"new{i}\tr0\tentity/{i:06d}\n" for i in range(50)))
    small = d / "small"
    out = small / "merged.h5"
    # room for the lock and about half the output: the up-front check passes (it counts the tables
    # only when their bytes fit), so the run trains and then meets the full disk while writing
    cmd = (f'fallocate -l $(( $(stat -f -c "%f*%S" "{small}") - {N * DIM * 4 + 200_000} )) "{small}/ballast" && '
           f'"{sys.executable}" -m embretrain extend --ckpt "{source}" --new-entities "{d / "new.tsv"}" '
           f'--data "{d / "delta.tsv"}" --out "{out}" --epochs 1 --seed 1; echo "rc=$?"; ls -A "{small}"')
    proc = _in_small_fs("8m", small, cmd)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"rc={EXIT_INTERNAL}", (proc.stdout, proc.stderr[-3000:])
    assert lines[1:] == ["ballast"], proc.stdout  # no output, no temp file, no lock left behind
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write {out}: No space left on device; nothing was written and {out} is unchanged"], proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_extend_refuses_before_training_when_the_old_rows_cannot_fit_and_a_rerun_still_exits_0(source, tmp_path):
    d = tmp_path
    (d / "new.tsv").write_text("".join(f"new{i}\n" for i in range(50)))
    (d / "known.tsv").write_text("entity/000001\nentity/000002\n")  # already in the checkpoint: nothing to do
    (d / "delta.tsv").write_text("".join(f"new{i}\tr0\tentity/{i:06d}\n" for i in range(50)))
    (d / "known_delta.tsv").write_text("entity/000001\tr0\tentity/000002\n")
    small = d / "small"
    run = f'"{sys.executable}" -m embretrain extend --ckpt "{source}" --epochs 1 --seed 1 --out "{small}/merged.h5"'
    cmd = (f'fallocate -l $(( $(stat -f -c "%f*%S" "{small}") - 1000000 )) "{small}/ballast" && '
           f'{run} --new-entities "{d / "new.tsv"}" --data "{d / "delta.tsv"}" --dry-run >/dev/null; echo "rc=$?"; '
           f'{run} --new-entities "{d / "new.tsv"}" --data "{d / "delta.tsv"}" >/dev/null; echo "rc=$?"; '
           f'{run} --new-entities "{d / "known.tsv"}" --data "{d / "known_delta.tsv"}" >/dev/null; echo "rc=$?"; ls -A "{small}"')
    proc = _in_small_fs("8m", small, cmd)
    rc6 = f"rc={EXIT_INTERNAL}"
    assert proc.stdout.split() == [rc6, rc6, "rc=0", "ballast"], (proc.stdout, proc.stderr[-3000:])  # the dry run too
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert all("(the old rows alone)" in e and "nothing was written" in e for e in errors), proc.stderr
    assert "training" not in proc.stderr.split(errors[1])[0], proc.stderr  # refused before any training
    assert "nothing to do" in proc.stderr  # the rerun of an applied night needs no room


def test_train_refuses_before_training_when_its_entity_table_cannot_fit(tmp_path):
    d = tmp_path
    n = 20_000  # dim 32: a 2.4 MiB entity table against 1 MB free
    (d / "train.tsv").write_text("".join(f"e{i}\tr0\te{(i * 7 + 1) % n}\n" for i in range(n)))
    small = d / "small"
    run = (f'"{sys.executable}" -m embretrain -v train --data "{d / "train.tsv"}" --dim 32 --epochs 1 '
           f'--out "{small}/base.h5" >/dev/null')
    cmd = (f'fallocate -l $(( $(stat -f -c "%f*%S" "{small}") - 1000000 )) "{small}/ballast" && '
           f'{run} --dry-run; echo "rc=$?"; {run}; echo "rc=$?"; ls -A "{small}"')
    proc = _in_small_fs("8m", small, cmd)
    rc6 = f"rc={EXIT_INTERNAL}"
    assert proc.stdout.split() == [rc6, rc6, "ballast"], (proc.stdout, proc.stderr[-3000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("(the entity table alone)" in e for e in errors), proc.stderr
    assert " epoch " not in proc.stderr, proc.stderr  # -v logs each epoch: none ran
