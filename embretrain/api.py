"""The Python API: load, train, extend, evaluate, save. Every CLI command is a few lines over it.

    >>> from embretrain import api as et
    >>> base, _ = et.train("train.tsv", Settings(model="transe", epochs=50))
    >>> grown, summary = et.extend(base, "new.tsv", "delta.tsv")
    >>> et.save(grown, "merged.h5")
    >>> et.plan_extend(base, "new.tsv", "delta.tsv").summary()   # a dry run: counts, no TensorFlow

Inputs may be paths (read with file:line errors) or in-memory lists.

Owns: the composition of a run, data flowing once, downward: settings -> checkpoint -> scorer ->
delta (:mod:`~embretrain.delta`) -> levers (:mod:`~embretrain.levers`) [= the :class:`Plan`, all a dry run
does, without TensorFlow] -> split tables
(:mod:`~embretrain.tables`) -> :func:`~embretrain.train.fit` (locally, or with a cluster's executor from
:mod:`~embretrain.distributed`) -> grown checkpoint -> summary (:mod:`~embretrain.summary`). Must not:
parse CLI options, name CLI flags in its errors, or hold the logic of any step it composes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .checkpoint import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .storage import as_array
from .config import MODEL_PARAMS, STRATEGIES, Settings, resolve_extend_settings, resolve_settings
from .delta import (Delta, NameInput, PairInput, TripleInput, data_kind, grow_checkpoint, prepare_delta,
                    scratch_delta)
from .errors import UsageError
from .tensorboard import with_tensorboard
from .summary import RunSummary, last_added
from .vocab import Vocab

__all__ = ["load", "save", "Plan", "plan_train", "plan_extend", "train", "extend", "evaluate"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# load / save
def load(path, *, old_rows: str = "memory", **kwargs) -> Checkpoint:
    """Load a checkpoint (format detected from what is on disk).

    ``old_rows="on-disk"`` (native ``.h5`` only) leaves the tables and names in the file, read-only:
    :func:`extend` then reads just the rows each batch needs, and :func:`save` streams the old rows
    from the file into the merged one, so a table bigger than memory can be grown. The file stays
    open while the checkpoint (or one grown from it) is referenced. ``read_only=True`` returns the
    in-memory tables read-only (what the CLI does), letting a save continue the load's sha256.
    """
    from . import checkpoint

    return checkpoint.load(path, old_rows=old_rows, **kwargs)


def save(ckpt: Checkpoint, path, **kwargs) -> None:
    """Write ``ckpt`` to ``path`` atomically (temp file + fsync + rename)."""
    from . import checkpoint

    checkpoint.save(ckpt, path, **kwargs)


# ---------------------------------------------------------------------------------------------
# train / extend
def _fit_new_rows(scorer, settings: Settings, old_tables: tuple[dict, dict], delta, levers=(), *,
                  progress: bool | None, strategy: str, shards: int):
    """Split tables over ``old_tables`` (entity, relation) grown by the delta, train the new rows on its examples.

    Returns ``(new rows by table name, TrainResult)``. ``strategy="parameter-server"`` builds sharded
    tables on the ``TF_CONFIG`` cluster and hands :func:`~embretrain.train.fit` the cluster's executor;
    everything else is the same code as a local run.
    """
    from .tables import split_tables
    from .train import Embeddings, configure_tensorflow, fit

    configure_tensorflow(settings)
    make_table = executor = None
    if strategy == "parameter-server":
        from .distributed import connect

        cluster = connect(shards)
        make_table, executor = cluster.table, cluster.executor()
    elif strategy not in STRATEGIES:
        raise UsageError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}")
    rng = np.random.default_rng(settings.seed)  # Glorot draws: entity tables, then relation tables
    ent_old, rel_old = old_tables
    # one table at a time (same draws, in the same order): each starts its pending rows from its own rows;
    # with two vocabularies the context table grows by its own new rows (no pending entity lives there)
    contexts = delta.contexts
    entity_tables = {}
    for name, old in ent_old.items():
        if contexts is not None and name == CONTEXT_TABLE:
            entity_tables.update(split_tables({name: old}, contexts.n_new, rng, make_table=make_table,
                                              start_rows=scorer.entity_start))
            continue
        entity_tables.update(split_tables({name: old}, delta.n_trainable, rng, make_table=make_table,
                                          start_rows=delta.trainable_starts(old, scorer.entity_start)))
    emb = Embeddings(
        scorer,
        entity_tables,
        split_tables(rel_old, delta.r_new, rng, start_rows=scorer.relation_start, make_table=make_table),
        negative_new_ids=delta.negative_new_ids,
        context_vocab=contexts is not None,
        negative_new_context_ids=None if contexts is None else contexts.negative_new_ids,
        new_negative_share=settings.new_negatives,
    )
    for lever in levers:
        lever.before_fit(emb)

    def on_epoch(epoch: int, loss: float) -> bool:
        return any([lever.on_epoch(epoch, loss) for lever in levers])  # every lever sees every epoch

    result = fit(emb, delta.ids, settings, weights=delta.weights, progress=progress, on_epoch=on_epoch, executor=executor)
    for lever in levers:
        lever.after_fit()
    return {name: t.new_rows() for name, t in {**emb.entity_tables, **emb.relation_tables}.items()}, result


def _scorer(model: str, settings: Settings):
    from .models import get_model

    return get_model(model, {k: getattr(settings, k) for k in MODEL_PARAMS.get(model, ())})


@dataclass
class Plan:
    """What a ``train``/``extend`` run will do, decided from its inputs before TensorFlow is imported.

    Everything a run validates (checkpoint already loaded, every data line, settings against the model)
    and counts happens here, once: :func:`train` and :func:`extend` train from a plan, and a dry run
    stops at :meth:`summary`, so the two can never report different counts.

    Attributes:
        settings: the effective settings (``for_extend`` applied).
        scorer: the model's scorer (no TensorFlow until it scores).
        old_tables: (entity tables, relation tables) to grow: the checkpoint's, or empty ones for ``train``.
        delta: the examples in the grown id space.
        levers: the optional levers, in hook order (empty when there is nothing to do).
        run: the run's summary, filled in by training.
        nothing_to_do: an ``extend`` whose every new name is already known (a rerun): nothing to train or write.
    """

    settings: Settings
    scorer: Any
    old_tables: tuple[dict, dict]
    delta: Delta
    run: RunSummary
    levers: list = field(default_factory=list)
    nothing_to_do: bool = False

    def summary(self) -> dict[str, Any]:
        """The counts the run reports (its "nothing to do" summary for a rerun), without training."""
        return self.run.nothing_to_do() if self.nothing_to_do else self.run.planned()


def plan_train(data: TripleInput | PairInput, settings: Settings | None = None, *, command: str = "train") -> Plan:
    """Read and check ``data`` and ``settings`` for a :func:`train` run; train nothing.

    Raises:
        DataError: malformed data (naming file and line).
        UsageError: settings the model cannot take (e.g. an odd ``dim`` for complex).
    """
    settings = settings or resolve_settings()
    scorer = _scorer(settings.model, settings)
    t0 = time.perf_counter()
    delta = scratch_delta(scorer, data)
    settings = settings.for_examples(len(delta.ids))
    old_tables = delta.kind.empty_tables(scorer, settings)
    run = RunSummary.for_train(command, settings, delta, time.perf_counter() - t0)
    return Plan(settings, scorer, old_tables, delta, run)


def train(
    data: TripleInput | PairInput,
    settings: Settings | None = None,
    *,
    command: str = "train",
    progress: bool | None = None,
    strategy: str = "local",
    shards: int = 0,
    logdir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
) -> tuple[Checkpoint, dict[str, Any]]:
    """Train a model from scratch. Vocabularies are names in order of first appearance.

    Returns ``(checkpoint, summary)``; the summary has ``entities``, ``relations``, ``examples``,
    ``epochs``, ``final_loss``, ``losses``, ``epoch_seconds`` and ``seconds`` (``load_data``, ``train``).
    ``logdir``: also write loss, seconds and examples/s per epoch there as TensorBoard summaries
    (:mod:`embretrain.tensorboard`). ``out``: where the caller will save the result; its filesystem must
    have room for the entity table or the run stops before training (exit 6, see :func:`check_room_to_train`).
    """
    plan = plan_train(data, settings, command=command)
    if out is not None:
        check_room_to_train(plan, out)
    settings, delta, (ent_old, rel_old) = plan.settings, plan.delta, plan.old_tables
    levers = with_tensorboard([], logdir, len(delta.ids))
    new_rows, result = _fit_new_rows(plan.scorer, settings, plan.old_tables, delta, levers, progress=progress,
                                     strategy=strategy, shards=shards)
    run = plan.run.trained(result, levers)
    ckpt = Checkpoint(
        model=settings.model,
        entities=list(delta.entities.names),
        relations=list(delta.relations.names),
        entity_tables={k: new_rows[k] for k in ent_old},
        relation_tables={k: new_rows[k] for k in rel_old},
        params={k: getattr(settings, k) for k in MODEL_PARAMS.get(settings.model, ())},
    )
    ckpt.lineage.append(run.lineage_record())
    return ckpt, run.as_dict()


def plan_extend(
    ckpt: Checkpoint,
    new_entities: NameInput,
    data: TripleInput | PairInput,
    settings: Settings | None = None,
    *,
    new_relations: NameInput = None,
    new_contexts: NameInput = None,
    skip_unknown: bool = False,
    replay: TripleInput | None = None,
    command: str = "extend",
) -> Plan:
    """Read and check the night's files against ``ckpt`` for an :func:`extend` run; train nothing.

    ``plan.summary()`` holds the counts :func:`extend` would report (added, already known, duplicated,
    used, dropped, skipped, untrained, examples per new entity), or its "nothing to do" summary.

    Raises:
        DataError: malformed data or a name that is neither old nor new (unless ``skip_unknown``).
        UsageError: settings of another model, or a lever the model cannot take.
    """
    from .levers import choose_levers
    from .models import get_model

    settings = (settings or resolve_extend_settings(ckpt)).for_extend()
    if settings.model != ckpt.model:
        raise UsageError(f"the checkpoint holds a {ckpt.model!r} model; it cannot be extended as {settings.model!r}")
    scorer = get_model(ckpt.model, ckpt.params, from_checkpoint=True)
    t0 = time.perf_counter()
    delta = prepare_delta(ckpt, scorer, new_entities, data, new_relations=new_relations, skip_unknown=skip_unknown,
                          replay=replay, new_contexts=new_contexts)
    t_load = time.perf_counter() - t0
    levers = []
    if not delta.nothing_to_do:
        if delta.n_untrained:
            shown = ", ".join(delta.untrained[:5]) + (", ..." if delta.n_untrained > 5 else "")
            logger.warning("%d new entities have no training example and stay pending (%s): they keep their start "
                           "row until a later delta names them", delta.n_untrained, shown)
        if delta.contexts is not None and delta.contexts.n_untrained:
            logger.warning("%d new contexts have no training example and keep their initial vector",
                           delta.contexts.n_untrained)
        delta, levers = choose_levers(settings, ckpt, delta)
        settings = settings.for_examples(len(delta.ids))
    run = RunSummary.for_extend(command, ckpt, settings, delta, t_load)
    return Plan(settings, scorer, (ckpt.entity_tables, ckpt.relation_tables), delta, run, levers,
                nothing_to_do=delta.nothing_to_do)


def extend(
    ckpt: Checkpoint,
    new_entities: NameInput,
    data: TripleInput | PairInput,
    settings: Settings | None = None,
    *,
    new_relations: NameInput = None,
    new_contexts: NameInput = None,
    skip_unknown: bool = False,
    replay: TripleInput | None = None,
    command: str = "extend",
    progress: bool | None = None,
    strategy: str = "local",
    shards: int = 0,
    logdir: str | os.PathLike | None = None,
    neighbour_report: bool = False,
    out: str | os.PathLike | None = None,
) -> tuple[Checkpoint, dict[str, Any]]:
    """Grow ``ckpt`` with new entities (and relations) and train only their rows on ``data``.

    Old rows of every table are frozen and copied unchanged into the result. Returns
    ``(grown_checkpoint, summary)``. The summary counts what was added, already known, duplicated,
    used, dropped (``examples_dropped_no_new``), skipped and left untrained, and how many examples each
    new entity has (``examples_per_new_entity``), then ``epochs``, ``final_loss``, ``losses``,
    ``epoch_seconds`` and ``seconds``; ``replay_examples``/``replay_skipped`` with ``replay``,
    ``init_placed_from_neighbors`` with a neighbour start, ``early_stopping`` with ``valid_fraction``.
    ``summary["nothing_to_do"]`` is True (and ``ckpt`` is returned as is) when every new name was
    already known. ``settings`` None: the base's recorded training settings and its model's extend recipe
    (:func:`~embretrain.config.resolve_extend_settings`). Epochs: ``settings.for_extend()`` (the recipe's
    ``extend_epochs`` unless ``epochs`` was set above it). The counts are :func:`plan_extend`'s, which a dry run reports alone.

    ``new_contexts`` (a pair model with two vocabularies, ``ckpt.contexts``): new names of the ``b`` side (items
    of a two-tower model), trained from the pairs naming them while every old row of both tables stays frozen;
    ``new_entities`` are then the ``a`` side's (users).
    ``strategy="parameter-server"`` trains on the ``TF_CONFIG`` cluster with tables cut into
    ``shards`` shards (0 = by size); the checkpoint is built and written exactly as in a local run.
    ``replay`` (triple models): old triples (e.g. the base's training file) replayed each step with
    negatives drawn from the new entities only; lines naming anything new or unknown are skipped.
    ``logdir``: also write loss, seconds and examples/s per epoch (and the held-out MRR with
    ``valid_fraction``) there as TensorBoard summaries (:mod:`embretrain.tensorboard`).
    ``neighbour_report``: add ``neighbour_sanity`` to the summary, a figure to watch over nights: how many new
    entities have their delta neighbours among their nearest rows (:func:`embretrain.neighbors.sanity`).
    ``out``: where the caller will save the result; when there is something to train, its filesystem must
    have room for the old rows (a lower bound of any format's output) or the run stops before training
    (:class:`~embretrain.errors.EmbretrainError`, exit 6) instead of failing to write after it.
    """
    plan = plan_extend(ckpt, new_entities, data, settings, new_relations=new_relations, new_contexts=new_contexts,
                       skip_unknown=skip_unknown, replay=replay, command=command)
    if plan.nothing_to_do:
        # Rerun of a night that already succeeded (or an empty day): idempotent, nothing to train or write.
        logger.debug("nothing to do: every new name is already in the checkpoint")
        return ckpt, plan.summary()
    if out is not None:
        check_room_to_grow(ckpt, out)
    delta = plan.delta
    logger.info("training %d new entities, %d pending ones and %d new relations%s on %d examples", delta.n_new,
                delta.n_pending_trained, delta.r_new,
                "" if delta.contexts is None else f" and {delta.contexts.n_new} new contexts", len(delta.ids))
    levers = with_tensorboard(plan.levers, logdir, len(delta.ids))
    new_rows, result = _fit_new_rows(plan.scorer, plan.settings, plan.old_tables, delta, levers,
                                     progress=progress, strategy=strategy, shards=shards)
    grown = grow_checkpoint(ckpt, delta, new_rows)
    run = plan.run.trained(result, levers)
    grown.lineage.append(run.lineage_record())
    summary = run.as_dict()
    if neighbour_report and delta.contexts is None:
        summary["neighbour_sanity"] = _neighbour_sanity(grown, delta)
    return grown, summary


def check_room_to_train(plan: Plan, out: str | os.PathLike) -> None:
    """Refuse (exit 6) if ``out``'s filesystem cannot hold the entity table a :func:`train` run will write."""
    from .diskspace import check_room

    check_room(out, 4 * len(plan.delta.entities.names) * plan.settings.dim, "the entity table alone")


def check_room_to_grow(ckpt: Checkpoint, out: str | os.PathLike) -> None:
    """Refuse (exit 6) if ``out``'s filesystem has less room than ``ckpt``'s rows: any grown output holds them."""
    from .diskspace import check_room, table_bytes

    check_room(out, table_bytes(ckpt.tables().values()), "the old rows alone")


def _neighbour_sanity(grown: Checkpoint, delta) -> dict[str, Any]:
    """The sanity figure of the new entities, from the delta lines in the grown table's id space (lines naming a
    pending entity trained tonight carry its training id, past the table: left out)."""
    from .neighbors import sanity

    n_rows = delta.n_old + delta.n_new
    ends = delta.ids[:, [0, 2]] if delta.ids.shape[1] == 3 else delta.ids[:, :2]
    ids = delta.ids[(ends < n_rows).all(axis=1)]
    return sanity(grown, ids, range(delta.n_old, n_rows))


# ---------------------------------------------------------------------------------------------
# evaluate
def last_added_entities(ckpt: Checkpoint) -> range:
    """Ids added by the most recent run that added entities (from the lineage)."""
    return last_added(ckpt.lineage, "entities")


def evaluate(
    ckpt: Checkpoint,
    test: TripleInput | PairInput,
    known: Iterable[TripleInput | PairInput] = (),
    *,
    new_only: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Filtered MRR and Hits@1/3/10 (realistic ranks), head and tail pooled.

    Test lines naming entities or relations the checkpoint lacks are skipped and counted.
    ``new_only`` keeps test triples touching an entity added by the last ``extend``.
    A pair model ranks each ``b`` among the rows of its table (the context table, whose own vocabulary
    maps ``b`` when the model has two) and each ``a`` among the entity rows.
    """
    from .evaluate import filtered_ranks, metrics
    from .models import get_model

    scorer = get_model(ckpt.model, ckpt.params, from_checkpoint=True)
    entities, relations = Vocab(ckpt.entities), Vocab(ckpt.relations or ["<none>"])
    contexts = None if ckpt.contexts is None else Vocab(ckpt.contexts)
    kind = data_kind(scorer, two_vocab=contexts is not None)
    pair = not kind.has_relations

    def ids_of(data):
        ids, _, skipped = kind.map(kind.read(data), entities, relations, skip_unknown=True, contexts=contexts)
        if pair:  # ranked as (a, 0, b) triples
            ids = np.stack([ids[:, 0], np.zeros(len(ids), np.int64), ids[:, 1]], axis=1)
        return ids, skipped

    t0 = time.perf_counter()
    test_ids, skipped = ids_of(test)
    known_ids = [ids_of(k)[0] for k in known]
    n_all = len(test_ids)
    if new_only:
        added = added_b = last_added_entities(ckpt)
        if contexts is not None:  # the b column holds context ids: both sides as the last run adding either left them
            last = [next((r for r in reversed(ckpt.lineage) if r.get("entities_added") or r.get("contexts_added")), {})]
            added, added_b = last_added(last, "entities"), last_added(last, "contexts")
        mask = ((test_ids[:, 0] >= added.start) & (test_ids[:, 0] < added.stop)) | (
            (test_ids[:, 2] >= added_b.start) & (test_ids[:, 2] < added_b.stop)
        )
        test_ids = test_ids[mask]
    context = ckpt.entity_tables.get(CONTEXT_TABLE) if pair else None
    ranks = filtered_ranks(
        scorer,
        as_array(ckpt.entity_tables[ENTITY_TABLE]),  # ranking scores every entity: in memory
        None if pair else as_array(ckpt.relation_tables[RELATION_TABLE]),
        test_ids,
        known_ids,
        batch_size=batch_size,
        context=as_array(context) if context is not None else None,
    )
    out = metrics(ranks)
    out.update(
        {
            "test_examples": int(len(test_ids)),
            "test_skipped_unknown": int(skipped),
            "test_filtered_out_not_new": int(n_all - len(test_ids)) if new_only else 0,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return out
