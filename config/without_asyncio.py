"""pydantic-settings imported without loading asyncio into the collector.

pydantic-settings (2.8 and later) imports asyncio at its top for one use: `CliApp.run` of an
async command, which this project never calls. The collector has no event loop, and asyncio
with what it pulls in is ~2 MB of its 60 MB budget (`tests/bench/bench_collector.py --only 3`).
So while pydantic-settings is imported, and only then, `asyncio` names a stand-in that loads
the real module on first use; every other importer, before or after, gets the real one. Were
pydantic-settings ever to use asyncio, it would get the real module, just not at start-up.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

_LOCK = threading.Lock()


class _OnFirstUse(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        with _LOCK:  # out of sys.modules once, if still in it, so the real module loads
            if sys.modules.get("asyncio") is self:
                del sys.modules["asyncio"]
        # The import system's locks make this safe from any thread, mid-import included.
        return getattr(importlib.import_module("asyncio"), name)


def _import() -> None:
    if "pydantic_settings" in sys.modules or "asyncio" in sys.modules:
        return  # too late to spare it, or nothing to spare
    stand_in = _OnFirstUse("asyncio")
    sys.modules["asyncio"] = stand_in
    try:
        importlib.import_module("pydantic_settings")
    finally:
        with _LOCK:
            if sys.modules.get("asyncio") is stand_in:
                del sys.modules["asyncio"]


_import()
