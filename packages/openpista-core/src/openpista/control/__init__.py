"""The daemon's local control socket: how ``openpista run``, ``sessions``, ``status`` and
``send`` reach a running daemon.

:mod:`~openpista.control.protocol` is the wire format, :mod:`~openpista.control.client`
the stdlib-only client the CLI uses, :mod:`~openpista.control.server` the daemon's side
(a local channel of the gateway). The protocol is documented in docs/daemon.md.
"""
