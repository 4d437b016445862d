"""pydantic-settings is imported without asyncio, and still gets the real one when it uses it."""

from __future__ import annotations

import subprocess
import sys

from tests.harness.paths import REPO

_LATER = """
import sys, threading
import fleet.config
import pydantic_settings.main as main
assert "asyncio" not in sys.modules, "asyncio loaded with the config"
found = []
threads = [threading.Thread(target=lambda: found.append(main.asyncio.run)) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import asyncio
assert type(sys.modules["asyncio"]).__name__ == "module"
assert found == [asyncio.run] * 8, found

async def answer():
    await asyncio.sleep(0)
    return 42

assert main.asyncio.run(answer()) == 42
print("ok")
"""

_BEFORE = """
import asyncio
import fleet.config
import pydantic_settings.main as main
assert main.asyncio is asyncio
print("ok")
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=REPO, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode().strip()


def test_the_config_loads_without_asyncio_and_pydantic_settings_gets_it_on_first_use():
    assert _run(_LATER) == "ok"


def test_with_asyncio_already_loaded_pydantic_settings_has_the_module_itself():
    assert _run(_BEFORE) == "ok"
