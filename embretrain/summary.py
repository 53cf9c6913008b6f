"""What a run reports: the JSON summary (``--json``, ``--report``) and the lineage record it leaves in the file.

Owns: :class:`RunSummary`, the one place that names and orders the keys of a ``train``/``extend``
summary (including the "nothing to do" summary of a rerun and the planned summary of a dry run, which
share the real run's counts) and of a lineage record, and :func:`last_added`, which reads those records back
(the pending entities are the checkpoint's own: :func:`~embretrain.checkpoint.base.pending_names`).
Must not: train, read data, or print; the CLI adds its own keys (``status``, ``out``, the checkpoint's load,
write and total seconds) and writes the ``--report`` file from :meth:`RunSummary.as_dict`'s output.

``seconds`` holds disjoint parts of the run's wall time, in run order: ``load_checkpoint`` (reading and
verifying ``--ckpt``; added by the CLI for ``extend``), ``load_data`` (reading, checking and mapping the
data and name files), ``train``, ``write`` and ``total`` (the last two added by the CLI).
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .checkpoint.base import CONTEXT_TABLE
from .config import MODEL_PARAMS, Settings

__all__ = ["RunSummary", "last_added", "name_list", "NAMES_SHOWN"]

logger = logging.getLogger(__name__)

# the counts a rerun with nothing to add reports (it trains nothing, so nothing about examples used)
_NOTHING_TO_DO_COUNTS = ("entities_before", "entities_added", "entities_already_known", "relations_before",
                         "relations_added", "relations_already_known", "examples_dropped_no_new",
                         "examples_skipped_unknown", "entities_pending")

# Lineage keys holding every name (the summary shows a capped list): the record of which entities are pending.
NAMES_SHOWN = 20  # names listed in a summary, a report or inspect; the count is always whole


def name_list(names, shown: int = NAMES_SHOWN) -> dict[str, Any]:
    """``{"count": n, "names": [the first `shown`]}``: names for a person, bounded whatever ``n`` is."""
    names = list(names)
    return {"count": len(names), "names": names[:shown]}


def _params(model: str, values: dict[str, Any], delta, tied: bool) -> dict[str, Any]:
    """The model's scoring parameters from ``values``, and ``tied`` for a pair model (one table or two)."""
    params = {k: values[k] for k in MODEL_PARAMS.get(model, ()) if k in values}
    return params if delta.kind.has_relations else {**params, "tied": tied}


@dataclass
class RunSummary:
    """One run's facts, rendered as the summary dict and as the lineage record.

    Attributes:
        counts: what the run did with its inputs, in summary order.
        lineage_counts: the same facts as the lineage records them (default: ``counts``).
        delta: the run's :class:`~embretrain.delta.Delta` (its input files are hashed for the lineage).
        result: the :class:`~embretrain.train.TrainResult`, once trained.
        reports: keys the levers add to the summary (neighbour start, early stopping).
        dim: the width the model really has (an ``extend``'s is the checkpoint's, not the settings').
        model_params: the scoring parameters the model really uses (an ``extend``'s come from the
            checkpoint); the lineage's ``config`` records these instead of the settings' defaults.
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
    dim: int | None = None
    model_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_train(cls, command: str, settings: Settings, delta, load_seconds: float) -> RunSummary:
        n_ent, n_rel, n_ex = len(delta.entities), len(delta.relations), int(len(delta.ids))
        return cls(command, settings.model, settings, {"entities": n_ent, "relations": n_rel, "examples": n_ex},
                   delta, load_seconds,
                   lineage_counts={"entities_before": 0, "entities_added": n_ent, "relations_before": 0,
                                   "relations_added": n_rel, "examples": n_ex},
                   dim=settings.dim, model_params=_params(settings.model, settings.to_dict(), delta, settings.tied))

    @classmethod
    def for_extend(cls, command: str, ckpt, settings: Settings, delta, load_seconds: float) -> RunSummary:
        """``ckpt``: the checkpoint being grown; its model, width and parameters are the run's."""
        tied = CONTEXT_TABLE not in ckpt.entity_tables  # a pair model's second table, or none
        return cls(command, ckpt.model, settings, delta.counts(), delta, load_seconds, dim=ckpt.dim,
                   model_params=_params(ckpt.model, ckpt.params, delta, tied))

    def trained(self, result, levers=()) -> RunSummary:
        """Record the training result and what the levers report."""
        self.result = result
        for lever in levers:
            self.reports.update(lever.report())
        return self

    def _seconds(self) -> dict[str, float]:
        return {"load_data": round(self.load_seconds, 3),
                "train": round(self.result.seconds, 3) if self.result else 0.0}

    def _config(self) -> dict[str, Any]:
        """The settings as the run used them: the model's real width and parameters, none of another model's."""
        others = {"tied", *(k for names in MODEL_PARAMS.values() for k in names)} - set(self.model_params)
        config = {k: v for k, v in self.settings.to_dict().items() if k not in others}
        config.update(model=self.model, dim=self.dim, **self.model_params)
        return config

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
            "settings_source": self._sources(),  # where each setting came from (config.py's precedence)
        }

    def planned(self) -> dict[str, Any]:
        """The summary of a dry run: the counts the run would report, nothing trained (``seconds`` holds the load)."""
        return {"command": self.command, "model": self.model, **self.counts, "seconds": self._seconds()}

    def nothing_to_do(self) -> dict[str, Any]:
        """The summary of an ``extend`` whose every new name was already known: nothing trained or written."""
        return {
            "command": self.command,
            "model": self.model,
            "nothing_to_do": True,
            **{k: self.counts[k] for k in _NOTHING_TO_DO_COUNTS},
            "seconds": self._seconds(),
        }

    def _sources(self) -> dict[str, str]:
        """Where each recorded setting came from, for the settings the lineage's ``config`` records."""
        config = self._config()
        return {k: v for k, v in self.settings.source_map().items() if k in config}

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
            **self.delta.pending_record(),
            "epochs": self.result.epochs,
            "final_loss": self.result.final_loss,
            "inputs_sha256": self.delta.input_hashes(),
            "seed": self.settings.seed,
            "config": self._config(),
            "settings_source": self._sources(),
        }


def last_added(lineage: list[dict[str, Any]], kind: str = "entities") -> range:
    """Ids of the ``kind`` (``"entities"`` or ``"relations"``) added by the most recent run that added
    any, from a checkpoint's lineage records; empty when no run did."""
    for rec in reversed(lineage):
        if rec.get(f"{kind}_added"):
            start = int(rec.get(f"{kind}_before", 0))
            return range(start, start + int(rec[f"{kind}_added"]))
    return range(0)
