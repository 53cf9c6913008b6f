"""Import TensorFlow without its start-up chatter: every module that needs TF calls :func:`import_tensorflow`.

TensorFlow 2.21 logs through C++ absl before anything has initialised absl's logging, and absl then writes
every message, INFO included, straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796022208.612689   15623 port.cc:153] oneDNN custom operations are on. ...

once for each of the two shared libraries that carry that code, so twice per process. No environment
variable turns these off (tried: ``TF_CPP_MIN_LOG_LEVEL=3``, ``GLOG_minloglevel=3``, ``ABSL_MIN_LOG_LEVEL=3``),
and ``TF_ENABLE_ONEDNN_OPTS=0`` would silence the oneDNN line by changing the numerics. So, during the
import only, fd 2 points at a temporary file; afterwards the known chatter (that banner and absl INFO
records) is dropped and every other byte (a warning, an error, anything Python printed) is written to the
real stderr, so nothing that matters is lost. ``TF_CPP_MIN_LOG_LEVEL`` (default 2 here: errors still
show) governs what TensorFlow logs after the import. ``show_startup_logs(True)`` (the CLI's ``--debug``)
turns all of this off.

``import tensorflow`` also imports Keras, which creates ``~/.keras/keras.json`` (or ``/tmp/.keras/`` when the
home directory is not writable) if it is missing: a file the user did not name. Unless the user set
``KERAS_HOME`` or already has that file (then Keras only reads it), the import runs with ``KERAS_HOME``
pointing where nothing can be created, so Keras keeps its defaults and writes nothing (it ignores the
failure by design).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from types import ModuleType

__all__ = ["drop_chatter", "import_tensorflow", "is_chatter", "show_startup_logs"]

_show_startup = False
_lock = threading.Lock()

# An absl INFO record: I, MMDD, time (00:00:<epoch seconds> before absl is initialised), thread id,
# file:line]. W/E/F records are kept: they may matter.
_ABSL_INFO = re.compile(rb"^I\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:\]]+:\d+\] ")
_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# cpu_feature_guard's INFO record (shown when TF_CPP_MIN_LOG_LEVEL < 2) continues on a second line.
_CONTINUATIONS = (b"To enable the following instructions:",)


def show_startup_logs(show: bool) -> None:
    """Let TensorFlow's start-up lines through untouched (for ``--debug``); call before the first import."""
    global _show_startup
    _show_startup = show


def is_chatter(line: bytes, after_info: bool = False) -> bool:
    """True for a line of TensorFlow's start-up chatter (``after_info``: the previous line was an INFO record)."""
    line = line.rstrip(b"\r\n")
    if line == _BANNER or _ABSL_INFO.match(line):
        return True
    return after_info and line.startswith(_CONTINUATIONS)


def drop_chatter(captured: bytes) -> bytes:
    """``captured`` without the chatter lines; everything else byte for byte, in order."""
    kept, after_info = [], False
    for line in captured.splitlines(keepends=True):
        if is_chatter(line, after_info):
            after_info = line.rstrip(b"\r\n") != _BANNER  # an INFO record or its continuation
            continue
        after_info = False
        kept.append(line)
    return b"".join(kept)


def import_tensorflow() -> ModuleType:
    """``import tensorflow`` with its start-up chatter removed from stderr; returns the module.

    Costs a dict lookup once TensorFlow is imported (also when the caller imported it first).
    """
    # One expression on purpose: code traced by tf.function calls this, and autograph converts what it calls.
    return sys.modules.get("tensorflow") or _import_quietly()


@contextlib.contextmanager
def _no_keras_config() -> Iterator[None]:
    """While Keras is imported: no ``keras.json`` written, unless the user set ``KERAS_HOME`` or has one."""
    home = os.path.expanduser("~")
    default = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras", "keras.json")  # as Keras finds it
    if "KERAS_HOME" in os.environ or "keras" in sys.modules or os.path.exists(default):
        yield
        return
    os.environ["KERAS_HOME"] = os.path.join(os.devnull, "keras")  # under a device: cannot be created
    try:
        yield
    finally:
        os.environ.pop("KERAS_HOME", None)


def _import_quietly() -> ModuleType:
    with _lock, _no_keras_config():
        return _import_tf()


def _import_tf() -> ModuleType:
    """The import itself, its stderr filtered (see the module docstring)."""
    if "tensorflow" in sys.modules or _show_startup:
        import tensorflow as tf

        return tf
    # Read when the C++ runtime loads, i.e. during the import: later settings are ignored.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (started with 2>&-): nothing to keep clean
        import tensorflow as tf

        return tf
    # A file, not a pipe: a pipe nobody reads while the import runs would block it once full.
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = drop_chatter(capture.read())
            while rest:
                rest = rest[os.write(2, rest):]
    return tf
