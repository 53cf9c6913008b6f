"""Command-line interface: thin click commands over :mod:`embretrain.api`.

TensorFlow is imported only inside commands that train or score, so ``embretrain --help``
stays instant. Library errors (:mod:`embretrain.errors`) become one clean line on stderr and a
documented exit code; nothing prints a Python traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import time

import click

from . import __version__, quiet_tf
from .config import CHOICES, OLD_ROWS, PRESETS, STRATEGIES
from .checkpoint import LOAD_OPTIONS
from .checkpoint.formats import FORMAT_NAMES
from .errors import (
    EXIT_CHECKPOINT,
    EXIT_OK,
    EXIT_DATA,
    EXIT_INTERNAL,
    EXIT_LOCKED,
    EXIT_NOTHING_TO_DO,
    EXIT_USAGE,
    EmbretrainError,
)

__all__ = ["main"]

logger = logging.getLogger("embretrain")

EXIT_CODES_HELP = f"""\b
Exit codes:
  0  success
  {EXIT_USAGE}  usage error (bad option, config or output path)
  {EXIT_DATA}  bad input data (file and line are named)
  {EXIT_CHECKPOINT}  bad or corrupt checkpoint
  {EXIT_LOCKED}  another run holds the lock on this output
  {EXIT_INTERNAL}  internal failure (diverged training, I/O error, bug)
  {EXIT_NOTHING_TO_DO}  nothing to do (only with --strict)
"""


class Group(click.Group):
    """Maps library errors to exit codes; no traceback for the user."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EmbretrainError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {_as_flags(str(exc), ctx)}", err=True)
            if exc.exit_hard:
                # e.g. TensorFlow's runtime still holding channels to lost servers: its teardown at exit would
                # retry them and print pages of gRPC errors after the line above (the output and lock are settled)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(exc.exit_code)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted; nothing was written", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("error: out of memory; nothing was written", err=True)
            sys.exit(EXIT_INTERNAL)
        except OSError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc.strerror or exc} ({exc.filename or 'I/O'}); nothing was written", err=True)
            sys.exit(EXIT_INTERNAL)
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True
            )
            sys.exit(EXIT_INTERNAL)


def _as_flags(message: str, ctx: click.Context) -> str:
    """The library names options as settings (``partition_strategy``); on the command line they are flags.

    Rewrites each name of the invoked command's options (those with an underscore, so ordinary words stay)
    into its flag: the library never needs to know the CLI's spelling.
    """
    name = ctx.invoked_subcommand
    command = (ctx.command.get_command(ctx, name) if name and isinstance(ctx.command, click.Group) else None) or ctx.command
    flags = {p.name: p.opts[0] for p in command.params
             if isinstance(p, click.Option) and p.name and "_" in p.name and p.opts[0].startswith("--")}
    for setting, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){setting}(?![\w-])", flag, message)
    return message


def _setup_logging(verbose: int, quiet: bool, debug: bool = False) -> None:
    """stderr levels: ``-q`` warnings and errors only (cron mails nothing on success); default: a few lines
    per run (start, counts, what was written); ``-v``: also per-epoch losses and debug detail.

    TensorFlow's own start-up lines are never shown unless ``--debug`` (see :mod:`embretrain.quiet_tf`).
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("embretrain")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    quiet_tf.show_startup_logs(debug)


@click.group(cls=Group, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="embretrain")
@click.option("-v", "--verbose", count=True, help="Also per-epoch losses and debug detail on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr unless something is wrong (for cron).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors, and TensorFlow's start-up logs.")
@click.pass_context
def main(ctx, verbose, quiet, debug):
    """Grow a trained embedding table without retraining it.

    \b
    Example (a nightly run):
      embretrain extend --ckpt base.h5 --new-entities new.tsv --data delta.tsv --out merged.h5
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _setup_logging(verbose, quiet, debug)


