"""The Python API: load, train, extend, evaluate, save. Every CLI command is a few lines over it.

    >>> from embretrain import api as et
    >>> base, _ = et.train("train.tsv", Settings(model="transe", epochs=50))
    >>> grown, summary = et.extend(base, "new.tsv", "delta.tsv")
    >>> et.save(grown, "merged.h5")

Inputs may be paths (read with file:line errors) or in-memory lists.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from . import __version__
from .checkpoint import CONTEXT_TABLE, ENTITY_TABLE, RELATION_TABLE, Checkpoint
from . import storage
from .storage import as_array
from .config import MODEL_PARAMS, Settings, resolve_settings
from .data import NameFile, PairFile, TripleFile, read_names, read_pairs, read_triples, sha256_file
from .errors import DataError, UsageError
from .vocab import PAIR_ENTITY_COLUMNS, TRIPLE_ENTITY_COLUMNS, Vocab, map_pairs, map_triples, touching

__all__ = ["load", "save", "train", "extend", "evaluate"]

logger = logging.getLogger(__name__)

TripleInput = Union[str, Path, TripleFile, Sequence[tuple[str, str, str]]]
PairInput = Union[str, Path, PairFile, Sequence[tuple]]
NameInput = Union[str, Path, NameFile, Sequence[str], None]


# ---------------------------------------------------------------------------------------------
# inputs
def _triple_file(data: TripleInput) -> TripleFile:
    if isinstance(data, TripleFile):
        return data
    if isinstance(data, (str, Path)):
        return read_triples(data)
    rows = [tuple(t) for t in data]
    return TripleFile(path="<triples>", triples=rows, lines=list(range(1, len(rows) + 1)))


def _pair_file(data: PairInput) -> PairFile:
    if isinstance(data, PairFile):
        return data
    if isinstance(data, (str, Path)):
        return read_pairs(data)
    rows = [tuple(p) for p in data]
    weights = np.array([float(p[2]) if len(p) > 2 else 1.0 for p in rows], dtype=np.float32)
    return PairFile(path="<pairs>", pairs=[(p[0], p[1]) for p in rows], weights=weights,
                    lines=list(range(1, len(rows) + 1)))


def _name_file(data: NameInput) -> NameFile:
    if data is None:
        return NameFile(path="<none>", names=[], lines=[])
    if isinstance(data, NameFile):
        return data
    if isinstance(data, (str, Path)):
        return read_names(data)
    names = list(data)
    return NameFile(path="<names>", names=names, lines=list(range(1, len(names) + 1)))


def _reject_repeats(f: NameFile, kind: str) -> None:
    """A name listed twice in one night's file is a broken export, not something to guess about."""
    first: dict[str, int] = {}
    for name, line in zip(f.names, f.lines):
        if name in first:
            raise DataError.at(f.path, line, f"new {kind} {name!r} is listed twice (first on line {first[name]})")
        first[name] = line


def _input_hashes(*files) -> dict[str, str]:
    out = {}
    for f in files:
        if f is not None and Path(f.path).is_file():
            out[str(f.path)] = sha256_file(f.path)
    return out


def _lineage_record(command: str, settings: Settings, inputs: dict[str, str], **counts: Any) -> dict[str, Any]:
    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tool": "embretrain",
        "tool_version": __version__,
        "command": command,
        "argv": sys.argv[1:] if command else [],
        **counts,
        "inputs_sha256": inputs,
        "seed": settings.seed,
        "config": settings.to_dict(),
    }


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
def _build(ckpt_tables: dict[str, np.ndarray], n_new: int, seed_rng: np.random.Generator, widths: dict[str, int],
           make_table=None, start_rows=None):
    """Split tables: the given old rows frozen, ``n_new`` trainable rows (one per table) from ``start_rows``
    (``(rng, n_new, width, n_total)``; default Glorot).

    ``make_table(old, new, name)`` defaults to :class:`~embretrain.tables.SplitTable`; a cluster run
    passes its sharded twin, so both start from the same Glorot draws.
    """
    from .tables import SplitTable, glorot_rows

    make_table = make_table or SplitTable

    out = {}
    for name, width in widths.items():
        old = ckpt_tables.get(name)
        if old is None:
            old = np.zeros((0, width), dtype=np.float32)
        elif not storage.on_disk(old):
            old = as_array(old)  # a grown (lazy) table extended again in the same process
        new = (start_rows or glorot_rows)(seed_rng, n_new, width, old.shape[0] + n_new)
        out[name] = make_table(old, new, name)
    return out


