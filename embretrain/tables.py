"""The freeze: one table split into a frozen old part and a trainable new part.

Owns: :class:`SplitTable` (the only thing that decides what is trainable), the routing lookup
(:func:`routed_lookup`), the Glorot start of new rows (:func:`glorot_rows`) and building a model's
split tables from its old rows (:func:`split_tables`). Must not: train, score, read data, or know
about clusters; the parameter-server twin (``distributed.ShardedSplitTable``) subclasses
:class:`SplitTable` and overrides only how the two parts are made and read.

Rows ``[0, n_old)`` are frozen, rows ``[n_old, n_old + n_new)`` live in a trainable variable.
:meth:`SplitTable.lookup` routes each id to the right part with ``dynamic_partition``/``dynamic_stitch``
(measured faster than ``tf.where`` + two gathers), so the gradient that reaches ``new`` is a
``tf.IndexedSlices`` over the rows a batch touched, and the old rows cannot move: no gradient, no
optimizer slot, nothing to update. Every command that trains goes through this class; nothing
else decides what is trainable. ``train`` from scratch is the case ``n_old = 0``.

The old part is held once: an in-memory array is shared with TensorFlow without a copy (DLPack),
and rows left on disk (:class:`~embretrain.storage.DiskRows`, ``--old-rows on-disk``)
are read per batch with ``tf.numpy_function``, only the ids that batch needs.
"""

from __future__ import annotations

import logging

import numpy as np

from . import storage
from .models import glorot_limit
from .quiet_tf import import_tensorflow

__all__ = ["SplitTable", "glorot_rows", "routed_lookup", "split_tables"]

logger = logging.getLogger(__name__)

_TF_ALIGN = 64  # EIGEN_MAX_ALIGN_BYTES: TensorFlow CHECK-fails on a less aligned CPU buffer


def glorot_rows(rng: np.random.Generator, n_new: int, width: int, n_total: int) -> np.ndarray:
    """Glorot-uniform rows ``float32 [n_new, width]``.

    The bound is computed for the whole merged table ``[n_total, width]``: new rows start from
    the same distribution a full retrain of that table would start from, however few they are.
    """
    limit = glorot_limit(n_total, width)
    return rng.uniform(-limit, limit, size=(n_new, width)).astype(np.float32)


def split_tables(old_tables: dict, n_new: int | dict[str, int], rng: np.random.Generator, *, start_rows=None,
                 make_table=None) -> dict:
    """Split tables by name: each table's old rows frozen, ``n_new`` trainable rows from ``start_rows``.

    Args:
        old_tables: name -> float32 ``[n_old, width]`` (an array, rows on disk, or a lazy stack of both).
        n_new: new rows of every table, or by table name (a pair model with two vocabularies grows its
            entity and context tables by different counts).
        start_rows: ``(rng, n_new, width, n_total) -> float32 [n_new, width]``; default :func:`glorot_rows`.
            Tables draw from ``rng`` in the order given (same seed, same bytes).
        make_table: ``(old, new, name) -> table``; default :class:`SplitTable` (a cluster run passes its
            sharded twin, so both start from the same draws).
    """
    make_table = make_table or SplitTable
    out = {}
    for name, old in old_tables.items():
        if not storage.on_disk(old):
            old = storage.as_array(old)  # a grown (lazy) table extended again in the same process
        grow = n_new[name] if isinstance(n_new, dict) else n_new
        new = (start_rows or glorot_rows)(rng, grow, int(old.shape[1]), int(old.shape[0]) + grow)
        out[name] = make_table(old, new, name)
    return out


def routed_lookup(ids, old, new, n_old: int, n_new: int, width: int, gather, gather_old=None):
    """Rows for ``ids`` int ``[...]`` -> ``[..., width]``: ids < n_old from ``old``, the rest from ``new``.

    ``gather(params, ids)`` reads one part: ``tf.gather`` for plain variables, ``tf.nn.embedding_lookup``
    for sharded ones (the parameter-server strategy); ``gather_old`` (default ``gather``) reads the old
    part. Routing with ``dynamic_partition``/``dynamic_stitch`` keeps the gradient reaching ``new`` an
    ``IndexedSlices`` over the touched rows.
    """
    tf = import_tensorflow()

    gather_old = gather_old or gather
    if n_new == 0:
        return gather_old(old, ids)
    if n_old == 0:
        return gather(new, ids)
    flat = tf.reshape(ids, [-1])
    is_new = tf.cast(flat >= n_old, tf.int32)
    positions = tf.range(tf.size(flat))
    old_ids, new_ids = tf.dynamic_partition(flat, is_new, 2)
    old_pos, new_pos = tf.dynamic_partition(positions, is_new, 2)
    rows = tf.dynamic_stitch([old_pos, new_pos], [gather_old(old, old_ids), gather(new, new_ids - n_old)])
    return tf.reshape(rows, tf.concat([tf.shape(ids), [width]], axis=0))


