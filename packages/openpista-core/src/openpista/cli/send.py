"""``openpista send``: a message to any chat the running daemon serves."""

from __future__ import annotations

import sys

import click

from openpista.cli.main import CliState, fail


@click.command()
@click.argument("channel_id")
@click.argument("text")
@click.pass_obj
def send(state: CliState, channel_id: str, text: str) -> None:
    """Deliver TEXT to the chat CHANNEL_ID through the running daemon (proactively: the
    agent is not asked). '-' as TEXT reads it from standard input.

    CHANNEL_ID is a channel's prefix and a chat, as `openpista sessions` lists them. Exits 1
    when no daemon runs, no channel it serves owns CHANNEL_ID, or the channel refuses it.

    \b
    Examples:
      openpista send telegram:123456 "the backup has finished"
      df -h | openpista send web:alice -
    """
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("the message is empty")
    client = state.daemon()
    if client is None:
        fail(
            "openpista is not running: `openpista send` delivers through the daemon "
            "(start it with `openpista start`)"
        )
    from openpista.control.client import DaemonError

    try:
        done = client.request({"type": "send", "channel": channel_id, "text": text})
    except DaemonError as exc:
        fail(str(exc))
    finally:
        client.close()
    click.echo(f"sent to {channel_id} ({done['served_by']})", err=True)
