"""What the bench's processes share and the bare baseline may import: nothing of the fleet.

`_baseline.py` must stay bare paho. Importing `tests.harness.fleet` (as `_common` does)
imports `fleet.daemon.mqtt`, which installs the collector's lean PUBLISH decoder into paho for
the whole process - the baseline would then measure our paho, not paho.
"""

from __future__ import annotations

import psutil

PREFIX = "fleet"


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process) since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)
