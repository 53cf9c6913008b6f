"""Settings precedence and where each setting came from.

train: defaults < model defaults < --preset < --config file < explicit options.
extend: defaults < model defaults < the base checkpoint's training settings < the model's extend recipe
< --preset < --config file < explicit options; model, dim and scoring parameters from the checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from embretrain.checkpoint import Checkpoint
from embretrain.config import (CARRIED, EXTEND_KEYS, MODEL_DEFAULTS, PRESETS, Settings, load_preset, load_toml,
                               recorded_settings, resolve_extend_settings, resolve_settings)
from embretrain.errors import UsageError


def test_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "distmult"\nepochs = 7\nlr = 0.5\n')
    s = resolve_settings(cfg, {"lr": 0.25, "epochs": None})
    assert s.model == "distmult" and s.epochs == 7 and s.lr == 0.25
    assert s.regularization == MODEL_DEFAULTS["distmult"]["regularization"]
    assert resolve_settings().batch_size == Settings.batch_size
    src = s.source_map()
    assert (src["model"], src["epochs"], src["lr"], src["regularization"], src["seed"]) == (
        f"config:{cfg}", f"config:{cfg}", "option", "model", "default")


def test_bilinear_models_share_negatives_by_small_chunks_by_default():
    """DistMult and ComplEx default to chunks of 8 and rmsprop (models/base.py says why); the distance models keep the
    dataclass's 64 and adam; a preset or an option still decides."""
    for name in ("distmult", "complex"):
        s = resolve_settings(overrides={"model": name})
        assert (s.negative_chunk, s.source_map()["negative_chunk"]) == (8, "model")
        assert (s.optimizer, s.source_map()["optimizer"]) == ("rmsprop", "model")
        assert resolve_settings(overrides={"model": name, "negative_chunk": 64}).negative_chunk == 64
        assert resolve_settings(preset=name).negative_chunk == load_preset(name)["negative_chunk"]
    for name in ("transe", "rotate", "transh"):
        s = resolve_settings(overrides={"model": name})
        assert (s.negative_chunk, s.source_map()["negative_chunk"]) == (Settings.negative_chunk, "default") == (64, "default")
        assert s.optimizer == Settings.optimizer == "adam"


def test_a_config_file_refines_a_preset_and_options_beat_both(tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text("lr = 0.5\nepochs = 3\n")
    s = resolve_settings(cfg, {"epochs": 4}, preset="rotate")
    shipped = load_preset("rotate")
    assert (s.model, s.dim, s.norm, s.loss) == ("rotate", shipped["dim"], shipped["norm"], shipped["loss"])
    assert (s.lr, s.epochs) == (0.5, 4)
    src = s.source_map()
    assert (src["dim"], src["lr"], src["epochs"]) == ("preset:rotate", f"config:{cfg}", "option")
    # a model named on the command line beats the preset's
    assert resolve_settings(None, {"model": "distmult"}, preset="rotate").model == "distmult"
    with pytest.raises(UsageError, match="unknown preset 'nope'; shipped presets: ci-smoke, "):
        resolve_settings(preset="nope")


def test_presets_are_read_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"transe", "distmult", "complex", "rotate", "dot", "transh", "ci-smoke"} <= set(PRESETS)
    assert load_preset("ci-smoke")["epochs"] == 2


