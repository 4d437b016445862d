"""Handheld drivers over Bluetooth LE: GATT Battery Service (`ble_battery`) and BTHome v2 (`bthome`).

The drivers are in `battery` and `bthome`; their config models in `config`, which
imports no Bluetooth stack (so reading the settings stays light).
"""
