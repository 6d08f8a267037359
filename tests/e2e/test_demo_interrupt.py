"""``make demo`` interrupted with Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_ctrl_c_during_the_demo_stops_every_process_it_started(tmp_path: Path) -> None:
    # A shell that starts a job in the background (`make test &`) ignores SIGINT for it, and
    # children inherit that: the demo would never see the Ctrl-C. Give it a terminal's default.
    demo = subprocess.Popen(
        [sys.executable, "-m", "ponder_localstack.demo"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "PONDER_DEMO_OPTIONS": "{replay_seconds: 30, settle_seconds: 5}"})
    assert demo.stdout is not None
    started: set[int] = set()
    deadline = time.monotonic() + 180
    scanned_at = 0.0
    for line in demo.stdout:
        # The demo's processes live for minutes: one scan of /proc a second finds them all.
        if time.monotonic() - scanned_at > 1.0:
            started |= children_of(demo.pid)
            scanned_at = time.monotonic()
        # "in", not startswith: a child writing to the shared stdout may run into the line
        if "== 2. helm install" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    started |= children_of(demo.pid)
    assert len(started) >= 5, "the control plane and Prometheus were running"
    assert demo.poll() is None, "the demo ended before it could be interrupted"
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode == 130, output[-2000:]
    assert "every process the demo started has been stopped" in output
    left = [pid for pid in started if alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
