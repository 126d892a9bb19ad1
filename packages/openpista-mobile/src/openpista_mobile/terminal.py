"""The terminal client behind ``openpista connect``: a reconnecting link to the daemon's
mobile channel, the prompt, and the printing of answers, progress and pushes.

Imported when ``openpista connect`` runs (the command module stays cheap for ``--help``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from openpista.cli import Console
    from openpista.models import Answer, Outbound, TextChunk, ToolProgress
    from openpista_mobile.client import MobileClient

log = logging.getLogger(__name__)

T = TypeVar("T")
KEEPALIVE = 2.0  # seconds between pings: a daemon killed outright is noticed within ~8 s
RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # reconnection backoff, in seconds
PATIENCE = 60.0  # seconds a message waits for a lost server to come back
# A handshake gets this long: a daemon still warming up (importing its provider) on a busy
# machine can leave packets unanswered for many seconds. A refused port fails at once.
CONNECT_TIMEOUT = 30.0
NOT_RUNNING = "is `openpista start` running with [channels.mobile] enabled?"
QUIT = ("/quit", "/exit")


async def session(
    url: str,
    token: str,
    device: str,
    fingerprint: str | None,
    cafile: str | None,
    insecure: bool,
    text: str | None,
) -> int:
    from openpista_mobile.client import Endpoint, MobileClient, MobileError

    try:
        endpoint = Endpoint.parse(url)
    except ValueError as exc:
        click.echo(f"❌ {exc}", err=True)
        return 1
    address = f"quic://{endpoint.host}:{endpoint.port}"

    def open_() -> Awaitable[MobileClient]:
        return MobileClient.connect(
            url,
            token,
            device,
            fingerprint=fingerprint,
            insecure=insecure,
            cafile=cafile,
            timeout=CONNECT_TIMEOUT,
            keepalive=KEEPALIVE,
        )

    link = _Link(open_, address)
    try:
        await link.ensure(patience=0)  # the first connection is not retried
        if text is not None:  # one-shot: pushes are not shown
            return await _Prompt(link, None).request(text)
        click.echo(f"connected to {address} as mobile:{device} (/quit to leave)", err=True)
        return await _Prompt(link, _Lines()).run()
    except MobileError as exc:
        click.echo(_explain(exc, address), err=True)
        return 1
    finally:
        await link.close()


def _explain(exc: Exception, address: str) -> str:
    """The one ❌ line for an error that ends ``openpista connect``."""
    from openpista_mobile.client import CertificateError, Unreachable

    if isinstance(exc, Unreachable):
        return f"❌ {exc.message}: {NOT_RUNNING}"
    if isinstance(exc, CertificateError) and exc.pinned:
        return (
            f"❌ {address} shows the certificate {exc.fingerprint}, not the pinned one; if the "
            "server's certificate was replaced, compare with `openpista mobile fingerprint` "
            f"on the server and pin the new one: --fingerprint {exc.fingerprint}"
        )
    if isinstance(exc, CertificateError):
        shown = f" (it shows {exc.fingerprint})" if exc.fingerprint else ""
        return (
            f"❌ {address}: {exc.message}; pin the server's certificate: run `openpista "
            f"mobile fingerprint` on the server and pass what it prints as --fingerprint"
            f"{shown}, or give its CA with --cafile"
        )
    return f"❌ {exc}"


class _Link:
    """The connection to the daemon: reopened (0-RTT) with backoff when it is lost, and
    authenticated at once, so that pushed answers (and the device's outbox) flow to it."""

    def __init__(self, open_: Callable[[], Awaitable[MobileClient]], address: str) -> None:
        self._open = open_
        self.address = address
        self._lock = asyncio.Lock()
        self._client: MobileClient | None = None
        self._down = False  # a lost connection was announced and is not back yet

    async def ensure(self, patience: float | None = PATIENCE) -> MobileClient:
        """The live client, reconnecting for up to ``patience`` seconds (None: for ever)
        while the server cannot be reached; then its last error is raised. Refusals
        (token, certificate) are raised at once."""
        from openpista_mobile.client import ConnectionLost

        loop = asyncio.get_running_loop()
        deadline = None if patience is None else loop.time() + patience
        delay = RETRY_FIRST
        while True:
            async with self._lock:
                client = self._client
                if client is not None and not client.closed:
                    return client
                if client is not None:
                    self._client = None
                    self._announce_loss(client)
                    await client.close()
                try:
                    return await self._connect()
                except ConnectionLost as exc:
                    if deadline is not None and loop.time() + delay > deadline:
                        raise
                    log.debug("mobile: reconnecting to %s: %s", self.address, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _announce_loss(self, client: MobileClient) -> None:
        if not self._down:
            self._down = True
            why = client.error.message if client.error is not None else "closed"
            click.echo(f"⚠ lost the connection to {self.address} ({why}); reconnecting…", err=True)

    async def _connect(self) -> MobileClient:
        client = await self._open()
        try:
            await client.check()
        except BaseException:
            await client.close()
            raise
        self._client = client
        if self._down:
            self._down = False
            click.echo(f"✓ reconnected to {self.address}", err=True)
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


class _Lines:
    """Standard input, one line at a time; the prompt is shown only on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty()
        self.ended = False

    async def read(self, prompt: str) -> str | None:
        """The next line, or None at the end of input."""
        if self.ended:
            return None
        try:
            return await asyncio.to_thread(input, prompt if self.tty else "")
        except EOFError:
            self.ended = True
            return None


class _Prompt:
    """One conversation of ``openpista connect``: each message is sent, with the same
    request id, on new connections until it is answered (the server never runs an id
    twice). ``lines`` is None in -e mode: approvals are then answered elsewhere."""

    def __init__(self, link: _Link, lines: _Lines | None) -> None:
        self.link = link
        self.lines = lines
        self.pushes = _PushPrinter("> " if lines is not None and lines.tty else "")
        self.quitting = False  # /quit was the answer to an approval
        self._replies: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Read lines until /quit (exit code 0) or the end of input (the code of the last
        answer: 1 if it was an error)."""
        assert self.lines is not None  # noqa: S101  an invariant for mypy, not a check
        listener = asyncio.create_task(_listen(self.link, self.pushes))
        code = 0
        try:
            while not self.quitting:
                line = await self.lines.read("> ")
                if line is None:
                    return code
                if line.strip() in QUIT:
                    return 0
                if not line.strip():
                    continue
                self.pushes.hold()
                try:
                    code = await self.request(line)
                finally:
                    self.pushes.release()
            return 0
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def request(self, text: str) -> int:
        """Send ``text`` and print its answer; 1 if the answer is an error."""
        from openpista_mobile.client import MobileError
        from openpista_mobile.protocol import ErrorCode

        request_id = uuid.uuid4().hex
        try:
            return await self._resend(lambda client: self._ask(client, text, request_id))
        except MobileError as exc:
            if exc.code != ErrorCode.DUPLICATE_REQUEST:
                raise
            click.echo(
                "the server already had this message; its answer comes as a 📬 push", err=True
            )
            return 0
        finally:
            await asyncio.gather(*self._replies)

    async def _resend(self, attempt: Callable[[MobileClient], Awaitable[T]]) -> T:
        """``attempt`` on the live connection, again on a new one each time the
        connection is lost (backing off; for at most PATIENCE seconds without one)."""
        from openpista_mobile.client import ConnectionLost

        loop = asyncio.get_running_loop()
        delay, deadline = RETRY_FIRST, None
        while True:
            patience = PATIENCE if deadline is None else max(0.0, deadline - loop.time())
            client = await self.link.ensure(patience)
            try:
                return await attempt(client)
            except ConnectionLost:
                deadline = deadline or loop.time() + PATIENCE
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _ask(self, client: MobileClient, text: str, request_id: str) -> int:
        """Send ``text`` and print the answer as it streams; 1 if the answer is an error."""
        from openpista.cli import Console
        from openpista_mobile.client import ConnectionLost

        console = Console(sys.stdout, sys.stderr)
        code = 0
        try:
            async for message in client.ask(text, request_id=request_id):
                if message.kind == "approval":
                    console.line(message.request.prompt(), err=True)
                    if self.lines is not None:
                        await self._decide(message.request.id)
                elif message.kind == "answer":
                    code = _show_answer(console, message)
                else:
                    _show_progress(console, message)
        except ConnectionLost:
            console.finish_stream("answer")  # the answer starts again after the reconnect
            raise
        return code

    async def _decide(self, approval_id: str) -> None:
        """Read the answer to an approval from the next line: y/yes approves; the end of
        input or /quit denies (and /quit leaves once the answer is in)."""
        assert self.lines is not None  # noqa: S101  an invariant for mypy, not a check
        answer = await self.lines.read("approve? [y/N] ")
        if answer is None:
            click.echo(f"standard input ended: denying {approval_id}", err=True)
        elif answer.strip() in QUIT:
            self.quitting = True
            click.echo(f"denying {approval_id}, then leaving", err=True)
        verb = (
            "approve" if answer is not None and answer.strip().lower() in ("y", "yes") else "deny"
        )
        reply = asyncio.create_task(self._reply(f"/{verb} {approval_id}"))
        self._replies.add(reply)
        reply.add_done_callback(self._replies.discard)

    async def _reply(self, text: str) -> None:
        request_id = uuid.uuid4().hex
        final = await self._resend(lambda client: client.answer(text, request_id=request_id))
        click.echo(final.text, err=True)


def _show_progress(console: Console, message: TextChunk | ToolProgress) -> None:
    """A piece of the answer (on standard output) or a tool call (dimmed, on standard error)."""
    from openpista.cli import clip

    if message.kind == "chunk":
        console.stream("answer", message.text)
        return
    console.finish_stream("answer")
    if message.result is None:
        args = json.dumps(message.call.arguments, ensure_ascii=False)
        console.line(f"⚙ {message.call.name} {clip(args)}", err=True, dim=True)
        return
    result = message.result
    first = result.output.strip().splitlines()[:1]
    mark = "✗" if result.is_error else "✓"
    console.line(f"{mark} {result.name}: {clip(first[0] if first else '')}", err=True, dim=True)


def _show_answer(console: Console, answer: Answer) -> int:
    """The end of the turn: what was not streamed yet, the files; 1 for an error."""
    streamed = console.finish_stream("answer")
    if answer.is_error:
        console.line(answer.text, err=True)
    elif answer.text and answer.text != streamed:
        console.line(answer.text)
    for attachment in answer.attachments:
        console.line(f"📎 {attachment.describe()}", err=True)
    return 1 if answer.is_error else 0


class _PushPrinter:
    """Prints pushed answers marked ``📬 push:``; held back while an answer streams."""

    def __init__(self, prompt: str) -> None:
        self._prompt = prompt  # shown again after a push printed at the prompt
        self._busy = False
        self._held: list[Outbound] = []

    def hold(self) -> None:
        self._busy = True

    def release(self) -> None:
        self._busy = False
        held, self._held = self._held, []
        for response in held:
            self._print(response, prompt=False)

    def show(self, response: Outbound) -> None:
        if self._busy:
            self._held.append(response)
        else:
            self._print(response, prompt=True)

    def _print(self, response: Outbound, *, prompt: bool) -> None:
        if response.kind == "approval":
            approval = response.request
            body = f"{approval.prompt()} (answer /approve {approval.id} or /deny {approval.id})"
            lines = [f"📬 push: {body}"]
        elif response.kind == "answer":
            lines = [f"📬 push: {response.text}"]
            lines += [f"📎 {attachment.describe()}" for attachment in response.attachments]
        else:  # the server pushes no progress; a client ignores it
            return
        # At the prompt: overwrite the "> " already shown, then show it again.
        again = self._prompt if prompt else ""
        sys.stdout.write(("\r" if again else "") + "\n".join(lines) + "\n" + again)
        sys.stdout.flush()


async def _listen(link: _Link, printer: _PushPrinter) -> None:
    """Show pushes as they arrive; reconnect when the connection ends."""
    from openpista_mobile.client import MobileError

    while True:
        try:
            client = await link.ensure(patience=None)
        except MobileError:  # refused (token, certificate): the next request says why
            return
        async for response in client.pushed():
            printer.show(response)
