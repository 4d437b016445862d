"""Masking the secrets of notification URLs in log records.

apprise URLs carry SMTP passwords and webhook tokens. Every secret found in a
configured URL is registered here, and a filter on the loggers that can see
URLs (apprise's, its HTTP client's, the notifier's) masks them at every level,
tracebacks included.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

# Loggers that can see a URL's secrets: apprise itself and the HTTP client under
# its webhooks (urllib3 logs request paths and query strings at DEBUG).
_SECRET_SEEING_LOGGERS = ("apprise", "urllib3.connectionpool", "fleet.daemon.alerts.notify")

# Query keys whose values are addresses or knobs, not secrets (kept readable).
_PLAIN_QUERY_KEY = re.compile(r"to|from|cc|bcc|smtp|name|method|format|mode|priority|cto|rto")
_MASK = "****"


class _Redactor(logging.Filter):
    """Masks known secrets in records of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if s}
            # Longest first, so a secret containing another is masked whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break logging
            message = str(record.msg)
        masked = self.redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


REDACTOR = _Redactor()
for _name in _SECRET_SEEING_LOGGERS:
    logging.getLogger(_name).addFilter(REDACTOR)


def redact(text: str) -> str:
    """`text` with every secret of every configured notification URL masked."""
    return REDACTOR.redact(text)


def _token_like(part: str) -> bool:
    has_alpha = any(c.isalpha() for c in part)
    has_digit = any(c.isdigit() for c in part)
    return len(part) >= 16 or (len(part) >= 8 and has_alpha and has_digit)


def secrets_of(url: str) -> set[str]:
    """What in `url` may be secret: the password, token-like path parts, query values."""
    found = {url}
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return found
    if password:
        found |= {password, unquote(password), quote(unquote(password), safe="")}
    for segment in parts.path.split("/"):
        if _token_like(unquote(segment)):
            found |= {segment, unquote(segment)}
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if not _PLAIN_QUERY_KEY.fullmatch(key.lstrip("+-:").lower()) and len(value) >= 4:
            found |= {value, quote(value, safe="")}
    return found


def plugin_url(plugin: Any, *, privacy: bool) -> str:
    """An apprise plugin's URL; `privacy=True` gives apprise's own masked form."""
    # apprise's url() is untyped; this is the one place it is called.
    return str(plugin.url(privacy=privacy))


def privacy_diff(plugin: Any) -> set[str]:
    """Parts apprise itself masks in its privacy form of the URL: secrets to register."""
    split = re.compile(r"[/?&=:@#]")
    plain = set(split.split(plugin_url(plugin, privacy=False)))
    private = set(split.split(plugin_url(plugin, privacy=True)))
    return {p for p in plain - private if len(p) >= 3}
