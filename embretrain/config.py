"""Run settings: one dataclass, TOML presets, a fixed precedence, and the lists of choices.

Owns: :class:`Settings` (what shapes a ``train``/``extend`` run), the precedence that resolves it and the
record of where each setting came from (``Settings.sources``), the presets shipped inside the package
(``embretrain/presets/*.toml``, read with importlib.resources so they travel with a non-editable install),
the one decision of how many epochs an ``extend`` trains (:meth:`Settings.for_extend`), and every list of
choices the CLI offers for a setting (``CHOICES``, ``PRESETS``, ``STRATEGIES``, ``OLD_ROWS``): cli.py reads
them from here. Must not: import TensorFlow, read data, or name CLI flags in its errors (the CLI parses
flags; this module speaks in setting names, which are also the TOML keys).

Precedence, lowest first, each level named by its source label (``Settings.sources``):

- ``train`` (:func:`resolve_settings`): ``default`` (the dataclass) < ``model`` (the model's defaults,
  ``MODEL_DEFAULTS``, and its ``scaled_defaults``: e.g. gamma from dim) < ``preset:NAME`` (a shipped preset)
  < ``config:FILE`` (the user's own TOML file) < ``option`` (given explicitly: the command line, ``overrides``).
- ``extend`` (:func:`resolve_extend_settings`): ``default`` < ``model`` < ``base checkpoint`` (the training
  settings the base was made with, from its lineage: :data:`CARRIED`) < ``recipe:NAME`` (the extend keys,
  :data:`EXTEND_KEYS`, of the model's shipped preset) < ``preset:NAME`` < ``config:FILE`` < ``option``; the
  model, ``dim`` and the scoring parameters are the checkpoint's (``checkpoint``), whatever a file says.

A TOML preset is flat ``key = value`` pairs named like the fields below (``batch_size``, not
``--batch-size``); unknown keys are an error so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import UsageError
from .models import MODELS

__all__ = ["Settings", "MODEL_DEFAULTS", "MODEL_PARAMS", "CHOICES", "PRESETS", "STRATEGIES", "OLD_ROWS", "CARRIED",
           "EXTEND_KEYS", "load_toml", "load_preset", "preset_names", "recorded_settings", "resolve_settings",
           "resolve_extend_settings"]

logger = logging.getLogger(__name__)


@dataclass
class Settings:
    """Everything that shapes a ``train`` or ``extend`` run."""

    model: str = "transe"
    dim: int = 100  # entity width (float columns); complex models use dim/2 complex numbers
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 0.01
    negatives: int = 32  # negatives per positive
    # positives that share one draw of negatives, so their scores are one matrix product (PyTorch-BigGraph's
    # chunked negatives); 1 = every positive draws its own. Measured in scripts/bench_throughput.py. The bilinear
    # models' defaults say 8 (models/base.py: BILINEAR_NEGATIVE_CHUNK).
    negative_chunk: int = 64
    seed: int = 0
    optimizer: str = "adam"  # sparse: adam (lazy), rmsprop (adam without momentum: the bilinear models'), adagrad, sgd
    loss: str = "logistic"  # logistic | margin | softmax (cross-entropy against the sampled negatives)
    margin: float = 1.0  # margin ranking loss only
    adversarial_temperature: float = 0.0  # self-adversarial negative weighting (RotatE paper); 0 = off
    regularization: float = 0.0  # weight of the regularizer
    regularizer: str = "l2"  # l2: squares of every row a batch touches | n3: cubed magnitudes of the positives' rows
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch (1 = constant)
    # scoring parameters, stored in the checkpoint; `extend` always takes them from the checkpoint
    norm: int = 1  # transe: L1 or L2
    gamma: float = 12.0  # transe/rotate: score = gamma - distance
    tied: bool = False  # dot: one shared table (symmetric scores) instead of entity + context tables
    threads: int = 0  # TensorFlow intra-op threads (0 = TensorFlow's choice)
    # extend only (see embretrain/init.py and embretrain/early_stop.py)
    extend_epochs: int = -1  # epochs of extend when --epochs is not given; -1 = same as epochs
    init: str = "xavier"  # start of new entity rows: xavier | neighbors | neighbors-median (closed forms)
    valid_fraction: float = 0.0  # share of the delta held out to pick the best epoch; 0 = off
    patience: int = 2  # early stopping: epochs without a better held-out MRR before stopping
    corrupt: str = "any"  # negatives: any side | frozen (the old side of a triple with one new entity)
    new_negatives: float = 0.0  # share of each draw of negatives taken from the new entities only (0 = uniform)
    # Where each setting came from (a source label of the precedence above, e.g. "option", "preset:transe");
    # a setting not listed is the dataclass default. Not a setting: not in to_dict(), not a TOML key.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def explicit(self) -> frozenset[str]:
        """The settings given explicitly (``overrides``: the command line), as opposed to defaults and files."""
        return frozenset(k for k, source in self.sources.items() if source == OPTION)

    def to_dict(self) -> dict[str, Any]:
        """The settings by name (the TOML keys), as recorded in a checkpoint's lineage."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _FIELDS}

    def source_map(self) -> dict[str, str]:
        """Every setting's source label, in field order (what a summary's ``settings_source`` shows)."""
        return {name: self.sources.get(name, DEFAULT) for name in _FIELDS}

    def for_extend(self) -> Settings:
        """The settings an ``extend`` trains with: the one place that decides its epochs.

        ``extend_epochs`` (new rows from a neighbour start need far fewer epochs than a table from scratch)
        replaces ``epochs`` unless ``epochs`` was set at a higher level of the precedence: an explicit
        ``epochs`` always wins, and so does a ``--config`` file's ``epochs`` over the model's recipe. The
        result has ``extend_epochs = -1``: it is spent.
        """
        src = self.source_map()
        if self.extend_epochs >= 0 and _rank(src["extend_epochs"]) >= _rank(src["epochs"]):
            sources = {**self.sources, "epochs": src["extend_epochs"]}
            return dataclasses.replace(self, epochs=self.extend_epochs, extend_epochs=-1, sources=sources)
        return dataclasses.replace(self, extend_epochs=-1)

    def for_examples(self, n: int) -> Settings:
        """The settings a run on ``n`` training examples trains with: the one place that fits the batch to the data.

        A batch size nobody chose for this run (the default, the model's, or one carried from the base checkpoint,
        which was chosen for the base's data) is cut so that an epoch makes at least :data:`MIN_STEPS_PER_EPOCH`
        optimizer steps, never below :data:`MIN_BATCH`. Without it a small delta or a CI fixture got one Adam step
        per epoch, 20 in a whole run, and every model stopped far short of what it learns: on a 720-triple graph
        (tests/test_defaults_learn.py; batches of 72 instead of 1,024) filtered MRR went from 0.25 to 0.44 for
        TransE at dim 4, 0.35 to 0.62 for DistMult and 0.35 to 0.75 for RotatE at dim 16, at the same cost. Data of
        10,240 examples or more is untouched (every FB15k-237 and WN18RR run in docs/BENCHMARKS.md). A batch size
        from a preset, a config file or an option is kept as given, and so is one set by hand on a ``Settings`` made
        without :func:`resolve_settings`. The source of a cut batch size is ``data``; an extend does not carry it
        over from the base.
        """
        source = self.sources.get("batch_size")
        # A Settings made by hand (the API, no sources) chose its batch size unless it left the dataclass's.
        chosen = _rank(source) > _RANKS[BASE] if source else self.batch_size != _FIELDS["batch_size"].default
        if chosen or n <= 0:
            return self
        size = max(MIN_BATCH, math.ceil(n / MIN_STEPS_PER_EPOCH))
        if size >= self.batch_size:
            return self
        logger.info("batch size %d instead of %d: %d examples make %d steps per epoch (choose one with --batch-size)",
                    size, self.batch_size, n, math.ceil(n / size))
        return dataclasses.replace(self, batch_size=size, sources={**self.sources, "batch_size": DATA})


