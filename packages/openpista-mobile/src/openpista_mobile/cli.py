"""``openpista connect`` (a terminal client of the mobile channel) and ``openpista mobile``."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys

import click

TOKEN_HELP = "Device token (or set OPENPISTA_MOBILE_TOKEN)."


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
    -e mode, answer them from another terminal with -e "/approve ID".

    \b
    Examples:
      openpista connect quic://myhost:4433 --device phone --token T --fingerprint AB:CD:..
      openpista connect quic://127.0.0.1 --token T --insecure -e "uptime?"
    """
    from openpista_mobile.certs import normalize_fingerprint

    if not token:
        raise click.UsageError("a --token is needed (or set OPENPISTA_MOBILE_TOKEN)")
    if sum(bool(x) for x in (fingerprint, cafile, insecure)) > 1:
        raise click.UsageError("use only one of --fingerprint, --cafile and --insecure")
    if fingerprint:
        try:
            normalize_fingerprint(fingerprint)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fingerprint") from None
    code = asyncio.run(_session(url, token, device, fingerprint, cafile, insecure, text))
    sys.exit(code)


async def _session(
    url: str,
    token: str,
    device: str,
    fingerprint: str | None,
    cafile: str | None,
    insecure: bool,
    text: str | None,
) -> int:
    from openpista_mobile.client import MobileClient, MobileError

    async def open_() -> MobileClient | None:
        try:
            return await MobileClient.connect(
                url, token, device, fingerprint=fingerprint, insecure=insecure, cafile=cafile
            )
        except (MobileError, OSError, ValueError, TimeoutError) as exc:
            click.echo(f"❌ cannot connect to {url}: {exc or type(exc).__name__}", err=True)
            return None

    client = await open_()
    if client is None:
        return 1
    try:
        if text is not None:
            return await _ask(client, text, interactive=False)
        info = await client.check()
        click.echo(f"connected to {url} as {info['channel_id']} (/quit to leave)", err=True)
        code = 0
        while True:
            try:
                line = await asyncio.to_thread(input, "> ")
            except EOFError:
                break
            if line.strip() in ("/quit", "/exit"):
                break
            if not line.strip():
                continue
            if client.closed:  # the server dropped the idle connection: resume (0-RTT)
                await client.close()
                reopened = await open_()
                if reopened is None:
                    return 1
                client = reopened
            code = await _ask(client, line, interactive=sys.stdin.isatty())
        return code
    except MobileError as exc:
        click.echo(f"❌ {exc}", err=True)
        return 1
    finally:
        await client.close()


async def _ask(client: object, text: str, *, interactive: bool) -> int:
    """Send ``text`` and print the answer as it streams; 1 if the answer is an error."""
    from openpista.gateway.cli_adapter import Console, clip
    from openpista_mobile.client import MobileClient

    assert isinstance(client, MobileClient)
    console = Console(sys.stdout, sys.stderr)
    side: set[asyncio.Task[None]] = set()
    code = 0
    async for response in client.ask(text):
        if response.approval is not None:
            console.line(response.approval.prompt(), err=True)
            if interactive:
                answer = await asyncio.to_thread(input, "approve? [y/N] ")
                verb = "approve" if answer.strip().lower() in ("y", "yes") else "deny"
                side.add(asyncio.create_task(_reply(client, f"/{verb} {response.approval.id}")))
        elif response.tool_call is not None:
            console.finish_stream("answer")
            args = json.dumps(response.tool_call.arguments, ensure_ascii=False)
            console.line(f"⚙ {response.tool_call.name} {clip(args)}", err=True, dim=True)
        elif response.tool_result is not None:
            console.finish_stream("answer")
            result = response.tool_result
            first = result.output.strip().splitlines()[:1]
            mark = "✗" if result.is_error else "✓"
            console.line(f"{mark} {result.name}: {clip(first[0] if first else '')}", True, True)
        elif response.delta:
            console.stream("answer", response.text)
        else:
            streamed = console.finish_stream("answer")
            if response.is_error:
                console.line(response.text, err=True)
                code = 1
            elif response.text and response.text != streamed:
                console.line(response.text)
            for attachment in response.attachments:
                console.line(f"📎 {attachment.describe()}", err=True)
    await asyncio.gather(*side)
    return code


async def _reply(client: object, text: str) -> None:
    from openpista_mobile.client import MobileClient

    assert isinstance(client, MobileClient)
    final = await client.answer(text)
    click.echo(final.text, err=True)


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
    from openpista_mobile.settings import check_device

    try:
        check_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DEVICE") from None
    value = secrets.token_urlsafe(24)
    where = os.environ.get("OPENPISTA_CONFIG") or "~/.openpista/config.toml"
    click.echo(f"# add to the tokens of [channels.mobile] in {where}:")
    click.echo(f'{device} = "{value}"')
