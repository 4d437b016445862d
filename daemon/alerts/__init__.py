"""The alert engine: rules over the validated telemetry stream, with an alert lifecycle.

``rules`` holds the pure per-reading conditions (thresholds, hysteresis, docking),
``lifecycle`` the per-(device, rule) state machine (pending, firing, resolved;
repeats, escalation, flap damping), ``engine`` the inputs (readings, availability,
ticks, acknowledgements, silences) and ``store`` the SQLite file that carries the
state across restarts. Every input takes an explicit ``now_ms``: the engine never
reads a clock, so tests drive it with a controllable one.
"""

from fleet.daemon.alerts.engine import AlertEngine
from fleet.daemon.alerts.model import Action, AlertEvent, AlertSnapshot, Silence
from fleet.daemon.alerts.text import alert_json

__all__ = ["Action", "AlertEngine", "AlertEvent", "AlertSnapshot", "Silence", "alert_json"]
