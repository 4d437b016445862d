"""An acknowledgement counts only for the alert's own site (the engine's side of the rule)."""

from __future__ import annotations

from fleet.config.alerts import AlertSettings
from fleet.daemon.alerts import Action, AlertEngine
from tests.daemon.alerts.test_alert_engine import MIN, T0, reading


def firing_engine() -> AlertEngine:
    """sw-03 battery_critical firing at allingtown, sw-04's at westhaven."""
    e = AlertEngine(AlertSettings.model_validate({"limits": {"disabled": ["offline"]}}))
    e.observe(reading(T0, "sw-03", pct=5.0), T0)
    e.observe(reading(T0, "sw-04", pct=5.0, site="westhaven"), T0)
    assert {(a.device, a.site) for a in e.alerts(firing_only=True)} >= {
        ("sw-03", "allingtown"),
        ("sw-04", "westhaven"),
    }
    return e


def test_alert_site_is_the_alerts_own_and_none_without_an_alert():
    e = firing_engine()
    assert e.alert_site("sw-03", "battery_critical") == "allingtown"
    assert e.alert_site("sw-04", "battery_critical") == "westhaven"
    assert e.alert_site("sw-03", "overtemp") is None
    assert e.alert_site("sw-99", "battery_critical") is None


def test_an_ack_naming_another_site_changes_nothing_and_the_own_site_acknowledges():
    e = firing_engine()
    assert e.acknowledge("sw-03", "battery_critical", "mallory", T0 + MIN, site="westhaven") == []
    (snapshot,) = [a for a in e.alerts() if (a.device, a.rule) == ("sw-03", "battery_critical")]
    assert snapshot.acknowledged_by is None
    (ack,) = e.acknowledge("sw-03", "battery_critical", "Sgt. Lee", T0 + MIN, site="allingtown")
    assert (ack.action, ack.alert.acknowledged_by) == (Action.ACKNOWLEDGED, "Sgt. Lee")


def test_an_ack_without_a_site_is_the_boards_and_counts_for_any():
    """The HTTP API acknowledges by device and rule; its users are signed in."""
    e = firing_engine()
    (ack,) = e.acknowledge("sw-04", "battery_critical", "Sgt. Lee", T0 + MIN)
    assert ack.alert.site == "westhaven"
