"""site_link_down: a sub-station's cut bridge link is one alert, not one per device (fake clock)."""

from __future__ import annotations

from fleet.config.alerts import Rule
from fleet.daemon import wire
from fleet.daemon.alerts import links
from fleet.daemon.alerts.engine import AlertEngine
from tests.daemon.alerts.test_alert_engine import MIN, T0, S, acts, make, reading, run_ticks

LINK = Rule.SITE_LINK_DOWN


def link(e: AlertEngine, site: str, up: bool, now: int) -> list[tuple[str, str, str, bool]]:
    return acts(e.agent_availability(site, site, up, now, LINK))


def downtown_fleet(e: AlertEngine) -> list[str]:
    devices = [f"dt-{i}" for i in range(8)]
    for d in devices:
        e.observe(reading(T0, d, site="downtown"), T0)
    e.observe(reading(T0, "sw-01"), T0)  # allingtown, not behind the link
    return devices


def test_a_cut_link_is_one_critical_alert_and_holds_the_sites_offline_alerts():
    e = make()
    e.tick(T0)
    devices = downtown_fleet(e)
    assert link(e, "downtown", True, T0) == []
    assert link(e, "downtown", False, T0 + MIN) == []  # the hold-down first
    events = run_ticks(e, T0 + MIN, T0 + 40 * MIN, 10 * S)
    assert acts(events) == [
        ("fire", "downtown", "site_link_down", True),  # after agent_down_for_s (60 s)
        ("fire", "sw-01", "offline", True),  # another site: not held
    ]
    fired = events[0].alert
    assert (fired.kind, fired.site, fired.severity) == ("site", "downtown", "critical")
    assert "link to the central broker down" in fired.message
    back = T0 + 41 * MIN
    assert link(e, "downtown", True, back) == [("resolve", "downtown", "site_link_down", True)]
    # Re-evaluated: every device gets a full window; the backlog of six arrives, two stay silent.
    for d in devices[:6]:
        e.observe(reading(back + MIN, d, site="downtown"), back + MIN)
    events = run_ticks(e, back, back + 10 * MIN + 30 * S, 10 * S)
    assert sorted(a[1] for a in acts(events)) == devices[6:]


def test_a_link_back_within_the_hold_down_fires_nothing():
    e = make()
    e.tick(T0)
    downtown_fleet(e)
    link(e, "downtown", False, T0 + S)
    assert run_ticks(e, T0 + S, T0 + 50 * S) == []
    assert link(e, "downtown", True, T0 + 50 * S) == []
    assert [a.rule for a in e.alerts()] == []


def test_the_link_and_an_agent_named_like_the_site_are_separate():
    e = make()
    e.tick(T0)
    downtown_fleet(e)
    e.agent_availability("downtown", "downtown", False, T0 + S)  # an agent called "downtown"
    link(e, "downtown", False, T0 + S)
    events = run_ticks(e, T0 + S, T0 + 3 * MIN, 10 * S)
    assert sorted((a[1], a[2]) for a in acts(events)) == [
        ("downtown", "agent_down"),
        ("downtown", "site_link_down"),
    ]
    # The agent back does not release the site while its link is still down.
    e.agent_availability("downtown", "downtown", True, T0 + 4 * MIN)
    events = run_ticks(e, T0 + 4 * MIN, T0 + 30 * MIN, 10 * S)
    assert {a[1] for a in acts(events)} == {"sw-01"}


def test_a_firing_link_survives_a_restart_and_still_holds_the_site(tmp_path):
    e = make(tmp_path)
    e.tick(T0)
    downtown_fleet(e)
    link(e, "downtown", False, T0 + S)
    run_ticks(e, T0 + S, T0 + 2 * MIN, 10 * S)
    assert [(a.device, a.rule) for a in e.alerts(firing_only=True)] == [
        ("downtown", "site_link_down")
    ]
    r = make(tmp_path)  # the restarted collector
    events = run_ticks(r, T0 + 3 * MIN, T0 + 40 * MIN, 10 * S)
    assert {(a[1], a[2]) for a in acts(events)} == {("sw-01", "offline")}  # nothing twice
    assert link(r, "downtown", True, T0 + 41 * MIN) == [
        ("resolve", "downtown", "site_link_down", True)
    ]


def test_the_notification_topic_and_payloads():
    topic = wire.link_topic("fleet", "downtown", "bridge-downtown")
    assert topic == "fleet/v1/downtown/bridge/bridge-downtown/link"
    control = wire.parse_control("fleet", topic)
    assert control == wire.Control("link", "downtown", "bridge", "bridge-downtown")
    assert control.topic("fleet") == topic
    assert topic in _matching(wire.control_subscriptions("fleet", ["downtown"]), topic)
    assert wire.parse_control("fleet", "fleet/v1/downtown/bridge/b/c/link") is None
    assert [links.as_availability(p) for p in ("1", "0", " 1\n", "2", "")] == [
        "online",
        "offline",
        "online",
        "2",
        "",
    ]
    assert links.holder_of(control) == ("downtown", LINK)


def _matching(filters: list[str], topic: str) -> list[str]:
    levels = topic.split("/")
    hits = []
    for f in filters:
        parts = f.split("/")
        if len(parts) == len(levels) and all(
            p in ("+", t) for p, t in zip(parts, levels, strict=True)
        ):
            hits.append(topic)
    return hits
