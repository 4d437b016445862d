"""Segway PT (i2 / x2 / Patroller) lithium packs over I²C: triplet framing and checksum
(`triplet`), register table and decoders (`registers`), one pack's values and the PT's reading
(`pack`), the smbus2 adapter (`link`), the driver (`driver`) and its config (`config`)."""
