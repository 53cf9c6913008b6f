"""Golden outputs: the same inputs and seeds give the same bytes, run after run and release after release.

Every run of ``tests/golden/runs.py`` (train and extend for each model, the optimizers, margin loss,
``--negative-chunk 1``, ``--old-rows on-disk``, ``--init neighbors``, ``--valid-fraction``, ``--replay``,
``--new-relations``, and TF1 / TF2 / Keras checkpoints written by the users' own programs and grown) is
executed through the CLI on the committed inputs in ``tests/golden/``; the sha256 of every table's raw
float32 bytes and of every vocabulary must equal ``tests/golden/expected.json``. A refactoring must pass
it unchanged.

Regenerate ``expected.json`` only when a change of output bytes is intended, and state which runs change
and why in the commit message:

    python scripts/record_golden.py

(it runs the list twice and refuses to write if the two passes disagree). The digests hold for one
machine and TensorFlow version: a different CPU or TensorFlow release may change the last bits of trained
rows (not of frozen ones), and then the file is re-recorded there, not edited by hand.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")

from golden import runs  # noqa: E402  (tests/golden/runs.py: the one run list, shared with the recorder)

NAMES = [run.name for run in runs.RUNS]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict]:
    """Every run once, in order (later runs grow earlier runs' outputs): ``{name: digests}``."""
    return runs.run_all(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    return json.loads(runs.EXPECTED.read_text(encoding="utf-8"))


def test_expected_covers_exactly_the_run_list(expected):
    assert len(set(NAMES)) == len(NAMES), "run names must be unique"
    assert sorted(expected) == sorted(NAMES), "run list changed: re-record with scripts/record_golden.py"


@pytest.mark.parametrize("name", NAMES)
def test_same_bytes_as_recorded(name, outputs, expected):
    got = outputs[name]
    assert "error" not in got, got.get("error")
    want = expected[name]
    differ = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not differ, f"{name}: " + "; ".join(f"{k}: got {got.get(k)}, recorded {want.get(k)}" for k in differ)


@pytest.mark.parametrize(("on_disk", "in_memory"), [
    ("transe-on-disk", "transe-adam-extend"),
    ("transe-on-disk-neighbors", "transe-neighbors"),
    ("dot-untied-on-disk", "dot-untied-adam-extend"),
])
def test_on_disk_writes_the_file_in_memory_writes(on_disk, in_memory, outputs):
    assert outputs[on_disk] == outputs[in_memory]


@pytest.mark.parametrize("lever", ["transe-chunk1", "transe-valid", "transe-replay", "transe-neighbors",
                                   "transe-new-relations"])
def test_each_lever_changes_the_new_rows(lever, outputs):
    """Not vacuous: each option really reaches training (a golden that ignored it would still pass)."""
    plain = outputs["transe-adam-extend"]
    assert outputs[lever]["entity_embeddings"] != plain["entity_embeddings"]
    assert outputs[lever]["entities"] == plain["entities"]
