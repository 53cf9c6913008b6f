"""Scale-out: the same ``train``/``extend`` on a TensorFlow ``ParameterServerStrategy`` cluster.

Owns: reading ``TF_CONFIG``, waiting for the servers (:func:`wait_for_cluster`) and connecting the
chief (:func:`connect`), the sharded split table, the :class:`ClusterExecutor` that runs an epoch's
steps on the workers, and the ps/worker servers. Must not: repeat the training loop or the losses (the loop is :func:`embretrain.train.fit`, which takes a
:class:`ClusterExecutor`; a step's loss is :func:`embretrain.losses.batch_loss`), or build checkpoints.

The cluster comes from the standard ``TF_CONFIG`` environment variable (``chief``, ``worker``,
``ps``). The process that runs ``embretrain train|extend --strategy parameter-server`` is the chief
(TensorFlow's "coordinator"); ``embretrain server --role ps|worker`` starts the other roles.

What is distributed, and what stays the same as a local run:

- **Tables.** :class:`ShardedSplitTable` is the sharded twin of :class:`embretrain.tables.SplitTable`:
  the old rows in one non-trainable ``ShardedVariable``, the new rows in a trainable one, both cut
  into ``div`` (contiguous) shards by the strategy's ``variable_partitioner`` and placed round-robin
  on the parameter servers. Each shard starts as zeros made on its ps and the chief streams its rows
  in (:data:`STREAM_BYTES` blocks, read from the input file block by block when the old rows were
  left on disk), so no process ever holds the whole old table, and a ps only its own shards.
  Lookups go through ``tf.nn.embedding_lookup``, which ``ShardedVariable`` overrides to gather on
  each shard, so the gradient of every new shard is an ``IndexedSlices`` over the rows a batch
  touched (the sparse optimizers refuse anything else).
- **Optimizer.** One :mod:`embretrain.optim` optimizer per new shard, built under
  ``colocate_vars_with(shard)``: its slots (and Adam's step counter) live on the shard's ps, and the
  update runs there too, so only the gradient rows cross the network. Per-row Adam/Adagrad maths
  does not mix rows, so per-shard optimizers compute what one optimizer over the table computes.
- **Loss and loop.** :func:`embretrain.train.fit` runs the epochs and :func:`embretrain.losses.batch_loss`
  computes each step's loss (``--replay`` included) exactly as in a local run; only the optimizer
  placement, the data feed and the scheduling below are this module's.
- **Data.** The chief draws each epoch's batches as a local run does (:class:`embretrain.batches.EpochBatches`,
  seeded) and passes each batch to the step it schedules, on whichever worker is free (TensorFlow's
  asynchronous parameter-server training). So a cluster's epoch trains every example exactly once, as a
  local epoch does, however many workers share it, and no worker holds a copy of the delta. (A
  per-worker ``tf.data`` pipeline cannot do this: a worker's pipeline is traced once on the chief, so
  every worker gets the same shuffle seed and they walk the same order in lockstep; measured on two
  workers, 58 distinct batches of 100 scheduled. Its element-wise shuffle buffer also cost a worker
  933 MB and 11.8 s of CPU per epoch for 2M triples.) A batch crosses the network once, from the chief
  to its worker: ``batch * (k * 8 + 4)`` bytes (28 KB at 1,024 triples), against the rows it gathers.
- **Output.** The trained new rows are read back from the ps shards to the chief, and
  :mod:`embretrain.api` builds and saves the same :class:`~embretrain.checkpoint.Checkpoint` as a local
  run; old rows are never read back from the cluster, so they stay bit-identical.

Unlike a local run, a cluster run is not bit-reproducible: its batches are those of a local run with
the same seed, but workers update the shared rows asynchronously, in whatever order they finish.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batches import EpochBatches
from .config import STRATEGIES
from .errors import TrainingError, UsageError
from .quiet_tf import import_tensorflow
from .tables import SplitTable
from .train import EpochStats

__all__ = [
    "STRATEGIES",
    "ROLES",
    "Cluster",
    "ClusterExecutor",
    "ClusterLost",
    "ClusterUnreachable",
    "CLUSTER_TIMEOUT",
    "ShardedSplitTable",
    "read_tf_config",
    "connect",
    "wait_for_cluster",
    "colocated_optimizers",
    "run_server",
    "start_in_process_cluster",
    "start_servers",
    "loopback_cluster",
    "div_shard_ranges",
]

logger = logging.getLogger(__name__)

ROLES = ("ps", "worker")

# MinSizePartitioner's shard floor when --shards is not given: tables under 256 KiB (65k floats)
# stay in one piece, bigger ones are cut into at most one shard per ps.
MIN_SHARD_BYTES = 256 << 10


# ---------------------------------------------------------------------------------------------
# TF_CONFIG
def read_tf_config(environ=None, *, want: tuple[str, ...] = ("chief",)) -> dict[str, Any]:
    """Parse and check ``TF_CONFIG``; ``want`` lists the task types this process may be.

    Raises:
        UsageError: missing or malformed ``TF_CONFIG``, no ps/worker jobs, or a task of another type.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    hint = "see 'Scaling out with parameter servers' in the README"
    if not raw:
        raise UsageError(f"the TF_CONFIG environment variable is not set; it describes the cluster ({hint})")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"TF_CONFIG is not valid JSON ({exc}); {hint}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError(f'TF_CONFIG needs a "cluster" object and a "task" object; {hint}')
    for job in ("ps", "worker"):
        if not cluster.get(job):
            raise UsageError(
                f'TF_CONFIG: the cluster has no "{job}" job; a parameter-server cluster needs both ps and worker tasks'
            )
    kind, index = task.get("type"), task.get("index")
    if kind not in want:
        raise UsageError(f"TF_CONFIG says this task is {kind!r} but this command runs a {' or '.join(want)} task")
    if not isinstance(index, int) or not 0 <= index < len(cluster.get(kind, [])):
        raise UsageError(f"TF_CONFIG: task index {index!r} is not in the cluster's {kind!r} list")
    return config


