"""`fleet simulate`: a deterministic, believable simulated fleet for the demo, tests and benchmarks.

Layout: `geo` (stations and patrol loops in West Haven, CT), `battery`
(voltage curve, charging, heat), `profiles` (Segway and handheld behaviour),
`model` (one device's life in simulated time, pure), `fleet` (ids, sites,
kinds), `encode` (samples as v1 telemetry via daemon.wire, or OwnTracks),
`runner` (the publishing schedule and link faults), `command` (the CLI).
"""
