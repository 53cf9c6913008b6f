"""Quiet on success, loud on failure: what each verbosity prints on stderr, as cron sees it.

The CLI runs in a subprocess with neither ``TF_CPP_MIN_LOG_LEVEL`` nor ``TF_ENABLE_ONEDNN_OPTS`` set (a cron
environment has neither), so TensorFlow's start-up chatter is what this TensorFlow really prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_graph, write_tsv

from embretrain.checkpoint import Checkpoint, native
from embretrain.quiet_tf import drop_chatter, is_chatter

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k not in {"TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"}}
# One of embretrain's own log lines (cli._setup_logging's format).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (INFO|WARNING) ")


# What TensorFlow 2.21 printed on this machine's stderr for `import tensorflow` with TF_CPP_MIN_LOG_LEVEL=0.
CHATTER = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796022316.879090   22845 port.cc:153] oneDNN custom operations are on. You may see slightly "
    b"different numerical results due to floating-point round-off errors from different computation orders. To turn "
    b"them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    b"I0000 00:00:1796022317.002054   22845 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.\n"
    b"To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in other operations, "
    b"rebuild TensorFlow with the appropriate compiler flags.\n"
)


def _run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embretrain", *map(str, args)], cwd=cwd, env=env or ENV,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def files(tmp_path):
    """train.tsv, a native base.h5 (no TensorFlow needed to make it), new.tsv whose every entity has data, delta.tsv."""
    base, new, delta = toy_graph()
    rng = np.random.default_rng(0)
    names = sorted({h for h, _, _ in base} | {t for _, _, t in base})
    native.save(
        Checkpoint(
            model="transe", entities=names, relations=["r0", "r1", "r2"],
            entity_tables={"entity_embeddings": rng.normal(size=(len(names), 8)).astype(np.float32)},
            relation_tables={"relation_embeddings": rng.normal(size=(3, 8)).astype(np.float32)},
            params={"norm": 1, "gamma": 12.0},
        ),
        tmp_path / "base.h5",
    )
    return {
        "dir": tmp_path,
        "train": write_tsv(tmp_path / "train.tsv", base),
        "base": tmp_path / "base.h5",
        "new": write_tsv(tmp_path / "new.tsv", [(n,) for n in new[:-1]]),  # toy_graph's last new entity has no data
        "delta": write_tsv(tmp_path / "delta.tsv", delta),
    }


def _extend(files, *options, out="merged.h5"):
    return ("extend", "--ckpt", files["base"], "--new-entities", files["new"], "--data", files["delta"],
            "--out", files["dir"] / out, "--epochs", "5", "--batch-size", "8", "--negatives", "2", *options)


# --- the import helper --------------------------------------------------------------------------------


def test_the_filter_drops_the_chatter_and_keeps_every_other_line():
    kept = (
        b"W0000 00:00:1796022316.1   22845 cuda_executor.cc:12] a warning stays\n"
        b"E0000 00:00:1796022316.2   22845 something.cc:3] an error stays\n"
        b"/x/y.py:3: DeprecationWarning: so does Python's output\n"
        b"To enable the following instructions: only chatter right after an INFO record\n"
    )
    w, e, py, after = kept.splitlines(keepends=True)
    assert drop_chatter(CHATTER + w + e + CHATTER + py + after) == kept
    assert drop_chatter(CHATTER) == b""
    assert not is_chatter(b"E0000 00:00:1796022316.2   22845 something.cc:3] an error stays\n")


def test_import_tensorflow_is_silent_and_runtime_output_still_reaches_stderr(tmp_path):
    code = (
        "import sys\n"
        "from embretrain.quiet_tf import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "assert import_tensorflow() is tf\n"
        "tf.print('printed by a TensorFlow op', output_stream=sys.stderr)\n"  # C++ writes to fd 2: restored
        "tf.constant([1.0])[5]\n"  # a real run-time error: a traceback and exit 1
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         check=False,
                         timeout=600)
    assert run.returncode == 1
    first, *rest = run.stderr.splitlines()
    assert first == "printed by a TensorFlow op", run.stderr
    assert rest[0] == "Traceback (most recent call last):" and "out of bounds" in rest[-1], run.stderr


# --- the CLI ------------------------------------------------------------------------------------------


def test_quiet_train_then_extend_print_nothing_on_stderr(files):
    d = files["dir"]
    train = _run("-q", "train", "--data", files["train"], "--model", "transe", "--dim", "8", "--epochs", "3",
                 "--out", d / "trained.h5", cwd=d)
    assert train.returncode == 0, train.stderr
    assert train.stderr == ""
    grow = _run("-q", *_extend(files), cwd=d)
    assert grow.returncode == 0, grow.stderr
    assert grow.stderr == ""
    assert native.load(d / "merged.h5").n_entities == native.load(files["base"]).n_entities + 5
    assert "final loss" in grow.stdout  # the summary is on stdout, for whoever asked for it


@pytest.mark.parametrize(("breakage", "code", "message"), [
    ("delta", 3, "delta.tsv:1: expected 3 tab-separated fields"),
    ("ckpt", 4, "base.h5"),
])
def test_quiet_failure_prints_one_error_line_and_its_exit_code(files, breakage, code, message):
    if breakage == "delta":
        files["delta"].write_text("n000\tr0\n")
    else:
        files["base"].write_bytes(files["base"].read_bytes()[:4096])  # truncated
    run = _run("-q", *_extend(files), cwd=files["dir"])
    assert run.returncode == code
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and message in run.stderr, run.stderr
    assert not (files["dir"] / "merged.h5").exists()


def test_quiet_evaluate_prints_nothing_while_debug_shows_tensorflows_startup(files):
    d = files["dir"]
    args = ("evaluate", "--ckpt", files["base"], "--test", files["train"])
    quiet = _run("-q", *args, cwd=d)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert "mrr" in quiet.stdout.lower()

    debug = _run("--debug", *args, cwd=d)  # the control: the chatter is real, and --debug lets it through
    assert debug.returncode == 0, debug.stderr
    def figures(out):
        return [line for line in out.splitlines() if "seconds" not in line]
    assert figures(debug.stdout) == figures(quiet.stdout)
    if not any(is_chatter(line.encode()) for line in debug.stderr.splitlines()):
        pytest.skip("this TensorFlow build prints no start-up lines")


def test_default_verbosity_prints_a_few_lines_without_chatter_or_epochs(files):
    run = _run(*_extend(files), cwd=files["dir"])
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), run.stderr  # embretrain's own lines only
    assert any("training 5 new entities" in line for line in lines), run.stderr
    assert not any("epoch" in line for line in lines), run.stderr  # 5 epochs, no line for each
    assert len(lines) <= 6, run.stderr


def test_verbose_adds_a_line_per_epoch(files):
    run = _run("-v", *_extend(files), cwd=files["dir"])
    assert run.returncode == 0, run.stderr
    epochs = [line for line in run.stderr.splitlines() if re.search(r" epoch \d/5 loss ", line)]
    assert len(epochs) == 5, run.stderr


# --- shell completion (README) ------------------------------------------------------------------------


def test_shell_completion_script_completes_commands(tmp_path):
    env = {**ENV, "PATH": f"{BIN}{os.pathsep}{ENV.get('PATH', '')}"}
    script = subprocess.run(["embretrain"], env={**env, "_EMBRETRAIN_COMPLETE": "bash_source"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert script.returncode == 0, script.stderr
    assert "complete -o nosort -F _embretrain_completion embretrain" in script.stdout
    # What the README's line does in a user's shell: source it, then ask for completions of `embretrain ext`.
    session = (
        'eval "$(_EMBRETRAIN_COMPLETE=bash_source embretrain)"\n'
        'COMP_WORDS=(embretrain ext); COMP_CWORD=1; _embretrain_completion embretrain; echo "${COMPREPLY[@]}"\n'
        'COMPREPLY=(); COMP_WORDS=(embretrain extend --new-e); COMP_CWORD=2; _embretrain_completion embretrain\n'
        'echo "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", session], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["extend", "--new-entities"], done.stdout + done.stderr
