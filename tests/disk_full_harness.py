"""Save checkpoints into a nearly full filesystem, at many amounts of free space; print what happened as JSON.

Run by tests/test_disk_full.py inside its own mount namespace, where ``argv[2]`` is a small tmpfs
that holds nothing else. For each format the checkpoint is first saved to ``argv[3]`` (an ordinary
directory) as the reference; then, for each amount of free space from none to a little more than the
reference needs, a ballast file fills the rest of the tmpfs and the same checkpoint is saved into it.
A crash (HDF5 meeting the full disk) ends this process with a signal, which the test sees.

Usage: python disk_full_harness.py SOURCE.h5 TMPFS_DIR REFERENCE_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from embretrain import checkpoint
from embretrain.checkpoint import Checkpoint
from embretrain.errors import EmbretrainError
from embretrain.storage import stack_names, stack_rows

STEPS = 8  # from no room to a MiB more than needed,
FINE = 40 << 10  # and finer from the tables' size on: where the write itself meets the full disk


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "ballast"}


def fill(tmpfs: Path, free: int) -> None:
    """Leave ``free`` bytes free on the tmpfs (to a page)."""
    ballast = tmpfs / "ballast"
    ballast.unlink(missing_ok=True)
    st = os.statvfs(tmpfs)
    take = st.f_bfree * st.f_frsize - free
    if take > 0:
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, take - take % 4096)
        finally:
            os.close(fd)


def grown(source: Path) -> Checkpoint:
    """The source with old rows left on disk plus 100 new rows: the writer's copy-file-to-file path."""
    ckpt = checkpoint.load(source, old_rows="on-disk")
    new = [f"new{i}" for i in range(100)]
    width = ckpt.dim
    ckpt.entities = stack_names(ckpt.entities, new)
    ckpt.entity_tables = {
        "entity_embeddings": stack_rows(ckpt.entity_tables["entity_embeddings"], np.ones((100, width), np.float32))
    }
    return ckpt


def main() -> None:
    source, tmpfs, reference = (Path(a) for a in sys.argv[1:4])
    cases = {
        "h5": (lambda: checkpoint.load(source), "out.h5", "h5"),
        "h5-on-disk": (lambda: grown(source), "out.h5", "h5"),
        "keras": (lambda: checkpoint.load(source), "out.weights.h5", "keras"),
        "tf": (lambda: checkpoint.load(source), "out.ckpt", "tf"),
    }
    results = []
    for case, (make, name, fmt) in cases.items():
        ref_dir = reference / case
        ref_dir.mkdir()
        checkpoint.save(make(), ref_dir / name, format=fmt)
        expected = files(ref_dir)
        need = sum(len(b) for b in expected.values())
        tables = sum(4 * int(np.prod(t.shape)) for t in make().tables().values())
        coarse = [(need + (1 << 20)) * step // STEPS for step in range(STEPS + 1)]
        for free in sorted({*coarse, *range(tables, need + (512 << 10), FINE)}):
            fill(tmpfs, free)
            ckpt = make()
            record = {"case": case, "free": free, "need": need}
            try:
                checkpoint.save(ckpt, tmpfs / name, format=fmt)
                record["ok"] = True
            except EmbretrainError as err:
                record.update(ok=False, error=str(err), exit_code=err.exit_code)
            left = files(tmpfs)
            record["left"] = sorted(left)
            record["same_bytes"] = left == expected if record["ok"] else None
            if record["ok"]:  # read back by the loader (its own checks: sha256, shapes, names), rows as given
                back = checkpoint.load(tmpfs / name).tables()
                record["same_rows"] = all(np.array_equal(np.asarray(back[k]), np.asarray(v))
                                          for k, v in make().tables().items())
            for p in tmpfs.iterdir():
                p.unlink()
            results.append(record)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
