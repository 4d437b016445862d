"""`fleet broker-config`: the Mosquitto configuration generated from the registry.

`users` derives the broker's users and their rights from the settings (pure); `acl`,
`passwords` and `mosquitto_conf` render Mosquitto's own file formats; `files` writes them
only when their content changes (a second run with the same configuration changes
nothing); `access` checks that the user Mosquitto runs as can reach what it needs;
`command` is the sub-command.
"""
