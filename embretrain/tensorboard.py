"""TensorBoard curves of a run (``--logdir``): loss, seconds and examples/s per epoch, held-out MRR.

Owns: :class:`TensorBoardLog`, a :class:`~embretrain.levers.Lever` that writes one standard TF2 scalar
summary per tag and epoch (what ``tf.summary.scalar`` writes, shown by TensorBoard's scalars dashboard)
into an events file under the log directory. Must not: change training (it never asks to stop) or decide
whether it runs (:func:`with_tensorboard` does).

Tags, step = epoch:

* ``loss``: the epoch's mean training loss (the summary's ``losses``);
* ``seconds_per_epoch``: wall time of the epoch's training (epoch 1 includes building the step and
  the data pipeline); the held-out ranking of ``valid_fraction`` is not counted in it;
* ``examples_per_second``: training examples of the epoch / ``seconds_per_epoch``;
* ``held_out_mrr`` (with ``valid_fraction``): the early stopper's sampled MRR of the held-out slice,
  from step 0 (the starting rows) on.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .levers import EarlyStop, Lever

__all__ = ["TensorBoardLog", "TAGS", "with_tensorboard"]

logger = logging.getLogger(__name__)

TAGS = ("loss", "seconds_per_epoch", "examples_per_second", "held_out_mrr")


class TensorBoardLog(Lever):
    """Writes the run's per-epoch scalars to an events file in ``logdir`` (created if missing).

    Args:
        logdir: the run's log directory; give each run its own (``runs/2024-06-01``), as TensorBoard
            shows every subdirectory as one run.
        examples: training examples per epoch (the rows :func:`~embretrain.train.fit` passes over).
        early_stop: the run's early-stopping lever, whose held-out MRR is logged; None without one.
            It must come before this lever in hook order, so its epoch is ranked when this one writes.
    """

    def __init__(self, logdir: str | os.PathLike, examples: int, early_stop: EarlyStop | None = None):
        self.logdir = os.fspath(logdir)
        self.examples = int(examples)
        self.early_stop = early_stop
        self._writer = self._metadata = None
        self._since = 0.0
        self._epochs = 0

    def before_fit(self, emb) -> None:
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.logdir)
        # tf.summary.scalar is TensorBoard's code (TF raises without the tensorboard package); it writes a
        # float32 scalar tagged for the "scalars" plugin, which is what tf.summary.write does here too. So the
        # events are the standard ones, and a training machine needs no TensorBoard to write them.
        self._metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._mrr(0)
        self._since = time.perf_counter()

    def _mrr(self, epoch: int) -> None:
        if self.early_stop is not None and len(self.early_stop.stopper.history) > epoch:
            self._scalar("held_out_mrr", self.early_stop.stopper.history[epoch], epoch)

    def _scalar(self, tag: str, value: float, step: int) -> None:
        import tensorflow as tf

        with self._writer.as_default():
            tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=self._metadata)

    def on_epoch(self, epoch: int, loss: float) -> bool:
        seconds = time.perf_counter() - self._since
        if self.early_stop is not None:  # its ranking ran after the epoch's steps: not training time
            seconds -= self.early_stop.last_check_seconds
        self._scalar("loss", loss, epoch)
        self._scalar("seconds_per_epoch", seconds, epoch)
        self._scalar("examples_per_second", self.examples / max(seconds, 1e-9), epoch)
        self._mrr(epoch)
        self._writer.flush()  # a run that fails later still shows the epochs it finished
        self._epochs = epoch
        self._since = time.perf_counter()  # this lever is last: the next epoch starts now
        return False

    def after_fit(self) -> None:
        if self._writer is not None:
            self._writer.close()
            logger.info("wrote TensorBoard summaries of %d epoch(s) to %s", self._epochs, self.logdir)

    def report(self) -> dict[str, Any]:
        return {"logdir": self.logdir}


def with_tensorboard(levers: list[Lever], logdir: str | os.PathLike | None, examples: int) -> list[Lever]:
    """``levers`` with a :class:`~embretrain.tensorboard.TensorBoardLog` last (``logdir`` given), else as is.

    Last, so each epoch's held-out MRR is ranked before it is written and the next epoch's clock starts
    when every other lever has had its turn. ``examples``: training examples per epoch.
    """
    if logdir is None:
        return list(levers)
    early = next((lever for lever in levers if isinstance(lever, EarlyStop)), None)
    return [*levers, TensorBoardLog(logdir, examples, early)]
