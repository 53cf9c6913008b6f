"""The Python API: load, train, extend, evaluate, save. Every CLI command is a few lines over it.

    >>> from embretrain import api as et
    >>> base, _ = et.train("train.tsv", Settings(model="transe", epochs=50))
    >>> grown, summary = et.extend(base, "new.tsv", "delta.tsv")
    >>> et.save(grown, "merged.h5")

Inputs may be paths (read with file:line errors) or in-memory lists.

Owns: the composition of a run, data flowing once, downward: settings -> checkpoint -> scorer ->
delta (:mod:`~embretrain.delta`) -> levers (:mod:`~embretrain.levers`) -> split tables
(:mod:`~embretrain.tables`) -> :func:`~embretrain.train.fit` (locally, or with a cluster's executor from
:mod:`~embretrain.distributed`) -> grown checkpoint -> summary (:mod:`~embretrain.summary`). Must not:
parse CLI options, name CLI flags in its errors, or hold the logic of any step it composes.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import numpy as np

from .checkpoint import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from .checkpoint.disk_rows import as_array
from .config import MODEL_PARAMS, STRATEGIES, Settings, resolve_extend_settings, resolve_settings
from .delta import (NameInput, PairInput, TripleInput, data_kind, grow_checkpoint, prepare_delta, scratch_delta)
from .errors import UsageError
from .summary import RunSummary
from .tables import left_on_disk
from .vocab import Vocab

__all__ = ["load", "save", "train", "extend", "evaluate"]

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
    emb = Embeddings(
        scorer,
        split_tables(ent_old, delta.n_new, rng, start_rows=scorer.entity_start, make_table=make_table),
        split_tables(rel_old, delta.r_new, rng, start_rows=scorer.relation_start, make_table=make_table),
        negative_new_ids=delta.negative_new_ids,
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


def train(
    data: TripleInput | PairInput,
    settings: Settings | None = None,
    *,
    command: str = "train",
    progress: bool | None = None,
    strategy: str = "local",
    shards: int = 0,
) -> tuple[Checkpoint, dict[str, Any]]:
    """Train a model from scratch. Vocabularies are names in order of first appearance.

    Returns ``(checkpoint, summary)``; the summary has ``entities``, ``relations``, ``examples``,
    ``epochs``, ``final_loss``, ``losses``, ``epoch_seconds`` and ``seconds`` (``load``, ``train``).
    """
    settings = settings or resolve_settings()
    scorer = _scorer(settings.model, settings)
    t0 = time.perf_counter()
    delta = scratch_delta(scorer, data)
    run = RunSummary.for_train(command, settings, delta, time.perf_counter() - t0)
    ent_old, rel_old = delta.kind.empty_tables(scorer, settings)
    new_rows, result = _fit_new_rows(scorer, settings, (ent_old, rel_old), delta, progress=progress,
                                     strategy=strategy, shards=shards)
    run.trained(result)
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


def _check_old_rows_placement(ckpt: Checkpoint, strategy: str) -> None:
    on_disk = left_on_disk(ckpt.entities) or any(left_on_disk(t) for t in ckpt.tables().values())
    if on_disk and strategy != "local":
        raise UsageError(
            "old rows left on disk (old_rows='on-disk') train in this process; a parameter-server run keeps "
            "the old rows on its ps tasks (load the checkpoint into memory, or train locally)"
        )


def extend(
    ckpt: Checkpoint,
    new_entities: NameInput,
    data: TripleInput | PairInput,
    settings: Settings | None = None,
    *,
    new_relations: NameInput = None,
    skip_unknown: bool = False,
    replay: TripleInput | None = None,
    command: str = "extend",
    progress: bool | None = None,
    strategy: str = "local",
    shards: int = 0,
) -> tuple[Checkpoint, dict[str, Any]]:
    """Grow ``ckpt`` with new entities (and relations) and train only their rows on ``data``.

    Old rows of every table are frozen and copied unchanged into the result. Returns
    ``(grown_checkpoint, summary)``. The summary counts what was added, already known, duplicated,
    used, dropped (``examples_dropped_no_new``), skipped and left untrained, then ``epochs``,
    ``final_loss``, ``losses``, ``epoch_seconds`` and ``seconds``; ``replay_examples``/``replay_skipped``
    with ``replay``, ``init_placed_from_neighbors`` with a neighbour start, ``early_stopping`` with
    ``valid_fraction``. ``summary["nothing_to_do"]`` is True (and ``ckpt`` is returned as is) when every
    new name was already known. ``settings`` None: the base's recorded training settings and its model's
    extend recipe (:func:`~embretrain.config.resolve_extend_settings`). Epochs: ``settings.for_extend()``
    (the recipe's ``extend_epochs`` unless ``epochs`` was set above it).

    ``strategy="parameter-server"`` trains on the ``TF_CONFIG`` cluster with tables cut into
    ``shards`` shards (0 = by size); the checkpoint is built and written exactly as in a local run.
    ``replay`` (triple models): old triples (e.g. the base's training file) replayed each step with
    negatives drawn from the new entities only; lines naming anything new or unknown are skipped.
    """
    from .levers import choose_levers
    from .models import get_model

    settings = (settings or resolve_extend_settings(ckpt)).for_extend()
    if settings.model != ckpt.model:
        raise UsageError(f"the checkpoint holds a {ckpt.model!r} model; it cannot be extended as {settings.model!r}")
    scorer = get_model(ckpt.model, ckpt.params, from_checkpoint=True)
    _check_old_rows_placement(ckpt, strategy)
    t0 = time.perf_counter()
    delta = prepare_delta(ckpt, scorer, new_entities, data, new_relations=new_relations, skip_unknown=skip_unknown,
                          replay=replay)
    t_load = time.perf_counter() - t0
    if delta.nothing_to_do:
        # Rerun of a night that already succeeded (or an empty day): idempotent, nothing to train or write.
        logger.debug("nothing to do: every new name is already in the checkpoint")
        return ckpt, RunSummary.for_extend(command, ckpt.model, settings, delta, t_load).nothing_to_do()
    if delta.n_untrained:
        logger.warning("%d new entities have no training example and keep their initial vector", delta.n_untrained)
    logger.info("training %d new entities and %d new relations on %d examples", delta.n_new, delta.r_new,
                len(delta.ids))
    delta, levers = choose_levers(settings, ckpt, delta)
    new_rows, result = _fit_new_rows(scorer, settings, (ckpt.entity_tables, ckpt.relation_tables), delta, levers,
                                     progress=progress, strategy=strategy, shards=shards)
    grown = grow_checkpoint(ckpt, delta, new_rows)
    run = RunSummary.for_extend(command, ckpt.model, settings, delta, t_load).trained(result, levers)
    grown.lineage.append(run.lineage_record())
    return grown, run.as_dict()


# ---------------------------------------------------------------------------------------------
# evaluate
def last_added_entities(ckpt: Checkpoint) -> range:
    """Ids added by the most recent run that added entities (from the lineage)."""
    for rec in reversed(ckpt.lineage):
        if rec.get("entities_added"):
            start = int(rec.get("entities_before", 0))
            return range(start, start + int(rec["entities_added"]))
    return range(0)


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
    """
    from .evaluate import filtered_ranks, metrics
    from .models import get_model

    scorer = get_model(ckpt.model, ckpt.params, from_checkpoint=True)
    entities, relations = Vocab(ckpt.entities), Vocab(ckpt.relations or ["<none>"])
    kind = data_kind(scorer)
    pair = not kind.has_relations

    def ids_of(data):
        ids, _, skipped = kind.map(kind.read(data), entities, relations, skip_unknown=True)
        if pair:  # ranked as (a, 0, b) triples
            ids = np.stack([ids[:, 0], np.zeros(len(ids), np.int64), ids[:, 1]], axis=1)
        return ids, skipped

    t0 = time.perf_counter()
    test_ids, skipped = ids_of(test)
    known_ids = [ids_of(k)[0] for k in known]
    n_all = len(test_ids)
    if new_only:
        added = last_added_entities(ckpt)
        mask = ((test_ids[:, 0] >= added.start) & (test_ids[:, 0] < added.stop)) | (
            (test_ids[:, 2] >= added.start) & (test_ids[:, 2] < added.stop)
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