def test_model_fixed_by_checkpoint_wins(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "distmult"\n')
    assert resolve_settings(cfg, {}, model="rotate").model == "rotate"


@pytest.mark.parametrize("text,match", [
    ("epochs = 'ten'\n", "must be int"),
    ("epoch = 3\n", "unknown setting 'epoch'"),
    ("optimizer = 'nadam'\n", "must be one of"),
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


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_presets_load(name):
    s = resolve_settings(preset=name)
    assert isinstance(s, Settings) and all(v.startswith(("preset:", "model", "default")) for v in s.sources.values())


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
    assert preset.for_extend().source_map()["epochs"] == f"config:{cfg}"
    explicit = resolve_settings(cfg, {"epochs": 5})
    assert explicit.explicit == {"epochs"} and explicit.for_extend().epochs == 5
    assert preset.for_extend().extend_epochs == explicit.for_extend().extend_epochs == -1  # spent: lineage says -1
    assert Settings(epochs=4).for_extend().epochs == 4  # no extend budget: epochs as given
    # `sources` is bookkeeping, not a setting: not in the lineage's config, not a TOML key
    assert "sources" not in explicit.to_dict()
    assert set(explicit.to_dict()) == set(dataclasses.asdict(Settings())) - {"sources"}
    for name in ("sources", "explicit"):
        (tmp_path / "bad.toml").write_text(f"{name} = 1\n")
        with pytest.raises(UsageError, match=f"unknown setting '{name}'"):
            load_toml(tmp_path / "bad.toml")


# --------------------------------------------------------------------------- extend: base checkpoint and recipe
def _base(model="transe", dim=8, params=None, config=None, lineage=None):
    """A checkpoint as extend gets it: tables, parameters, and the lineage record of the run that made it."""
    rel = {"relation_embeddings": np.zeros((2, dim), np.float32)} if model != "dot" else {}
    if lineage is None:
        lineage = [{"command": "train", "config": config or {}}]
    return Checkpoint(model=model, entities=["a", "b", "c"], relations=["r", "s"] if rel else [],
                      entity_tables={"entity_embeddings": np.zeros((3, dim), np.float32)}, relation_tables=rel,
                      params=params if params is not None else {"norm": 2, "gamma": 3.0}, lineage=lineage)


def test_carried_settings_are_the_training_ones_only():
    assert set(CARRIED) == {"batch_size", "lr", "negatives", "negative_chunk", "optimizer", "loss", "margin",
                            "adversarial_temperature", "regularization", "regularizer", "lr_decay"}
    assert not set(CARRIED) & set(EXTEND_KEYS)


def test_plain_extend_takes_the_bases_training_settings_and_the_models_recipe():
    trained_with = {**Settings(model="transe", dim=8, epochs=50, seed=7, threads=2).to_dict(), "lr": 0.05,
                    "batch_size": 64, "optimizer": "adagrad", "loss": "margin", "margin": 2.5, "init": "xavier",
                    "extend_epochs": 9}
    s = resolve_extend_settings(_base(config=trained_with)).for_extend()
    recipe = {k: v for k, v in load_preset("transe").items() if k in EXTEND_KEYS}
    assert recipe, "the transe preset has an extend recipe"
    assert (s.lr, s.batch_size, s.optimizer, s.loss, s.margin) == (0.05, 64, "adagrad", "margin", 2.5)
    assert (s.init, s.epochs) == (recipe["init"], recipe["extend_epochs"])  # the recipe, not the base's extend keys
    assert (s.seed, s.threads) == (0, 0)  # a run's seed and the machine's threads are not carried
    assert (s.dim, s.norm, s.gamma) == (8, 2, 3.0)  # the checkpoint's own, whatever the lineage says
    src = s.source_map()
    assert {k: src[k] for k in ("lr", "loss", "init", "epochs", "seed", "dim", "gamma", "model")} == {
        "lr": "base checkpoint", "loss": "base checkpoint", "init": "recipe:transe", "epochs": "recipe:transe",
        "seed": "default", "dim": "checkpoint", "gamma": "checkpoint", "model": "checkpoint"}


def test_extend_precedence_recipe_then_preset_then_config_then_options(tmp_path):
    base = _base(config={"lr": 0.05, "negatives": 7})
    cfg = tmp_path / "mine.toml"
    cfg.write_text("negatives = 9\nepochs = 4\n")
    s = resolve_extend_settings(base, cfg, {"lr": 0.2}, preset="ci-smoke").for_extend()
    smoke = load_preset("ci-smoke")
    assert (s.lr, s.negatives, s.batch_size, s.epochs) == (0.2, 9, smoke["batch_size"], 4)
    assert s.init == load_preset("transe")["init"]  # the recipe fills what neither file sets
    src = s.source_map()
    assert (src["lr"], src["negatives"], src["batch_size"], src["epochs"], src["init"]) == (
        "option", f"config:{cfg}", "preset:ci-smoke", f"config:{cfg}", "recipe:transe")
    # a file's epochs beats the recipe's extend_epochs; the recipe's beats the default epochs
    only_smoke = resolve_extend_settings(base, preset="ci-smoke").for_extend()
    assert only_smoke.epochs == smoke["epochs"]
    assert resolve_extend_settings(base, None, {"init": "xavier", "epochs": 6}).for_extend().epochs == 6


def test_another_models_preset_on_extend_keeps_the_checkpoints_model_and_says_so(caplog):
    s = resolve_extend_settings(_base(), preset="rotate")
    rotate = load_preset("rotate")
    assert (s.model, s.dim, s.gamma) == ("transe", 8, 3.0) and s.lr == rotate["lr"]
    assert "preset:rotate is for model rotate" in caplog.text and "a transe model" in caplog.text


def test_a_model_without_recipe_or_lineage_extends_at_its_defaults():
    s = resolve_extend_settings(_base("dot", params={}, lineage=[])).for_extend()
    assert not set(EXTEND_KEYS) & set(load_preset("dot"))  # the dot preset names no extend recipe
    want_lr = MODEL_DEFAULTS["dot"].get("lr", Settings.lr)
    assert (s.epochs, s.init, s.lr) == (Settings.epochs, Settings.init, want_lr)
    assert set(s.source_map().values()) <= {"default", "model", "checkpoint"}


def test_a_bad_lineage_is_left_out_not_fatal(caplog):
    lineage = [{"command": "train", "config": {"lr": 0.3, "batch_size": 16}},
               {"command": "extend", "config": {"lr": -1, "optimizer": "nadam", "negatives": 3, "bogus": 1}},
               {"command": "export"}]  # no config: skipped, the last record with one counts
    assert recorded_settings(lineage) == {"negatives": 3}
    assert "lr must be positive" in caplog.text and "must be one of" in caplog.text
    assert recorded_settings([]) == recorded_settings(["junk", {"config": "junk"}]) == {}


def test_a_batch_size_nobody_chose_is_fitted_to_small_data_and_a_chosen_one_is_kept(tmp_path):
    """At least 10 steps per epoch (never below 32) for a default, model or carried batch size; untouched from 10,240
    examples; a preset's, a config file's or an option's batch size is the user's."""
    s = resolve_settings()
    fitted = s.for_examples(720)
    assert (fitted.batch_size, fitted.source_map()["batch_size"]) == (72, "data")
    assert fitted.epochs == s.epochs and fitted.lr == s.lr  # nothing else moves
    assert s.for_examples(100).batch_size == 32 and s.for_examples(20).batch_size == 32
    assert s.for_examples(10_240) is s and s.for_examples(200_000) is s and s.for_examples(0) is s
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 512\n")
    assert resolve_settings(cfg).for_examples(720).batch_size == 512
    assert resolve_settings(overrides={"batch_size": 1024}).for_examples(720).batch_size == 1024
    assert resolve_settings(preset="ci-smoke").for_examples(720).batch_size == 256
    assert Settings(batch_size=64).for_examples(720).batch_size == 64  # set by hand, through the API
    assert Settings().for_examples(720).batch_size == 72
    # carried from the base (chosen for the base's data): fitted to the delta's
    base = _base(lineage=[{"config": {"batch_size": 2048}, "settings_source": {"batch_size": "option"}}])
    carried = resolve_extend_settings(base).for_extend()
    assert (carried.batch_size, carried.source_map()["batch_size"]) == (2048, "base checkpoint")
    assert carried.for_examples(700).batch_size == 70


def test_a_batch_size_fitted_to_the_bases_data_is_not_carried_to_its_extend():
    base = _base(lineage=[{"config": {"batch_size": 72, "lr": 0.02},
                           "settings_source": {"batch_size": "data", "lr": "option"}}])
    assert recorded_settings(base.lineage) == {"lr": 0.02}
    s = resolve_extend_settings(base).for_extend()
    assert (s.batch_size, s.source_map()["batch_size"]) == (Settings.batch_size, "default")
    assert s.for_examples(50_000).batch_size == Settings.batch_size
