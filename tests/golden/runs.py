"""The golden run list, shared by tests/test_golden.py (checks) and scripts/record_golden.py (records).

Each run is one ``embretrain`` command driven through click's CliRunner with a fixed ``--seed`` on the
committed tiny inputs beside this file, or one of three user programs (TF1 ``Saver``, TF2
``tf.train.Checkpoint``, Keras ``save_weights``) that write a foreign checkpoint for later runs to grow.
Every output is reduced to sha256 digests: each numeric array's raw bytes (C order), each vocabulary's
names joined by ``"\\n"``, plus the root attributes of a native file and the sidecar metadata of a
TF/Keras one. Lineage (timestamps, paths, timings) is left out on purpose: it differs on every run.

Runs execute in list order; a run reads earlier runs' outputs through ``{work}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

DATA = Path(__file__).resolve().parent
EXPECTED = DATA / "expected.json"

# Few steps on tiny inputs: the whole list must stay within the test budget (~25 s).
TRAIN = ("--epochs", "2", "--batch-size", "64", "--negatives", "4", "--lr", "0.05", "--seed", "7", "--no-progress")
EXTEND = ("--epochs", "3", "--batch-size", "32", "--negatives", "4", "--lr", "0.05", "--seed", "11", "--no-progress")
TRIPLES = ("--new-entities", "{data}/new.txt", "--data", "{data}/delta.tsv")
PAIRS = ("--new-entities", "{data}/new_items.txt", "--data", "{data}/delta_pairs.tsv")
FOREIGN = (*PAIRS, "--entity-vocab", "{data}/entities.txt")  # the user's tables have no names of their own


@dataclass(frozen=True)
class Run:
    """One step: CLI ``args`` (``{data}``, ``{work}``, ``{out}`` substituted) or a ``make`` program; ``fmt``
    says how its output at ``out`` is read back (``h5`` native, ``tf`` checkpoint prefix, ``keras`` weights)."""

    name: str
    args: tuple[str, ...] = ()
    make: Callable[[Path], None] | None = None
    out: str = "{work}/{name}.h5"
    fmt: str = "h5"


def _train(name: str, data: str, *extra: str) -> Run:
    return Run(name, ("train", "--data", f"{{data}}/{data}", "--out", "{out}", *TRAIN, *extra))


def _extend(name: str, base: str, *extra: str, inputs=TRIPLES) -> Run:
    return Run(name, ("extend", "--ckpt", f"{{work}}/{base}.h5", *inputs, "--out", "{out}", *EXTEND, *extra))


# --------------------------------------------------------------------------- the users' programs


def _table(rows: int, cols: int, k: int = 1) -> np.ndarray:
    """Exact small float32 values (no transcendental functions: the same bits on every CPU)."""
    i = np.arange(rows * cols, dtype=np.int64)
    return (((i * (7 + k) + 3 * k) % 17 - 8) / 16).astype(np.float32).reshape(rows, cols)


N_OLD, DIM = 60, 8  # entities.txt, and the foreign tables' shape


def make_tf1(out: Path) -> None:
    """A TF1 graph program: an ``embedding`` variable and a weight ``W`` trained with Adam, saved by ``Saver``.

    The users' programs avoid matmul: oneDNN (``TF_ENABLE_ONEDNN_OPTS``) changes its last bits, and these
    inputs should depend on TensorFlow as little as possible.
    """
    import tensorflow as tf

    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        embedding = tf.compat.v1.get_variable("embedding", initializer=_table(N_OLD, DIM))
        w = tf.compat.v1.get_variable("W", initializer=_table(1, DIM, 2))
        step = tf.compat.v1.train.get_or_create_global_step()
        rows = tf.nn.embedding_lookup(embedding, tf.constant([0, 1, 2, 3, 59]))
        loss = tf.reduce_sum(tf.square(rows * w - 0.5))
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        sess.run(tf.compat.v1.global_variables_initializer())
        for _ in range(2):
            sess.run(train)
        tf.compat.v1.train.Saver().save(sess, str(out / "model.ckpt"), global_step=step)


def make_tf2(out: Path) -> None:
    """A TF2 program: a ``tf.Module`` holding a table, saved with ``tf.train.Checkpoint`` (Keras Adam slots too)."""
    import keras
    import tensorflow as tf

    model = tf.Module()
    model.emb = tf.Module()
    model.emb.table = tf.Variable(_table(N_OLD, DIM, 3), name="table")
    model.dense = tf.Variable(_table(1, DIM, 4), name="dense")
    variables = [model.emb.table, model.dense]
    opt = keras.optimizers.Adam(0.1)
    opt.build(variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum((tf.gather(model.emb.table, [0, 5, 59]) * model.dense) ** 2)
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    tf.train.Checkpoint(model=model, optimizer=opt).save(str(out / "ckpt"))


def make_keras(out: Path) -> None:
    """A Keras 3 program: ``Embedding`` -> ``Flatten`` -> ``Dense`` with one Adam step, ``save_weights``.

    The step applies fixed gradients rather than ``fit``: the Dense layer's matmul would tie the input's
    bits to oneDNN (see ``make_tf1``).
    """
    import keras

    model = keras.Sequential([
        keras.Input((2,), dtype="int32"),
        keras.layers.Embedding(N_OLD, DIM, name="items", embeddings_initializer=keras.initializers.Constant(_table(N_OLD, DIM, 5))),
        keras.layers.Flatten(),
        keras.layers.Dense(1, name="head", kernel_initializer=keras.initializers.Constant(_table(2 * DIM, 1, 6))),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    grads = [_table(*v.shape, 7 + i) if len(v.shape) == 2 else np.full(v.shape, 0.25, np.float32)
             for i, v in enumerate(model.trainable_variables)]
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    model.save_weights(out / "model.weights.h5")


# --------------------------------------------------------------------------- the list

RUNS: list[Run] = [
    # train then extend, each model with its default optimizer (adam; rmsprop for distmult and complex); transe also
    # with adagrad and sgd, distmult with sgd
    _train("transe-adam", "train.tsv", "--model", "transe", "--dim", "8"),
    _extend("transe-adam-extend", "transe-adam"),
    _train("distmult-rmsprop", "train.tsv", "--model", "distmult", "--dim", "8"),
    _extend("distmult-rmsprop-extend", "distmult-rmsprop"),
    _train("complex-rmsprop", "train.tsv", "--model", "complex", "--dim", "12"),
    _extend("complex-rmsprop-extend", "complex-rmsprop"),
    _train("rotate-adam", "train.tsv", "--model", "rotate", "--dim", "16"),
    _extend("rotate-adam-extend", "rotate-adam"),
    _train("dot-tied-adam", "pairs.tsv", "--model", "dot", "--tied", "--dim", "8"),
    _extend("dot-tied-adam-extend", "dot-tied-adam", inputs=PAIRS),
    _train("dot-untied-adam", "pairs.tsv", "--model", "dot", "--untied", "--dim", "8"),
    _extend("dot-untied-adam-extend", "dot-untied-adam", inputs=PAIRS),
    _train("transe-adagrad", "train.tsv", "--model", "transe", "--dim", "8", "--optimizer", "adagrad"),
    _extend("transe-adagrad-extend", "transe-adagrad", "--optimizer", "adagrad"),
    _train("transe-sgd", "train.tsv", "--model", "transe", "--dim", "8", "--optimizer", "sgd"),
    _extend("transe-sgd-extend", "transe-sgd", "--optimizer", "sgd"),
    _train("distmult-sgd", "train.tsv", "--model", "distmult", "--dim", "8", "--optimizer", "sgd"),
    _extend("distmult-sgd-extend", "distmult-sgd", "--optimizer", "sgd"),
    # margin loss (with L2 TransE), once
    _train("transe-l2-margin", "train.tsv", "--model", "transe", "--dim", "8", "--norm", "2", "--loss", "margin",
           "--margin", "2"),
    _extend("transe-l2-margin-extend", "transe-l2-margin", "--loss", "margin", "--margin", "2"),
    # extend's levers on the transe base
    _extend("transe-chunk1", "transe-adam", "--negative-chunk", "1"),
    _extend("transe-on-disk", "transe-adam", "--old-rows", "on-disk"),
    _extend("transe-valid", "transe-adam", "--valid-fraction", "0.25"),
    _extend("transe-replay", "transe-adam", "--replay", "{data}/train.tsv"),
    _extend("transe-new-relations", "transe-adam", "--new-relations", "{data}/new_relations.txt",
            inputs=("--new-entities", "{data}/new.txt", "--data", "{data}/delta_newrel.tsv")),
    # neighbour initialisation: each model has its own closed form
    _extend("transe-neighbors", "transe-adam", "--init", "neighbors"),
    _extend("transe-on-disk-neighbors", "transe-adam", "--init", "neighbors", "--old-rows", "on-disk"),
    _extend("distmult-neighbors", "distmult-rmsprop", "--init", "neighbors"),
    _extend("complex-neighbors-median", "complex-rmsprop", "--init", "neighbors-median"),
    _extend("rotate-neighbors", "rotate-adam", "--init", "neighbors"),
    _extend("dot-tied-neighbors", "dot-tied-adam", "--init", "neighbors", inputs=PAIRS),
    _extend("dot-untied-neighbors", "dot-untied-adam", "--init", "neighbors", inputs=PAIRS),
    _extend("dot-untied-on-disk", "dot-untied-adam", "--old-rows", "on-disk", inputs=PAIRS),
    # foreign inputs written by the users' programs, grown in their own format (and once converted)
    Run("input-tf1", make=make_tf1, out="{work}/in-tf1/model.ckpt-2", fmt="tf"),
    Run("input-tf2", make=make_tf2, out="{work}/in-tf2/ckpt-1", fmt="tf"),
    Run("input-keras", make=make_keras, out="{work}/in-keras/model.weights.h5", fmt="keras"),
    Run("tf1-extend", ("extend", "--ckpt", "{work}/in-tf1", *FOREIGN, "--out", "{out}", *EXTEND),
        out="{work}/tf1-grown/model.ckpt-3", fmt="tf"),
    Run("tf1-extend-neighbors", ("extend", "--ckpt", "{work}/in-tf1", *FOREIGN, "--out", "{out}", *EXTEND,
                                 "--init", "neighbors"), out="{work}/tf1-neighbors/model.ckpt-3", fmt="tf"),
    Run("tf2-extend", ("extend", "--ckpt", "{work}/in-tf2", *FOREIGN, "--entity-var", "model/emb/table",
                       "--out", "{out}", *EXTEND), out="{work}/tf2-grown/ckpt-2", fmt="tf"),
    Run("keras-extend", ("extend", "--ckpt", "{work}/in-keras/model.weights.h5", *FOREIGN, "--out", "{out}", *EXTEND),
        out="{work}/keras-grown/model.weights.h5", fmt="keras"),
    Run("keras-extend-to-h5", ("extend", "--ckpt", "{work}/in-keras/model.weights.h5", *FOREIGN, "--out", "{out}",
                               *EXTEND, "--out-format", "h5")),
]


# --------------------------------------------------------------------------- hashing


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_digest(a: np.ndarray) -> str:
    """``dtype[shape]:sha256`` of the raw C-order bytes (shape and dtype make a mismatch readable)."""
    a = np.asarray(a, order="C")  # (ascontiguousarray would turn a scalar into shape [1])
    return f"{a.dtype}{list(a.shape)}:{_sha(a.tobytes())}"


def _names_digest(names) -> str:
    return f"{len(names)} names:{_sha(chr(10).join(names).encode('utf-8'))}"


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


def _hash_h5(path: Path, skip=("lineage",)) -> dict:
    """Every dataset of an HDF5 file (native checkpoint or Keras weights) but ``skip``, and the root attributes."""
    import h5py

    out: dict = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name not in skip:
                if h5py.check_string_dtype(obj.dtype):
                    out[name] = _names_digest(list(obj.asstr()[()]))
                else:
                    out[name] = _array_digest(obj[()])

        f.visititems(visit)
        out["attrs"] = {k: _jsonable(v) for k, v in sorted(f.attrs.items())}
    return out


def _hash_sidecars(base: str) -> dict:
    """The names and metadata a TF/Keras output carries beside it (lineage left out, and the size and sha256
    of the TF ``.index`` the metadata is bound to: the index's own bytes are not part of the record)."""
    out = {}
    for kind in ("entities", "relations"):
        p = Path(f"{base}.{kind}.tsv")
        if p.exists():
            out[f"sidecar:{kind}"] = _names_digest(p.read_text(encoding="utf-8").splitlines())
    meta = Path(f"{base}.embretrain.json")
    if meta.exists():
        out["sidecar:meta"] = {k: v for k, v in json.loads(meta.read_text(encoding="utf-8")).items() if k not in ("lineage", "binds")}
    return out


def _hash_tf(prefix: str) -> dict:
    """Every numeric variable of a TF checkpoint (the serialized object graph, a string, is not hashed)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    out = {}
    for key, dtype in sorted(reader.get_variable_to_dtype_map().items()):
        if dtype != tf.string:
            out[key] = _array_digest(reader.get_tensor(key))
    return out


def digests(run: Run, out: str) -> dict:
    """The recorded digests of ``run``'s output."""
    if run.fmt == "h5":
        return _hash_h5(Path(out))
    if run.fmt == "tf":
        return {**_hash_tf(out), **_hash_sidecars(out)}
    return {**_hash_h5(Path(out)), **_hash_sidecars(out)}


def run_all(work: Path, runs: list[Run] = RUNS) -> dict[str, dict]:
    """Run ``runs`` in order in ``work``; ``{name: digests}``, or ``{name: {"error": ...}}`` for a failed run."""
    from click.testing import CliRunner

    from embretrain.cli import main

    results: dict[str, dict] = {}
    for run in runs:
        fill = {"data": str(DATA), "work": str(work), "name": run.name}
        out = run.out.format(**fill)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        try:
            if run.make is not None:
                run.make(Path(out).parent)
            else:
                args = [a.format(**fill, out=out) for a in run.args]
                result = CliRunner().invoke(main, ["-q", *args])
                if result.exit_code != 0:
                    raise RuntimeError(f"exit {result.exit_code}: {result.output.strip()} {result.exception!r}")
            results[run.name] = digests(run, out)
        except Exception as err:  # noqa: BLE001 - one failed run must not hide the others' results
            results[run.name] = {"error": f"{type(err).__name__}: {err}"}
    return results
