"""What a run reports: the JSON summary (``--json``, ``--report``) and the lineage record it leaves in the file.

Owns: :class:`RunSummary`, the one place that names and orders the keys of a ``train``/``extend``
summary (including the "nothing to do" summary of a rerun) and of a lineage record. Must not: train,
read data, or print; the CLI adds its own keys (``status``, ``out``, write and total seconds) and
writes the ``--report`` file from :meth:`RunSummary.as_dict`'s output.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .config import Settings

__all__ = ["RunSummary"]

logger = logging.getLogger(__name__)

# the counts a rerun with nothing to add reports (it trains nothing, so nothing about examples used)
_NOTHING_TO_DO_COUNTS = ("entities_before", "entities_added", "entities_already_known", "relations_before",
                         "relations_added", "relations_already_known", "examples_dropped_no_new",
                         "examples_skipped_unknown")


@dataclass
class RunSummary:
    """One run's facts, rendered as the summary dict and as the lineage record.

    Attributes:
        counts: what the run did with its inputs, in summary order.
        lineage_counts: the same facts as the lineage records them (default: ``counts``).
        delta: the run's :class:`~embretrain.delta.Delta` (its input files are hashed for the lineage).
        result: the :class:`~embretrain.train.TrainResult`, once trained.
        reports: keys the levers add to the summary (neighbour start, early stopping).
    """

    command: str
    model: str
    settings: Settings
    counts: dict[str, Any]
    delta: Any
    load_seconds: float
    lineage_counts: dict[str, Any] | None = None
    result: Any = None
    reports: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_train(cls, command: str, settings: Settings, delta, load_seconds: float) -> RunSummary:
        n_ent, n_rel, n_ex = len(delta.entities), len(delta.relations), int(len(delta.ids))
        return cls(command, settings.model, settings, {"entities": n_ent, "relations": n_rel, "examples": n_ex},
                   delta, load_seconds,
                   lineage_counts={"entities_before": 0, "entities_added": n_ent, "relations_before": 0,
                                   "relations_added": n_rel, "examples": n_ex})

    @classmethod
    def for_extend(cls, command: str, model: str, settings: Settings, delta, load_seconds: float) -> RunSummary:
        return cls(command, model, settings, delta.counts(), delta, load_seconds)

    def trained(self, result, levers=()) -> RunSummary:
        """Record the training result and what the levers report."""
        self.result = result
        for lever in levers:
            self.reports.update(lever.report())
        return self

    def _seconds(self) -> dict[str, float]:
        return {"load": round(self.load_seconds, 3), "train": round(self.result.seconds, 3) if self.result else 0.0}

    def as_dict(self) -> dict[str, Any]:
        """The run's summary (what ``--json`` prints)."""
        r = self.result
        return {
            "command": self.command,
            "model": self.model,
            **self.counts,
            "epochs": r.epochs,
            "final_loss": r.final_loss,
            "losses": r.losses,
            "epoch_seconds": [round(s, 3) for s in r.epoch_seconds],
            "seconds": self._seconds(),
            **self.reports,
            "settings_source": self.settings.source_map(),  # where each setting came from (config.py's precedence)
        }

    def nothing_to_do(self) -> dict[str, Any]:
        """The summary of an ``extend`` whose every new name was already known: nothing trained or written."""
        return {
            "command": self.command,
            "model": self.model,
            "nothing_to_do": True,
            **{k: self.counts[k] for k in _NOTHING_TO_DO_COUNTS},
            "seconds": self._seconds(),
        }

    def lineage_record(self) -> dict[str, Any]:
        """The record this run appends to the checkpoint's ``/lineage``."""
        counts = self.counts if self.lineage_counts is None else self.lineage_counts
        return {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": "embretrain",
            "tool_version": __version__,
            "command": self.command,
            "argv": sys.argv[1:] if self.command else [],
            **counts,
            "epochs": self.result.epochs,
            "final_loss": self.result.final_loss,
            "inputs_sha256": self.delta.input_hashes(),
            "seed": self.settings.seed,
            "config": self.settings.to_dict(),
            "settings_source": self.settings.source_map(),
        }