def div_shard_ranges(n_rows: int, n_shards: int) -> list[range]:
    """Rows held by each shard under ``div`` partitioning (what ``ShardedVariable`` uses).

    Contiguous blocks, the first ``n_rows % n_shards`` shards one row longer:
    ``div_shard_ranges(10, 4) == [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]``.
    """
    n_shards = max(1, min(n_shards, n_rows))
    base, extra = divmod(n_rows, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + base + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


# ---------------------------------------------------------------------------------------------
# waiting for the servers
CLUSTER_TIMEOUT = 120.0  # seconds a chief waits for its ps and workers (--cluster-timeout)
PROBE_EVERY = 5.0  # seconds between "waiting for ..." lines


class ClusterUnreachable(TrainingError):
    """Some ps or worker did not accept connections in time (exit 6); nothing was written."""


class ClusterLost(ClusterUnreachable):
    """A ps or worker went away during training (exit 6); nothing was written. TensorFlow's runtime still holds
    channels to it, and its teardown at exit would retry them: the CLI ends the process without it."""

    exit_hard = True


def cluster_tasks(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(task name, "host:port")]`` of the ps and worker tasks the chief needs, e.g. ``("ps0", "10.0.0.4:2222")``."""
    return [(f"{job}{i}", address) for job in ("ps", "worker") for i, address in enumerate(config["cluster"][job])]


def _unreachable(address: str, timeout: float) -> str | None:
    """Why ``host:port`` does not accept a TCP connection now, or None if it does."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return "not a host:port address"
    except OSError as err:
        return err.strerror or type(err).__name__


def _down(tasks: list, timeout: float = 2.0) -> dict:
    """``{name: (address, why)}`` of the tasks that do not accept a connection now."""
    down = {}
    for name, address in tasks:
        why = _unreachable(address, timeout=timeout)
        if why is not None:
            down[name] = (address, why)
    return down


def _listed(down: dict) -> str:
    return ", ".join(f"{name} {address} ({why})" for name, (address, why) in down.items())


def wait_for_cluster(config: dict[str, Any], timeout: float = CLUSTER_TIMEOUT, *, every: float = PROBE_EVERY) -> None:
    """Wait until every ps and worker of ``config`` accepts TCP connections, logging who is missing.

    A connection accepted means a server listens on that port (``embretrain server`` logs
    "serving at ..." once it does). Logs "waiting for ps0 127.0.0.1:2222 (Connection refused) ..."
    every ``every`` seconds.

    Raises:
        ClusterUnreachable: naming the tasks still unreachable after ``timeout`` seconds.
    """
    import time

    start = time.monotonic()
    next_log = start
    while True:
        missing = _down(cluster_tasks(config), max(0.1, min(2.0, start + timeout - time.monotonic())))
        if not missing:
            logger.info("cluster is up: %s", ", ".join(f"{n} {a}" for n, a in cluster_tasks(config)))
            return
        listed = _listed(missing)
        now = time.monotonic()
        if now - start >= timeout:
            raise ClusterUnreachable(
                f"the cluster in TF_CONFIG is not reachable after {timeout:g} s: {listed}; start "
                "'embretrain server' on those hosts (each logs \"serving at ...\" when up), or check "
                "TF_CONFIG's addresses; nothing was written"
            )
        if now >= next_log:
            logger.info("waiting for %s ... (%.0f s left)", listed, start + timeout - now)
            next_log = now + every
        time.sleep(min(1.0, start + timeout - now))


# ---------------------------------------------------------------------------------------------
# tables
def _shards(var) -> list:
    """The per-ps variables of a (possibly unsharded) variable."""
    return list(getattr(var, "variables", [var]))


# Bytes per message when the chief streams a table into its shards. Measured on a 100 MB shard
# (peak growth, chief / its ps): 1 MiB 5 MB / 1.15x the shard, 8 MiB 33 MB / 1.5x, 32 MiB 129 MB / 2.3x
# (each block's tensor, request and gRPC buffers are copies); 1 MiB was also no slower on loopback.
STREAM_BYTES = 1 << 20


def _sharded_variable(value, name: str, trainable: bool, strategy):
    """A variable created under ``strategy.scope()``, sharded by the strategy's partitioner, then
    filled from ``value`` (an array or rows left on disk) block by block (:func:`_stream_rows`).

    Each shard starts as zeros made on its own ps: the initial value is a callable, which
    ``ParameterServerStrategy`` calls under the shard's ps device scope, so no shard-sized value is
    built on the chief or sent over the network (a whole-table constant would also hit protobuf's
    2 GB limit).
    """
    tf = import_tensorflow()

    width = int(value.shape[1])

    def initial(shard_info=None):
        rows = int(value.shape[0]) if shard_info is None else int(shard_info.shape[0])
        return tf.zeros([rows, width], tf.float32)

    with strategy.scope():
        var = tf.Variable(initial, shape=tuple(value.shape), dtype=tf.float32, trainable=trainable, name=name)
    _stream_rows(value, _shards(var))
    return var


def _stream_rows(value, shards: list) -> None:
    """Copy rows of ``value`` (float32 ``[n, width]``: an array or :class:`DiskRows`) into the ``div``
    shards that hold them, :data:`STREAM_BYTES` at a time.

    Rows on disk are read a block at a time, so the chief never holds a table or a shard. Each block
    is one ``scatter_update`` run on the shard's ps (a sliced assign would first read the whole
    shard to the chief).
    """
    tf = import_tensorflow()

    width = int(value.shape[1])
    step = max(1, STREAM_BYTES // (4 * max(1, width)))
    start = 0
    for shard in shards:
        n = int(shard.shape[0])
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = np.ascontiguousarray(value[start + lo : start + hi], dtype=np.float32)
            with tf.device(shard.device):
                shard.scatter_update(tf.IndexedSlices(block, tf.range(lo, hi)))
        start += n


class ShardedSplitTable(SplitTable):
    """:class:`~embretrain.tables.SplitTable` sharded over parameter servers.

    Args:
        old: float32 ``[n_old, width]`` frozen rows (a non-trainable sharded variable).
        new: float32 ``[n_new, width]`` initial values of the trainable rows (a trainable sharded variable).
        name: variable name prefix.
        strategy: a ``ParameterServerStrategy`` with a ``variable_partitioner``.
    """

    def __init__(self, old: np.ndarray, new: np.ndarray, name: str, *, strategy):
        self._strategy = strategy
        super().__init__(old, new, name)

    # An empty side gets no variable at all: a partitioner cannot cut a 0-row table.
    def _frozen_part(self, old):
        return (_sharded_variable(old, f"{self.name}_old", False, self._strategy) if self.n_old else None), None

    def _trainable_part(self, new):
        return _sharded_variable(new, f"{self.name}_new", True, self._strategy) if self.n_new else None

    def _gather(self, params, ids):
        tf = import_tensorflow()

        # tf.nn.embedding_lookup, not tf.gather: tf.gather would concatenate the shards into one
        # dense tensor (and make the gradient dense); the ShardedVariable override gathers per shard.
        return tf.nn.embedding_lookup(params, ids)

    def _new_variables(self) -> list:
        """One variable per new shard: each gets its own colocated optimizer."""
        return _shards(self.new) if self.new is not None else []

    @property
    def shards(self) -> dict[str, list]:
        """``{"old": [...], "new": [...]}`` per-ps variables (for placement checks and logs)."""
        return {side: _shards(var) if var is not None else [] for side, var in (("old", self.old), ("new", self.new))}


# ---------------------------------------------------------------------------------------------
# strategy + training loop
class _StepRng:
    """The ``uniform`` calls the loss functions make on a ``tf.random.Generator``, made stateless.

    A stateful generator would be one variable on one ps that every worker's step updates; seeds
    derived from ``(seed, step, call)`` keep each step's negatives independent of scheduling.
    """

    def __init__(self, seed: int, step):
        tf = import_tensorflow()

        self._seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
        self._calls = 0

    def uniform(self, shape, minval=0, maxval=None, dtype=None):
        tf = import_tensorflow()

        self._calls += 1
        seed = tf.random.experimental.stateless_fold_in(self._seed, self._calls)
        dtype = dtype or tf.float32
        if maxval is None:
            maxval = 1 if dtype.is_integer else 1.0
        return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval, dtype=dtype)


@dataclass
class Cluster:
    """A connected ``ParameterServerStrategy`` and its ``ClusterCoordinator``."""

    strategy: Any
    coordinator: Any
    shards: int  # 0 = by size
    n_workers: int
    n_ps: int
    tasks: list = field(default_factory=list)  # cluster_tasks(config): probed while a run waits on the workers
    timeout: float = CLUSTER_TIMEOUT  # seconds a task may stay unreachable mid-run before the run fails (exit 6)

    def table(self, old: np.ndarray, new: np.ndarray, name: str) -> ShardedSplitTable:
        return ShardedSplitTable(old, new, name, strategy=self.strategy)

    def executor(self) -> ClusterExecutor:
        """What :func:`embretrain.train.fit` runs its epochs with on this cluster."""
        return ClusterExecutor(self)


_CLUSTERS: dict[tuple, Cluster] = {}


def _partitioner(shards: int, n_ps: int):
    tf = import_tensorflow()

    partitioners = tf.distribute.experimental.partitioners
    if shards:
        return partitioners.FixedShardsPartitioner(shards)
    return partitioners.MinSizePartitioner(min_shard_bytes=MIN_SHARD_BYTES, max_shards=n_ps)


def connect(shards: int = 0, environ=None, *, timeout: float = CLUSTER_TIMEOUT) -> Cluster:
    """Connect this process (the chief) to the cluster described by ``TF_CONFIG``.

    Args:
        shards: shards per table (``FixedShardsPartitioner``); 0 = by size (``MinSizePartitioner``,
            256 KiB minimum, at most one shard per ps).
        timeout: seconds to wait for every ps and worker to accept connections (:func:`wait_for_cluster`).

    One connection per process and shard count: TensorFlow keeps one coordinator per strategy.

    Raises:
        ClusterUnreachable: some task did not answer within ``timeout``.
    """
    environ = os.environ if environ is None else environ
    config = read_tf_config(environ)
    key = (json.dumps(config, sort_keys=True), int(shards))
    if key in _CLUSTERS:
        return _CLUSTERS[key]
    # TensorFlow would wait for a missing server silently and forever: probe first, with a deadline.
    wait_for_cluster(config, timeout)
    # Let RPCs to a dead worker fail fast so the coordinator can reschedule (TensorFlow's advice).
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
    tf = import_tensorflow()

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    n_ps, n_workers = len(config["cluster"]["ps"]), len(config["cluster"]["worker"])
    strategy = tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=_partitioner(shards, n_ps))
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    cluster = Cluster(strategy, coordinator, int(shards), n_workers, n_ps, cluster_tasks(config), timeout)
    logger.info(
        "connected to a cluster of %d worker(s) and %d ps; shards per table: %s",
        n_workers, n_ps, shards or f"by size (<= {n_ps})",
    )
    _CLUSTERS[key] = cluster
    return cluster


