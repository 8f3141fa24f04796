"""The QMP client against a fake QEMU that replays real QMP sessions.

tests/data/qmp/*.jsonl were recorded from QEMU 7.2 on this project's machine (see the
README there). The fake server below plays QEMU's side of one: it checks that the client
sends the commands of the recording in the same order with the same arguments, answers
each with exactly the lines QEMU sent after it (events included, so an event can come
between a command and its reply), with only the reply's ``id`` rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from backend.drivers.qmp import (
    MigrationStatus,
    QmpClient,
    QmpConnectionError,
    QmpError,
    QmpEvent,
    QmpTimeoutError,
)
from tests.conftest import DATA

QMP_DATA = DATA / "qmp"


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (QMP_DATA / name).read_text().splitlines() if line]


def first_c2s(records: list[dict[str, Any]], execute: str) -> dict[str, Any]:
    for record in records:
        if record["dir"] == "c2s" and json.loads(record["line"])["execute"] == execute:
            message: dict[str, Any] = json.loads(record["line"])
            return message
    raise LookupError(execute)


@dataclass
class ReplayServer:
    records: list[dict[str, Any]]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunk_size: int | None = None  # write replies this many bytes at a time
    delay: dict[str, float] = field(default_factory=dict)  # seconds before replying to X
    drop_after: str | None = None  # close the connection instead of answering X
    received: list[dict[str, Any]] = field(default_factory=list)

    async def _send(self, line: str) -> None:
        data = line.encode() + b"\r\n"
        step = self.chunk_size or len(data)
        for start in range(0, len(data), step):
            self.writer.write(data[start : start + step])
            await self.writer.drain()

    async def _emit(self, index: int, reply_id: Any = None, orig_id: Any = None) -> int:
        """Send QEMU's lines from ``index`` up to the next client line; return its index."""
        while index < len(self.records) and self.records[index]["dir"] != "c2s":
            record = self.records[index]
            index += 1
            if record["dir"] in ("eof", "reset"):
                self.writer.close()
                return len(self.records)
            line = record["line"]
            message = json.loads(line)
            if orig_id is not None and message.get("id") == orig_id:
                line = re.sub(r'(?<=[{ ])"id": \d+(?=[,}])', f'"id": {json.dumps(reply_id)}', line)
            await self._send(line)
        return index

    async def run(self) -> None:
        index = await self._emit(0)
        while index < len(self.records):
            raw = await self.reader.readline()
            if not raw:
                return
            command = json.loads(raw)
            self.received.append(command)
            expected = json.loads(self.records[index]["line"])
            assert command["execute"] == expected["execute"], (command, expected)
            assert command.get("arguments") == expected.get("arguments"), (command, expected)
            if command["execute"] == self.drop_after:
                self.writer.close()
                return
            await asyncio.sleep(self.delay.get(command["execute"], 0))
            index = await self._emit(index + 1, command.get("id"), expected.get("id"))


@contextlib.asynccontextmanager
async def replay(
    name: str, **options: Any
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, ReplayServer]]:
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=theirs)
    reader, writer = await asyncio.open_connection(sock=ours)
    server = ReplayServer(load(name), server_reader, server_writer, **options)
    task = asyncio.create_task(server.run())
    try:
        yield reader, writer, server
    finally:
        writer.close()
        # The server's asserts (a command the recording does not have) surface here.
        try:
            await asyncio.wait_for(task, 5)
        finally:
            server_writer.close()


@contextlib.asynccontextmanager
async def client_for(name: str, **options: Any) -> AsyncIterator[tuple[QmpClient, ReplayServer]]:
    async with replay(name, **options) as (reader, writer, server):
        client = await QmpClient.connect(reader, writer, timeout=5)
        try:
            yield client, server
        finally:
            await client.close()


