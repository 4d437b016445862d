"""The officers' side: readiness of each device, the sign-out sheet, out-of-service marks.

model.py        the facts and the verdict (pure data)
judge.py        one device's facts -> its verdict (pure, a controllable clock)
drain.py        charge and drain rates learned from a device's own history
fleetview.py    what the collector heard, per device: latest values and a charge history
assignments.py  the sign-out sheet and out-of-service marks (SQLite, audited)
audit.py        every change (and login) as a log line and an `audit` point
seed.py         after a restart, the view refilled from InfluxDB (best effort)
service.py      the board as the collector runs it: verdicts, changes, overdue alerts
render.py       a verdict as the JSON API's item
"""
