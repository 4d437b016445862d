"""Handheld drivers over Bluetooth LE: GATT Battery Service (`ble_battery`) and BTHome v2 (`bthome`)."""

from drivers.ble.battery import BleBattery, BleBatteryConfig
from drivers.ble.bthome import BTHome, BTHomeConfig

__all__ = ["BTHome", "BTHomeConfig", "BleBattery", "BleBatteryConfig"]