# --- shared options ----------------------------------------------------------------------------
def training_options(func):
    """Options shared by ``train`` and ``extend`` (None = not given, so presets can fill them)."""
    options = [
        click.option("--preset", type=click.Choice(PRESETS), help="A preset shipped with embretrain (extend: its settings replace the base checkpoint's and the model's recipe)."),
        click.option("--config", "config", type=click.Path(dir_okay=False), help="Your own TOML file of settings (the keys of the presets); it refines --preset, and options given here override both."),
        click.option("--epochs", type=click.IntRange(min=0), help="Passes over the data [20; extend: its model's recipe, extend_epochs]."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Positives per step [1024; data under 10,240 examples: at least 10 steps per epoch, >= 32]."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate [0.01]."),
        click.option("--negatives", type=click.IntRange(min=1), help="Negatives per positive [32]."),
        click.option("--negative-chunk", type=click.IntRange(min=1), help="Positives that share one draw of negatives (scored as one matrix product); 1 = independent negatives [64; distmult, complex: 8]."),
        click.option("--seed", type=int, help="Random seed; same inputs + seed = same tables [0]."),
        click.option("--optimizer", type=click.Choice(CHOICES["optimizer"]), help="Sparse optimizer [adam; distmult, complex: rmsprop]."),
        click.option("--loss", type=click.Choice(CHOICES["loss"]), help="Loss [logistic]."),
        click.option("--margin", type=float, help="Margin of the margin ranking loss [1.0]."),
        click.option("--adversarial-temperature", type=click.FloatRange(min=0), help="Self-adversarial negative weighting; 0 = off [0]."),
        click.option("--regularization", type=click.FloatRange(min=0), help="L2 weight on touched rows [0]."),
        click.option("--threads", type=click.IntRange(min=0), help="TensorFlow intra-op threads; 0 = all cores [0]."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
        click.option("--progress/--no-progress", default=None, help="Progress bar (default: only when stderr is a terminal)."),
        click.option("--strategy", type=click.Choice(STRATEGIES), default="local", show_default=True, help="Where to train: this process, or the TensorFlow parameter-server cluster in TF_CONFIG (this process is the chief)."),
        click.option("--shards", type=click.IntRange(min=0), default=0, help="parameter-server: shards per table; 0 = by size, at most one per ps [0]."),
        click.option("--cluster-timeout", type=click.FloatRange(min=0), help="parameter-server: seconds to wait for every ps and worker to accept connections (logging who is missing) before failing with exit 6 [120]."),
        click.option("--logdir", type=click.Path(file_okay=False), help="Write loss, seconds and examples/s per epoch (and held-out MRR with --valid-fraction) here as TensorBoard summaries; one directory per run."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


MODEL_CHOICE = click.Choice(CHOICES["model"])
_LOAD_KEYS = LOAD_OPTIONS  # the checkpoint package's one list of load options


def checkpoint_options(func):
    """How to read a TF or Keras checkpoint that does not describe itself (ignored for none given)."""
    options = [
        click.option("--entity-var", help="TF/Keras: the entity table: a key ('embedding', 'layers/embedding/vars/0') or a Keras layer name ('item_emb') [the one 2-D float32 variable that fits]."),
        click.option("--relation-var", help="TF/Keras: key of the relation table (triple models)."),
        click.option("--context-var", help="TF/Keras: key (or layer name) of the context table of an untied dot model, the b side (word2vec's second matrix; a two-tower model's item table), grown and frozen like the entity table."),
        click.option("--entity-vocab", type=click.Path(dir_okay=False), help="TF/Keras: entity names, row i on line i+1 [<ckpt>.entities.tsv]."),
        click.option("--relation-vocab", type=click.Path(dir_okay=False), help="TF/Keras: relation names [<ckpt>.relations.tsv]."),
        click.option("--context-vocab", type=click.Path(dir_okay=False), help="TF/Keras: names of the --context-var table's rows when they are a vocabulary of their own (items of a two-tower model) [<ckpt>.contexts.tsv; else the entity names]."),
        click.option("--model", type=MODEL_CHOICE, help="TF/Keras: the scoring model [dot for an entity table alone]."),
        click.option("--partition-strategy", type=click.Choice(["mod", "div"]), help="TF1: how your program's embedding_lookup reads a table saved in parts (required for a partitioned table; see inspect)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load_options(opts: dict) -> dict:
    return {k: opts.get(k) for k in _LOAD_KEYS if opts.get(k) is not None}


_SETTING_KEYS = ("model", "dim", "epochs", "batch_size", "lr", "negatives", "negative_chunk", "seed", "optimizer", "loss", "margin",
                 "adversarial_temperature", "regularization", "threads", "norm", "gamma", "tied",
                 "init", "valid_fraction", "patience", "corrupt", "new_negatives")


def _settings(opts: dict, base=None):
    """The run's settings: ``train``'s, or with ``base`` (the loaded checkpoint) an ``extend``'s."""
    from .config import resolve_extend_settings, resolve_settings

    overrides = {k: opts.get(k) for k in _SETTING_KEYS}
    if base is not None:
        return resolve_extend_settings(base, opts.get("config"), overrides, preset=opts.get("preset"))
    return resolve_settings(opts.get("config"), overrides, preset=opts.get("preset"))


def _emit(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        if key in ("losses", "epoch_seconds"):
            continue
        if isinstance(value, dict) and set(value) == {"count", "names"}:  # a capped list of names
            value = _name_list(value)
        elif key == "settings_source":  # by source, not by setting: what came from where reads at a glance
            by_source: dict = {}
            for name, source in value.items():
                by_source.setdefault(source, []).append(name)
            value = "; ".join(f"{source}: {' '.join(names)}" for source, names in by_source.items())
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.6g}"
        click.echo(f"{key.replace('_', ' '):>28}: {value}")


def _name_list(value: dict) -> str:
    """``3 (a, b, ...)`` for ``{"count": 3, "names": ["a", "b"]}``."""
    names = ", ".join(value["names"]) + (", ..." if value["count"] > len(value["names"]) else "")
    return f"{value['count']} ({names})" if value["names"] else str(value["count"])


def _save_timed(ckpt, out: str, summary: dict, keep: int = 0, out_format: str | None = None) -> None:
    from . import api

    t0 = time.perf_counter()
    logger.info("writing %s", out)  # the fault tests kill the process right after this line
    kwargs = {"format": out_format} if out_format else {}
    if keep:
        api.save(ckpt, out, keep=keep, **kwargs)
    else:
        api.save(ckpt, out, **kwargs)
    summary["seconds"]["write"] = round(time.perf_counter() - t0, 3)
    summary["out"] = out


def _check_out(out: str) -> None:
    from .atomic import check_writable_dir

    check_writable_dir(out)


def run_options(func):
    """Options for unattended runs (cron): --report and --keep, shared by ``train`` and ``extend``."""
    options = [
        click.option("--report", type=click.Path(dir_okay=False), help="Also write the JSON summary (added, skipped, dropped, timings, status) here, even when the run fails."),
        click.option("--keep", type=click.IntRange(min=0), help="Keep this many previous versions of --out as OUT.1 (newest) .. OUT.N [1 when --out is --ckpt, else 0]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _preflight(out: str, *, ckpt: str | None = None, data: tuple = (), config: str | None = None,
               report: str | None = None, out_format: str | None = None, keep: int = 0) -> None:
    """Check every input exists and every output can be written, before any loading or training.

    A cron run that would fail on a missing file after an hour of training fails in a millisecond
    instead, and nothing is written.
    """
    from pathlib import Path

    from .errors import CheckpointError, DataError, UsageError

    for path in data:
        if path is None:
            continue
        p = Path(path)
        if p.is_dir():
            raise DataError.at(path, None, "is a directory, expected a file")
        if not p.exists():
            raise DataError.at(path, None, "no such file")
        if not os.access(p, os.R_OK):
            raise DataError.at(path, None, "cannot read the file (permission denied)")
    if config is not None and not Path(config).is_file():
        raise UsageError(f"{config}: no such config file")
    in_format = None
    if ckpt is not None:
        from .checkpoint import format_of, tfckpt

        if not tfckpt.is_tf(ckpt):  # a TF checkpoint is a prefix or a directory, not a file
            if Path(ckpt).is_dir():
                raise CheckpointError(f"{ckpt} is a directory, not a checkpoint file")
            if not Path(ckpt).exists():
                raise CheckpointError(f"{ckpt}: no such checkpoint file")
        in_format = format_of(ckpt)
    if out_format or in_format not in (None, "h5"):
        from .checkpoint import check_out

        check_out(out, out_format or in_format)  # a TF prefix, a Keras suffix
    _check_out(out)
    if keep and (out_format or in_format) != "tf":  # a TF prefix keeps no backups (tfckpt.save warns)
        from .atomic import check_backups

        check_backups(out, keep)  # a directory at OUT.k would stop the save after the training
    if report is not None:
        _check_out(report)


def _check_strategy(opts: dict) -> None:
    """A cluster run checks TF_CONFIG before loading anything (a bad one fails in a millisecond)."""
    if opts["strategy"] == "parameter-server":
        from .distributed import read_tf_config

        read_tf_config()
    elif opts["shards"]:
        raise click.UsageError("--shards only applies with --strategy parameter-server")
    elif opts["cluster_timeout"] is not None:
        raise click.UsageError("--cluster-timeout only applies with --strategy parameter-server")


def _wait_for_cluster(opts: dict) -> None:
    """A cluster run waits for its servers before loading anything (bounded, logging who is missing)."""
    if opts["strategy"] == "parameter-server":
        from .distributed import CLUSTER_TIMEOUT, read_tf_config, wait_for_cluster

        timeout = CLUSTER_TIMEOUT if opts["cluster_timeout"] is None else opts["cluster_timeout"]
        wait_for_cluster(read_tf_config(), timeout)


def _check_on_disk(opts: dict) -> None:
    """--old-rows on-disk: fail before loading anything if it cannot apply."""
    from .checkpoint import check_old_rows

    check_old_rows(opts["ckpt"], "on-disk")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist yet
        return os.path.abspath(a) == os.path.abspath(b)


def _write_report(path: str | None, summary: dict) -> None:
    if not path:
        return
    from .atomic import atomic_write

    # Atomic like the checkpoint: a monitor polling the report never parses half a JSON file.
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def _guarded_run(opts: dict, command: str, body) -> None:
    """Lock ``--out``, run ``body(summary)``, and write ``--report`` whatever happens."""
    from .atomic import clean_stale_temps
    from .lock import output_lock

    started = time.perf_counter()
    summary: dict = {"command": command, "status": "error", "out": opts["out"]}
    try:
        with output_lock(opts["out"]) as lock:
            logger.info("locked %s (%s)", opts["out"], lock)
            clean_stale_temps(opts["out"])  # temp files of runs that were killed (SIGKILL, OOM)
            summary = body() or summary
    except BaseException as exc:
        if isinstance(exc, (click.exceptions.Exit, SystemExit)):
            raise
        code = 130 if isinstance(exc, KeyboardInterrupt) else getattr(exc, "exit_code", EXIT_INTERNAL)
        summary.update(status="error", exit_code=code, error=str(exc) or type(exc).__name__)
        summary.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
        try:
            _write_report(opts.get("report"), summary)
        except Exception as report_exc:  # the run's own error matters more than the report's
            logger.warning("could not write the report %s: %s", opts.get("report"), report_exc)
        raise
    summary.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    summary.setdefault("exit_code", EXIT_OK)
    _write_report(opts.get("report"), summary)
    return summary


def _dry_run(opts: dict, body) -> dict:
    """``--dry-run``: fail exactly where the run would (lock included), run ``body()``, write nothing.

    ``body`` reads and checks every input and returns the counts the run would report (it shares
    :func:`embretrain.api.plan_train` / :func:`~embretrain.api.plan_extend` with the real run). The lock
    is probed, not taken (:func:`~embretrain.lock.probe_lock`), stale temp files are left for the
    real run to clean, and ``--report`` is not written (its path was checked like the real run's).
    """
    from .lock import probe_lock

    started = time.perf_counter()
    probe_lock(opts["out"])
    if opts.get("report"):
        logger.info("dry run: --report %s is not written (a dry run writes nothing)", opts["report"])
    summary = body()
    summary.update(dry_run=True, out=opts["out"], exit_code=EXIT_OK)
    summary.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    return summary


DRY_RUN_HELP = ("Check everything the run would read and write (checkpoint checksums, vocabularies, every data line, "
                "--out and its lock) and print the counts it would report, with its exit code; train nothing, write "
                "nothing, import no TensorFlow (except to read a TensorFlow checkpoint).")


# --- commands ----------------------------------------------------------------------------------
@main.command()
@click.option("--data", required=True, type=click.Path(), help="Training file: triples (head<TAB>relation<TAB>tail) or, for --model dot, pairs (a<TAB>b[<TAB>weight]).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.h5).")
@click.option("--model", type=MODEL_CHOICE, help="Scoring model [transe].")
@click.option("--dim", type=click.IntRange(min=1), help="Embedding width [100]; even for complex/rotate.")
@click.option("--norm", type=click.Choice(["1", "2"]), callback=lambda c, p, v: None if v is None else int(v), help="transe: L1 or L2 distance [1].")
@click.option("--gamma", type=float, help="distance models (transe, transh, rotate): score = gamma - distance [0.06 x dim; 12 at dim 200].")
@click.option("--tied/--untied", default=None, help="dot: one shared table (symmetric scores) instead of entity + context tables.")
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@training_options
@run_options
def train(**opts):
    """Train a model from scratch (the first checkpoint, or a full-retrain baseline).

    Settings, lowest precedence first: defaults < the model's defaults < --preset < --config < options.

    \b
    Example:
      embretrain train --data train.tsv --model transe --dim 200 --epochs 50 --out base.h5
      embretrain train --data train.tsv --preset transe --out base.h5
    """
    from . import api

    settings = _settings(opts)
    _preflight(opts["out"], data=(opts["data"],), config=opts["config"], report=opts["report"], keep=opts["keep"] or 0)
    _check_strategy(opts)

    if opts["dry_run"]:
        def plan():
            plan = api.plan_train(opts["data"], settings)
            api.check_room_to_train(plan, opts["out"])
            summary = plan.summary()
            summary["status"] = "ok"
            return summary

        _emit(_dry_run(opts, plan), opts["as_json"])
        return

    def body():
        _wait_for_cluster(opts)
        ckpt, summary = api.train(opts["data"], settings, progress=opts["progress"],
                                  strategy=opts["strategy"], shards=opts["shards"], logdir=opts["logdir"],
                                  out=opts["out"])
        _save_timed(ckpt, opts["out"], summary, keep=opts["keep"] or 0)
        summary["status"] = "ok"
        return summary

    _emit(_guarded_run(opts, "train", body), opts["as_json"])


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="Checkpoint to grow (never modified, unless --out names the same file).")
@click.option("--new-entities", type=click.Path(), help="New entity names, one per line (already known names are skipped).")
@click.option("--new-relations", type=click.Path(), help="New relation names, one per line.")
@click.option("--new-contexts", type=click.Path(), help="Pair model with two vocabularies: new names of the b side (items of a two-tower model), one per line; --new-entities are then the a side's (users).")
@click.option("--data", required=True, type=click.Path(), help="Delta triples (or pairs for a dot model) touching the new entities.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged checkpoint to write; may be --ckpt itself (atomic in-place growth, previous version kept as OUT.1).")
@click.option("--skip-unknown", is_flag=True, help="Skip (and count) data lines naming an entity or relation that is neither old nor new.")
@click.option("--strict", is_flag=True, help=f"Exit {EXIT_NOTHING_TO_DO} instead of 0 when every new name is already in --ckpt (a rerun).")
@click.option("--init", type=click.Choice(CHOICES["init"]), help="Start of new rows: Glorot, or a closed form from their frozen neighbours (mean or coordinate-wise median of the estimates) [its model's recipe, else xavier].")
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), help="Hold out this share of the delta (at most 500 triples) and keep the epoch with the best new-entity MRR on it; 0 = off [0].")
@click.option("--patience", type=click.IntRange(min=0), help="With --valid-fraction: stop after this many epochs without a better MRR; 0 = run every epoch [2].")
@click.option("--corrupt", type=click.Choice(CHOICES["corrupt"]), help="Negatives: corrupt either side, or only the frozen side of a triple with one new entity [any].")
@click.option("--new-negatives", type=click.FloatRange(0, 1, max_open=True), help="Draw this share of every batch's negatives from the new entities only, so a new row also learns where it does not belong (old queries) [its model's recipe, else 0].")
@click.option("--replay", type=click.Path(), help="Old triples (e.g. the base model's training file) replayed each step with negatives drawn from the new entities only, so new rows do not crowd old answers; lines naming new or unknown names are skipped.")
@click.option("--out-format", type=click.Choice(FORMAT_NAMES), help="Write --out as native HDF5, a TF checkpoint prefix, or Keras .weights.h5/.keras [the format of --ckpt].")
@click.option("--old-rows", type=click.Choice(OLD_ROWS), default="memory", show_default=True, help="Where the frozen old rows live while training: read into memory once, or left in --ckpt (native .h5 only) and read per batch, for tables bigger than memory.")
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@checkpoint_options
@training_options
@run_options
def extend(**opts):
    """Append rows for new entities, train only them on the delta, write a merged checkpoint.

    Old rows of every table are frozen and come out bit-identical. With no options it trains the way the
    base was trained (settings from its lineage) and follows its model's extend recipe (start, epochs):
    defaults < the model's defaults < the base's settings < the recipe < --preset < --config < options.
    The summary's settings_source says where each setting came from.

    \b
    Example:
      embretrain extend --ckpt base.h5 --new-entities new.tsv --data delta.tsv --out merged.h5
    """
    from . import api
    from .errors import NothingToDoError

    if not opts["new_entities"] and not opts["new_relations"] and not opts["new_contexts"]:
        raise click.UsageError("give --new-entities, --new-relations and/or --new-contexts")
    in_place = _same_file(opts["ckpt"], opts["out"])
    keep = opts["keep"] if opts["keep"] is not None else (1 if in_place else 0)
    _preflight(
        opts["out"], ckpt=opts["ckpt"],
        data=(opts["new_entities"], opts["new_relations"], opts["new_contexts"], opts["data"], opts["replay"]),
        config=opts["config"], report=opts["report"], out_format=opts["out_format"], keep=keep,
    )
    _check_strategy(opts)
    if opts["old_rows"] == "on-disk":
        _check_on_disk(opts)
    delta_options = {"new_relations": opts["new_relations"], "new_contexts": opts["new_contexts"],
                     "skip_unknown": opts["skip_unknown"], "replay": opts["replay"]}

    def load(old_rows: str):
        t0 = time.perf_counter()
        logger.info("loading %s", opts["ckpt"])
        # read-only: frozen rows are never written to, and the save can continue the load's sha256
        ckpt = api.load(opts["ckpt"], old_rows=old_rows, read_only=True, **_load_options(opts))
        # the base's training settings and its model's extend recipe, under --preset/--config and options
        return ckpt, _settings(opts, base=ckpt), time.perf_counter() - t0

    def finish(summary: dict, t_load: float) -> dict | None:
        """Timings of the load; the "nothing to do" outcome (None: there is something to do)."""
        # disjoint parts in run order: reading and verifying --ckpt, then the data (see summary.py)
        summary["seconds"] = {"load_checkpoint": round(t_load, 3), **summary["seconds"]}
        if not summary.get("nothing_to_do"):
            return None
        message = (
            f"nothing to do: every name in {opts['new_entities'] or opts['new_relations'] or opts['new_contexts']} is already in "
            f"{opts['ckpt']}; nothing was written"
        )
        if opts["strict"]:
            raise NothingToDoError(message + " (--strict)")
        logger.info("%s", message)
        summary["status"] = "nothing_to_do"
        return summary

    if opts["dry_run"]:
        def plan():
            from .checkpoint import format_of

            # A native file is read as --old-rows on-disk reads it: every sha256, NaN/Inf and name
            # check in one streaming pass, without holding the tables (a dry run needs no row).
            ckpt, settings, t_load = load("on-disk" if format_of(opts["ckpt"]) == "h5" else opts["old_rows"])
            summary = api.plan_extend(ckpt, opts["new_entities"], opts["data"], settings, **delta_options).summary()
            if not summary.get("nothing_to_do"):
                api.check_room_to_grow(ckpt, opts["out"])
            return finish(summary, t_load) or {**summary, "status": "ok"}

        _emit(_dry_run(opts, plan), opts["as_json"])
        return

    def body():
        _wait_for_cluster(opts)
        ckpt, settings, t_load = load(opts["old_rows"])
        grown, summary = api.extend(ckpt, opts["new_entities"], opts["data"], settings, **delta_options,
                                    progress=opts["progress"], strategy=opts["strategy"], shards=opts["shards"],
                                    logdir=opts["logdir"], neighbour_report=bool(opts["report"]), out=opts["out"])
        if finish(summary, t_load) is not None:
            return summary
        _save_timed(grown, opts["out"], summary, keep=keep, out_format=opts["out_format"])
        summary["status"] = "ok"
        summary["in_place"] = in_place
        return summary

    _emit(_guarded_run(opts, "extend", body), opts["as_json"])


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="Checkpoint to score.")
@click.option("--test", required=True, type=click.Path(), help="Test triples (or pairs).")
@click.option("--known", multiple=True, type=click.Path(), help="True triples to filter out of the ranking (repeatable).")
@click.option("--new-only", is_flag=True, help="Only test triples touching an entity added by the last extend.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Queries scored per batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@checkpoint_options
def evaluate(ckpt, test, known, new_only, batch_size, as_json, **load_opts):
    """Filtered link prediction: MRR and Hits@1/3/10 (realistic ranks for ties).

    \b
    Example:
      embretrain evaluate --ckpt merged.h5 --test test.tsv --known train.tsv --known valid.tsv --new-only
    """
    from . import api

    model = api.load(ckpt, **_load_options(load_opts))
    figures = api.evaluate(model, test, known, new_only=new_only, batch_size=batch_size)
    _emit(figures, as_json)


@main.command()
@click.argument("ckpt", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(ckpt, as_json):
    """Show a checkpoint's format, model, dims, counts, checksums, lineage and pending entities.

    For a TF checkpoint or Keras file: every variable's key, shape and dtype, and which could be
    the entity table (for --entity-var). Pending entities were added without data and keep their
    start row until a later delta names them.

    \b
    Example:
      embretrain inspect merged.h5
    """
    from .checkpoint import describe
    from .checkpoint.base import PENDING_ADDED, PENDING_TRAINED, pending_names
    from .summary import name_list

    info = describe(ckpt)
    pending = pending_names(info.get("lineage") or [])
    if as_json:
        info["pending"] = name_list(pending, shown=len(pending))
        click.echo(json.dumps(info, indent=2, default=str))
        return
    lineage = info.pop("lineage", [])
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")
    click.echo(f"lineage: {len(lineage)} run(s)")
    for i, rec in enumerate(lineage, 1):
        added = rec.get("entities_added", 0)
        n_pending, n_trained = (len(rec.get(k) or []) for k in (PENDING_ADDED, PENDING_TRAINED))
        click.echo(
            f"  {i}. {rec.get('time', '?')} {rec.get('command', '?')} (v{rec.get('tool_version', '?')}): "
            f"+{added} entities" + (f" ({n_pending} pending)" if n_pending else "")
            + (f", trained {n_trained} pending" if n_trained else "")
            + f", +{rec.get('relations_added', 0)} relations"
            + (f", +{rec['contexts_added']} contexts" if "contexts_added" in rec else "") + f", seed {rec.get('seed')}, "
            f"final loss {rec.get('final_loss')}"
        )
        for path, digest in (rec.get("inputs_sha256") or {}).items():
            click.echo(f"       {path} sha256 {digest[:16]}...")
    click.echo(f"pending entities: {_name_list(name_list(pending))}" if pending else "pending entities: 0")


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to write the demo checkpoints (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def demo(workdir, as_json):
    """Train a base model on a bundled tiny graph, grow it, evaluate, prove old rows did not move.

    \b
    Example:
      embretrain demo
    """
    from .demo import run_demo

    run_demo(workdir, echo=click.echo, as_json=as_json)


@main.command()
@click.argument("ckpt", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["word2vec", "word2vec-binary", "tsv", "projector"]), help="word2vec text/binary (header 'count dim'), name<TAB>vector<TAB>pending TSV, or a TensorBoard log directory for its projector (projector_config.pbtxt, vectors.tsv, metadata.tsv with name, is_new and pending columns).")
@click.option("--out", type=click.Path(), help="File (directory for projector) to write [CKPT.w2v.txt, CKPT.w2v.bin, CKPT.vectors.tsv, CKPT.projector].")
@click.option("--only-new", is_flag=True, help="Only the rows added by the last extend.")
@click.option("--table", default="entity_embeddings", show_default=True, help="Which table to export (e.g. relation_embeddings).")
@click.option("--skip-pending", is_flag=True, help="Leave out pending entities (added without data, still at their random start row); word2vec has no column to flag them.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@checkpoint_options
def export(ckpt, fmt, out, only_new, table, skip_pending, as_json, **load_opts):
    """Export a table for other tools (gensim, the Embedding Projector, spreadsheets).

    \b
    Example:
      embretrain export merged.h5 --format word2vec --only-new --out new.w2v.txt
    """
    from . import api
    from .export import default_out, export as export_table

    out = out or default_out(ckpt, fmt)
    summary = export_table(api.load(ckpt, **_load_options(load_opts)), fmt, out, only_new=only_new, table=table,
                           skip_pending=skip_pending)
    _emit(summary, as_json)


@main.command()
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--new-entity-vocab", type=click.Path(dir_okay=False), help="TF/Keras: entity names of NEW [NEW.entities.tsv]; --entity-vocab is OLD's.")
@click.option("--new-relation-vocab", type=click.Path(dir_okay=False), help="TF/Keras: relation names of NEW [NEW.relations.tsv].")
@click.option("--new-context-vocab", type=click.Path(dir_okay=False), help="TF/Keras: context names of NEW, for a context table with its own vocabulary [NEW.contexts.tsv].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@checkpoint_options
def verify(old, new, new_entity_vocab, new_relation_vocab, new_context_vocab, as_json, **load_opts):
    """Exit 0 if NEW extends OLD (same names first, every old row bit-identical), else 1.

    Names the first differing entity. For any supported format; no TensorFlow for native files.

    \b
    Example (a publishing gate):
      embretrain verify base.h5 merged.h5 && cp merged.h5 /srv/models/
    """
    from .verify import verify as verify_checkpoints

    old_opts = _load_options(load_opts)
    vocabs = {"entity_vocab": new_entity_vocab, "relation_vocab": new_relation_vocab, "context_vocab": new_context_vocab}
    new_opts = {k: v for k, v in old_opts.items() if k not in vocabs}
    new_opts.update({k: v for k, v in vocabs.items() if v})
    result = verify_checkpoints(old, new, old_options=old_opts, new_options=new_opts)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "message": result.message, "first_entity": result.first_entity,
                               "checked": result.checked}, indent=2, ensure_ascii=False))
    else:
        click.echo(("OK: " if result.ok else "DIFFERS: ") + result.message)
    sys.exit(0 if result.ok else 1)


@main.command()
@click.argument("ckpt", type=click.Path())
@click.argument("names", nargs=-1)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours (and predicted tails/heads) per entity.")
@click.option("--only-new", is_flag=True, help="The entities added by the last run (all of them unless NAMEs pick some).")
@click.option("--among", type=click.Choice(["all", "old"]), default="all", show_default=True, help="Candidate neighbours: every entity, or only those not added by the last run.")
@click.option("--data", type=click.Path(dir_okay=False), help="Triples (e.g. the delta): triple models also list the model's top tails/heads under each entity's most frequent relation there.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@checkpoint_options
def neighbors(ckpt, names, k, only_new, among, data, as_json, **load_opts):
    """Show each entity's nearest entities by cosine similarity (itself excluded).

    Native .h5 tables are streamed from the file, so a 10M-row table needs little memory;
    no TensorFlow is imported.

    \b
    Example (last night's new entities, next to old ones only):
      embretrain neighbors merged.h5 --only-new --among old --data delta.tsv
    """
    from .neighbors import format_text, load_for_report, report

    t0 = time.perf_counter()
    model = load_for_report(ckpt, **_load_options(load_opts))
    t_load = time.perf_counter() - t0
    result = report(model, names, k=k, only_new=only_new, among=among, data=data)
    result["seconds"]["load"] = round(t_load, 3)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(format_text(result)))


@main.command()
@click.option("--role", required=True, type=click.Choice(["ps", "worker"]), help="This host's task type; must match TF_CONFIG's task.")
def server(role):
    """Serve as a parameter server or worker of a TF_CONFIG cluster, until killed.

    The chief is the host that runs `train`/`extend --strategy parameter-server`.

    \b
    Example (on each ps and worker host, with its own TF_CONFIG):
      TF_CONFIG='{"cluster": {...}, "task": {"type": "ps", "index": 0}}' embretrain server --role ps
    """
    from .distributed import run_server

    run_server(role)


if __name__ == "__main__":  # pragma: no cover
    main()
