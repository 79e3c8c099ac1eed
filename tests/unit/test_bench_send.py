"""bench send's breakdown: whose CPU is whose, read from /proc."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.send import PARTS, cpu_by_part

# A "worker" whose own child burns CPU for a while: the child counts with it.
BURN = "import time\nend = time.process_time() + 2\nwhile time.process_time() < end: pass"
WORKER = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_and_its_children_count_as_workers_and_this_process_as_the_dispatcher() -> None:
    worker = subprocess.Popen([sys.executable, "-c", WORKER])
    try:
        deadline = time.monotonic() + 10
        spent = cpu_by_part([worker.pid])
        while spent["workers"] < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
            spent = cpu_by_part([worker.pid])
    finally:
        worker.kill()
        worker.wait()
    assert set(spent) == set(PARTS)
    assert spent["workers"] >= 0.3  # the grandchild's burning, found through its parent
    assert spent["dispatcher"] > 0  # this process
    assert cpu_by_part([])["workers"] == 0
