"""Silences ("in repair"): they mute the notifications of matching alerts until they end,
while the alerts' state is still published. Kept in the alert store across restarts."""

from __future__ import annotations

from fleet.config.alerts import Rule
from fleet.daemon.alerts.model import AlertRecord, Silence
from fleet.daemon.alerts.store import AlertStore


class Silences:
    """Not thread-safe on its own: the engine calls it under its lock."""

    def __init__(self, store: AlertStore | None) -> None:
        self._store = store
        self._by_id: dict[int, Silence] = {}
        if store is not None:
            self._by_id.update((s.id, s) for s in store.load_silences())
        self._next_id = max(self._by_id, default=0) + 1

    def add(
        self, device: str | None, rule: str | None, until_ms: int, reason: str, by: str, now_ms: int
    ) -> Silence:
        if device is None and rule is None:
            raise ValueError("a silence names a device, a rule or both; muting all is refused")
        if rule is not None and rule not in {str(r) for r in Rule}:
            raise ValueError(f"unknown rule {rule!r}")
        sid = self._next_id
        if self._store is not None:
            sid = self._store.add_silence(device, rule, until_ms, reason, by, now_ms)
        self._next_id = sid + 1
        silence = self._by_id[sid] = Silence(sid, device, rule, until_ms, reason, by, now_ms)
        return silence

    def remove(self, silence_id: int) -> bool:
        if self._by_id.pop(silence_id, None) is None:
            return False
        if self._store is not None:
            self._store.delete_silence(silence_id)
        return True

    def active(self, now_ms: int) -> list[Silence]:
        return sorted((s for s in self._by_id.values() if s.until_ms > now_ms), key=lambda s: s.id)

    def expire(self, now_ms: int) -> None:
        """Drop the silences that ended (from the store too)."""
        for sid in [sid for sid, s in self._by_id.items() if s.until_ms <= now_ms]:
            del self._by_id[sid]
            if self._store is not None:
                self._store.delete_silence(sid)

    def mute(self, rec: AlertRecord, now_ms: int) -> bool:
        """Whether a silence mutes `rec`'s notifications now."""
        return any(
            s.until_ms > now_ms and s.matches(rec.device, str(rec.rule))
            for s in self._by_id.values()
        )
