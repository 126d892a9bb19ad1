"""``openpista connect`` (a terminal client of the mobile channel) and ``openpista mobile``."""

from __future__ import annotations

import logging
import os
import sys

import click

TOKEN_HELP = "Device token (or set OPENPISTA_MOBILE_TOKEN)."  # noqa: S105  help text naming a variable


@click.command()
@click.argument("url")
@click.option("--token", envvar="OPENPISTA_MOBILE_TOKEN", help=TOKEN_HELP)
@click.option(
    "--device", default="default", show_default=True, help="Device id the token belongs to."
)
@click.option("--fingerprint", help="Pin the server certificate's SHA-256 fingerprint.")
@click.option("--cafile", type=click.Path(exists=True, dir_okay=False), help="Trust this CA.")
@click.option("--insecure", is_flag=True, help="Trust any certificate (testing only).")
@click.option("-e", "--execute", "text", help="Send one message, print the answer, exit.")
def connect(
    url: str,
    token: str | None,
    device: str,
    fingerprint: str | None,
    cafile: str | None,
    insecure: bool,
    text: str | None,
) -> None:
    """Talk to an openpista daemon over QUIC (its [channels.mobile] endpoint).

    URL is quic://HOST[:PORT] (port 4433 by default). Answers stream as they are written;
    tool calls are shown on standard error. Approval requests are asked at the prompt; in
    -e mode, answer them from another terminal with -e "/approve ID". The interactive
    prompt also shows answers the server pushes (cron entries for mobile:DEVICE, answers
    that outlived an earlier connection) as "📬 push: ..."; -e mode ignores them. A lost
    connection (the daemon restarted, or was killed) is reopened and unanswered messages
    are sent again. With piped input an approval takes its answer from the next line (y
    approves) and is denied at the end of input; /quit exits with code 0.

    \b
    Examples:
      openpista connect quic://myhost:4433 --device phone --token T --fingerprint AB:CD:..
      openpista connect quic://127.0.0.1 --token T --insecure -e "uptime?"
    """
    import asyncio

    from openpista_mobile.certs import normalize_fingerprint
    from openpista_mobile.terminal import session

    if not token:
        raise click.UsageError("a --token is needed (or set OPENPISTA_MOBILE_TOKEN)")
    if sum(bool(x) for x in (fingerprint, cafile, insecure)) > 1:
        raise click.UsageError("use only one of --fingerprint, --cafile and --insecure")
    if fingerprint:
        try:
            normalize_fingerprint(fingerprint)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fingerprint") from None
    # aioquic logs every failed connection as a warning; the ❌ line says what it means.
    logging.getLogger("quic").setLevel(logging.ERROR)
    code = asyncio.run(session(url, token, device, fingerprint, cafile, insecure, text))
    sys.exit(code)


@click.group()
def mobile() -> None:
    """The mobile channel's certificate and device tokens."""


@mobile.command()
@click.option("--cert", type=click.Path(dir_okay=False), help="A configured certificate file.")
def fingerprint(cert: str | None) -> None:
    """Print the SHA-256 fingerprint that clients pin (makes the certificate if missing)."""
    from pathlib import Path

    from openpista_mobile.certs import load_or_create

    if cert:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        from openpista_mobile.certs import fingerprint_of

        loaded = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        click.echo(fingerprint_of(loaded.public_bytes(Encoding.DER)))
        return
    click.echo(load_or_create().fingerprint)


@mobile.command()
@click.argument("device")
def token(device: str) -> None:
    """Make a random token for DEVICE and print the config line that admits it."""
    import secrets

    from openpista_mobile.settings import check_device

    try:
        check_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DEVICE") from None
    value = secrets.token_urlsafe(24)
    where = os.environ.get("OPENPISTA_CONFIG") or "~/.openpista/config.toml"
    click.echo(f"# add to the tokens of [channels.mobile] in {where}:")
    click.echo(f'{device} = "{value}"')
