"""The v1 wire contract of DESIGN.md: MQTT topics, the telemetry JSON, OwnTracks, refusals.

The collector calls ``Decoder.decode`` (bytes in; a validated `DecodedReading` out, ``None``
for a message that is not a reading, or `Rejected` with a reason and a sentence a person can
act on); the agent builds `Telemetry` and sends ``encode_telemetry``. The reading's data
(groups, fields, units, ranges) and the id rule are not defined here but at the bottom layer,
in ``fleet.drivers.readings`` and ``fleet.drivers.contract``, and used as they are. How a
reading is stored (InfluxDB measurements and line protocol) is the collector's business:
``fleet.daemon.collector.schema``.

Modules: `topics` (building and parsing topics), `envelope` (the telemetry JSON and the
decoded reading), `owntracks`, `reasons` (why a message is refused, the dead-letter payload),
`decode` (the `Decoder`), `fast` (its msgspec fast path, generated from the contract: valid
messages in one pass, everything else left to the pydantic models and their words),
`identity` (whose availability messages count). Everything public
is re-exported here: ``wire.Decoder(...)``.
"""

from fleet.daemon.wire.decode import Decoder, DeviceRef
from fleet.daemon.wire.envelope import (
    SCHEMA,
    DecodedReading,
    Telemetry,
    Timestamp,
    encode_telemetry,
)
from fleet.daemon.wire.identity import ControlRegistry
from fleet.daemon.wire.owntracks import OwnTracksLocation
from fleet.daemon.wire.reasons import Reason, Rejected, deadletter_payload
from fleet.daemon.wire.topics import (
    RESERVED_RULES,
    VERSION,
    Control,
    agent_availability_topic,
    alert_ack_topic,
    alert_topic,
    availability_topic,
    control_subscriptions,
    deadletter_topic,
    link_topic,
    owntracks_topic,
    parse_control,
    subscriptions,
    telemetry_topic,
)
from fleet.drivers.contract import ID_PATTERN, RESERVED_KINDS, check_id

# The contract's groups, defined once beside the drivers: re-exported as part of the contract.
from fleet.drivers.readings import Battery, Location, State, Status

__all__ = [
    "ID_PATTERN",
    "RESERVED_KINDS",
    "RESERVED_RULES",
    "SCHEMA",
    "VERSION",
    "Battery",
    "Control",
    "ControlRegistry",
    "DecodedReading",
    "Decoder",
    "DeviceRef",
    "Location",
    "OwnTracksLocation",
    "Reason",
    "Rejected",
    "State",
    "Status",
    "Telemetry",
    "Timestamp",
    "agent_availability_topic",
    "alert_ack_topic",
    "alert_topic",
    "availability_topic",
    "check_id",
    "control_subscriptions",
    "deadletter_payload",
    "deadletter_topic",
    "encode_telemetry",
    "link_topic",
    "owntracks_topic",
    "parse_control",
    "subscriptions",
    "telemetry_topic",
]
