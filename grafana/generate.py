"""Writes the dashboards (grafana/dashboards/*.json) and provisioning files
(grafana/provisioning/**.yaml) from the typed code in grafana/gen/.

    python grafana/generate.py            # rewrite the committed files in place
    python grafana/generate.py --out DIR  # write DIR/dashboards/... and DIR/provisioning/...

tests/grafana checks what it writes, and that regenerating reproduces the committed files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder is first on sys.path: `gen` is grafana/gen/.
from gen import battery_health, device_detail, overview, pipeline, provisioning
from gen.model import Dashboard

HERE = Path(__file__).resolve().parent
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "fleet-overview": overview.build,
    "device-detail": device_detail.build,
    "battery-health": battery_health.build,
    "pipeline": pipeline.build,
}


def files() -> dict[str, str]:
    """Every generated file's text by its path under grafana/."""
    out = {
        f"dashboards/{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }
    out |= {f"provisioning/{path}": text for path, text in provisioning.files().items()}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args(argv)
    for path, text in files().items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
