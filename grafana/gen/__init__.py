"""The Grafana dashboards and provisioning files as typed code (entry point: grafana/generate.py).

One module per dashboard (overview, device_detail, battery_health, pipeline), their shared
frame and conventions (common, panels, model), and provisioning (provisioning, yamltext).
"""
