"""bench/audit_volume.py still runs: a --quick pass prints every figure and exits 0.

The figures are judged in docs/BENCHMARKS.md, not here; this checks what can
fail without a loaded machine making it flaky: the line counts, which follow
from the script's fixed probe results and ``audit.health_check_every``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "audit_volume.py"


@pytest.mark.timeout(120)
def test_quick_run_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=110
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.startswith("machine: "), out
    rows = {
        (fmt, int(every)): int(lines.replace(",", ""))
        for fmt, every, lines in re.findall(r"^(text|json)\s+(\d+)\s+([\d,]+)\s", out, re.M)
    }
    # 50 components for 12 checks each, scaled to a day of checks every 30 s.
    assert rows[("text", 1)] == rows[("json", 1)] == 50 * 2880
    # One check in 4 of the 45 steady components (3 of 12); of the 5 that turn
    # unhealthy and back every 3 checks, the first check and the 4 changes.
    assert rows[("text", 4)] == rows[("json", 4)] == (45 * 3 + 5 * 5) * 2880 // 12
    assert re.search(r"^ref: every check, text: \d+ bytes a line", out, re.M), out
