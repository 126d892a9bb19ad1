"""The server's TLS certificate: generated once (self-signed) or configured, and its
SHA-256 fingerprint, which clients pin instead of trusting a certificate authority."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from openpista.config import ConfigError, home_dir
from openpista.files import write_private

log = logging.getLogger(__name__)

VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class ServerCertificate:
    """Certificate and key files and the certificate's fingerprint."""

    cert: Path
    key: Path
    fingerprint: str


def state_dir() -> Path:
    """Where the mobile plugin keeps its files (``<home>/mobile``)."""
    return home_dir() / "mobile"


def fingerprint_of(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate as colon-separated upper-case hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """Accept ``AB:CD:..``, ``abcd..`` or ``SHA256:AB:..``; the canonical form, or ValueError."""
    cleaned = text.strip()
    if cleaned.lower().startswith("sha256:"):
        cleaned = cleaned[len("sha256:") :]
    digits = cleaned.replace(":", "").replace(" ", "").upper()
    if len(digits) != 64 or any(c not in "0123456789ABCDEF" for c in digits):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons optional)")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def load_or_create(cert: Path | None = None, key: Path | None = None) -> ServerCertificate:
    """The configured certificate, or the self-signed one under :func:`state_dir`
    (generated on first use)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if (cert is None) != (key is None):
        raise ConfigError("[channels.mobile]: set both cert and key, or neither")
    if cert is None or key is None:
        cert, key = state_dir() / "cert.pem", state_dir() / "key.pem"
        if not (cert.exists() and key.exists()):
            _generate(cert, key)
            log.info("mobile: generated a self-signed certificate %s", cert)
    try:
        loaded = x509.load_pem_x509_certificate(cert.expanduser().read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[channels.mobile]: cannot read the certificate {cert}: {exc}") from exc
    if not key.expanduser().is_file():
        raise ConfigError(f"[channels.mobile]: the key file {key} does not exist")
    digest = fingerprint_of(loaded.public_bytes(Encoding.DER))
    return ServerCertificate(cert.expanduser(), key.expanduser(), digest)


def _generate(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"openpista on {host}")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(host),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
