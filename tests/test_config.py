"""Settings precedence: defaults < model defaults < --config file < explicit options."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from embretrain.config import MODEL_DEFAULTS, Settings, load_toml, resolve_settings
from embretrain.errors import UsageError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "distmult"\nepochs = 7\nlr = 0.5\n')
    s = resolve_settings(cfg, {"lr": 0.25, "epochs": None})
    assert s.model == "distmult" and s.epochs == 7 and s.lr == 0.25
    assert s.regularization == MODEL_DEFAULTS["distmult"]["regularization"]
    assert resolve_settings().batch_size == Settings.batch_size


def test_model_fixed_by_checkpoint_wins(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "distmult"\n')
    assert resolve_settings(cfg, {}, model="rotate").model == "rotate"


@pytest.mark.parametrize("text,match", [
    ("epochs = 'ten'\n", "must be int"),
    ("epoch = 3\n", "unknown setting 'epoch'"),
    ("optimizer = 'rmsprop'\n", "must be one of"),
    ("lr = -1\n", "lr must be positive"),
    ("epochs = \n", "not valid TOML"),
])
def test_bad_config_files(tmp_path, text, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=match):
        resolve_settings(cfg)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_presets_load(path):
    s = resolve_settings(path)
    assert isinstance(s, Settings)


def test_every_model_family_has_a_preset():
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    assert {"transe", "distmult", "complex", "rotate", "dot", "ci-smoke"} <= names


def test_choices_are_the_registries_and_the_cli_offers_them():
    """One list per choice (config.CHOICES); the registries agree with it and the CLI's options read it."""
    from embretrain.cli import main
    from embretrain.config import CHOICES, OLD_ROWS, STRATEGIES
    from embretrain.init import INIT_CHOICES
    from embretrain.models import MODELS
    from embretrain.optim import OPTIMIZERS

    assert CHOICES["model"] == tuple(MODELS)
    assert CHOICES["optimizer"] == tuple(OPTIMIZERS)
    assert CHOICES["init"] == INIT_CHOICES
    want = {**CHOICES, "strategy": STRATEGIES, "old_rows": OLD_ROWS}
    for command in ("train", "extend"):
        for param in main.commands[command].params:
            if param.name in want and hasattr(param.type, "choices"):
                assert tuple(param.type.choices) == want[param.name], (command, param.name)


def test_explicit_epochs_beat_a_presets_extend_epochs_for_every_caller(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 9\nextend_epochs = 2\n")
    preset = resolve_settings(cfg)
    assert preset.epochs == 9 and preset.for_extend().epochs == 2  # the preset's extend budget
    explicit = resolve_settings(cfg, {"epochs": 5})
    assert explicit.explicit == {"epochs"} and explicit.for_extend().epochs == 5
    assert preset.for_extend().extend_epochs == explicit.for_extend().extend_epochs == -1  # spent: lineage says -1
    assert Settings(epochs=4).for_extend().epochs == 4  # no extend budget: epochs as given
    # `explicit` is bookkeeping, not a setting: not in the lineage's config, not a TOML key
    assert "explicit" not in explicit.to_dict() and set(explicit.to_dict()) == set(dataclasses.asdict(Settings())) - {"explicit"}
    (tmp_path / "bad.toml").write_text("explicit = 1\n")
    with pytest.raises(UsageError, match="unknown setting 'explicit'"):
        load_toml(tmp_path / "bad.toml")
