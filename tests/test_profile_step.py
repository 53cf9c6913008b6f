"""scripts/profile_step.py: the step profile runs for real on a small graph and its parts add up to the step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_profile_splits_a_real_step_into_its_parts(tmp_path):
    lines = [f"e{i}\tr{i % 4}\te{(i * 7 + 3) % 300}" for i in range(2000)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "profile_step.py"), "--data", str(tmp_path / "train.txt"),
         "--set", "batch_size=256", "--set", "dim=16", "--chunks", "64,1", "--repeats", "1", "--calls", "2",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["settings"]["negative_chunk"] for r in rows] == [64, 1]
    for r in rows:
        assert r["settings"]["norm"] == 2 and r["settings"]["batch_size"] == 256  # the preset, then --set
        assert abs(sum(r["parts_ms"].values()) - r["step_ms"]) < 0.05 and r["step_ms"] > 0
        assert r["cumulative_ms"][-1] == r["step_ms"]
    assert "| sampling | lookup | scoring + loss | gradient | sparse update |" in proc.stdout
