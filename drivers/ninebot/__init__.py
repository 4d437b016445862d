"""Ninebot / Xiaomi scooter telemetry: frame codec, register tables, read-only polling, drivers.

`frames`, `registers` and `poll` are pure (bytes in, typed values out); `session`
runs the request/reply exchange over any byte link; `serial` and `ble` are the
thin transport adapters the agent runs.
"""
