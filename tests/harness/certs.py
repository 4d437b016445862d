"""Certificates for tests of TLS listeners (Mosquitto, the collector's HTTP server): a CA of
the test's own and server certificates it signed, as PEM files.

`make_pki` gives the usual set, a server certificate for localhost / 127.0.0.1. `TestCA.issue`
makes more from the same CA, for any names: a certificate for another host, which a client
that checks host names must refuse although it trusts the CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _alt_name(name: str) -> x509.GeneralName:
    """An address as an IP entry (what clients match addresses against), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class TestCA:
    """A CA of the test's own: its certificate at `path`, its key in memory."""

    __test__ = False  # not a test class, whatever pytest makes of the name

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path

    @classmethod
    def create(cls, folder: Path, stem: str = "ca") -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("Fleet test CA"))
            .issuer_name(_name("Fleet test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        )
        certificate = _validity(builder).sign(key, hashes.SHA256())
        path = folder / f"{stem}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(certificate, key, path)

    def issue(
        self, folder: Path, names: Sequence[str] = LOCAL_NAMES, stem: str = "server"
    ) -> tuple[Path, Path]:
        """(certificate, key) files of a server certificate for `names` (the first is also
        its common name), signed by this CA."""
        if not names:
            raise ValueError("a server certificate needs at least one name")
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(
                x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False
            )
        )
        certificate = _validity(builder).sign(self.key, hashes.SHA256())
        paths = folder / f"{stem}.pem", folder / f"{stem}.key"
        paths[0].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(paths[1], key)
        return paths


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) files for localhost / 127.0.0.1."""
    ca = TestCA.create(folder)
    cert, key = ca.issue(folder)
    return ca.path, cert, key
