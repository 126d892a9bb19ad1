"""The daemon's local control socket: how ``openpista run``, ``sessions``, ``status``,
``send`` and ``tui`` reach a running daemon.

:mod:`~openpista.control.protocol` is the wire format, :mod:`~openpista.control.client`
the stdlib-only client the CLI uses, :mod:`~openpista.control.stream` its asyncio twin for
clients that send requests while a turn streams (the TUI), :mod:`~openpista.control.server`
the daemon's side (a local channel of the gateway) and :mod:`~openpista.control.chat` its
answers to a chat client (home, history, commands). The protocol is documented in
docs/daemon.md.
"""
