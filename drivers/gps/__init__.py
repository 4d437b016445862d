"""GPS receivers: NMEA 0183 over serial (kind `nmea_gps`).

The driver is in `nmea`, its config model in `config` (no serial imports).
"""