def _frozen_tensor(old: np.ndarray, name: str):
    """A constant tensor over the array's own buffer (DLPack, no copy), or a copy if that is refused.

    A ``tf.Variable`` (or ``tf.constant``) would copy the old rows: a second full table in memory.
    DLPack hands TensorFlow the numpy buffer itself (the capsule keeps the array alive). numpy only
    exports writeable arrays, so a read-only one (how ``extend`` loads it) is unlocked for the export.
    """
    tf = import_tensorflow()

    if old.shape[0] == 0:
        return tf.zeros(old.shape, dtype=tf.float32)
    if not (old.flags.c_contiguous and old.dtype == np.float32 and old.dtype.isnative
            and old.ctypes.data % _TF_ALIGN == 0):
        # TF kernels abort on a buffer that is not 64-byte aligned: copy (native.load's arrays are aligned)
        logger.debug("%s: old rows copied into TensorFlow (not a 64-byte aligned C float32 array)", name)
        return tf.constant(np.ascontiguousarray(old, dtype=np.float32))
    array = old
    writeable = array.flags.writeable
    try:
        if not writeable:
            array.flags.writeable = True  # for the export only; TF never writes to a constant
        capsule = array.__dlpack__()
    except (BufferError, ValueError, TypeError, AttributeError) as err:
        logger.info("%s: old rows copied into TensorFlow (no zero-copy export: %s)", name, err)
        return tf.constant(array)
    finally:
        if not writeable:
            array.flags.writeable = False
    return tf.experimental.dlpack.from_dlpack(capsule)


def _disk_gather(rows: storage.Rows, width: int):
    """``gather(params, ids)`` for rows left on disk: a ``tf.numpy_function`` reading just those rows.

    No gradient flows through it, which is right: old rows are frozen.
    """
    tf = import_tensorflow()

    def gather(_params, ids):
        ids = tf.convert_to_tensor(ids)
        out = tf.numpy_function(lambda i: storage.take(rows, i), [ids], tf.float32, name="read_old_rows")
        return tf.ensure_shape(out, ids.shape.concatenate([width]))

    return gather


class SplitTable:
    """A ``[n_old + n_new, width]`` embedding table whose first ``n_old`` rows are frozen.

    Args:
        old: float32 ``[n_old, width]``: an array, shared with TensorFlow without a copy (never read
            back: savers take old rows from the source, so they come out bit-identical), or
            :class:`~embretrain.storage.DiskRows` left in the checkpoint file.
        new: float32 ``[n_new, width]`` initial values of the trainable rows.
        name: variable name prefix.

    Attributes:
        old: the frozen rows: a constant tensor, or the DiskRows themselves.
        new: the trainable ``tf.Variable``.

    A subclass changes where the parts live by overriding :meth:`_frozen_part`, :meth:`_trainable_part`
    and :meth:`_gather`; the checks, routing and read-back are this class's.
    """

    def __init__(self, old, new: np.ndarray, name: str):
        if old.ndim != 2 or new.ndim != 2 or old.shape[1] != new.shape[1]:
            raise ValueError(f"{name}: old {old.shape} and new {new.shape} must be 2-D of equal width")
        self.name = name
        self.n_old = int(old.shape[0])
        self.n_new = int(new.shape[0])
        self.width = int(old.shape[1])
        self.old, self._gather_old = self._frozen_part(old)
        self.new = self._trainable_part(new)

    # --- the hooks a subclass overrides ---------------------------------------------------------
    def _frozen_part(self, old):
        """``(frozen part, its gather or None for :meth:`_gather`)``."""
        if storage.on_disk(old):
            return old, _disk_gather(old, self.width)
        return _frozen_tensor(old, self.name), None

    def _trainable_part(self, new: np.ndarray):
        tf = import_tensorflow()

        return tf.Variable(new, trainable=True, name=f"{self.name}_new", dtype=tf.float32)

    def _gather(self, params, ids):
        tf = import_tensorflow()

        return tf.gather(params, ids)

    def _new_variables(self) -> list:
        """The variables holding the new rows, top to bottom."""
        return [self.new]

    # --- shared --------------------------------------------------------------------------------
    @property
    def on_disk(self) -> bool:
        return storage.on_disk(self.old)

    @property
    def n_rows(self) -> int:
        return self.n_old + self.n_new

    def lookup(self, ids):
        """``ids`` int ``[...]`` -> float32 ``[..., width]``; ids >= n_old read the trainable variable."""
        return routed_lookup(ids, self.old, self.new, self.n_old, self.n_new, self.width, self._gather,
                             gather_old=self._gather_old)

    def all_rows(self):
        """The whole table as one tensor ``[n_rows, width]`` (a full copy: for small tables and tests;
        training and early stopping use :meth:`lookup`)."""
        tf = import_tensorflow()

        parts = [] if self.old is None else [tf.constant(np.asarray(self.old)) if self.on_disk else self.old]
        parts += self._new_variables()
        return tf.concat([tf.convert_to_tensor(p) for p in parts], axis=0)

    def new_rows(self) -> np.ndarray:
        """Current values of the trainable rows, float32 ``[n_new, width]``."""
        if not self.n_new:
            return np.zeros((0, self.width), dtype=np.float32)
        parts = [v.numpy() for v in self._new_variables()]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    @property
    def trainable(self) -> list:
        return self._new_variables() if self.n_new else []
