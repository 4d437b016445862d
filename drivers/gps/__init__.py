"""GPS receivers: NMEA 0183 over serial (kind `nmea_gps`)."""

from drivers.gps.nmea import NmeaGps, NmeaGpsConfig

__all__ = ["NmeaGps", "NmeaGpsConfig"]
