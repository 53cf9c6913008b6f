"""atomic_write: the target holds the old file or the whole new one, never a partial one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embretrain.atomic import atomic_write, check_writable_dir, fsync_path
from embretrain.errors import UsageError


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "model.h5"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path  # same directory, so the rename is atomic
        assert tmp.name.startswith(".model.h5.tmp-")
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_success_creates_a_new_file(tmp_path):
    target = tmp_path / "fresh.h5"
    with atomic_write(str(target)) as tmp:
        tmp.write_bytes(b"abc")
    assert target.read_bytes() == b"abc"
    assert _leftovers(tmp_path) == []


def test_exception_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.h5"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "model.h5"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_exception_before_anything_written(tmp_path):
    target = tmp_path / "model.h5"
    with pytest.raises(ValueError):
        with atomic_write(target):
            raise ValueError("bad option")
    assert list(tmp_path.iterdir()) == []


def test_temp_names_differ_between_writers(tmp_path):
    target = tmp_path / "model.h5"
    with atomic_write(target) as a, atomic_write(target) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block finished last
    assert _leftovers(tmp_path) == []


def test_missing_directory_is_a_usage_error(tmp_path):
    target = tmp_path / "no" / "such" / "model.h5"
    with pytest.raises(UsageError, match=r"directory .*no[/\\]such does not exist"):
        with atomic_write(target):
            pytest.fail("the body must not run")
    with pytest.raises(UsageError, match="does not exist"):
        check_writable_dir(target)


def test_parent_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        check_writable_dir(tmp_path / "afile" / "model.h5")


def test_target_is_a_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        check_writable_dir(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_directory_is_a_usage_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="not writable"):
            check_writable_dir(ro / "model.h5")
    finally:
        ro.chmod(0o700)


def test_check_writable_dir_returns_the_directory(tmp_path, monkeypatch):
    assert check_writable_dir(tmp_path / "model.h5") == tmp_path
    monkeypatch.chdir(tmp_path)
    assert check_writable_dir("model.h5") == type(tmp_path)(".")  # a bare file name means the cwd


def test_fsync_path_file_and_directory(tmp_path):
    f = tmp_path / "x"
    f.write_text("x")
    fsync_path(f)
    fsync_path(tmp_path)


# --- backups, directories, stale temps (used by --keep, TF checkpoint dirs, and after a SIGKILL)
from embretrain.atomic import atomic_dir, backup_path, clean_stale_temps  # noqa: E402


def test_keep_rotates_previous_versions_and_drops_the_oldest(tmp_path):
    target = tmp_path / "m.h5"
    for version in range(1, 6):
        with atomic_write(target, keep=3) as tmp:
            tmp.write_text(f"v{version}")
    assert target.read_text() == "v5"
    assert [backup_path(target, k).read_text() for k in (1, 2, 3)] == ["v4", "v3", "v2"]
    assert not backup_path(target, 4).exists()
    assert _leftovers(tmp_path) == []


def test_failed_write_does_not_rotate(tmp_path):
    target = tmp_path / "m.h5"
    target.write_text("v1")
    with pytest.raises(OSError):
        with atomic_write(target, keep=2) as tmp:
            tmp.write_text("half")
            raise OSError(27, "File too large")
    assert target.read_text() == "v1" and not backup_path(target, 1).exists()


def test_atomic_dir_replaces_a_directory_whole(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("partial")
            raise RuntimeError("killed")
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert _leftovers(tmp_path) == []


def test_clean_stale_temps_removes_dead_runs_only(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.h5.tmp-{dead_pid}-abcd1234"
    stale.write_text("partial")
    nested = tmp_path / f"..m.h5.tmp-{dead_pid}-abcd1234.tmp-{dead_pid}-00ff00ff"
    nested.write_text("partial")
    live = tmp_path / f".m.h5.tmp-{os.getppid()}-abcd1234"  # our parent is alive
    live.write_text("being written")
    other = tmp_path / "m.h5"
    other.write_text("keep")
    removed = clean_stale_temps(other)
    assert sorted(removed) == sorted([stale, nested])
    assert live.exists() and other.read_text() == "keep"


def test_a_name_planted_at_the_temp_path_is_never_written_through(tmp_path, monkeypatch):
    """Temp files are created O_EXCL|O_NOFOLLOW: a symlink planted at the (predicted) name is skipped."""
    import secrets

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    tokens = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens))
    planted = tmp_path / f".out.bin.tmp-{os.getpid()}-aaaaaaaa"
    planted.symlink_to(victim)
    with atomic_write(tmp_path / "out.bin") as tmp:
        assert tmp != planted
        tmp.write_bytes(b"new")
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert (tmp_path / "out.bin").read_bytes() == b"new"


def test_backup_slots_holding_a_directory_are_refused_before_writing(tmp_path):
    target = tmp_path / "m.h5"
    target.write_bytes(b"v1")
    (tmp_path / "m.h5.2").mkdir()
    with pytest.raises(UsageError, match=r"backup .*m\.h5\.2: it exists and is a directory"):
        with atomic_write(target, keep=3):
            pytest.fail("the body must not run")
    assert target.read_bytes() == b"v1" and sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "m.h5.2"]


def test_symlinks_at_the_target_and_backups_are_moved_as_links(tmp_path):
    """Decision: a symlink at OUT is replaced (its target untouched); backups rotate links as links."""
    victim1, victim2 = tmp_path / "v1.txt", tmp_path / "v2.txt"
    victim1.write_text("one")
    victim2.write_text("two")
    target = tmp_path / "m.h5"
    target.symlink_to(victim1)
    (tmp_path / "m.h5.1").symlink_to(victim2)
    with atomic_write(target, keep=2) as tmp:
        tmp.write_bytes(b"new")
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert os.readlink(tmp_path / "m.h5.1") == str(victim1) and os.readlink(tmp_path / "m.h5.2") == str(victim2)
    assert victim1.read_text() == "one" and victim2.read_text() == "two"


def test_atomic_files_is_all_or_nothing(tmp_path):
    from embretrain.atomic import atomic_files

    ckpt, side, stale = tmp_path / "m.bin", tmp_path / "m.bin.entities.tsv", tmp_path / "m.bin.relations.tsv"
    for p, text in ((ckpt, "old ckpt"), (side, "old side"), (stale, "old rels")):
        p.write_text(text)
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_files({"ckpt": ckpt, "side": side}, primary="ckpt", remove=[stale]) as tmps:
            tmps["side"].write_text("new side")
            raise RuntimeError("disk on fire")
    assert [ckpt.read_text(), side.read_text(), stale.read_text()] == ["old ckpt", "old side", "old rels"]
    # a rename failing half-way (the primary cannot replace a directory... simulated): everything undone
    real_replace = os.replace

    def failing(src, dst):
        if Path(dst) == ckpt:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    import embretrain.atomic as atomic_mod

    atomic_mod.os.replace = failing
    try:
        with pytest.raises(OSError):
            with atomic_files({"ckpt": ckpt, "side": side}, primary="ckpt", remove=[stale]) as tmps:
                tmps["side"].write_text("new side")
                tmps["ckpt"].write_text("new ckpt")
    finally:
        atomic_mod.os.replace = real_replace
    assert [ckpt.read_text(), side.read_text(), stale.read_text()] == ["old ckpt", "old side", "old rels"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.bin.entities.tsv", "m.bin.relations.tsv"]
    with atomic_files({"ckpt": ckpt, "side": side}, primary="ckpt", remove=[stale]) as tmps:
        tmps["side"].write_text("new side")
        tmps["ckpt"].write_text("new ckpt")
    assert [ckpt.read_text(), side.read_text(), stale.exists()] == ["new ckpt", "new side", False]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.bin.entities.tsv"]
