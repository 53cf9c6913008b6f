"""The registry is the one list of models: every registered scorer has all its parts, and what is generated
from the registry (settings defaults, checkpoint parameters, CLI choices, presets, tests) follows it.

A scorer missing a part fails here, naming the model and the part, before it can fail a user's run.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embretrain.config import MODEL_DEFAULTS, MODEL_PARAMS, PRESETS, Settings, load_preset, resolve_settings
from embretrain.errors import CheckpointError
from embretrain.models import MODELS, Scorer, get_model, model_names

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in dataclasses.fields(Settings)} - {"sources"}
# parts a model must declare, itself or through a family base in base.py (only Scorer's would mean it forgot them)
OWN_PARTS = ("name", "param_names", "defaults", "preset", "estimate", "relation_width")


def _declared(cls: type[Scorer], part: str) -> bool:
    return any(part in vars(k) for k in cls.__mro__ if k is not Scorer and issubclass(k, Scorer))


@pytest.mark.parametrize("name", model_names())
def test_scorer_declares_every_part(name):
    cls = MODELS[name]
    missing = [p for p in OWN_PARTS if not _declared(cls, p)]
    assert not missing, f"{name}: missing {missing} (see embretrain/models/base.py)"
    assert cls.name == name and cls.kind in ("triple", "pair")
    for method in ("score", "tail_query", "head_query", "match"):
        assert getattr(cls, method) is not getattr(Scorer, method), f"{name}: no {method}"


@pytest.mark.parametrize("name", model_names())
def test_parameters_and_defaults_are_settings_and_reach_config(name):
    cls = MODELS[name]
    assert set(cls.param_names) <= FIELDS, f"{name}: parameters that are no Settings field"
    assert set(cls.defaults) <= FIELDS, f"{name}: defaults that are no Settings field"
    assert MODEL_PARAMS[name] == cls.param_names and MODEL_DEFAULTS[name] == dict(cls.defaults)
    settings = resolve_settings(None, {"model": name})
    assert all(getattr(settings, k) == v for k, v in cls.defaults.items())
    get_model(name, {k: getattr(settings, k) for k in MODEL_PARAMS[name]})  # its defaults are valid parameters


@pytest.mark.parametrize("name", model_names())
def test_estimate_is_a_closed_form_or_an_explicit_none(name):
    """Triple models without a closed form keep Glorot rows (tests/test_init.py); one that has it returns a row
    per triple, from either side."""
    cls = MODELS[name]
    if cls.estimate is None:
        return
    assert cls.kind == "triple", f"{name}: a pair model's estimate would never be called"
    rng = np.random.default_rng(0)
    d = 8
    w = get_model(name).relation_width(d)
    h, r, t = rng.normal(size=(5, d)), rng.normal(size=(5, w)), rng.normal(size=(5, d))
    for side in ("head", "tail"):
        est = cls.estimate(h, r, t, side)
        assert est.shape == (5, d) and np.all(np.isfinite(est)), (name, side)


@pytest.mark.parametrize("name", model_names())
def test_shape_contract_is_consistent(name):
    scorer = get_model(name)
    for d in (2, 8, 64):
        scorer.check_dim(d)
        scorer.check_widths(d, scorer.relation_width(d), d if scorer.kind == "pair" else None)
    wrong = (scorer.relation_width(8) or 0) + 3
    with pytest.raises(CheckpointError, match=f"^{name}: .*relation_embeddings"):
        scorer.check_widths(8, wrong, None)


@pytest.mark.parametrize("name", model_names())
def test_preset_is_shipped_and_names_its_model_or_is_explicitly_none(name):
    preset = MODELS[name].preset
    if preset is None:
        return
    assert preset in PRESETS, f"{name}: preset {preset!r} is not in embretrain/presets/"
    values = load_preset(preset)
    assert values.get("model") == name, f"embretrain/presets/{preset}.toml must set model = {name!r}"


def test_every_preset_names_a_registered_model():
    assert PRESETS == tuple(sorted(p.stem for p in (ROOT / "embretrain" / "presets").glob("*.toml")))
    for name in PRESETS:
        model = load_preset(name).get("model")
        assert model is None or model in MODELS, f"{name}.toml: unknown model {model!r}"


def test_every_model_has_its_own_tests():
    """Parametrised tests cover every model; each also needs a test of its own (known values, what it learns)."""
    tree = ast.parse((ROOT / "tests" / "test_models.py").read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    lacking = [m for m in model_names() if not any(n.startswith(f"test_{m}_") for n in names)]
    assert not lacking, f"tests/test_models.py has no test_<model>_... for {lacking}"


def test_cli_choices_are_the_registry():
    from embretrain.cli import main

    checked = 0
    for command in main.commands.values():
        for param in command.params:
            if param.name == "model":
                assert tuple(param.type.choices) == model_names(), command.name
                checked += 1
    assert checked >= 2  # train's --model and the TF/Keras load options' --model


def test_reading_the_registry_imports_neither_tensorflow_nor_numpy():
    """`embretrain --help` reads the registry for its choices: it must stay instant."""
    code = "import sys, embretrain.cli; print(sorted(m for m in ('tensorflow', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
