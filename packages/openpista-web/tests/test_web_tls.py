"""WSS served directly by uvicorn with the configured certificate and key."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from openpista_web.testing import greeted, open_socket

TOKEN = "test-token-Zq8vN3kL0pXr"  # the token of conftest's adapters


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_the_client_and_its_socket_are_served_over_tls(
    serve_web: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    served = await serve_web(tls_cert=str(cert), tls_key=str(key))
    assert served.adapter.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=trust) as client:
        page = await client.get(served.adapter.url)
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    async with open_socket(served.adapter.port, "tls-client", TOKEN, tls=trust) as ws:
        hello, _ = await greeted(ws)
    assert hello["type"] == "hello"
    async with httpx.AsyncClient() as plain:
        try:
            answer = await plain.get(served.adapter.url.replace("https", "http"))
        except httpx.HTTPError:
            return  # refused: no plain HTTP on a TLS port
    assert answer.status_code >= 400, "no plain HTTP on a TLS port"
