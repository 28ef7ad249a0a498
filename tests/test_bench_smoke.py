"""bench/probe_scale.py still runs: a --quick pass prints every figure and exits 0.

The figures themselves are not judged here (a loaded CI runner would make that
flaky); docs/BENCHMARKS.md has the full runs. prometheus-blackbox-exporter must
be installed (the Makefile's test-deps does it): without it there is no ratio.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "probe_scale.py"
NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.timeout(120)
def test_quick_run_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    for subject in ("pipeline exporter", "blackbox_exporter", "bare aiohttp loop"):
        row = re.search(rf"^{subject}\s+wall s \(all results in\)((?:\s+{NUMBER})+)$", out, re.M)
        assert row, f"no per-cycle wall times for {subject}:\n{out}"
        assert len(row.group(1).split()) == 2, out  # --quick runs two cycles
        summary = re.search(rf"^{subject}(?:\s+{NUMBER}){{6}}$", out, re.M)
        assert summary, f"no summary line for {subject}:\n{out}"
    ok_rows = re.findall(r"^\s+probes ok((?:\s+\d+)+)$", out, re.M)
    assert len(ok_rows) == 3, out
    assert all(v == "100" for row in ok_rows for v in row.split()), out
    assert "WARNING" not in out, out

    assert re.search(rf"aim: cycle wall time well inside the interval: slowest {NUMBER} s", out)
    assert re.search(rf"aim: CPU per probe ours/blackbox_exporter ratio: {NUMBER} \(", out), out
    assert re.search(rf"ref: CPU per probe ours/bare aiohttp loop ratio: {NUMBER}", out), out
    assert re.search(rf"aim: peak RSS of our exporter: {NUMBER} MB", out), out
    assert re.search(r"our audit log: 20 HEALTH_CHECK lines", out), out
