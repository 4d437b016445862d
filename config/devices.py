"""The installation's site and its device registry."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from fleet.config.base import IdStr, StrictModel

_OWNTRACKS_RE = re.compile(r"[^/+#\x00-\x1f\x7f]+/[^/+#\x00-\x1f\x7f]+")


class SiteSettings(StrictModel):
    """The site this installation runs at."""

    id: IdStr = Field(
        default="allingtown",
        description="Id of this site; the default site for OwnTracks devices not in the "
        "registry and for registry devices without a site of their own.",
    )
    name: str = Field(
        default="Allingtown",
        min_length=1,
        max_length=200,
        description="Human name of the site, used in alert messages and on the readiness board.",
    )
    others: dict[IdStr, str] = Field(
        default_factory=dict,
        description="Human names of the other sites this collector hears from (site id -> "
        'name, e.g. westhaven = "West Haven downtown"); a site not named shows its id.',
    )

    def names(self) -> dict[str, str]:
        """Every known site's human name, this one's included."""
        return {**self.others, self.id: self.name}


class DeviceConfig(StrictModel):
    """One device in the registry."""

    id: IdStr = Field(description="Device id, as in the telemetry topic and the `device` field.")
    kind: IdStr = Field(description="Device kind; must be one of the top-level `kinds`.")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Human name (e.g. 'Segway 3, blue stripe'); the id is used when unset.",
    )
    site: IdStr | None = Field(
        default=None,
        description="Site the device belongs to; unset means this installation's `site.id`.",
    )
    owntracks: str | None = Field(
        default=None,
        description="OwnTracks 'user/device' pair (from the topic owntracks/user/device) whose "
        "location messages are readings of this device.",
    )

    @field_validator("owntracks")
    @classmethod
    def _check_owntracks(cls, value: str | None) -> str | None:
        if value is not None and not _OWNTRACKS_RE.fullmatch(value):
            raise PydanticCustomError(
                "fleet_owntracks",
                "must be an OwnTracks 'user/device' pair: two non-empty parts separated by "
                "one '/', without '+' or '#'",
            )
        return value
