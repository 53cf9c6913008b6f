"""Hostile files and a hostile filesystem: nothing followed, nothing garbled, nothing truncated.

Each case plants something a nightly job on a shared machine may meet (an HDF5 file linking to another
file, a symlink where a lock or output goes, a zip bomb, a table that cannot train, a name that cannot
round-trip, a file declaring more than it holds, a FIFO where a config goes) and drives the CLI. Every
case asserts: the documented exit code; one ``error:`` line naming the culprit; no traceback; every
file under the test's directory (inputs, planted links, a victim file outside the work directory)
unchanged byte for byte *and* in mtime (``lstat``, so links are compared as links); no new file left
(no partial output, no temp file, no lock file). Cases run ``inspect``, ``verify`` and ``extend`` on
native fixtures built from numbers, so no case imports TensorFlow (extend stops at load or preflight).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from embretrain.checkpoint import Checkpoint, native
from embretrain.cli import main
from embretrain.errors import EXIT_CHECKPOINT, EXIT_DATA, EXIT_USAGE

N, DIM = 12, 8
OLD = [f"e{i:02d}" for i in range(N)]
RELS = ["r0", "r1"]
NEW = ["n0", "n1"]
DELTA = [("n0", "r0", "e01"), ("e02", "r1", "n1")]


def table(rows: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width)).astype(np.float32)


def save_native(path: Path, *, model="transe", dim=DIM, rel_dim=None, params=None, ctx_dim=None, relations=True):
    rel = {"relation_embeddings": table(len(RELS), dim if rel_dim is None else rel_dim, 1)} if relations else {}
    ents = {"entity_embeddings": table(N, dim)}
    if ctx_dim is not None:
        ents["context_embeddings"] = table(N, ctx_dim, 2)
    native.save(Checkpoint(model=model, entities=list(OLD), relations=list(RELS) if relations else [],
                           entity_tables=ents, relation_tables=rel,
                           params={"norm": 1, "gamma": 12.0} if params is None else params), path)
    return path


def hand_written(path: Path, names, *, dtype=None, rows=None, ent=None):
    """A native file written with plain h5py (valid sha256s), for names save() would refuse."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="embretrain", format_version=1, model="dot", dim=DIM, params="[]")
        if dtype == "fixed":
            f.create_dataset("entities", data=np.array([n if isinstance(n, bytes) else n.encode() for n in names], "S"))
        else:
            data = np.empty(len(names), dtype=object)
            data[:] = names
            f.create_dataset("entities", data=data, dtype=h5py.string_dtype())
        f["entities"].attrs["sha256"] = hashlib.sha256(
            b"".join((n if isinstance(n, bytes) else n.encode("utf-8", "surrogatepass")) + b"\n" for n in names)).hexdigest()
        values = table(len(names), DIM) if ent is None else ent
        t = f.create_dataset("entity_embeddings", data=values)
        t.attrs.update(indexed_by="entities", sha256=native.table_sha256(values))
    return path


# --------------------------------------------------------------------------- the harness


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: (kind, content sha256 or link target, mtime_ns), never following links."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            what = ("link", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            what = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
        else:  # a directory's mtime moves with every probe or lock file made and removed in it: not compared
            what = (stat.S_IFMT(st.st_mode), None)
        out[str(p.relative_to(root))] = (*what, st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None)
    return out


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # plants the hostile thing in the work dir; returns the CLI argv
    code: int
    names: str  # text the error line must contain ({d} = the work dir)


@pytest.fixture
def site(tmp_path):
    """``work/`` with a good base.h5, new.tsv, delta.tsv; ``victim/secret.txt`` outside it."""
    work, victim = tmp_path / "work", tmp_path / "victim"
    work.mkdir()
    victim.mkdir()
    (victim / "secret.txt").write_text("precious\n")
    save_native(work / "base.h5")
    (work / "new.tsv").write_text("".join(n + "\n" for n in NEW))
    (work / "delta.tsv").write_text("".join("\t".join(t) + "\n" for t in DELTA))
    return tmp_path


