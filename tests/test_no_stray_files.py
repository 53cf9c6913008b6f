"""A run writes what the user named and nothing else: no file in the temp directory, the home directory or the
working directory, none beside the output but the output.

Each run is a real process with its own empty ``TMPDIR``, ``HOME`` and working directory, which ends with
``os._exit`` after the commands, as a killed run or a cluster worker ends: files that libraries remove only at
a normal exit (AutoGraph's converted functions, written to the temp directory) stay there, and are seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import toy_graph, write_tsv

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

SCRIPT = """
import os, sys
from embretrain.cli import main
code = 0
for argv in {runs!r}:
    try:
        main(argv, standalone_mode=False)
    except SystemExit as exc:
        code = code or exc.code
sys.stdout.flush()
os._exit(code or 0)
"""


@pytest.mark.parametrize("model", ["transe", "distmult"])
def test_train_extend_evaluate_write_only_the_named_outputs(tmp_path, model):
    base_triples, new, delta = toy_graph()
    data = tmp_path / "data"
    data.mkdir()
    train = write_tsv(data / "train.tsv", base_triples)
    delta_tsv = write_tsv(data / "delta.tsv", delta)
    new_tsv = data / "new.tsv"
    new_tsv.write_text("".join(f"{n}\n" for n in new))
    out = tmp_path / "out"
    out.mkdir()
    runs = [
        ["-q", "train", "--data", str(train), "--model", model, "--dim", "8", "--epochs", "2", "--out", str(out / "base.h5")],
        ["-q", "extend", "--ckpt", str(out / "base.h5"), "--new-entities", str(new_tsv), "--data", str(delta_tsv),
         "--out", str(out / "merged.h5"), "--report", str(out / "report.json")],
        ["-q", "evaluate", "--ckpt", str(out / "merged.h5"), "--test", str(delta_tsv), "--known", str(train)],
    ]
    dirs = {name: tmp_path / name for name in ("tmp", "home", "cwd")}
    for d in dirs.values():
        d.mkdir()
    env = {**ENV, "TMPDIR": str(dirs["tmp"]), "HOME": str(dirs["home"])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(runs=runs)], cwd=dirs["cwd"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mrr" in proc.stdout.lower(), proc.stdout  # the commands really ran
    for name, d in dirs.items():
        assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == [], f"{name}: {proc.stderr[-2000:]}"
    assert sorted(p.name for p in out.iterdir()) == ["base.h5", "merged.h5", "report.json"]
    assert sorted(p.name for p in data.iterdir()) == ["delta.tsv", "new.tsv", "train.tsv"]