def colocated_optimizers(strategy, variables: list, name: str, lr: float) -> list:
    """One sparse optimizer per shard variable, its slots created on that shard's ps.

    ``colocate_vars_with`` also keeps the partitioner off the slots: a slot must be cut exactly
    like its shard, i.e. not at all.
    """
    from .optim import make_optimizer

    optimizers = []
    with strategy.scope():
        for var in variables:
            with strategy.extended.colocate_vars_with(var):
                opt = make_optimizer(name, lr)
                opt.build([var])
            optimizers.append(opt)
    return optimizers


class ClusterExecutor:
    """Runs an epoch's steps on the cluster's workers (:func:`embretrain.train.fit`'s executor).

    Each step is scheduled on whichever worker is free (asynchronous parameter-server training); an
    epoch is ``ceil(n / batch_size)`` steps, and it ends when every one of them has been fetched.
    """

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self._step_no = 0

    def compiles_scoring(self, *, steady_rows: bool, steps: int) -> bool:
        """Never: the step runs on the workers against the servers' variables, with TensorFlow's own ops."""
        return False

    def prepare(self, variables: list, loss_fn, ids: np.ndarray, weights: np.ndarray, settings, *,
                steady_rows: bool = False) -> None:
        """As :meth:`embretrain.train.LocalExecutor.prepare`; ``steady_rows`` is not used: a cluster's update runs on
        the servers' variables with TensorFlow's own ops, never XLA."""
        tf = import_tensorflow()

        strategy, coordinator = self.cluster.strategy, self.cluster.coordinator
        optimizers = colocated_optimizers(strategy, variables, settings.optimizer, settings.lr)
        self._batches = EpochBatches(ids, weights, settings.batch_size, settings.seed)
        signature = [tf.TensorSpec([None, ids.shape[1]], tf.as_dtype(ids.dtype)),
                     tf.TensorSpec([None], tf.as_dtype(weights.dtype)), tf.TensorSpec([], tf.int64)]

        @tf.function(autograph=False, input_signature=signature)  # one trace, the short last batch included
        def worker_step(batch, batch_weights, step):
            def replica_fn(batch, batch_weights):
                with tf.GradientTape() as tape:
                    loss = loss_fn(batch, batch_weights, _StepRng(settings.seed, step))
                grads = tape.gradient(loss, variables)
                for opt, grad, var in zip(optimizers, grads, variables):
                    # Run the whole update on the shard's ps: lazy Adam's gather/maths/scatter of its
                    # moments would otherwise round-trip every touched row's slots through the worker.
                    with tf.device(var.device):
                        opt.apply([grad], [var])
                return loss, tf.shape(batch)[0]

            return strategy.run(replica_fn, args=(batch, batch_weights))

        def schedule(batch, batch_weights):
            return coordinator.schedule(worker_step, args=(
                tf.constant(batch), tf.constant(batch_weights), tf.constant(self._step_no, tf.int64)))

        self._schedule = schedule

    def run_epoch(self, advance) -> EpochStats:
        pending = []
        for batch, batch_weights in self._batches.epoch_arrays():
            pending.append(self._schedule(batch, batch_weights))
            self._step_no += 1
        self._wait()
        stats = EpochStats()
        for remote in pending:
            loss, size = remote.fetch()  # every step has run (_wait): this no longer blocks
            stats.total_loss += float(loss) * int(size)
            stats.examples += int(size)
            stats.steps += 1
            advance(int(size), float(loss))
        return stats

    def describe(self, stats: EpochStats) -> str:
        return f" ({stats.steps} steps on {self.cluster.n_workers} workers)"

    def finish(self) -> None:
        self._wait()
        self.cluster.coordinator.join()

    def _wait(self) -> None:
        """Until every scheduled step has run, probing the ps and workers while it waits.

        TensorFlow's coordinator waits for a lost worker to come back, forever, and a blocking ``fetch`` cannot be
        interrupted: a server that died mid-run left the chief silent for good. So the chief polls
        ``coordinator.done()`` and probes every task each ``PROBE_EVERY`` seconds; a task unreachable for the
        cluster timeout, or a step failing because a server went away, ends the run (exit 6) naming the tasks.
        A worker that restarts within the timeout is waited for, as TensorFlow intends.
        """
        import time

        tf = import_tensorflow()
        cluster, down_since, next_probe = self.cluster, None, time.monotonic() + PROBE_EVERY
        while True:
            try:
                if cluster.coordinator.done():  # raises a step's error
                    return
            except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as err:
                raise self._lost(_down(cluster.tasks), f"a step failed: {str(err).splitlines()[0][:200]}") from None
            now = time.monotonic()
            if now >= next_probe:
                next_probe = now + PROBE_EVERY
                down = _down(cluster.tasks)
                down_since = (down_since or now) if down else None
                if down:
                    logger.warning("lost %s (%.0f s of %g s)", _listed(down), now - down_since, cluster.timeout)
                if down and now - down_since >= cluster.timeout:
                    raise self._lost(down, f"unreachable for {cluster.timeout:g} s")
            time.sleep(0.05)

    @staticmethod
    def _lost(down: dict, why: str) -> ClusterLost:
        tasks = _listed(down) if down else "a server"
        return ClusterLost(f"the cluster lost {tasks} during training ({why}); restart the lost servers and run the "
                           "command again; nothing was written")


