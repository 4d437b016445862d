"""`fleet agent`: runs the device drivers and publishes their readings as the v1 contract."""
