"""``openpista connect`` (a terminal client of the mobile channel) and ``openpista mobile``."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from openpista.models import AgentResponse
    from openpista_mobile.client import MobileClient

TOKEN_HELP = "Device token (or set OPENPISTA_MOBILE_TOKEN)."
RECONNECT_DELAY = 5.0  # seconds between attempts to reach an unreachable server


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
    that outlived an earlier connection) as "📬 push: ..."; -e mode ignores them.

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

    async def open_(quiet: bool = False) -> MobileClient | None:
        try:
            return await MobileClient.connect(
                url, token, device, fingerprint=fingerprint, insecure=insecure, cafile=cafile
            )
        except (MobileError, OSError, ValueError, TimeoutError) as exc:
            if not quiet:
                click.echo(f"❌ cannot connect to {url}: {exc or type(exc).__name__}", err=True)
            return None

    if text is not None:  # one-shot: pushes are not shown
        client = await open_()
        if client is None:
            return 1
        try:
            return await _ask(client, text, interactive=False)
        except MobileError as exc:
            click.echo(f"❌ {exc}", err=True)
            return 1
        finally:
            await client.close()
    link = _Link(open_)
    listener: asyncio.Task[None] | None = None
    try:
        if await link.ensure() is None:
            return 1
        click.echo(f"connected to {url} as mobile:{device} (/quit to leave)", err=True)
        pushes = _PushPrinter()
        listener = asyncio.create_task(_listen(link, pushes))
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
            current = await link.ensure()  # the server dropped an idle connection: resume
            if current is None:
                return 1
            pushes.hold()
            try:
                code = await _ask(current, line, interactive=sys.stdin.isatty())
            finally:
                pushes.release()
        return code
    except MobileError as exc:
        click.echo(f"❌ {exc}", err=True)
        return 1
    finally:
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await link.close()


class _Link:
    """The interactive client's connection: reopened (0-RTT) when the server drops it and
    authenticated at once, so that pushed answers (and the device's outbox) flow to it."""

    def __init__(self, open_: Callable[[bool], Awaitable[MobileClient | None]]) -> None:
        self._open = open_
        self._lock = asyncio.Lock()
        self.client: MobileClient | None = None

    async def ensure(self, quiet: bool = False) -> MobileClient | None:
        """The live client (reconnecting if needed), or None if the server is unreachable."""
        async with self._lock:
            if self.client is not None and not self.client.closed:
                return self.client
            await self.close()
            client = await self._open(quiet)
            if client is not None:
                self.client = client
                await client.check()
            return client

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()


class _PushPrinter:
    """Prints pushed answers marked ``📬 push:``; held back while an answer streams."""

    def __init__(self) -> None:
        self._busy = False
        self._held: list[AgentResponse] = []

    def hold(self) -> None:
        self._busy = True

    def release(self) -> None:
        self._busy = False
        held, self._held = self._held, []
        for response in held:
            self._print(response, prompt=False)

    def show(self, response: AgentResponse) -> None:
        if self._busy:
            self._held.append(response)
        else:
            self._print(response, prompt=True)

    @staticmethod
    def _print(response: AgentResponse, *, prompt: bool) -> None:
        if response.approval is not None:
            approval = response.approval
            body = f"{approval.prompt()} (answer /approve {approval.id} or /deny {approval.id})"
        else:
            body = response.text
        lines = [f"📬 push: {body}"]
        lines += [f"📎 {attachment.describe()}" for attachment in response.attachments]
        # At the prompt: overwrite the "> " already shown, then show it again.
        sys.stdout.write("\r" + "\n".join(lines) + ("\n> " if prompt else "\n"))
        sys.stdout.flush()


async def _listen(link: _Link, printer: _PushPrinter) -> None:
    """Show pushes as they arrive; reconnect when the connection ends."""
    from openpista_mobile.client import MobileError

    while True:
        try:
            client = await link.ensure(quiet=True)
        except MobileError:
            client = None
        if client is None:
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        async for response in client.pushed():
            printer.show(response)


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