def extend_argv(d: Path, **over) -> list[str]:
    args = {"--ckpt": d / "base.h5", "--new-entities": d / "new.tsv", "--data": d / "delta.tsv",
            "--out": d / "merged.h5", "--preset": "ci-smoke"}
    args.update({"--" + k.replace("_", "-"): v for k, v in over.items()})
    return ["extend"] + [str(x) for k, v in args.items() for x in (k, v)]


def _alarm(signum, frame):  # a FIFO opened the blocking way would hang the suite: fail instead
    raise TimeoutError("the command blocked (a FIFO or an endless input was opened blocking)")


def run_cli(argv: list[str]):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        return CliRunner().invoke(main, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- 1. HDF5 links and storage


def _link(name, make):
    def setup(d: Path) -> list[str]:
        other = d / "other.h5"
        with h5py.File(other, "w") as f:
            f["x"] = table(N, DIM, 9)
            f["names"] = np.array(OLD, dtype=object)
        with h5py.File(d / "base.h5", "r+") as f:
            if name in f:
                f.move(name, name + "_real")
            f[name] = make(f)
        return ["inspect", str(d / "base.h5")]

    return setup


def _with_cmd(setup, cmd):
    """The same planted file, read by another command (verify OLD NEW, extend)."""
    def wrapped(d: Path) -> list[str]:
        setup(d)
        if cmd == "verify":
            return ["verify", str(d / "base.h5"), str(d / "base.h5")]
        return extend_argv(d)

    return wrapped


def _external_storage(d: Path) -> list[str]:
    raw = d / "raw.bin"
    raw.write_bytes(table(N, DIM).tobytes())
    with h5py.File(d / "base.h5", "r+") as f:
        sha = f["entity_embeddings"].attrs["sha256"]
        del f["entity_embeddings"]
        t = f.create_dataset("entity_embeddings", shape=(N, DIM), dtype="<f4", external=[(str(raw), 0, N * DIM * 4)])
        t.attrs.update(indexed_by="entities", sha256=sha)
    return ["inspect", str(d / "base.h5")]


def _virtual(d: Path) -> list[str]:
    other = d / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = table(N, DIM, 9)
    layout = h5py.VirtualLayout(shape=(N, DIM), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(other), "x", shape=(N, DIM))
    with h5py.File(d / "base.h5", "r+") as f:
        del f["entity_embeddings"]
        f.create_virtual_dataset("entity_embeddings", layout).attrs["indexed_by"] = "entities"
    return ["inspect", str(d / "base.h5")]


def _declared(n_rows: int, *, names_too: bool, compressed: bool = False):
    def setup(d: Path) -> list[str]:
        with h5py.File(d / "base.h5", "w") as f:
            f.attrs.update(format="embretrain", format_version=1, model="dot", dim=DIM, params="[]")
            kw = {"chunks": (1 << 16,), "compression": "gzip"} if compressed else {}
            if names_too:
                f.create_dataset("entities", shape=(n_rows,), dtype="S1", fillvalue=b"a", **kw)
                if compressed:
                    f["entities"][:] = np.zeros(n_rows, "S1")  # stored, and 1000x smaller than declared
            else:
                f["entities"] = np.array(OLD, dtype=object)
            f.create_dataset("entity_embeddings", shape=(n_rows, DIM), dtype="<f4").attrs["indexed_by"] = "entities"
        return ["inspect", str(d / "base.h5")]

    return setup


def _table_dtype(dtype):
    def setup(d: Path) -> list[str]:
        with h5py.File(d / "base.h5", "r+") as f:
            del f["entity_embeddings"]
            if dtype == "compound":
                data = np.zeros(N, dtype=[("a", "<f4"), ("b", "<f4")])
                f.create_dataset("entity_embeddings", data=data)
            else:
                f.create_dataset("entity_embeddings", data=table(N, DIM).astype(dtype))
            f["entity_embeddings"].attrs["indexed_by"] = "entities"
        return ["inspect", str(d / "base.h5")]

    return setup


# --------------------------------------------------------------------------- 2. locks and written paths


def _lock_symlink(d: Path) -> list[str]:
    (d / "merged.h5.lock").symlink_to(d.parent / "victim" / "secret.txt")
    return extend_argv(d)


def _lock_dangling(d: Path) -> list[str]:
    (d / "merged.h5.lock").symlink_to(d.parent / "victim" / "created-by-us.txt")
    return extend_argv(d)


def _lock_hardlink(d: Path) -> list[str]:
    os.link(d.parent / "victim" / "secret.txt", d / "merged.h5.lock")
    return extend_argv(d)


def _lock_fifo(d: Path) -> list[str]:
    os.mkfifo(d / "merged.h5.lock")
    return extend_argv(d)


def _lock_dir(d: Path) -> list[str]:
    (d / "merged.h5.lock").mkdir()
    return extend_argv(d)


def _lock_not_a_pid(d: Path) -> list[str]:
    (d / "merged.h5.lock").write_text("my notes, not a pid\n")
    return extend_argv(d)


def _out_fifo(d: Path) -> list[str]:
    os.mkfifo(d / "merged.h5")
    return extend_argv(d)


def _backup_dir(*extra: str):
    """A directory planted at a backup slot ``--keep`` would rotate into: refused by the preflight, before any
    loading or training (a dry run, which trains and writes nothing, must refuse it too)."""
    def setup(d: Path) -> list[str]:
        (d / "merged.h5").write_bytes((d / "base.h5").read_bytes())
        (d / "merged.h5.2").mkdir()
        return extend_argv(d, keep=2) + list(extra)

    return setup


def _report_fifo(d: Path) -> list[str]:
    os.mkfifo(d / "report.json")
    return extend_argv(d, report=d / "report.json")


# --------------------------------------------------------------------------- 3. archives


def keras_archive(path: Path, members: list[tuple[str, bytes]] | None = None, *, weights: bytes | None = None,
                  deflate=False) -> Path:
    """A .keras archive written by hand (no TensorFlow): config.json + model.weights.h5 (+ extra members)."""
    if weights is None:
        h5 = path.parent / "w.tmp.h5"
        with h5py.File(h5, "w") as f:
            f.create_dataset("layers/embedding/vars/0", data=table(N, DIM))
        weights = h5.read_bytes()
        h5.unlink()
    config = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Embedding", "config": {"name": "embedding", "input_dim": N, "output_dim": DIM}}]}}
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", weights)
        for name, content in members or []:
            with pytest.warns(UserWarning) if name in z.namelist() else _nothing():
                z.writestr(name, content)
    (path.parent / (path.name + ".entities.tsv")).write_text("".join(n + "\n" for n in OLD))
    return path


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _archive(members=None, **kw):
    def setup(d: Path) -> list[str]:
        keras_archive(d / "m.keras", members, **kw)
        return ["inspect", str(d / "m.keras")]

    return setup


def _bomb(d: Path) -> list[str]:
    keras_archive(d / "m.keras", weights=b"\0" * (20 << 20), deflate=True)  # 20 MiB of zeros: ~20 KB deflated
    return ["inspect", str(d / "m.keras")]


def _keras_weights(d: Path, *, rel_width: int | None = None, names=None, meta: bytes | str | None = None) -> Path:
    """A Keras ``.weights.h5`` written by hand (no TensorFlow) with its sidecars; ``meta``: bytes for the
    meta sidecar, ``"fifo"``, ``"huge"`` (a sparse file past the cap), or None (a TransE meta)."""
    path = d / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/embedding/vars/0", data=table(N, DIM))
        f.create_dataset("layers/embedding_1/vars/0", data=table(len(RELS), rel_width or DIM, 1))
    (d / "m.weights.h5.entities.tsv").write_text("".join(n + "\n" for n in (names or OLD)))
    (d / "m.weights.h5.relations.tsv").write_text("".join(n + "\n" for n in RELS))
    side = d / "m.weights.h5.embretrain.json"
    if meta == "fifo":
        os.mkfifo(side)
    elif meta == "huge":
        from embretrain.checkpoint.foreign import MAX_META_BYTES

        with open(side, "wb") as fh:
            fh.truncate(MAX_META_BYTES + 1)  # sparse: nothing is written, the size alone is refused
    else:
        side.write_bytes(meta if meta is not None else json.dumps({
            "model": "transe", "params": {"norm": 1, "gamma": 12.0},
            "tables": {"entity_embeddings": "layers/embedding/vars/0",
                       "relation_embeddings": "layers/embedding_1/vars/0"}}).encode())
    return path


def _keras(cmd: str, **kw):
    def setup(d: Path) -> list[str]:
        path = _keras_weights(d, **kw)
        return ["inspect", str(path)] if cmd == "inspect" else extend_argv(d, ckpt=path, out=d / "out.weights.h5")

    return setup


# --------------------------------------------------------------------------- 4./5. shapes and names


def _native(**kw):
    def setup(d: Path) -> list[str]:
        save_native(d / "base.h5", **kw)
        return ["inspect", str(d / "base.h5")]

    return setup


def _names(names, **kw):
    def setup(d: Path) -> list[str]:
        hand_written(d / "base.h5", names, **kw)
        return ["inspect", str(d / "base.h5")]

    return setup


def _as(setup, cmd):
    return _with_cmd(setup, cmd)


# --------------------------------------------------------------------------- 7. configs and TSV inputs


def _config(content: bytes | None = None, kind: str = "file"):
    def setup(d: Path) -> list[str]:
        p = d / "hostile.toml"
        if kind == "dir":
            p.mkdir()
        elif kind == "fifo":
            os.mkfifo(p)
        else:
            p.write_bytes(content)
        return extend_argv(d, config=p)

    return setup


def _delta(kind: str):
    def setup(d: Path) -> list[str]:
        p = d / "delta.tsv"
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "devzero":
            p.symlink_to("/dev/zero")
        elif kind == "dir":
            p.mkdir()
        elif kind == "endless":
            p.write_bytes(b"x" * (3 << 20))  # 3 MiB, no newline
        return extend_argv(d)

    return setup


CASES = [
    # 1. HDF5 links: refused before anything is followed, whichever command reads the file
    Case("external-link-table", _link("entity_embeddings", lambda f: h5py.ExternalLink("other.h5", "/x")), EXIT_CHECKPOINT,
         "/entity_embeddings is an external link to other.h5:/x"),
    Case("external-link-table-verify", _as(_link("entity_embeddings", lambda f: h5py.ExternalLink("other.h5", "/x")), "verify"),
         EXIT_CHECKPOINT, "is an external link"),
    Case("external-link-table-extend", _as(_link("entity_embeddings", lambda f: h5py.ExternalLink("other.h5", "/x")), "extend"),
         EXIT_CHECKPOINT, "is an external link"),
    Case("external-link-names", _link("entities", lambda f: h5py.ExternalLink("other.h5", "/names")), EXIT_CHECKPOINT,
         "/entities is an external link"),
    Case("external-link-extra-group", _link("assets", lambda f: h5py.ExternalLink("other.h5", "/")), EXIT_CHECKPOINT,
         "/assets is an external link"),
    Case("soft-link-table", _link("entity_embeddings", lambda f: h5py.SoftLink("/entity_embeddings_real")), EXIT_CHECKPOINT,
         "/entity_embeddings is a soft link to /entity_embeddings_real"),
    Case("soft-link-relations-to-entities", _link("relation_embeddings", lambda f: h5py.SoftLink("/entity_embeddings")),
         EXIT_CHECKPOINT, "/relation_embeddings is a soft link"),
    Case("external-storage", _external_storage, EXIT_CHECKPOINT, "keeps its data in external file"),
    Case("virtual-dataset", _virtual, EXIT_CHECKPOINT, "is a virtual dataset"),
    Case("float64-table", _table_dtype("<f8"), EXIT_CHECKPOINT, "must be a 2-D float32 dataset"),
    Case("int-table", _table_dtype("<i4"), EXIT_CHECKPOINT, "must be a 2-D float32 dataset"),
    Case("compound-table", _table_dtype("compound"), EXIT_CHECKPOINT, "must be a 2-D float32 dataset"),
    # 6. declared sizes the file does not back
    Case("1e12-rows-unallocated", _declared(10**12, names_too=True), EXIT_CHECKPOINT, "declares shape (1000000000000,)"),
    Case("1e9-names-table-rows-mismatch", _declared(10**9, names_too=False), EXIT_CHECKPOINT, "has 1000000000 rows"),
    Case("compressed-bomb-names", _declared(10**7, names_too=True, compressed=True), EXIT_CHECKPOINT, "compression bomb"),
    # 2. locks and written paths: a planted thing is refused and left exactly as it was
    Case("lock-symlink-to-victim", _lock_symlink, EXIT_USAGE, "merged.h5.lock is a symbolic link"),
    Case("lock-dangling-symlink", _lock_dangling, EXIT_USAGE, "merged.h5.lock is a symbolic link"),
    Case("lock-hardlink-to-victim", _lock_hardlink, EXIT_USAGE, "merged.h5.lock is a regular file with 2 hard links"),
    Case("lock-fifo", _lock_fifo, EXIT_USAGE, "merged.h5.lock is not a regular file"),
    Case("lock-directory", _lock_dir, EXIT_USAGE, "merged.h5.lock is a directory"),
    Case("lock-foreign-content", _lock_not_a_pid, EXIT_USAGE, "bytes that are not a process id"),
    Case("out-is-fifo", _out_fifo, EXIT_USAGE, "merged.h5: it exists and is not a regular file"),
    Case("report-is-fifo", _report_fifo, EXIT_USAGE, "report.json: it exists and is not a regular file"),
    Case("backup-slot-is-directory", _backup_dir(), EXIT_USAGE, "backup {d}/merged.h5.2: it exists and is a directory"),
    Case("backup-slot-is-directory-dry-run", _backup_dir("--dry-run"), EXIT_USAGE,
         "backup {d}/merged.h5.2: it exists and is a directory"),
    # 3. archives
    Case("zip-member-dotdot", _archive([("../../x", b"boom")]), EXIT_CHECKPOINT, "member '../../x' has an empty, '.' or '..'"),
    Case("zip-member-absolute", _archive([("/etc/cron.d/x", b"boom")]), EXIT_CHECKPOINT, "is an absolute path"),
    Case("zip-member-backslash", _archive([("..\\..\\x", b"boom")]), EXIT_CHECKPOINT, "contains a backslash"),
    Case("zip-member-drive", _archive([("C:/x", b"boom")]), EXIT_CHECKPOINT, "is an absolute path"),
    Case("zip-member-duplicate", _archive([("metadata.json", b"{}")]), EXIT_CHECKPOINT, "appears twice"),
    Case("zip-bomb", _bomb, EXIT_CHECKPOINT, "refusing a zip bomb"),
    # 4. shapes that load but cannot train
    Case("transe-relation-width", _native(rel_dim=6), EXIT_CHECKPOINT,
         "relation_embeddings has width 6; entity_embeddings of width 8 needs width 8"),
    Case("transe-relation-width-verify", _as(_native(rel_dim=6), "verify"), EXIT_CHECKPOINT, "relation_embeddings has width 6"),
    Case("transe-relation-width-extend", _as(_native(rel_dim=6), "extend"), EXIT_CHECKPOINT, "relation_embeddings has width 6"),
    Case("complex-odd-width", _native(model="complex", dim=7, params={}), EXIT_CHECKPOINT,
         "entity_embeddings has odd width 7"),
    Case("rotate-full-relation-width", _native(model="rotate", params={"gamma": 12.0}), EXIT_CHECKPOINT,
         "entity_embeddings of width 8 needs width 4"),
    Case("distmult-no-relations", _native(model="distmult", params={}, relations=False), EXIT_CHECKPOINT,
         "relation_embeddings is missing"),
    Case("dot-context-width", _native(model="dot", params={}, relations=False, ctx_dim=4), EXIT_CHECKPOINT,
         "context_embeddings has width 4; entity_embeddings has width 8"),
    Case("transe-norm-3", _native(params={"norm": 3, "gamma": 12.0}), EXIT_CHECKPOINT, "norm must be 1 or 2"),
    Case("transe-gamma-string", _native(params={"norm": 1, "gamma": "big"}), EXIT_CHECKPOINT, "must be numbers"),
    Case("keras-transe-relation-width-extend", _keras("extend", rel_width=6), EXIT_CHECKPOINT,
         "m.weights.h5: transe: relation_embeddings has width 6; entity_embeddings of width 8 needs width 8"),
    Case("keras-meta-fifo", _keras("inspect", meta="fifo"), EXIT_CHECKPOINT,
         "m.weights.h5.embretrain.json: the embretrain metadata beside the checkpoint is not a regular file"),
    Case("keras-meta-fifo-extend", _keras("extend", meta="fifo"), EXIT_CHECKPOINT, "is not a regular file"),
    Case("keras-meta-huge", _keras("inspect", meta="huge"), EXIT_CHECKPOINT, "too big for the embretrain metadata"),
    Case("keras-meta-not-json", _keras("extend", meta=b"{\"model\": "), EXIT_CHECKPOINT,
         "m.weights.h5.embretrain.json: cannot read the embretrain metadata"),
    Case("keras-meta-deep-json", _keras("extend", meta=b"[" * 100000), EXIT_CHECKPOINT, "cannot read the embretrain metadata"),
    Case("keras-sidecar-name-tab", _keras("extend", names=OLD[:4] + ["a\tb"] + OLD[5:]), EXIT_DATA,
         "m.weights.h5.entities.tsv:5"),
    # 5. names that cannot round-trip (written by plain h5py, checksums valid)
    Case("name-nul-fixed-length", _names(OLD[:3] + [b"a\x00b"] + OLD[4:], dtype="fixed"), EXIT_CHECKPOINT,
         "/entities row 3: name 'a\\x00b' contains a NUL character"),
    Case("name-newline", _names(OLD[:5] + ["two\nlines"] + OLD[6:]), EXIT_CHECKPOINT,
         "/entities row 5: name 'two\\nlines' contains a line break"),
    Case("name-newline-verify", _as(_names(OLD[:5] + ["two\nlines"] + OLD[6:]), "verify"), EXIT_CHECKPOINT,
         "/entities row 5"),
    Case("name-cr", _names(OLD[:1] + ["dos\r"] + OLD[2:]), EXIT_CHECKPOINT, "/entities row 1: name 'dos\\r' contains a carriage"),
    Case("name-empty", _names([""] + OLD[1:]), EXIT_CHECKPOINT, "/entities row 0: name '' is empty"),
    Case("name-not-utf8", _names(OLD[:2] + [b"\xff\xfe"] + OLD[3:], dtype="fixed"), EXIT_CHECKPOINT, "not UTF-8"),
    # 7. configs and TSV inputs
    Case("config-directory", _config(kind="dir"), EXIT_USAGE, "hostile.toml"),
    Case("config-fifo", _config(kind="fifo"), EXIT_USAGE, "hostile.toml"),
    Case("config-huge", _config(b"# " + b"x" * (2 << 20) + b"\n"), EXIT_USAGE, "too big for a TOML config file"),
    Case("config-wrong-type", _config(b'dim = "wide"\n'), EXIT_USAGE, "setting 'dim' must be int, got 'wide'"),
    Case("config-unknown-key", _config(b"learning_rate = 0.1\n"), EXIT_USAGE, "unknown setting 'learning_rate'"),
    Case("config-table", _config(b"[epochs]\nn = 1\n"), EXIT_USAGE, "setting 'epochs' must be int"),
    Case("config-huge-int", _config(b"epochs = 99999999999999999999\n"), EXIT_USAGE, "hostile.toml"),
    Case("config-long-string", _config(b'optimizer = "' + b"y" * 100000 + b'"\n'), EXIT_USAGE,
         "setting 'optimizer' must be one of"),
    Case("delta-fifo", _delta("fifo"), EXIT_DATA, "delta.tsv: is a FIFO"),
    Case("delta-symlink-to-dev-zero", _delta("devzero"), EXIT_DATA, "delta.tsv: is a character device"),
    Case("delta-directory", _delta("dir"), EXIT_DATA, "delta.tsv: is a directory"),
    Case("delta-endless-line", _delta("endless"), EXIT_DATA, "delta.tsv:1: line is longer than"),
]


def test_every_class_has_more_than_one_variant():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(site, case):
    d = site / "work"
    argv = case.setup(d)
    before = snapshot(site)
    result = run_cli(argv)
    text = result.output
    assert result.exit_code == case.code, text
    assert "Traceback" not in text and not isinstance(result.exception, TimeoutError)
    # ours: "error: ..."; click's own option checks (a directory for --config): "Error: Invalid value ..."
    errors = [line for line in text.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, text  # one clean line ...
    assert len(errors[0]) < 1000, errors[0][:300]  # ... of reasonable length
    assert case.names.format(d=d) in errors[0], errors[0]
    assert snapshot(site) == before  # inputs, planted links and the victim unchanged; nothing left behind
    assert (site / "victim" / "secret.txt").read_text() == "precious\n"


# --------------------------------------------------------------------------- what must still work


def test_user_block_and_big_endian_tables_load_correctly(tmp_path):
    """A user block shifts every raw offset; a big-endian table must be converted, not read raw."""
    ent, rel = table(N, DIM), table(len(RELS), DIM, 1)
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.attrs.update(format="embretrain", format_version=1, model="transe", dim=DIM, params='["norm", "gamma"]',
                       norm=1, gamma=12.0)
        f["entities"] = np.array(OLD, dtype=object)
        f["relations"] = np.array(RELS, dtype=object)
        f.create_dataset("entity_embeddings", data=ent.astype(">f4")).attrs.update(
            indexed_by="entities", sha256=native.table_sha256(ent))
        f.create_dataset("relation_embeddings", data=rel).attrs.update(indexed_by="relations")
    for mode in native.OLD_ROWS:
        ckpt = native.load(path, old_rows=mode)
        assert np.array_equal(np.asarray(ckpt.entity_tables["entity_embeddings"]), ent)
        assert np.array_equal(np.asarray(ckpt.relation_tables["relation_embeddings"]), rel)
    result = run_cli(["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert run_cli(["verify", str(path), str(path)]).exit_code == 0


def test_export_tsv_never_writes_a_nul_or_line_break_inside_a_field(tmp_path):
    names = OLD[:4] + ["tab\there", "sp ace"] + OLD[6:]
    hand_written(tmp_path / "m.h5", names)
    out = tmp_path / "m.tsv"
    result = run_cli(["export", str(tmp_path / "m.h5"), "--format", "tsv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == N + 1
    assert all(len(line.split(b"\t")) == DIM + 2 and b"\0" not in line and b"\r" not in line for line in lines[:-1])
    assert lines[4].split(b"\t")[0] == b"tab here"


def test_a_symlink_at_the_report_is_replaced_and_its_target_untouched(site):
    """Decision: a symlink where a file is written is replaced by rename (the link goes, its target stays)."""
    d = site / "work"
    (d / "delta.tsv").write_text("only\ttwo\n")  # bad data: exit 3, the failure is still reported
    (d / "report.json").symlink_to(site / "victim" / "secret.txt")
    victim_before = os.stat(site / "victim" / "secret.txt").st_mtime_ns
    result = run_cli(extend_argv(d, report=d / "report.json"))
    assert result.exit_code == EXIT_DATA, result.output
    assert not (d / "report.json").is_symlink()
    assert json.loads((d / "report.json").read_text())["exit_code"] == EXIT_DATA
    assert (site / "victim" / "secret.txt").read_text() == "precious\n"
    assert os.stat(site / "victim" / "secret.txt").st_mtime_ns == victim_before
    assert sorted(p.name for p in d.iterdir()) == ["base.h5", "delta.tsv", "new.tsv", "report.json"]


def test_unicode_normalisation_twins_are_distinct_names(tmp_path):
    """Decision: names are opaque code point sequences; NFC and NFD spellings are two names."""
    import unicodedata

    nfc = unicodedata.normalize("NFC", "Zürich")
    nfd = unicodedata.normalize("NFD", "Zürich")
    assert nfc != nfd
    hand_written(tmp_path / "m.h5", OLD[:10] + [nfc, nfd])
    ckpt = native.load(tmp_path / "m.h5")
    assert list(ckpt.entities)[-2:] == [nfc, nfd]
