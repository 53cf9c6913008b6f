"""Settings precedence: defaults < model defaults < --config file < explicit options."""

from __future__ import annotations

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