def _run(
    scorer,
    settings: Settings,
    old_entity_tables: dict[str, np.ndarray],
    old_relation_tables: dict[str, np.ndarray],
    n_new_entities: int,
    n_new_relations: int,
    ids: np.ndarray,
    weights: np.ndarray | None,
    progress: bool | None,
    negative_new_ids: np.ndarray | None = None,
    replay_ids: np.ndarray | None = None,
    prepare=None,
    strategy: str = "local",
    shards: int = 0,
):
    """Build split tables, train the new rows, return ``(new_rows_by_table, TrainResult)``.

    ``strategy="parameter-server"`` builds sharded tables on the ``TF_CONFIG`` cluster and trains
    there (:mod:`embretrain.distributed`); everything before and after is the same code as a local run.

    ``prepare(emb)``, if given, runs before training (e.g. to set the start of new rows) and may return an
    ``on_epoch`` callback for :func:`embretrain.train.fit`; the callback's ``finish()`` runs after training.
    """
    from .train import Embeddings, configure_tensorflow, fit

    configure_tensorflow(settings)
    make_table, fit_fn = None, fit
    if strategy == "parameter-server":
        from .distributed import connect

        cluster = connect(shards)
        make_table, fit_fn = cluster.table, cluster.fit
    elif strategy != "local":
        raise UsageError(f"strategy must be 'local' or 'parameter-server', got {strategy!r}")
    rng = np.random.default_rng(settings.seed)
    ent_widths = {k: v.shape[1] for k, v in old_entity_tables.items()}
    rel_widths = {k: v.shape[1] for k, v in old_relation_tables.items()}
    emb = Embeddings(
        scorer,
        _build(old_entity_tables, n_new_entities, rng, ent_widths, make_table),
        _build(old_relation_tables, n_new_relations, rng, rel_widths, make_table, scorer.relation_start),
        negative_new_ids=negative_new_ids,
        replay_ids=replay_ids,
    )
    on_epoch = prepare(emb) if prepare is not None else None
    result = fit_fn(emb, ids, settings, weights=weights, progress=progress, on_epoch=on_epoch)
    if on_epoch is not None:
        on_epoch.finish()
    new_rows = {name: t.new_rows() for name, t in {**emb.entity_tables, **emb.relation_tables}.items()}
    return new_rows, result


def _extend_levers(scorer, settings: Settings, ckpt: Checkpoint, ids: np.ndarray, n_old: int, report: dict):
    """The optional levers of ``extend``: a neighbour start (init.py) and early stopping (early_stop.py).

    Returns ``(training ids, prepare)`` for :func:`_run`; ``report`` receives what they did.
    """
    held_out = ids[:0]
    if settings.valid_fraction > 0:
        if scorer.kind == "pair":
            raise UsageError("--valid-fraction (early stopping) needs a triple model, not a pair model")
        from .early_stop import holdout

        ids, held_out = holdout(ids, n_old, settings.valid_fraction, settings.seed)
    known = np.concatenate([ids, held_out])

    def prepare(emb):
        if settings.init in ("neighbors", "neighbors-median"):
            if scorer.kind == "pair":
                logger.warning("--init neighbors has no closed form for a pair model; new rows start from Glorot")
            else:
                from .init import neighbor_rows

                # training triples only: the held-out slice must not leak into the start
                rows, placed = neighbor_rows(ckpt.model, ckpt.entity_tables[ENTITY_TABLE],
                                             ckpt.relation_tables[RELATION_TABLE], ids, emb.entity.new_rows(),
                                             median=settings.init == "neighbors-median")
                emb.entity.new.assign(rows)
                report["init_placed"] = placed
        if not len(held_out):
            return None
        from .early_stop import EarlyStopping

        report["stopper"] = EarlyStopping(emb, held_out, known, settings.patience)
        return report["stopper"]

    return ids, prepare


