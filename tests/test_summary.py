"""The summary contract: the keys (and their order) of train/extend summaries and lineage records.

The JSON summary is read by people's cron monitors and the lineage by `inspect`: one RunSummary renders
both, the "nothing to do" summary of a rerun included, and no library error names a CLI flag.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from embretrain import api as et  # noqa: E402
from embretrain.config import Settings  # noqa: E402
from embretrain.errors import UsageError  # noqa: E402

FAST = dict(dim=8, epochs=1, batch_size=32, negatives=4)
TIMINGS = ["epochs", "final_loss", "losses", "epoch_seconds", "seconds"]
COUNTS = ["entities_before", "entities_added", "entities_already_known", "entities_duplicate", "relations_before",
          "relations_added", "relations_already_known", "relations_duplicate", "examples_used",
          "examples_dropped_no_new", "examples_skipped_unknown", "entities_untrained", "entities_pending",
          "entities_pending_trained", "examples_per_new_entity"]


def test_train_and_extend_summaries_and_lineage_have_their_keys_in_order(toy):
    base, s_train = et.train(toy["train"], Settings(model="transe", **FAST), progress=False)
    assert list(s_train) == ["command", "model", "entities", "relations", "examples", *TIMINGS, "settings_source"]
    assert list(s_train["seconds"]) == ["load_data", "train"]
    rec = base.lineage[-1]
    assert list(rec)[:6] == ["time", "tool", "tool_version", "command", "argv", "entities_before"]
    assert rec["entities_added"] == s_train["entities"] and rec["examples"] == s_train["examples"]

    settings = Settings(model="transe", init="neighbors", valid_fraction=0.3, **FAST)
    grown, summary = et.extend(base, toy["new"], toy["delta"], settings, replay=toy["train"], progress=False)
    assert list(summary) == ["command", "model", *COUNTS, "replay_examples", "replay_skipped", *TIMINGS,
                             "init_placed_from_neighbors", "early_stopping", "settings_source"]
    held = summary["early_stopping"]["held_out"]
    # examples_used counts what was trained on: the held-out slice is not
    assert summary["examples_used"] + held + summary["examples_dropped_no_new"] == len(toy["delta_rows"])
    rec = grown.lineage[-1]
    assert {k: rec[k] for k in COUNTS} == {k: summary[k] for k in COUNTS}
    assert rec["config"]["extend_epochs"] == -1 and "sources" not in rec["config"]
    assert rec["settings_source"] == summary["settings_source"] and set(rec["settings_source"]) == set(rec["config"])
    assert set(rec["inputs_sha256"]) == {str(toy["new"]), str(toy["delta"]), str(toy["train"])}

    again, nothing = et.extend(grown, toy["new"], toy["delta"], settings, progress=False)
    assert again is grown
    assert list(nothing) == ["command", "model", "nothing_to_do", "entities_before", "entities_added",
                             "entities_already_known", "relations_before", "relations_added",
                             "relations_already_known", "examples_dropped_no_new", "examples_skipped_unknown",
                             "entities_pending", "seconds"]
    assert nothing["entities_already_known"] == len(toy["new_names"]) and nothing["seconds"]["train"] == 0.0


def test_pair_model_lever_errors_name_settings_not_flags():
    ckpt, _ = et.train([("a", "b"), ("b", "c")], Settings(model="dot", dim=4, epochs=1), progress=False)
    settings = Settings(model="dot", dim=4, epochs=1, valid_fraction=0.5)
    with pytest.raises(UsageError, match=r"^valid_fraction \(early stopping\) needs a triple model") as err:
        et.extend(ckpt, ["d"], [("d", "a"), ("d", "b")], settings)
    assert "--" not in str(err.value)
    with pytest.raises(UsageError, match="^replay needs a triple model"):
        et.extend(ckpt, ["d"], [("d", "a")], Settings(model="dot", dim=4, epochs=1), replay=[("a", "r", "b")])


def test_an_api_caller_gets_the_clis_epochs(toy, tmp_path):
    """An explicit epochs beats a preset's extend_epochs in the API too (it was decided only in the CLI)."""
    from embretrain.config import resolve_settings

    base, _ = et.train(toy["train"], Settings(model="transe", **FAST), progress=False)
    cfg = tmp_path / "p.toml"
    cfg.write_text("extend_epochs = 1\nbatch_size = 32\nnegatives = 4\n")
    _, preset = et.extend(base, toy["new"], toy["delta"], resolve_settings(cfg, model="transe"), progress=False)
    _, given = et.extend(base, toy["new"], toy["delta"], resolve_settings(cfg, {"epochs": 2}, model="transe"),
                         progress=False)
    assert (preset["epochs"], given["epochs"]) == (1, 2)
    assert np.isfinite(given["final_loss"])


def test_lineage_config_records_the_models_real_width_and_parameters(toy, tmp_path):
    """extend of a 16-d L2 TransE with default settings used to record dim 100 and norm 1 (the Settings defaults)."""
    base, _ = et.train(toy["train"], Settings(model="transe", **{**FAST, "dim": 16}, norm=2, gamma=6.0),
                       progress=False)
    assert {k: base.lineage[-1]["config"][k] for k in ("model", "dim", "norm", "gamma")} == \
        {"model": "transe", "dim": 16, "norm": 2, "gamma": 6.0}
    et.save(base, tmp_path / "base.h5")
    loaded = et.load(tmp_path / "base.h5")
    grown, _ = et.extend(loaded, toy["new"], toy["delta"], Settings(model="transe", epochs=1), progress=False)
    config = grown.lineage[-1]["config"]
    assert (config["dim"], config["norm"], config["gamma"]) == (16, 2, 6.0)
    assert "tied" not in config  # a pair model's option: a triple model has no such thing

    pairs = [("a", "b"), ("b", "c"), ("c", "a")]
    dot, _ = et.train(pairs, Settings(model="dot", dim=6, epochs=1, tied=True), progress=False)
    grown, _ = et.extend(dot, ["d"], [("d", "a")], Settings(model="dot", epochs=1), progress=False)
    config = grown.lineage[-1]["config"]
    assert (config["model"], config["dim"], config["tied"]) == ("dot", 6, True)
    assert "norm" not in config and "gamma" not in config  # TransE's parameters mean nothing for dot