def drain(queue: asyncio.Queue[QmpEvent]) -> list[QmpEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_greeting_then_capabilities_then_status() -> None:
    async with client_for("source.jsonl") as (client, server):
        assert client.greeting is not None
        assert client.greeting.qemu_version == "7.2.22"
        assert client.greeting.capabilities == ["oob"]
        status = await client.query_status()
        assert status.status == "running" and status.running
    assert [c["execute"] for c in server.received] == ["qmp_capabilities", "query-status"]
    assert all(isinstance(c["id"], int) for c in server.received)


async def test_error_replies_raise_and_leave_the_session_usable() -> None:
    async with client_for("source.jsonl") as (client, _server):
        await client.query_status()
        idle = await client.query_migrate()
        assert idle.status == "none" and idle.ram is None and idle.total_time_ms is None
        with pytest.raises(QmpError) as not_found:
            await client.execute("no-such-command")
        assert not_found.value.error_class == "CommandNotFound"
        assert not_found.value.desc == "The command no-such-command has not been found"
        assert not_found.value.command == "no-such-command"
        with pytest.raises(QmpError) as bad_value:
            await client.migrate_set_parameters(downtime_limit_ms=9_999_999)
        assert bad_value.value.error_class == "GenericError"
        assert "downtime_limit" in bad_value.value.desc
        await client.migrate_set_capabilities({"events": True})  # still answers


async def test_event_between_a_command_and_its_reply() -> None:
    records = load("source.jsonl")
    migrate = first_c2s(records, "migrate")
    # In the recording QEMU sent MIGRATION(setup) before the reply to "migrate".
    at = next(i for i, r in enumerate(records) if r["dir"] == "c2s" and '"migrate"' in r["line"])
    after = records[at + 1 : at + 3]
    assert '"event": "MIGRATION"' in after[0]["line"] and '"return"' in after[1]["line"]

    seen: list[QmpEvent] = []
    async with replay("source.jsonl") as (reader, writer, _server):
        client = await QmpClient.connect(reader, writer, timeout=5, on_event=seen.append)
        try:
            await client.query_status()
            await client.query_migrate()
            with pytest.raises(QmpError):
                await client.execute("no-such-command")
            with pytest.raises(QmpError):
                await client.migrate_set_parameters(downtime_limit_ms=9_999_999)
            await client.migrate_set_capabilities({"events": True})
            await client.migrate_set_parameters(max_bandwidth_bytes=1_000_000)
            assert drain(client.events) == []
            result = await client.execute("migrate", migrate["arguments"])
            assert result == {}  # the reply, not the event that came first
            events = drain(client.events)
            assert events[0].name == "MIGRATION" and events[0].data == {"status": "setup"}
            assert events[0].timestamp == pytest.approx(1795771916.915790)
            assert seen[0] == events[0]
        finally:
            await client.close()


async def test_a_whole_recorded_migration_cancel_then_complete() -> None:
    records = load("source.jsonl")
    uris = [
        json.loads(r["line"])["arguments"]["uri"]
        for r in records
        if r["dir"] == "c2s" and '"migrate"' in r["line"]
    ]
    async with client_for("source.jsonl") as (client, _server):
        stop = client.event_waiter("STOP")
        completed = client.event_waiter("MIGRATION", lambda e: e.data["status"] == "completed")
        await client.query_status()
        await client.query_migrate()
        with pytest.raises(QmpError):
            await client.execute("no-such-command")
        with pytest.raises(QmpError):
            await client.migrate_set_parameters(downtime_limit_ms=9_999_999)
        await client.migrate_set_capabilities({"events": True})

        # 1 MB/s, then cancelled
        await client.migrate_set_parameters(max_bandwidth_bytes=1_000_000)
        await client.migrate(uris[0])
        for _ in range(3):
            assert (await client.query_migrate()).status == "active"
        with pytest.raises(QmpError, match="migration process in progress"):
            await client.migrate(uris[1])
        await client.migrate_cancel()
        statuses = []
        while not (status := await client.query_migrate()).finished:
            statuses.append(status.status)
        assert status.status == "cancelled" and set(statuses) <= {"cancelling"}
        assert (await client.query_status()).status == "running"

        # 100 Mbit/s, to the end
        await client.migrate_set_parameters(max_bandwidth_bytes=12_500_000, downtime_limit_ms=300)
        params = await client.query_migrate_parameters()
        assert params["max-bandwidth"] == 12_500_000 and params["downtime-limit"] == 300
        await client.migrate(uris[2])
        samples: list[MigrationStatus] = []
        while not (status := await client.query_migrate()).finished:
            samples.append(status)
        assert status.status == "completed"
        assert (status.total_time_ms, status.downtime_ms) == (7515, 6)
        assert status.expected_downtime_ms is None  # only while active
        assert status.ram is not None and status.ram.dirty_sync_count == 4
        assert status.ram.transferred == 96_515_179 and status.ram.remaining == 0
        assert status.ram.mbps == pytest.approx(102.87, abs=0.01)
        transferred = [s.ram.transferred for s in samples if s.ram and s.ram.transferred]
        assert len(transferred) > 20 and transferred == sorted(transferred)
        assert {s.expected_downtime_ms for s in samples if s.status == "active"} == {300}
        assert stop.done() and completed.done()
        assert (await client.query_status()).status == "postmigrate"

        names = [e.name for e in drain(client.events)]
        assert names.count("STOP") == 1 and "MIGRATION_PASS" in names
        await client.quit()
        assert client.closed


async def test_destination_events_arrive_without_commands() -> None:
    async with client_for("dest.jsonl") as (client, _server):
        assert (await client.query_status()).status == "inmigrate"
        await client.migrate_set_capabilities({"events": True})
        events = []
        while not events or events[-1].data.get("status") != "completed":
            events.append(await asyncio.wait_for(client.events.get(), 5))
        assert [e.name for e in events] == ["MIGRATION", "RESUME", "MIGRATION"]
        assert (await client.query_migrate()).status == "completed"
        status = await client.query_status()
        assert status.status == "running" and status.running
        await client.quit()


async def test_the_cancelled_destination_closes_and_pending_work_fails() -> None:
    async with client_for("dest-cancelled.jsonl") as (client, _server):
        waiter = client.event_waiter("RESUME")  # never comes: the migration failed
        await client.query_status()
        await client.migrate_set_capabilities({"events": True})
        with pytest.raises(QmpConnectionError):
            await waiter
        assert client.closed
        assert [e.data["status"] for e in drain(client.events)] == ["active", "failed"]
        with pytest.raises(QmpConnectionError):
            await client.query_status()


async def test_a_slow_reply_times_out_and_its_late_reply_is_ignored() -> None:
    async with client_for("source.jsonl", delay={"query-status": 0.5}) as (client, _server):
        with pytest.raises(QmpTimeoutError):
            await client.execute("query-status", timeout=0.1)
        # The next command's reply follows the late one; ids keep them apart.
        assert (await client.query_migrate()).status == "none"


async def test_connection_lost_while_waiting() -> None:
    async with client_for("source.jsonl", drop_after="query-status") as (client, _server):
        with pytest.raises(QmpConnectionError):
            await client.query_status()
        assert client.closed


async def test_replies_split_into_single_bytes() -> None:
    async with client_for("source.jsonl", chunk_size=1) as (client, _server):
        assert (await client.query_status()).running
        assert (await client.query_migrate()).status == "none"


async def test_quit_survives_the_reset_that_follows_it() -> None:
    async with client_for("dest.jsonl") as (client, _server):
        await client.query_status()
        await client.migrate_set_capabilities({"events": True})
        await client.query_migrate()
        await client.query_status()
        shutdown = client.event_waiter("SHUTDOWN")
        await client.quit()
        assert (await shutdown).data == {"guest": False, "reason": "host-qmp-quit"}
        assert client.closed


async def test_not_qmp_at_all() -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        reader, writer = await asyncio.open_connection(sock=ours)
        with pytest.raises(QmpConnectionError, match="not JSON"):
            await QmpClient.connect(reader, writer, timeout=2)


def test_migration_status_from_every_recorded_reply() -> None:
    replies = [
        json.loads(r["line"])["return"]
        for r in load("source.jsonl")
        if r["dir"] == "s2c" and '"return"' in r["line"] and "dirty-sync-count" in r["line"]
    ]
    statuses = [MigrationStatus.model_validate(reply) for reply in replies]
    assert {s.status for s in statuses} == {"active", "cancelling", "completed"}
    for status, reply in zip(statuses, replies, strict=True):
        assert status.ram is not None
        assert status.ram.transferred == reply["ram"]["transferred"]
        assert status.ram.page_size == 4096
        assert status.setup_time_ms == reply["setup-time"]
    assert MigrationStatus.model_validate({}).status == "none"