# Scoring parameters per model (what the checkpoint stores as root attributes) and per-model starting points
# (embretrain/presets/<model>.toml hold the measured presets): read from each model's file through the registry.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {name: cls.param_names for name, cls in MODELS.items()}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(cls.defaults) for name, cls in MODELS.items()}

_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "sources"}
# The values a setting may take; the CLI's click.Choice lists are these. Models come from the registry; the
# others are spelled out rather than imported from optim.OPTIMIZERS and init.INIT_CHOICES (modules that
# import numpy), so importing the CLI stays light. tests/test_config.py checks they agree.
CHOICES: dict[str, tuple[str, ...]] = {
    "model": tuple(MODEL_PARAMS),
    "optimizer": ("adam", "rmsprop", "adagrad", "sgd"),
    "loss": ("logistic", "margin", "softmax"),
    "regularizer": ("l2", "n3"),
    "init": ("xavier", "neighbors", "neighbors-median"),
    "corrupt": ("any", "frozen"),
}
# Run options that are not settings (not recorded in lineage): where to train, where old rows live.
STRATEGIES = ("local", "parameter-server")
OLD_ROWS = ("memory", "on-disk")

# Source labels (``Settings.sources``), lowest precedence first; "recipe", "preset" and "config" are followed by
# ":NAME" / ":FILE". "checkpoint" is an extend's model, dim and scoring parameters: not a level that options
# could override, so it ranks above them.
# "data" is a batch size fitted to the run's examples (:meth:`Settings.for_examples`), from a level at or below BASE.
DEFAULT, MODEL, BASE, DATA, RECIPE, PRESET, CONFIG, OPTION, CHECKPOINT = (
    "default", "model", "base checkpoint", "data", "recipe", "preset", "config", "option", "checkpoint")
