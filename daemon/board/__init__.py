"""The officers' side: readiness of each device, the sign-out sheet, out-of-service marks.

model.py        the facts and the verdict (pure data)
judge.py        one device's facts -> its verdict (pure, a controllable clock)
drain.py        charge and drain rates learned from a device's own history
fleetview.py    what the collector heard, per device: latest values and a charge history
assignments.py  the sign-out sheet and out-of-service marks (SQLite, audited)
render.py       a verdict as the JSON API's item
"""
