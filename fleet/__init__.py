"""Fleet telemetry: one import namespace over the project's three layers.

`fleet.daemon` (everything that runs), `fleet.config` (settings models) and
`fleet.drivers` (device knowledge) are the top-level folders `daemon/`,
`config/` and `drivers/`; the entries here are links to them, so the checkout
imports exactly as the installed wheel does, and no generic top-level name
(`daemon`, `config`, `drivers`) is ever claimed in site-packages.
"""
