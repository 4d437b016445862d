"""A real SMTP server (aiosmtpd) on a local port that keeps every message it accepts.

Notification tests send real mail through apprise's real SMTP client to this
server and read back subject, body, sender and recipients. It can check
AUTH (PLAIN/LOGIN over plain text, as a sub-station relay without TLS would)
so a test can check a password travels to the server and nowhere else, and it
can be started on a port chosen beforehand, so a test can send to it while it
is still down and bring it up later.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class _Session(Session):
    """aiosmtpd 1.4 sets its deprecated `login_data` on every successful AUTH and
    warns; under pytest's filterwarnings=error that warning would break AUTH on
    the server thread. The login is kept in `auth_data` instead."""

    @property
    def login_data(self) -> Any:
        return self.auth_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        pass


class _SMTP(SMTP):
    def _create_session(self) -> Session:
        return _Session(self.loop)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    login: str | None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """The plain-text body (the text/plain part of a multipart message)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return str(content)


def free_port() -> int:
    """A port nothing listens on right now (closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """aiosmtpd on 127.0.0.1:`port` (a free one if None); `start()` / `stop()` or `with`.

    With `user`/`password` set, AUTH is offered and only that pair is accepted.
    """

    def __init__(
        self, port: int | None = None, *, user: str | None = None, password: str | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.user = user
        self.password = password
        self.mails: list[Mail] = []
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    # aiosmtpd calls these two on its own event loop thread.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data
        mail = Mail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            login=login.decode() if isinstance(login, bytes) else None,
        )
        with self._lock:
            self.mails.append(mail)
        return "250 Message accepted for delivery"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        if not ok:
            with self._lock:
                self.auth_failures += 1
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data.login)

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)

    def start(self) -> SmtpServer:
        auth = self.user is not None
        self._controller = _Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",  # skips a slow getfqdn() per connection
            # AUTH offered and checked, not required: requiring it without TLS makes
            # aiosmtpd warn, which filterwarnings=error turns into a failed start.
            # Tests check `Mail.login` to see that the client did authenticate.
            authenticator=self._authenticate if auth else None,
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