# ---------------------------------------------------------------------------------------------
# the other roles
def _server_config(n_workers: int):
    tf = import_tensorflow()

    # A worker runs several scheduled functions and their RPCs at once; on a small host TF's
    # default inter-op pool (one thread per core) can deadlock them (as TF's own in-process
    # cluster example notes), so give it at least workers + 2 threads.
    return tf.compat.v1.ConfigProto(inter_op_parallelism_threads=max(os.cpu_count() or 1, n_workers + 2))


def start_servers(cluster: dict[str, list[str]], tasks: list[tuple[str, int]], protocol: str = "grpc") -> list:
    """Start a ``tf.distribute.Server`` for each ``(job, index)`` of ``cluster`` in this process.

    gRPC servers cannot be stopped: the process that starts them ends with ``os._exit``.
    """
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
    tf = import_tensorflow()

    spec = tf.train.ClusterSpec(cluster)
    config = _server_config(len(cluster["worker"]))
    return [tf.distribute.Server(spec, job_name=job, task_index=index, protocol=protocol, config=config, start=True)
            for job, index in tasks]


def run_server(role: str, environ=None) -> None:
    """Start this host's ``tf.distribute.Server`` as ``role`` (ps or worker) and serve until stopped.

    Logs "ps 0 serving at grpc://host:port (pid N)" once the server accepts connections. SIGTERM or
    Ctrl-C ends the process at once (exit 0): a gRPC server has no clean shutdown, and the state it
    holds (table shards, optimizer slots) belongs to the chief's run, which fails if it is still going.

    Raises:
        UsageError: ``TF_CONFIG`` is missing, malformed, or names another role for this task.
    """
    import signal
    import time

    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    environ = os.environ if environ is None else environ
    config = read_tf_config(environ, want=(role,))
    task = config["task"]
    (server,) = start_servers(config["cluster"], [(task["type"], task["index"])], config.get("rpc_layer", "grpc"))

    def stop(signum, _frame):
        logger.info("%s %d stopping (%s)", role, task["index"], signal.Signals(signum).name)
        logging.shutdown()
        os._exit(0)  # never into gRPC's atexit hooks, which can hang

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("%s %d serving at %s (pid %d); stop it with Ctrl-C or 'kill %d'", role, task["index"], server.target,
                os.getpid(), os.getpid())
    while True:  # not server.join(): it blocks in C++, where Python cannot deliver the signals above
        time.sleep(3600)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_cluster(n_workers: int = 2, n_ps: int = 2) -> dict[str, list[str]]:
    """A ``TF_CONFIG`` cluster of one chief, ``n_workers`` workers and ``n_ps`` ps on free 127.0.0.1 ports."""
    return {
        "chief": [f"127.0.0.1:{_free_port()}"],
        "worker": [f"127.0.0.1:{_free_port()}" for _ in range(n_workers)],
        "ps": [f"127.0.0.1:{_free_port()}" for _ in range(n_ps)],
    }


def start_in_process_cluster(n_workers: int = 2, n_ps: int = 2) -> tuple[dict[str, Any], list]:
    """Start ``n_workers`` worker and ``n_ps`` ps servers in this process on 127.0.0.1 (tests, benchmarks).

    Sets ``TF_CONFIG`` so this process is the chief and returns ``(tf_config, servers)``. gRPC
    servers cannot be stopped: run this in a child process that ends with ``os._exit``.
    """
    cluster = loopback_cluster(n_workers, n_ps)
    servers = start_servers(cluster, [(job, i) for job in ("worker", "ps") for i in range(len(cluster[job]))])
    tf_config = {"cluster": cluster, "task": {"type": "chief", "index": 0}}
    os.environ["TF_CONFIG"] = json.dumps(tf_config)
    return tf_config, servers
