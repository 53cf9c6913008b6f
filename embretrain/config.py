"""Run settings: one dataclass, TOML presets, a fixed precedence, and the lists of choices.

Owns: :class:`Settings` (what shapes a ``train``/``extend`` run), the precedence that resolves it,
the one decision of how many epochs an ``extend`` trains (:meth:`Settings.for_extend`), and every
list of choices the CLI offers for a setting (``CHOICES``, ``STRATEGIES``, ``OLD_ROWS``): cli.py reads
them from here. Must not: import TensorFlow, read data, or name CLI flags in its errors (the CLI
parses flags; this module speaks in setting names, which are also the TOML keys).

Precedence, lowest first: the dataclass defaults < the model's defaults (``MODEL_DEFAULTS``, and its
``scaled_defaults``: e.g. gamma from dim) < a ``--config`` TOML file < options given explicitly (on the command line, or ``overrides``).
A TOML preset is flat ``key = value`` pairs named like the fields below (``batch_size``, not
``--batch-size``); unknown keys are an error so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .models import MODELS

__all__ = ["Settings", "MODEL_DEFAULTS", "MODEL_PARAMS", "CHOICES", "STRATEGIES", "OLD_ROWS", "load_toml",
           "resolve_settings"]

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
    # chunked negatives); 1 = every positive draws its own. Measured in scripts/bench_throughput.py.
    negative_chunk: int = 64
    seed: int = 0
    optimizer: str = "adam"  # sparse: adam (lazy), adagrad, sgd
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
    # Which settings were given explicitly (``overrides`` of resolve_settings: the command line), as opposed
    # to defaults and presets. Not a setting: not in to_dict(), not a TOML key.
    explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The settings by name (the TOML keys), as recorded in a checkpoint's lineage."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _FIELDS}

    def for_extend(self) -> Settings:
        """The settings an ``extend`` trains with: the one place that decides its epochs.

        A preset's ``extend_epochs`` (new rows from a neighbour start need far fewer epochs than a table
        from scratch) replaces ``epochs``, unless ``epochs`` was given explicitly, which always wins.
        The result has ``extend_epochs = -1``: it is spent.
        """
        if self.extend_epochs >= 0 and "epochs" not in self.explicit:
            return dataclasses.replace(self, epochs=self.extend_epochs, extend_epochs=-1)
        return dataclasses.replace(self, extend_epochs=-1)


# Scoring parameters per model (what the checkpoint stores as root attributes) and per-model starting points
# (configs/<model>.toml hold the measured presets): read from each model's file through the registry.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {name: cls.param_names for name, cls in MODELS.items()}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(cls.defaults) for name, cls in MODELS.items()}

_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "explicit"}
# The values a setting may take; the CLI's click.Choice lists are these. Models come from the registry; the
# others are spelled out rather than imported from optim.OPTIMIZERS and init.INIT_CHOICES (modules that
# import numpy), so importing the CLI stays light. tests/test_config.py checks they agree.
CHOICES: dict[str, tuple[str, ...]] = {
    "model": tuple(MODEL_PARAMS),
    "optimizer": ("adam", "adagrad", "sgd"),
    "loss": ("logistic", "margin", "softmax"),
    "regularizer": ("l2", "n3"),
    "init": ("xavier", "neighbors", "neighbors-median"),
    "corrupt": ("any", "frozen"),
}
# Run options that are not settings (not recorded in lineage): where to train, where old rows live.
STRATEGIES = ("local", "parameter-server")
OLD_ROWS = ("memory", "on-disk")


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
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: not valid TOML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return _check(raw, str(path))


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
    if "patience" in values and values["patience"] < 0:
        raise UsageError(f"{origin}: patience must be >= 0, got {values['patience']}")


def resolve_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    model: str | None = None,
) -> Settings:
    """Build the effective :class:`Settings`.

    Args:
        config_file: optional TOML preset.
        overrides: options given explicitly (``None`` values are ignored); remembered in
            ``Settings.explicit`` (so an explicit ``epochs`` beats a preset's ``extend_epochs``).
        model: the model when it is fixed from outside (``extend`` takes it from the checkpoint).
    """
    from_file = load_toml(config_file) if config_file else {}
    explicit = _check({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")
    name = model or explicit.get("model") or from_file.get("model") or Settings.model
    values: dict[str, Any] = {}
    values.update(MODEL_DEFAULTS.get(name, {}))
    values.update(from_file)
    values.update(explicit)
    values["model"] = name
    if name in MODELS:
        # the model's defaults that depend on other settings (gamma on dim): at its defaults' level, under the rest
        derived = MODELS[name].scaled_defaults({**Settings().to_dict(), **values})
        values.update({k: v for k, v in derived.items() if k not in from_file and k not in explicit})
    return Settings(**values, explicit=frozenset(explicit))