_RANKS = {label: i for i, label in enumerate((DEFAULT, MODEL, BASE, DATA, RECIPE, PRESET, CONFIG, OPTION, CHECKPOINT))}
MIN_STEPS_PER_EPOCH = 10  # Settings.for_examples: the fewest optimizer steps an epoch makes at a batch size not chosen
MIN_BATCH = 32  # ... and the smallest batch it cuts to


def _rank(source: str) -> int:
    return _RANKS[source.partition(":")[0]]


# What an extend takes from its model's shipped preset (the "recipe": how new rows start, how long they train,
# what they are contrasted with): the extend-only settings.
EXTEND_KEYS = ("extend_epochs", "init", "valid_fraction", "patience", "corrupt", "new_negatives")
# What an extend takes from the base checkpoint's lineage (the settings of the run that made it): the training
# settings, so the new rows learn the way the old ones did. Not carried: the model, dim and scoring parameters
# (read from the checkpoint itself; ``tied`` is whether it has a context table), epochs (a table from scratch
# needs many more than new rows beside frozen ones: the recipe's extend_epochs, else the default), seed (one
# run's draws; the default keeps a rerun byte-identical), threads (the machine's, not the model's) and the
# extend keys (the recipe's).
_NOT_CARRIED = {"model", "dim", "tied", "epochs", "seed", "threads", *EXTEND_KEYS,
                *(name for params in MODEL_PARAMS.values() for name in params)}
CARRIED = tuple(name for name in _FIELDS if name not in _NOT_CARRIED)


MAX_CONFIG_BYTES = 1 << 20  # a preset is a few hundred bytes; anything this big is the wrong file


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML preset; unknown keys or wrong types are a :class:`UsageError`.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read (a FIFO or device is refused at
    open without blocking; a huge file is refused before it is read).
    """
    import os
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path}: is a directory, expected a TOML config file")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path}: is not a regular file (a FIFO, socket or device); expected a TOML config file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise UsageError(f"{path}: {st.st_size} bytes is too big for a TOML config file (at most {MAX_CONFIG_BYTES})")
        data = fh.read(MAX_CONFIG_BYTES + 1)
    return _parse(data, str(path))


def _parse(data: bytes, origin: str) -> dict[str, Any]:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{origin}: not valid TOML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return _check(raw, origin)


# --- presets shipped in the package ----------------------------------------------------------------
def _preset_dir():
    """embretrain/presets as an importlib.resources Traversable: found wherever the package is installed."""
    return resources.files("embretrain").joinpath("presets")


def preset_names() -> tuple[str, ...]:
    """The shipped presets' names (``transe`` for ``presets/transe.toml``), sorted."""
    return tuple(sorted(p.name[: -len(".toml")] for p in _preset_dir().iterdir() if p.name.endswith(".toml")))


