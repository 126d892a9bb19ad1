"""What recording each message's delivery id costs when it is stored (printed only, never
asserted; docs/scale-out.md, "Each message once").

Starts a throw-away PostgreSQL server, migrates a database and times, through one asyncpg
connection, ``--events`` inserts into ``cluster_inbox`` each way: the plain insert (before
revision 0019), the statement replicas run now (:data:`openpista.cluster_deliveries.STORE`)
for an event without a delivery id, and with one (the insert into ``cluster_deliveries`` in
the same statement), and the same message given twice (the second dropped). Prints the
median over ``--runs`` runs of the wall time per stored event (one round trip each).

    .venv/bin/python benchmarks/bench_deliveries.py [--events 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import asyncpg
from channel_load import machine

from openpista.cluster import cluster_dsn
from openpista.cluster_deliveries import STORE
from openpista.config import DatabaseSettings, Settings
from openpista.memory import MemoryStore
from openpista_testing.postgres import PostgresServer

PLAIN = (
    "INSERT INTO cluster_inbox (session_id, event, origin, reply_to) "
    "VALUES ($1, $2, $3, $4) RETURNING id"
)
EVENT = json.dumps({"channel_id": "discord:1", "sender": "42", "text": "hello " * 20})


async def timed(conn: asyncpg.Connection[Any], events: int, way: str, run: int) -> float:
    """Seconds per insert of ``events`` events stored ``way``."""
    began = time.perf_counter()
    for n in range(events):
        row = ("s", EVENT, "gw-1", None)
        if way == "plain":
            await conn.fetchval(PLAIN, *row)
        elif way == "no id":
            await conn.fetchval(STORE, *row, "discord", None, "discord:1")
        elif way == "with id":
            await conn.fetchval(STORE, *row, "discord", f"{run}-{n}", "discord:1")
        else:  # twice: the second is dropped
            await conn.fetchval(STORE, *row, "discord", f"twice-{run}-{n}", "discord:1")
            await conn.fetchval(STORE, *row, "discord", f"twice-{run}-{n}", "discord:1")
    return (time.perf_counter() - began) / events


async def main(events: int, runs: int) -> None:
    with PostgresServer() as server:
        url = server.create_database("bench_deliveries")
        store = await MemoryStore.open(url)  # migrated to the head revision
        await store.close()
        conn = await asyncpg.connect(cluster_dsn(Settings(database=DatabaseSettings(url=url))))
        try:
            print(f"{events} inserts x {runs} runs, one connection {machine()}")
            for way in ("plain", "no id", "with id", "twice"):
                seconds = []
                for run in range(runs):
                    await conn.execute("TRUNCATE cluster_inbox, cluster_deliveries")
                    seconds.append(await timed(conn, events, way, run))
                per = statistics.median(seconds) * 1000
                print(f"{way:>8}: {per:.3f} ms per stored event (median)   {machine()}")
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.runs))
