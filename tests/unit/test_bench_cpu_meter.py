"""The peers benchmark's CPU per job (bench/peers.py `CpuMeter`): a worker's CPU counted
from the drain's first record to its last, not before, and no figure for a worker that
is gone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers import CpuMeter

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/schedstat").exists(), reason="reads /proc/<pid>/task/*/schedstat"
)

# Burns CPU before its first line (start-up, not to be counted), then on each "burn"
# line read burns `seconds` of CPU time and answers "burnt".
BURNER = """
import sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
burn(0.3)
print("ready", flush=True)
for line in sys.stdin:
    burn(float(line))
    print("burnt", flush=True)
"""


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"  # its start-up's CPU is spent
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def burn(proc: subprocess.Popen[str], seconds: float) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{seconds}\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "burnt\n"


def test_cpu_per_job_counts_from_the_first_record_on(burner: subprocess.Popen[str]) -> None:
    meter = CpuMeter([burner], server=False)
    assert meter.per_job_us(5) == (None, None)  # no record seen: nothing measured yet
    meter.seen(0)
    burn(burner, 0.2)  # before the first record: not counted
    meter.seen(50)  # the first sample
    meter.seen(60)  # later calls change nothing
    burn(burner, 0.4)
    worker, server = meter.per_job_us(150)  # 100 jobs since the first sample
    assert server is None
    assert worker is not None
    # 0.4 s over 100 jobs is 4,000 µs per job (the 0.2 s before would add 2,000).
    assert 3_950 <= worker <= 4_600, worker


def test_no_figure_for_a_worker_that_exited(burner: subprocess.Popen[str]) -> None:
    meter = CpuMeter([burner], server=False)
    meter.seen(1)
    burner.kill()
    burner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{burner.pid}").exists():  # reaped: its entry goes
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert meter.per_job_us(11) == (None, None)