# Listing a folder of the installed package is cheap: --help can offer the names (nothing heavy is imported).
PRESETS: tuple[str, ...] = preset_names()


def load_preset(name: str) -> dict[str, Any]:
    """The settings of the shipped preset ``name``; an unknown name is a :class:`UsageError` listing the presets."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {_short(name)}; shipped presets: {', '.join(PRESETS)}")
    return _parse(_preset_dir().joinpath(f"{name}.toml").read_bytes(), f"preset {name}")


def _extend_recipe(model: str) -> tuple[str, dict[str, Any]]:
    """(source label, the extend keys of ``model``'s shipped preset); empty when the model has no preset."""
    cls = MODELS.get(model)
    if cls is None or cls.preset is None:
        return RECIPE, {}
    return f"{RECIPE}:{cls.preset}", {k: v for k, v in load_preset(cls.preset).items() if k in EXTEND_KEYS}


def recorded_settings(lineage: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The :data:`CARRIED` settings of the last run recorded in ``lineage`` (a checkpoint's list of records).

    A setting whose recorded source is ``data`` (a batch size fitted to the base's examples) is not carried.
    A lineage is data from a file: a record without a ``config``, a setting this version does not know or a
    value it would refuse is left out (logged), never an error; the checkpoint's tables are what matters.
    """
    record = next((rec for rec in reversed(list(lineage or []))
                   if isinstance(rec, Mapping) and isinstance(rec.get("config"), Mapping)), {})
    config = record.get("config", {})
    sources = record.get("settings_source")
    sources = sources if isinstance(sources, Mapping) else {}
    out: dict[str, Any] = {}
    for key in CARRIED:
        if key in config and sources.get(key) != DATA:  # fitted to the base's data: not a choice to carry
            try:
                out.update(_check({key: config[key]}, "the base checkpoint's lineage"))
            except UsageError as err:
                logger.warning("not carried over: %s", err)
    return out


def _short(value: Any, limit: int = 60) -> str:
    """repr of a value, cut short: a hostile config must not turn the one-line error into megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MAX_INT = 2**31 - 1  # every int setting is a count or a width; TensorFlow shapes are int32-safe below this


def _check(values: dict[str, Any], origin: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        field = _FIELDS.get(key)
        if field is None:
            raise UsageError(f"{origin}: unknown setting {_short(key)}; known settings: {', '.join(_FIELDS)}")
        want = {"int": int, "float": float, "str": str, "bool": bool}[field.type]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                raise UsageError(f"{origin}: setting {key!r} is out of range ({_short(value)})") from None
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise UsageError(f"{origin}: setting {key!r} must be {field.type}, got {_short(value)}")
        if want is int and abs(value) > _MAX_INT:
            raise UsageError(f"{origin}: setting {key!r} is out of range ({_short(value)}; at most {_MAX_INT})")
        if want is float and not math.isfinite(value):
            raise UsageError(f"{origin}: setting {key!r} must be a finite number, got {_short(value)}")
        if key in CHOICES and key != "model" and value not in CHOICES[key]:
            raise UsageError(f"{origin}: setting {key!r} must be one of {', '.join(CHOICES[key])}, got {_short(value)}")
        out[key] = value
    _check_ranges(out, origin)
    return out


def _check_ranges(values: dict[str, Any], origin: str) -> None:
    positive = ("dim", "epochs", "batch_size", "negatives", "negative_chunk")
    for key in positive:
        if key in values and values[key] < (0 if key == "epochs" else 1):
            raise UsageError(f"{origin}: {key} must be {'>= 0' if key == 'epochs' else 'positive'}, got {values[key]}")
    if "lr_decay" in values and not 0 < values["lr_decay"] <= 1:
        raise UsageError(f"{origin}: lr_decay must be in (0, 1], got {values['lr_decay']}")
    if "lr" in values and not values["lr"] > 0:
        raise UsageError(f"{origin}: lr must be positive, got {values['lr']}")
    if "valid_fraction" in values and not 0 <= values["valid_fraction"] < 1:
        raise UsageError(f"{origin}: valid_fraction must be in [0, 1), got {values['valid_fraction']}")
    if "extend_epochs" in values and values["extend_epochs"] < -1:
        raise UsageError(f"{origin}: extend_epochs must be >= 0 (or -1: same as epochs), got {values['extend_epochs']}")
    if "new_negatives" in values and not 0 <= values["new_negatives"] < 1:
        raise UsageError(f"{origin}: new_negatives must be in [0, 1), got {values['new_negatives']}")
    if "patience" in values and values["patience"] < 0:
        raise UsageError(f"{origin}: patience must be >= 0, got {values['patience']}")


def _resolve(layers: list[tuple[str, dict[str, Any]]], model: str, model_source: str) -> Settings:
    """Settings from ``layers`` of ``(source label, values)``, lowest precedence first, for ``model``."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in [(MODEL, MODEL_DEFAULTS.get(model, {})), *layers]:
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    values["model"], sources["model"] = model, model_source
    if model in MODELS:
        # the model's defaults that depend on other settings (gamma on dim): at its defaults' level, under the rest
        derived = MODELS[model].scaled_defaults({**Settings().to_dict(), **values})
        low = {k: v for k, v in derived.items() if _rank(sources.get(k, DEFAULT)) <= _RANKS[MODEL]}
        values.update(low)
        sources.update(dict.fromkeys(low, MODEL))
    return Settings(**values, sources=sources)


def _file_layers(preset: str | None, config_file: str | Path | None) -> list[tuple[str, dict[str, Any]]]:
    """The ``--preset`` and ``--config`` levels (a user's own file above the shipped preset it may refine)."""
    layers = []
    if preset:
        layers.append((f"{PRESET}:{preset}", load_preset(preset)))
    if config_file:
        layers.append((f"{CONFIG}:{config_file}", load_toml(config_file)))
    return layers


def _options(overrides: dict[str, Any] | None) -> dict[str, Any]:
    return _check({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")


def resolve_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    model: str | None = None,
    preset: str | None = None,
) -> Settings:
    """Build the effective :class:`Settings` of a ``train`` (or of an ``extend`` told everything).

    Args:
        config_file: optional TOML file of the user's own.
        overrides: options given explicitly (``None`` values are ignored); their source is ``option``
            (so an explicit ``epochs`` beats a preset's ``extend_epochs``).
        model: the model when it is fixed from outside (an ``extend`` takes it from the checkpoint).
        preset: the name of a shipped preset (:data:`PRESETS`), below ``config_file``.
    """
    files = _file_layers(preset, config_file)
    explicit = _options(overrides)
    layers = [*files, (OPTION, explicit)]
    if model:
        name, source = model, CHECKPOINT
    else:
        named = [(source, layer["model"]) for source, layer in layers if "model" in layer]
        source, name = named[-1] if named else (DEFAULT, Settings.model)
    return _resolve(layers, name, source)


def resolve_extend_settings(
    base,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    preset: str | None = None,
) -> Settings:
    """The :class:`Settings` of an ``extend`` of ``base``: with nothing given, the best ``extend`` we know.

    ``base`` is the checkpoint (its ``model``, ``params``, ``dim`` and ``lineage`` are read). Its recorded
    training settings (:func:`recorded_settings`) and its model's extend recipe fill what ``preset``,
    ``config_file`` and ``overrides`` leave open (precedence in the module docstring); the model, ``dim``
    and the scoring parameters are the checkpoint's. Call :meth:`Settings.for_extend` on the result.
    """
    files = _file_layers(preset, config_file)
    for source, layer in files:
        if layer.get("model", base.model) != base.model:
            logger.warning("%s is for model %s; %s is a %s model, whose model and parameters come from the "
                           "checkpoint: its other settings apply", source, layer["model"],
                           getattr(base, "source", None) or "the checkpoint", base.model)
    recipe = _extend_recipe(base.model)
    own = {k: v for k, v in (base.params or {}).items() if k in MODEL_PARAMS.get(base.model, ())}
    layers = [(BASE, recorded_settings(base.lineage)), recipe, *files, (OPTION, _options(overrides)),
              (CHECKPOINT, {**own, "dim": base.dim})]
    return _resolve(layers, base.model, CHECKPOINT)
