"""Presets travel with the tool, and `extend` with no options is the best `extend`.

The presets live in the package (embretrain/presets/*.toml): `--preset NAME` selects one wherever embretrain is
installed, a wheel carries them, and a copy installed from that wheel finds them from any working directory.
A plain `extend` trains the new rows the way the base was trained (its lineage, or the sidecar of a TF/Keras
file) and follows the model's extend recipe; its summary and lineage say where each setting came from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from embretrain.cli import main
from embretrain.config import EXTEND_KEYS, PRESETS, load_preset

ROOT = Path(__file__).resolve().parents[1]
PRESET_DIR = ROOT / "embretrain" / "presets"
# the base's training settings: none of them a default, so carrying them over is visible
BASE_ARGS = ("--model", "transe", "--dim", "8", "--epochs", "2", "--lr", "0.05", "--batch-size", "32",
             "--negatives", "4", "--optimizer", "adagrad", "--adversarial-temperature", "0.5", "--seed", "3")
CARRIED_VALUES = {"lr": 0.05, "batch_size": 32, "negatives": 4, "optimizer": "adagrad", "adversarial_temperature": 0.5}


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_help_offers_every_shipped_preset():
    shipped = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
    assert PRESETS == shipped and {"transe", "ci-smoke"} <= set(shipped)
    for command in ("train", "extend"):
        out = run(command, "--help").output
        assert f"--preset [{'|'.join(shipped)}]" in out, command


def test_unknown_preset_is_a_usage_error(toy):
    r = run("train", "--data", toy["train"], "--out", toy["dir"] / "m.h5", "--preset", "transE")
    assert r.exit_code == 2 and "'transE' is not one of" in r.output
    assert not (toy["dir"] / "m.h5").exists()


def test_train_with_a_preset_and_a_config_file_refining_it(toy):
    cfg = toy["dir"] / "mine.toml"
    cfg.write_text("lr = 0.07\nepochs = 1\n")
    r = run("train", "--data", toy["train"], "--out", toy["dir"] / "m.h5", "--preset", "ci-smoke", "--config", cfg,
            "--negatives", 3, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    smoke = load_preset("ci-smoke")
    src = summary["settings_source"]
    assert summary["epochs"] == 1
    assert (src["epochs"], src["lr"], src["negatives"]) == (f"config:{cfg}", f"config:{cfg}", "option")
    assert src["dim"] == src["batch_size"] == "preset:ci-smoke"
    with h5py.File(toy["dir"] / "m.h5") as f:
        assert f["entity_embeddings"].shape[1] == smoke["dim"]
        record = json.loads(f["lineage"][-1])
    assert record["config"]["lr"] == 0.07 and record["config"]["negatives"] == 3
    assert record["settings_source"] == src


# --------------------------------------------------------------------------- the headline extend
def _lineage(path: Path) -> list[dict]:
    with h5py.File(path) as f:
        return [json.loads(x) for x in f["lineage"][()]]


def test_plain_extend_trains_like_the_base_and_follows_the_models_recipe(toy):
    d = toy["dir"]
    r = run("train", "--data", toy["train"], "--out", d / "base.h5", *BASE_ARGS)
    assert r.exit_code == 0, r.output
    headline = ("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"])
    r = run(*headline, "--out", d / "merged.h5", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    recipe = {k: v for k, v in load_preset("transe").items() if k in EXTEND_KEYS}
    src = summary["settings_source"]
    # the base's training settings, the recipe's start and epochs, the checkpoint's model and parameters
    assert {k: src[k] for k in CARRIED_VALUES} == dict.fromkeys(CARRIED_VALUES, "base checkpoint")
    assert src["init"] == src["epochs"] == "recipe:transe" and src["seed"] == "default"
    assert src["model"] == src["dim"] == src["gamma"] == "checkpoint"
    assert summary["epochs"] == recipe["extend_epochs"]
    if recipe["init"] == "xavier":  # the recipe's start decides whether any row is placed from neighbours
        assert "init_placed_from_neighbors" not in summary
    else:
        assert summary["init_placed_from_neighbors"] == len(toy["new_names"]) - 1  # the last has no triple
    record = _lineage(d / "merged.h5")[-1]
    assert {k: record["config"][k] for k in CARRIED_VALUES} == CARRIED_VALUES
    assert record["config"]["init"] == recipe["init"] and record["config"]["seed"] == 0
    assert record["settings_source"] == src
    with h5py.File(d / "base.h5") as a, h5py.File(d / "merged.h5") as b:
        assert np.array_equal(b["entity_embeddings"][: a["entity_embeddings"].shape[0]], a["entity_embeddings"][:])

    # options, a preset and a config file sit above the base and the recipe
    cfg = d / "mine.toml"
    cfg.write_text("negatives = 6\n")
    r = run(*headline, "--out", d / "other.h5", "--preset", "ci-smoke", "--config", cfg, "--init", "xavier", "--json")
    assert r.exit_code == 0, r.output
    other = json.loads(r.stdout)
    src = other["settings_source"]
    assert other["epochs"] == load_preset("ci-smoke")["epochs"] and "init_placed_from_neighbors" not in other
    assert (src["epochs"], src["lr"], src["negatives"], src["init"], src["optimizer"]) == (
        "preset:ci-smoke", "preset:ci-smoke", f"config:{cfg}", "option", "base checkpoint")


def test_a_grown_checkpoint_passes_the_settings_on_night_after_night(toy):
    """The last record counts: an extend's record holds what it trained with, the next plain extend carries it."""
    d = toy["dir"]
    assert run("train", "--data", toy["train"], "--out", d / "base.h5", *BASE_ARGS).exit_code == 0
    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"],
            "--out", d / "n1.h5", "--lr", "0.02")
    assert r.exit_code == 0, r.output
    night2 = d / "new2.tsv"
    night2.write_text("m000\n")
    delta2 = d / "delta2.tsv"
    delta2.write_text("m000\tr0\te001\ne002\tr1\tm000\n")
    r = run("extend", "--ckpt", d / "n1.h5", "--new-entities", night2, "--data", delta2, "--out", d / "n2.h5",
            "--json")
    assert r.exit_code == 0, r.output
    src = json.loads(r.stdout)["settings_source"]
    config = _lineage(d / "n2.h5")[-1]["config"]
    assert config["lr"] == 0.02 and config["optimizer"] == "adagrad" and src["lr"] == "base checkpoint"


