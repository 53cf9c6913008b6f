"""`--logdir`: train and extend write standard TF2 scalar summaries, read back with TensorBoard's own reader
(its EventAccumulator, the scalars dashboard's source) or, without TensorBoard, TF's event iterator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from embretrain import api as et  # noqa: E402
from embretrain.cli import main  # noqa: E402
from embretrain.config import Settings  # noqa: E402

SMOKE = ["--dim", "8", "--batch-size", "32", "--negatives", "4"]


def read_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """``tag -> {step: value}`` of every scalar summary under ``logdir``; also checks they are scalars-plugin data."""
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        event_accumulator = None
    out: dict[str, dict[int, float]] = {}
    if event_accumulator is not None:
        acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag
            out[tag] = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
        return out
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars", value.tag
                out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def _cli(*args):
    result = CliRunner().invoke(main, [*map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_train_and_extend_write_loss_seconds_throughput_and_held_out_mrr(toy, tmp_path):
    t = json.loads(_cli("train", "--data", toy["train"], "--out", tmp_path / "base.h5", "--epochs", 3, *SMOKE,
                        "--logdir", tmp_path / "tb" / "train", "--json").stdout)
    s = json.loads(_cli("extend", "--ckpt", tmp_path / "base.h5", "--new-entities", toy["new"], "--data",
                        toy["delta"], "--out", tmp_path / "m.h5", "--epochs", 4, "--batch-size", 8,
                        "--valid-fraction", 0.3, "--patience", 0, "--logdir", tmp_path / "tb" / "extend",
                        "--json").stdout)
    assert s["logdir"] == str(tmp_path / "tb" / "extend")

    train = read_scalars(tmp_path / "tb" / "train")
    assert set(train) == {"loss", "seconds_per_epoch", "examples_per_second"}  # no held-out slice in train
    assert [train["loss"][e] for e in (1, 2, 3)] == pytest.approx(t["losses"], rel=1e-6)  # step = epoch

    ext = read_scalars(tmp_path / "tb" / "extend")
    assert set(ext) == {"loss", "seconds_per_epoch", "examples_per_second", "held_out_mrr"}
    assert [ext["loss"][e] for e in (1, 2, 3, 4)] == pytest.approx(s["losses"], rel=1e-6)
    # the stopper's sampled MRR, epoch 0 = the starting rows
    assert [ext["held_out_mrr"][e] for e in range(5)] == pytest.approx(s["early_stopping"]["mrr_by_epoch"], abs=1e-5)
    for e in (1, 2, 3, 4):
        assert 0 < ext["seconds_per_epoch"][e] < 60
        # examples/s is the epoch's training examples over its seconds
        assert ext["examples_per_second"][e] * ext["seconds_per_epoch"][e] == pytest.approx(s["examples_used"],
                                                                                             rel=1e-4)


def test_api_logdir_steps_are_epochs_and_the_run_is_unchanged(toy, tmp_path):
    """Logging is a hook beside training: the same seed gives the same rows with and without it."""
    settings = Settings(model="distmult", dim=8, epochs=2, batch_size=32, negatives=4)
    plain, _ = et.train(toy["train"], settings, progress=False)
    logged, summary = et.train(toy["train"], settings, progress=False, logdir=tmp_path / "run")
    assert np.array_equal(plain.entity_tables["entity_embeddings"], logged.entity_tables["entity_embeddings"])
    scalars = read_scalars(tmp_path / "run")
    assert [scalars["loss"][e] for e in (1, 2)] == pytest.approx(summary["losses"], rel=1e-6)
    assert summary["logdir"] == str(tmp_path / "run")


def test_logdir_needs_no_tensorboard_package(toy, tmp_path):
    """A training machine without TensorBoard (tensorflow-cpu does not bring it) still writes the scalars."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorboard'] = None\n"  # any import of it fails
            "from embretrain.cli import main\n"
            "main(sys.argv[1:])\n")
    args = ["train", "--data", toy["train"], "--out", tmp_path / "b.h5", "--epochs", 2, *SMOKE,
            "--logdir", tmp_path / "run"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tags = set()
    for path in (tmp_path / "run").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {v.tag for v in event.summary.value if v.metadata.plugin_data.plugin_name == "scalars"}
    assert tags == {"loss", "seconds_per_epoch", "examples_per_second"}
