"""Run settings: one dataclass, TOML presets, and a fixed precedence.

Precedence, lowest first: the dataclass defaults < the model's defaults (``MODEL_DEFAULTS``, and its
``scaled_defaults``: e.g. gamma from dim) < a ``--config`` TOML file < options given explicitly on the command line.
A TOML preset is flat ``key = value`` pairs named like the fields below (``batch_size``, not
``--batch-size``); unknown keys are an error so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .models import MODELS

__all__ = ["Settings", "MODEL_DEFAULTS", "MODEL_PARAMS", "load_toml", "resolve_settings"]

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
    loss: str = "logistic"  # logistic | margin
    margin: float = 1.0  # margin ranking loss only
    adversarial_temperature: float = 0.0  # self-adversarial negative weighting (RotatE paper); 0 = off
    regularization: float = 0.0  # L2 weight on the rows a batch touches
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Scoring parameters per model (what the checkpoint stores as root attributes) and per-model starting points
# (configs/<model>.toml hold the measured presets): read from each model's file through the registry.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {name: cls.param_names for name, cls in MODELS.items()}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(cls.defaults) for name, cls in MODELS.items()}

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_CHOICES = {"optimizer": ("adam", "adagrad", "sgd"), "loss": ("logistic", "margin"),
            "init": ("xavier", "neighbors", "neighbors-median"), "corrupt": ("any", "frozen")}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML preset; unknown keys or wrong types are a :class:`UsageError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a TOML config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return _check(raw, str(path))


def _check(values: dict[str, Any], origin: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        field = _FIELDS.get(key)
        if field is None:
            raise UsageError(f"{origin}: unknown setting {key!r}; known settings: {', '.join(_FIELDS)}")
        want = {"int": int, "float": float, "str": str, "bool": bool}[field.type]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise UsageError(f"{origin}: setting {key!r} must be {field.type}, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise UsageError(f"{origin}: setting {key!r} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        out[key] = value
    _check_ranges(out, origin)
    return out


def _check_ranges(values: dict[str, Any], origin: str) -> None:
    positive = ("dim", "epochs", "batch_size", "negatives", "negative_chunk")
    for key in positive:
        if key in values and values[key] < (0 if key == "epochs" else 1):
            raise UsageError(f"{origin}: {key} must be {'>= 0' if key == 'epochs' else 'positive'}, got {values[key]}")
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
        overrides: options given explicitly (``None`` values are ignored).
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
    return Settings(**values)