def test_a_keras_checkpoints_sidecar_carries_the_settings_too(toy):
    d = toy["dir"]
    assert run("train", "--data", toy["train"], "--out", d / "base.h5", *BASE_ARGS).exit_code == 0
    keras_out = d / "grown.weights.h5"
    r = run("extend", "--ckpt", d / "base.h5", "--new-entities", toy["new"], "--data", toy["delta"],
            "--out", keras_out, "--out-format", "keras", "--negatives", "5")
    assert r.exit_code == 0, r.output
    sidecar = json.loads(Path(f"{keras_out}.embretrain.json").read_text())
    assert sidecar["lineage"][-1]["config"]["negatives"] == 5
    night2 = d / "new2.tsv"
    night2.write_text("m000\n")
    delta2 = d / "delta2.tsv"
    delta2.write_text("m000\tr0\te001\n")
    r = run("extend", "--ckpt", keras_out, "--new-entities", night2, "--data", delta2,
            "--out", d / "again.weights.h5", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["settings_source"]["negatives"] == "base checkpoint"
    again = json.loads(Path(f"{d / 'again.weights.h5'}.embretrain.json").read_text())["lineage"][-1]["config"]
    assert again["negatives"] == 5 and again["lr"] == 0.05


# --------------------------------------------------------------------------- a real non-editable install
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the build leaves nothing in the repository)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "embretrain", src / "embretrain", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: the setuptools beside TensorFlow builds it, no index is asked
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("embretrain-*.whl")
    return whl


def test_the_wheel_ships_every_preset(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("embretrain/presets/")) == [
        f"embretrain/presets/{p.name}" for p in sorted(PRESET_DIR.glob("*.toml"))]


def test_an_installed_copy_finds_its_presets_outside_the_repository(wheel, tmp_path):
    """pip install of the wheel (not editable) into a fresh venv; run from a folder with no configs/ near it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    # the dependencies (click, numpy, ...) from this environment's site-packages, after the venv's own: a path
    # entry, so this environment's editable embretrain (a .pth hook there) is not seen
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    code = ("import embretrain, embretrain.config as c; "
            "print(embretrain.__file__); print(c.resolve_settings(preset='ci-smoke').epochs)")
    out = subprocess.run([str(python), "-c", code], cwd=cwd, check=True, capture_output=True, text=True).stdout.split()
    assert Path(out[0]).is_relative_to(site) and int(out[1]) == load_preset("ci-smoke")["epochs"]
    help_text = subprocess.run([str(venv / "bin" / "embretrain"), "train", "--preset", "ci-smoke", "--help"], cwd=cwd,
                               check=True, capture_output=True, text=True).stdout
    assert f"--preset [{'|'.join(PRESETS)}]" in help_text