def _grown_vocab(ckpt: Checkpoint, kind: str, new_names: list[str], wanted: set[str]):
    """Grow a vocabulary (old names in a list, a read-only tuple or on disk) indexing only ``wanted``.

    Old names that cannot change (a tuple, names on disk) are not copied: the result's names are a
    NameStack whose old part carries its load-time sha256, so a save only hashes the added ones.
    """
    old = getattr(ckpt, kind)
    if isinstance(old, list) and len(set(old)) != len(old):
        Vocab(old)  # raises, naming the first repeated name
    vocab, report = Vocab.partial(old, wanted | set(new_names)).grow(new_names)
    return vocab, report


def _fresh_tables(scorer, settings: Settings) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    scorer.check_dim(settings.dim)
    empty = lambda w: np.zeros((0, w), dtype=np.float32)  # noqa: E731
    ent = {ENTITY_TABLE: empty(settings.dim)}
    rel: dict[str, np.ndarray] = {}
    if scorer.kind == "pair":
        if not settings.tied:
            ent[CONTEXT_TABLE] = empty(settings.dim)
    else:
        rel[RELATION_TABLE] = empty(scorer.relation_width(settings.dim))
    return ent, rel


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

    Returns ``(checkpoint, summary)``.
    """
    from .models import get_model

    settings = settings or resolve_settings()
    scorer = get_model(settings.model, {k: getattr(settings, k) for k in MODEL_PARAMS.get(settings.model, ())})
    t0 = time.perf_counter()
    if scorer.kind == "pair":
        f = _pair_file(data)
        entities = Vocab(list(dict.fromkeys(n for p in f.pairs for n in p)))
        relations = Vocab([])
        ids, weights, _ = map_pairs(f, entities)
    else:
        f = _triple_file(data)
        entities = Vocab(list(dict.fromkeys(n for h, _, t in f.triples for n in (h, t))))
        relations = Vocab(list(dict.fromkeys(r for _, r, _ in f.triples)))
        ids, _ = map_triples(f, entities, relations)
        weights = None
    t_load = time.perf_counter() - t0
    ent_old, rel_old = _fresh_tables(scorer, settings)
    new_rows, result = _run(scorer, settings, ent_old, rel_old, len(entities), len(relations), ids, weights, progress,
                            strategy=strategy, shards=shards)
    params = {k: getattr(settings, k) for k in MODEL_PARAMS.get(settings.model, ())}
    summary = {
        "command": command,
        "model": settings.model,
        "entities": len(entities),
        "relations": len(relations),
        "examples": int(len(ids)),
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "losses": result.losses,
        "epoch_seconds": [round(s, 3) for s in result.epoch_seconds],
        "seconds": {"load": round(t_load, 3), "train": round(result.seconds, 3)},
    }
    ckpt = Checkpoint(
        model=settings.model,
        entities=list(entities.names),
        relations=list(relations.names),
        entity_tables={k: new_rows[k] for k in ent_old},
        relation_tables={k: new_rows[k] for k in rel_old},
        params=params,
    )
    ckpt.lineage.append(
        _lineage_record(
            command, settings, _input_hashes(f),
            entities_before=0, entities_added=len(entities),
            relations_before=0, relations_added=len(relations),
            examples=int(len(ids)), epochs=result.epochs, final_loss=result.final_loss,
        )
    )
    return ckpt, summary


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
    ``(grown_checkpoint, summary)``; ``summary["added_entities"] == 0`` means nothing changed.
    ``strategy="parameter-server"`` trains on the ``TF_CONFIG`` cluster with tables cut into
    ``shards`` shards (0 = by size); the checkpoint is built and written exactly as in a local run.
    ``replay`` (triple models): old triples (e.g. the base's training file) replayed each step with
    negatives drawn from the new entities only; lines naming anything new or unknown are skipped.
    """
    from .models import get_model

    settings = settings or resolve_settings(model=ckpt.model)
    if settings.extend_epochs >= 0:
        # a preset's extend budget: new rows from a neighbour start need far fewer epochs than a table from scratch
        settings = dataclasses.replace(settings, epochs=settings.extend_epochs, extend_epochs=-1)
    if settings.model != ckpt.model:
        raise UsageError(f"the checkpoint holds a {ckpt.model!r} model; it cannot be extended as {settings.model!r}")
    scorer = get_model(ckpt.model, ckpt.params, from_checkpoint=True)
    on_disk = storage.on_disk(ckpt.entities) or any(storage.on_disk(t) for t in ckpt.tables().values())
    if on_disk and strategy != "local":
        raise UsageError(
            "--old-rows on-disk trains in this process; a parameter-server run keeps the old rows on its ps tasks "
            "(drop --old-rows or --strategy parameter-server)"
        )
    t0 = time.perf_counter()
    ent_file, rel_file = _name_file(new_entities), _name_file(new_relations)
    _reject_repeats(ent_file, "entity")
    _reject_repeats(rel_file, "relation")
    # Index only the old names this run mentions (its delta and new names): one pass over the old
    # names instead of a dict of all of them (which for names left on disk would not fit in memory).
    f = _pair_file(data) if scorer.kind == "pair" else _triple_file(data)
    if scorer.kind == "pair":
        ent_wanted, rel_wanted = {n for p in f.pairs for n in p}, set()
    else:
        ent_wanted = {n for h, _, t in f.triples for n in (h, t)}
        rel_wanted = {r for _, r, _ in f.triples}
    replay_file = None
    if replay is not None:
        if scorer.kind == "pair":
            raise UsageError("--replay needs a triple model, not a pair model")
        if strategy != "local":
            raise UsageError("--replay trains in this process; it does not run with --strategy parameter-server")
        replay_file = _triple_file(replay)
        ent_wanted |= {n for h, _, t in replay_file.triples for n in (h, t)}
        rel_wanted |= {r for _, r, _ in replay_file.triples}
    entities, ent_report = _grown_vocab(ckpt, "entities", ent_file.names, ent_wanted)
    relations, rel_report = _grown_vocab(ckpt, "relations", rel_file.names, rel_wanted)
    if scorer.kind == "pair" and rel_report.added:
        raise UsageError(f"{rel_file.path}: a pair model ({ckpt.model}) has no relations to add")
    n_old, n_new = ckpt.n_entities, len(ent_report.added)
    r_old, r_new = ckpt.n_relations, len(rel_report.added)

    if scorer.kind == "pair":
        ids, weights, n_unknown = map_pairs(f, entities, skip_unknown=skip_unknown)
        keep = touching(ids, n_old, PAIR_ENTITY_COLUMNS)
        weights = weights[keep]
    else:
        ids, n_unknown = map_triples(f, entities, relations, skip_unknown=skip_unknown)
        keep = touching(ids, n_old, TRIPLE_ENTITY_COLUMNS) | (ids[:, 1] >= r_old)
        weights = None
    n_dropped = int((~keep).sum())
    ids = ids[keep]
    entity_cols = list(PAIR_ENTITY_COLUMNS if scorer.kind == "pair" else TRIPLE_ENTITY_COLUMNS)
    seen = np.unique(ids[:, entity_cols])
    trained_new = seen[seen >= n_old]
    n_untrained = int(n_new - len(trained_new))
    # negatives: every old entity and every new one that has data; untrained new rows must not move
    negative_new_ids = None if n_untrained == 0 else trained_new
    replay_ids, n_replay_skipped = None, 0
    if replay_file is not None:
        replay_ids, _ = map_triples(replay_file, entities, relations, skip_unknown=True)
        old_only = (replay_ids[:, [0, 2]] < n_old).all(axis=1) & (replay_ids[:, 1] < r_old)
        replay_ids = replay_ids[old_only]
        n_replay_skipped = len(replay_file.triples) - len(replay_ids)
    t_load = time.perf_counter() - t0
    if not n_new and not r_new:
        # Rerun of a night that already succeeded (or an empty day): idempotent, nothing to train or write.
        logger.debug("nothing to do: every name in %s is already in the checkpoint", ent_file.path)
        return ckpt, {
            "command": command,
            "model": ckpt.model,
            "nothing_to_do": True,
            "entities_before": n_old,
            "entities_added": 0,
            "entities_already_known": ent_report.already_known,
            "relations_before": r_old,
            "relations_added": 0,
            "relations_already_known": rel_report.already_known,
            "examples_dropped_no_new": n_dropped,
            "examples_skipped_unknown": int(n_unknown),
            "seconds": {"load": round(t_load, 3), "train": 0.0},
        }
    if n_untrained:
        logger.warning("%d new entities have no training example and keep their initial vector", n_untrained)
    logger.info("training %d new entities and %d new relations on %d examples", n_new, r_new, len(ids))

    levers: dict[str, Any] = {}
    ids, prepare = _extend_levers(scorer, settings, ckpt, ids, n_old, levers)
    new_rows, result = _run(
        scorer, settings, ckpt.entity_tables, ckpt.relation_tables, n_new, r_new, ids, weights, progress,
        negative_new_ids=negative_new_ids, replay_ids=replay_ids, prepare=prepare, strategy=strategy, shards=shards,
    )
    # Old rows come from the loaded arrays (or the input file), never from TF: bit-identical by
    # construction. The merged tables are lazy (old part + new rows): a save streams them, so the old
    # table is never copied; np.asarray builds one for a consumer that needs an array.
    grown = Checkpoint(
        model=ckpt.model,
        entities=entities.names if storage.is_lazy(entities.names) else list(entities.names),
        relations=relations.names if storage.is_lazy(relations.names) else list(relations.names),
        entity_tables={k: storage.stack_rows(v, new_rows[k]) for k, v in ckpt.entity_tables.items()},
        relation_tables={k: storage.stack_rows(v, new_rows[k]) for k, v in ckpt.relation_tables.items()},
        params=dict(ckpt.params),
        lineage=list(ckpt.lineage),
        extras=dict(ckpt.extras),
    )
    counts = {
        "entities_before": n_old,
        "entities_added": n_new,
        "entities_already_known": ent_report.already_known,
        "entities_duplicate": ent_report.duplicates,
        "relations_before": r_old,
        "relations_added": r_new,
        "relations_already_known": rel_report.already_known,
        "relations_duplicate": rel_report.duplicates,
        "examples_used": int(len(ids)),
        "examples_dropped_no_new": n_dropped,
        "examples_skipped_unknown": int(n_unknown),
        "entities_untrained": n_untrained,
    }
    if replay_file is not None:
        counts.update(replay_examples=int(len(replay_ids)), replay_skipped=int(n_replay_skipped))
    if n_new or r_new:
        grown.lineage.append(
            _lineage_record(
                command, settings, _input_hashes(ent_file, rel_file, f, replay_file),
                **counts, epochs=result.epochs, final_loss=result.final_loss,
            )
        )
    summary = {
        "command": command,
        "model": ckpt.model,
        **counts,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "losses": result.losses,
        "epoch_seconds": [round(s, 3) for s in result.epoch_seconds],
        "seconds": {"load": round(t_load, 3), "train": round(result.seconds, 3)},
    }
    if "init_placed" in levers:
        summary["init_placed_from_neighbors"] = levers["init_placed"]
    if "stopper" in levers:
        summary["early_stopping"] = levers["stopper"].report()
    return grown, summary


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
    pair = scorer.kind == "pair"

    def ids_of(data):
        if pair:
            f = _pair_file(data)
            ids, _, skipped = map_pairs(f, entities, skip_unknown=True)
            ids = np.stack([ids[:, 0], np.zeros(len(ids), np.int64), ids[:, 1]], axis=1)
        else:
            f = _triple_file(data)
            ids, skipped = map_triples(f, entities, relations, skip_unknown=True)
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
