"""Mosquitto's ACL file (mosquitto.conf(5), `acl_file`): a `user` line, then its `topic` lines.

No line comes before the first `user`: those would be the anonymous clients' rights (they
are refused anyway). No `pattern` line: it would apply to every user. What is not granted
is refused - a publish is dropped (MQTT 5: PUBACK "not authorized"), a subscription gets
nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from fleet.daemon.broker.users import BrokerUser

_PREAMBLE = (
    "Generated per user: a user line, then its topic lines. Nothing before the first user "
    "(anonymous clients get nothing) and no pattern line (it would apply to every user). "
    "What is not granted is refused."
)


def comment(text: str, width: int = 96) -> list[str]:
    """`# ` lines wrapped to `width`: Mosquitto reads a comment only where a line starts."""
    return [f"# {line}" for line in textwrap.wrap(text, width - 2)] or ["#"]


def render(users: Sequence[BrokerUser], header: Sequence[str]) -> str:
    """The ACL file's text; `header` is the generated-file notice (comment lines)."""
    lines = [*header, *comment(_PREAMBLE), ""]
    for user in users:
        lines += comment(f"{user.role} ({user.key}): {user.summary}")
        lines.append(f"user {user.name}")
        for right in user.rights:
            lines += comment(right.why)
            lines.append(f"topic {right.access} {right.topic}")
        lines.append("")
    return "\n".join(lines)
