"""bench/webhook_storm.py still runs: a --quick storm prints every figure and exits 0.

Exit 0 means the run completed and its correctness checks held: every alert the
storm sent is in history, and each distinct firing alert that a rule matches ran
exactly one repair (or none, when it was resolved before its turn). The speed
figures are not judged here (a loaded CI runner would make that flaky);
docs/BENCHMARKS.md has the full runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "webhook_storm.py"
NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.timeout(90)
def test_quick_storm_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=80,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    for subject in ("pipeline-monitor", "bare aiohttp"):
        assert re.search(
            rf"^{subject}\s+p50\s+{NUMBER} ms\s+p99\s+{NUMBER} ms\s+max\s+{NUMBER} ms"
            rf"\s+{NUMBER} notifications/s\s+server CPU {NUMBER} s",
            out,
            re.M,
        ), f"no figure line for {subject}:\n{out}"
    assert re.search(rf"^throughput ratio: {NUMBER} of the bare handler's", out, re.M), out
    # --quick: 100 notifications carrying 2000 alerts, 200 of them distinct.
    assert "deliveries counted 2000/2000" in out, out
    assert "webhook answers: 100 x 200;" in out, out
    assert "metrics: pipeline_alerts_received_total 2000 (expected 2000)" in out, out
    assert "audit log: 200 ALERT_TRIGGERED lines" in out, out
    assert re.search(r"0 twice or more, 0 without a rule", out), out

    assert re.search(rf"^  p99 under 50 ms: {NUMBER} ms  (OK|MISSED)$", out, re.M), out
    assert re.search(
        rf"^  at least 0.5 of the bare handler's throughput: {NUMBER}  (OK|MISSED)$", out, re.M
    ), out
    assert re.search(r"^  every alert recorded: OK$", out, re.M), out
    assert re.search(r"^  exactly one repair per distinct alert: OK$", out, re.M), out


@pytest.mark.timeout(90)
def test_several_runs_print_each_run_and_the_medians() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--notifications", "20", "--alerts", "200", "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=80,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^run 1 of 2:$", out, re.M) and re.search(r"^run 2 of 2:$", out, re.M), out
    assert out.count("deliveries counted 200/200") == 2, out
    assert re.search(rf"^  throughput ratio {NUMBER} \({NUMBER}-{NUMBER}\)$", out, re.M), (
        f"no median line:\n{out}"
    )
    assert re.search(
        rf"^  p99 under 50 ms: {NUMBER} ms \(median of the runs\)  (OK|MISSED)$", out, re.M
    ), out
    assert re.search(r"^  every alert recorded: OK \(every run\)$", out, re.M), out
