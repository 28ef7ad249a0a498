"""bench/mttr.py still runs end to end: every stage timed, both aims printed.

The figures are not judged here (a loaded runner would make that flaky);
docs/BENCHMARKS.md has full runs. One round of each kind takes about 20 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "mttr.py"
NUMBER = r"[+-]?\d+\.\d\d"


@pytest.mark.timeout(120)
def test_one_round_times_every_stage() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # One MTTR round, then one detection round (restart held until both alerts came).
    for number, kind in ((1, "mttr"), (2, "detect")):
        assert re.search(
            rf"^round {number} \({kind}, validation_{kind}_1\): noticed {NUMBER} s,"
            rf" firing {NUMBER} s, .*repaired {NUMBER} s, healthy {NUMBER} s,"
            rf" resolved {NUMBER} s$",
            out,
            re.M,
        ), out
    assert re.search(rf"^round 2 \(detect, .*blackbox {NUMBER} s", out, re.M), out
    for stage in (
        "fault -> noticed by the probe",
        "fault -> firing at the webhook",
        "firing at the webhook -> repair finished",
        "fault -> healthy on /metrics",
        "fault -> resolved at the webhook",
        "fault -> firing at the webhook (ours)",
        "fault -> firing at the capture (blackbox_exporter)",
        "ours - blackbox_exporter, paired",
    ):
        assert re.search(rf"^{re.escape(stage)}\s+{NUMBER}", out, re.M), f"{stage}:\n{out}"
    assert re.search(rf"aim: our detection within 1 s of blackbox_exporter's: {NUMBER} s", out)
    assert re.search(rf"aim: fault-to-healthy under 10 s \(median\): {NUMBER} s", out), out
    assert "FAILED" not in out, out
