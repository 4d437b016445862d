"""Alert scenarios of issue 4 through the real collector on a real Mosquitto.

Each test runs an in-process collector on a FakeClock (tests/harness/alerting.py):
readings are stamped with the clock's time, the clock jumps minutes or hours, and
the test waits for the alert thread's next tick to have seen the new time before it
judges - so "no notification" is as checkable as "a notification". People's side is
real: mail through aiosmtpd, a JSON webhook to a local HTTP server, both on the
routes of `[alerts.notify]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.config import FleetSettings
from tests.harness.alerting import (
    SMTP_PASSWORD,
    SMTP_USER,
    AlertTopics,
    Mailbox,
    Notice,
    ack_topic,
    agent_topic,
    body,
    local_ms,
    mailto,
    rig,
    toml_list,
    webhook,
)
from tests.harness.fleet import settings_from, write_config
from tests.harness.http_receiver import HttpReceiver
from tests.harness.servers import InfluxServer, MosquittoServer
from tests.harness.smtp import SmtpServer
from tests.harness.waiting import wait_until

MIN, H = 60, 3600
DASH = " \u2013 "
# Offline judged on silence would fire in scenarios that jump hours without readings;
# those scenarios are about something else, so their Segways do not have the rule.
NO_SEGWAY_OFFLINE = '[alerts.kinds.segway]\ndisabled = ["offline", "battery_low"]\n'


@pytest.fixture
def mqtt_broker(make_broker: Callable[..., MosquittoServer]) -> MosquittoServer:
    """A broker of this test's own: the session broker keeps other tests' retained
    availability messages (an agent left `offline`), which the alert engine would act on."""
    return make_broker()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(user=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def mailbox(smtp: SmtpServer, receiver: HttpReceiver) -> Mailbox:
    return Mailbox(smtp, receiver)


@pytest.fixture
def make_settings(
    tmp_path: Path,
    mqtt_broker: MosquittoServer,
    influx: InfluxServer,
    tmp_db: str,
    smtp: SmtpServer,
    receiver: HttpReceiver,
):
    """Settings with mail + webhook on the warning and critical routes, and `alerts` keys."""

    def make(keys: str = "shifts = []\n", tables: str = "", escalation: str = "") -> FleetSettings:
        routes = toml_list([mailto(smtp), webhook(receiver)])
        alerts = (
            f"{keys}\n{tables}\n[alerts.notify]\nwarning = {routes}\ncritical = {routes}\n"
            f"{escalation}\n"
        )
        path = write_config(
            tmp_path, broker=mqtt_broker, influx=influx, database=tmp_db, alerts=alerts
        )
        return settings_from(path)

    return make


def fired(message: str, device: str, rule: str, severity: str) -> Notice:
    return Notice(f"[{severity}] {message}", body(message, device, rule))


def resolved(message: str) -> Notice:
    return Notice(f"[resolved] {message}", message)


def flat(notice: Notice) -> Notice:
    return Notice(notice.title, " ".join(notice.body.split()))


def same_everywhere(mailbox: Mailbox) -> list[Notice]:
    """Mail and webhook got the same notices, in the same order; returns the webhook's.

    Mail bodies are compared with whitespace collapsed: apprise sends its mails as HTML by
    default and its text/plain part loses the line breaks (see
    test_the_plain_text_mail_keeps_the_acknowledge_paragraph).
    """
    hooks = mailbox.hooks()
    assert [flat(m) for m in mailbox.mails()] == [flat(h) for h in hooks]
    return hooks


# 1 ---------------------------------------------------------------------------------------------


def test_a_shift_drain_to_critical_docked_without_charging_then_plugged_in(
    make_settings, mqtt_broker, mailbox, influx, tmp_db
):
    settings = make_settings()
    who = "Segway sw-03 (Allingtown): "
    with rig(settings, mqtt_broker, local_ms("20:50")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-03", pct=40.0)
            r.at("20:56")
            r.send("segway", "sw-03", pct=24.0)  # battery_low: holds for 2 min first
            r.at("20:57:59")
            assert topics.of("sw-03") == []
            r.at("20:58")
            low = topics.wait("sw-03", "battery_low", "firing", severity="warning", value=24.0)
            assert low["message"] == who + f"battery 24 %{DASH}low, not charging, last seen 20:56"

            r.at("21:04")
            r.send("segway", "sw-03", pct=9.0)  # battery_critical fires at once
            crit = topics.wait("sw-03", "battery_critical", "firing", severity="critical")
            assert crit["message"] == (
                who + f"battery 9 %{DASH}critical, not charging, last seen 21:04"
            )

            # Back at the sub-station, on the dock, the charger not plugged in. It keeps
            # reporting (so it is not offline); not_charging must wait its 15 minutes.
            r.at("21:06")
            r.send("segway", "sw-03", pct=9.0, state="docked")
            for hhmm in ("21:11", "21:16"):
                r.at(hhmm)
                r.send("segway", "sw-03", pct=9.0, state="docked")
            r.at("21:20:59")
            assert topics.latest("sw-03", "not_charging") is None
            r.at("21:21")
            nc = topics.wait("sw-03", "not_charging", "firing", severity="warning")
            assert (
                nc["message"] == who + f"docked but not charging{DASH}battery 9 %, last seen 21:16"
            )

            # Plugged in: every one of the three resolves with the reading that says so.
            r.at("21:25")
            r.send("segway", "sw-03", pct=9.0, state="charging", charging=True)
            for rule in ("battery_low", "battery_critical", "not_charging"):
                topics.wait("sw-03", rule, "resolved")
            # Recovers: charging up, then full and idle on the dock; nothing fires again.
            # (every 9 minutes: a Segway silent for 10 is offline)
            for pct in (35.0, 50.0, 65.0, 80.0, 92.0, 96.0):
                r.advance(9 * MIN)
                charging = pct < 96
                state = "charging" if charging else "docked"
                r.send("segway", "sw-03", pct=pct, state=state, charging=charging)
            r.advance(5 * MIN)
            r.wait_delivered()
            history = [(a["rule"], a["state"]) for a in topics.of("sw-03")]
        finally:
            topics.close()

    assert history == [
        ("battery_low", "firing"),
        ("battery_critical", "firing"),
        ("not_charging", "firing"),
        ("battery_low", "resolved"),
        ("battery_critical", "resolved"),
        ("not_charging", "resolved"),
    ]
    assert same_everywhere(mailbox) == [
        fired(low["message"], "sw-03", "battery_low", "warning"),
        fired(crit["message"], "sw-03", "battery_critical", "critical"),
        fired(nc["message"], "sw-03", "not_charging", "warning"),
        resolved(who + f"battery 9 %{DASH}charging"),
        resolved(who + f"battery 9 %{DASH}charging"),
        resolved(who + f"charging now{DASH}battery 9 %"),
    ]

    # The alert measurement has the six events too (the three resolves share a timestamp).
    def alert_points() -> list[dict[str, Any]]:
        rows = influx.rows("SELECT * FROM alert WHERE device = 'sw-03'", tmp_db)
        return rows if len(rows) == 6 else []

    rows = wait_until(alert_points, timeout=10, message="six alert points")
    assert sorted((row["rule"], row["state"]) for row in rows) == sorted(history)


# 2 ---------------------------------------------------------------------------------------------


def test_a_silent_handheld_is_offline_after_its_window_once_and_back_on_its_next_reading(
    make_settings, mqtt_broker, mailbox
):
    settings = make_settings()
    who = "Handheld hh-07 (Allingtown): "
    with rig(settings, mqtt_broker, local_ms("20:00")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("handheld", "hh-07", pct=70.0, state="idle")
            r.advance(10 * MIN)  # silent for exactly the window: not yet
            assert topics.of("hh-07") == []
            r.advance(1)
            off = topics.wait("hh-07", "offline", "firing", severity="warning")
            r.advance(5 * MIN)  # still silent: still one alert, one notification
            r.wait_delivered()
            assert len(mailbox.hooks()) == 1
            r.send("handheld", "hh-07", pct=69.0, state="idle")
            back = topics.wait("hh-07", "offline", "resolved")
            r.wait_delivered()
        finally:
            topics.close()
    assert off["message"] == who + f"offline{DASH}no data for 10 min, last seen 20:00"
    assert back["message"] == who + f"back online{DASH}last seen 20:15"
    assert same_everywhere(mailbox) == [
        fired(off["message"], "hh-07", "offline", "warning"),
        resolved(back["message"]),
    ]


# 3 ---------------------------------------------------------------------------------------------


def test_an_agent_going_down_is_one_alert_not_a_storm_of_offline_alerts(
    make_settings, mqtt_broker, mailbox
):
    settings = make_settings()
    fleet = [f"sw-3{i}" for i in range(8)]
    with rig(settings, mqtt_broker, local_ms("21:00")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            for device in fleet:
                r.send("segway", device, pct=80.0)
            # A Segway of another sub-station, whose agent stays up: it shows that the ticks
            # below did judge silence, so the quiet of the others is the inhibition at work.
            r.send("segway", "sw-39", pct=80.0, site="westhaven")
            r.pub.publish(agent_topic("agent-1"), b"offline", qos=1, retain=True)
            r.probe_or_fail().wait_agent("agent-1", online=False)
            r.advance(MIN + 1)  # agent_down holds 60 s
            down = topics.wait("agent-1", "agent_down", "firing", severity="critical")
            for _ in range(6):  # half an hour without a word from any of them
                r.advance(5 * MIN)
            topics.wait("sw-39", "offline", "firing")
            assert [a["device"] for a in topics.history if a["rule"] == "offline"] == ["sw-39"]

            r.pub.publish(agent_topic("agent-1"), b"online", qos=1, retain=True)
            up = topics.wait("agent-1", "agent_down", "resolved")
            # Back: its devices get a whole window to be heard again...
            r.advance(9 * MIN)
            for device in fleet:
                r.send("segway", device, pct=79.0)
            r.advance(5 * MIN)
            r.wait_delivered()
            offline = [a["device"] for a in topics.history if a["rule"] == "offline"]
        finally:
            r.pub.publish(agent_topic("agent-1"), b"", qos=1, retain=True)  # clear the retained
            topics.close()
    assert offline == ["sw-39"]
    assert down["message"].startswith(f"Agent agent-1 (Allingtown): agent offline{DASH}")
    assert up["message"] == "Agent agent-1 (Allingtown): agent back online"
    notices = same_everywhere(mailbox)
    assert [n.title for n in notices] == [
        f"[critical] {down['message']}",
        f"[warning] {topics.latest('sw-39', 'offline')['message']}",  # type: ignore[index]
        f"[resolved] {up['message']}",
    ]


# 4 ---------------------------------------------------------------------------------------------


def test_a_flapping_link_yields_at_most_one_fire_and_one_resolve_per_repeat_interval(
    make_settings, mqtt_broker, mailbox
):
    settings = make_settings()  # repeat_interval (and so the flap window) 4 h, offline 10 min
    start = local_ms("08:00")
    cycles = 40  # 12 minutes each: 8 hours of a link that drops for 11 minutes at a time
    with rig(settings, mqtt_broker, start) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("handheld", "hh-09", pct=90.0, state="idle")
            for _ in range(cycles):
                r.advance(11 * MIN)
                topics.wait("hh-09", "offline", "firing")
                r.send("handheld", "hh-09", pct=90.0, state="idle")
                topics.wait("hh-09", "offline", "resolved")
                r.advance(1 * MIN)
            r.wait_delivered()
            published = [a["state"] for a in topics.of("hh-09", "offline")]
        finally:
            topics.close()
    # Every change is published on the retained topic...
    assert published == ["firing", "resolved"] * cycles
    # ...but people hear of it once per window: at 08:11 (and its resolve), then at the first
    # fire 4 h after that notice, 12:11 (silent since the reading at 11:59), and its resolve.
    who = "Handheld hh-09 (Allingtown): "
    assert same_everywhere(mailbox) == [
        fired(
            who + f"offline{DASH}no data for 11 min, last seen 08:00", "hh-09", "offline", "warning"
        ),
        resolved(who + f"back online{DASH}last seen 08:11"),
        fired(
            who + f"offline{DASH}no data for 12 min, last seen 11:59", "hh-09", "offline", "warning"
        ),
        resolved(who + f"back online{DASH}last seen 12:11"),
    ]


# 5 ---------------------------------------------------------------------------------------------


def test_a_collector_restart_while_an_alert_fires_sends_no_second_fire_and_still_the_resolve(
    make_settings, mqtt_broker, mailbox
):
    settings = make_settings(tables=NO_SEGWAY_OFFLINE)
    who = "Segway sw-05 (Allingtown): "
    with rig(settings, mqtt_broker, local_ms("21:00")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-05", pct=9.0)
            crit = topics.wait("sw-05", "battery_critical", "firing")
            r.wait_delivered()
            r.stop()
            r.clock.advance(2 * MIN)  # time passes while it is down
            r.start()
            r.advance(1)
            r.send("segway", "sw-05", pct=8.0)  # still critical: not a new episode
            r.advance(MIN)
            r.send("segway", "sw-05", pct=8.0, state="charging", charging=True)
            back = topics.wait("sw-05", "battery_critical", "resolved")
            r.wait_delivered()
            states = [a["state"] for a in topics.of("sw-05", "battery_critical")]
        finally:
            topics.close()
    assert states == ["firing", "resolved"]
    assert back["message"] == who + f"battery 8 %{DASH}charging"
    assert same_everywhere(mailbox) == [
        fired(crit["message"], "sw-05", "battery_critical", "critical"),
        resolved(back["message"]),
    ]


# 6 ---------------------------------------------------------------------------------------------


def test_an_acknowledgement_on_the_mqtt_ack_topic_stops_the_repeats(
    make_settings, mqtt_broker, mailbox
):
    settings = make_settings(tables=NO_SEGWAY_OFFLINE)  # repeat_interval 4 h
    with rig(settings, mqtt_broker, local_ms("16:00")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-06", pct=9.0)
            r.send("segway", "sw-16", pct=9.0)
            acked = topics.wait("sw-06", "battery_critical", "firing")
            other = topics.wait("sw-16", "battery_critical", "firing")
            r.pub.publish(ack_topic("sw-06", "battery_critical"), b"Sgt. Miller", qos=1)
            shown = topics.wait(
                "sw-06", "battery_critical", "firing", acknowledged_by="Sgt. Miller"
            )
            r.advance(4 * H - 1)
            r.wait_delivered()
            assert len(mailbox.hooks()) == 2  # not yet a repeat for the other one
            r.advance(2)
            r.wait_delivered()
        finally:
            topics.close()
    assert shown["message"] == acked["message"]
    assert same_everywhere(mailbox) == [
        fired(acked["message"], "sw-06", "battery_critical", "critical"),
        fired(other["message"], "sw-16", "battery_critical", "critical"),
        Notice(
            f"[still critical] {other['message']}",
            body(other["message"], "sw-16", "battery_critical"),
        ),
    ]


# 7 ---------------------------------------------------------------------------------------------


def test_an_unacknowledged_critical_alert_escalates_before_the_next_shift(
    make_settings, mqtt_broker, mailbox, smtp, receiver
):
    supervisor = "supervisor@fleet.example"
    escalation = (
        f"escalation = {toml_list([mailto(smtp, to=supervisor), webhook(receiver, 'escalation')])}"
    )
    settings = make_settings(
        keys='shifts = ["07:00", "15:00", "23:00"]\ntimezone = "America/New_York"\n'
        "escalate_before_shift_min = 30\n",
        tables=NO_SEGWAY_OFFLINE,
        escalation=escalation,
    )
    with rig(settings, mqtt_broker, local_ms("21:04")) as r:
        topics = AlertTopics(settings, mqtt_broker)
        try:
            r.send("segway", "sw-08", pct=9.0)
            r.send("segway", "sw-18", pct=9.0)
            crit = topics.wait("sw-08", "battery_critical", "firing")
            topics.wait("sw-18", "battery_critical", "firing")
            r.pub.publish(ack_topic("sw-18", "battery_critical"), b'{"by": "Cpl. Diaz"}', qos=1)
            topics.wait("sw-18", "battery_critical", "firing", acknowledged_by="Cpl. Diaz")
            r.at("22:29:59")  # the 23:00 shift starts in 30 minutes and a second
            r.wait_delivered()
            assert mailbox.hooks("/escalation") == []
            r.at("22:30")
            r.wait_delivered()
        finally:
            topics.close()
    escalated = Notice(
        f"[ESCALATED, unacknowledged critical] {crit['message']}",
        body(crit["message"], "sw-08", "battery_critical"),
    )
    assert mailbox.hooks("/escalation") == [escalated]
    assert [flat(m) for m in mailbox.mails(to=supervisor)] == [flat(escalated)]
    # The ordinary critical route got the two fires and nothing of the escalation.
    assert [n.title for n in mailbox.hooks()] == [
        f"[critical] {crit['message']}",
        f"[critical] {topics.latest('sw-18', 'battery_critical')['message']}",  # type: ignore[index]
    ]


# Mail format ----------------------------------------------------------------------------------


def test_the_plain_text_mail_keeps_the_acknowledge_paragraph(make_settings, mqtt_broker, mailbox):
    settings = make_settings(tables=NO_SEGWAY_OFFLINE)
    with rig(settings, mqtt_broker, local_ms("21:04")) as r:
        r.send("segway", "sw-04", pct=9.0)
        r.wait_delivered()
        wait_until(mailbox.mails, message="the fire mail")
    [mail] = mailbox.mails()
    # Mail travels with CRLF line ends (RFC 5322); the paragraphs are what must survive.
    assert mail.body.replace("\r\n", "\n").strip() == mailbox.hooks()[0].body.strip()
    assert "\n\nAcknowledge:" in mail.body.replace("\r\n", "\n")
