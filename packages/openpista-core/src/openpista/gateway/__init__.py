"""The gateway: channel adapters in, one agent turn per session at a time, answers back out.

- :mod:`.router`: channel id -> session id (persisted), per-session turn locks.
- :mod:`.gateway`: the :class:`~.gateway.Gateway` that owns the inbound queue, runs turns,
  streams deltas to adapters and supervises them.
- :mod:`.approvals`: the ``ask`` side of the tool policy (``/approve``, ``/deny``).
- :mod:`.cli_adapter`: the terminal channel of ``openpista start``.
- :mod:`.daemon`: PID file, signals, graceful shutdown, status.
"""
