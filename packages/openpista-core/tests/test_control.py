"""The control socket's framing, the daemon's socket file and the stdlib client."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.control.client import ControlClient, DaemonError, DaemonGoneError
from openpista.control.protocol import (
    MAX_DEPTH,
    MAX_FRAME,
    ProtocolError,
    body_length,
    decode,
    encode,
    error_frame,
    socket_path,
)
from openpista.control.server import ControlSocketError, bind_control


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("OPENPISTA_HOME", str(directory))
    return directory


def test_a_frame_is_a_length_then_json_and_reads_back() -> None:
    data = encode({"type": "run", "text": "héllo ❌"})
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert decode(data[4:]) == {"type": "run", "text": "héllo ❌"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[1]", "JSON object"),
        (b'{"kind": "run"}', "JSON object"),
        (b'{"type": 1}', "JSON object"),
        (b'{"type": "x", "a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, "too"),
    ],
)
def test_unacceptable_bodies_are_protocol_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode(body)


def test_frames_past_the_size_cap_are_refused_both_ways() -> None:
    with pytest.raises(ProtocolError, match="frame too large"):
        encode({"type": "run", "text": "x" * MAX_FRAME})
    with pytest.raises(ProtocolError, match="frame too large"):
        body_length(struct.pack(">I", MAX_FRAME + 1))
    assert body_length(struct.pack(">I", MAX_FRAME)) == MAX_FRAME


def test_error_frames_are_one_cross_line() -> None:
    assert error_frame("bad") == {"type": "error", "message": "❌ bad"}
    assert error_frame("❌ bad")["message"] == "❌ bad"


def test_the_socket_lives_in_the_state_directory(state: Path) -> None:
    assert socket_path() == state / "control.sock"


def test_bind_makes_a_private_directory_and_an_owner_only_socket(state: Path) -> None:
    sock = bind_control(socket_path())
    try:
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(socket_path().stat().st_mode) == 0o600
        client = ControlClient.connect()
        assert client is not None
        client.close()
    finally:
        sock.close()


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_bind_refuses_a_directory_others_may_write(state: Path, mode: int) -> None:
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(ControlSocketError, match=r"writable by other users.*chmod 700"):
        bind_control(socket_path())
    assert not socket_path().exists()


def test_bind_refuses_a_directory_of_another_user(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:  # root gives a directory of its own away
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        owner = 65534
    else:  # anyone else points at one of root's
        monkeypatch.setenv("OPENPISTA_HOME", "/")
        owner = 0
    with pytest.raises(ControlSocketError, match=f"owner uid {owner}"):
        bind_control(socket_path())


def test_a_stale_socket_is_replaced_and_a_live_one_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path()))
    stale.close()
    assert ControlClient.connect() is None  # clients treat it as no daemon
    live = bind_control(socket_path())
    try:
        with pytest.raises(ControlSocketError, match="another openpista daemon serves"):
            bind_control(socket_path())
        assert ControlClient.connect() is not None
    finally:
        live.close()


def test_bind_refuses_a_file_that_is_no_socket_and_a_path_too_long(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.mkdir(mode=0o700)
    socket_path().write_text("my notes")
    with pytest.raises(ControlSocketError, match="is not a socket"):
        bind_control(socket_path())
    assert socket_path().read_text() == "my notes"
    deep = state / ("d" * 100)
    monkeypatch.setenv("OPENPISTA_HOME", str(deep))
    with pytest.raises(ControlSocketError, match="set OPENPISTA_HOME to a shorter"):
        bind_control(socket_path())
    assert ControlClient.connect() is None


@pytest.fixture
def peer(state: Path) -> Iterator[tuple[ControlClient, socket.socket]]:
    """A client connected to a listening socket; the test plays the daemon's part."""
    listener = bind_control(socket_path())
    client = ControlClient.connect()
    assert client is not None
    daemon, _ = listener.accept()
    yield client, daemon
    client.close()
    daemon.close()
    listener.close()


def test_the_client_reads_results_and_raises_error_frames(
    peer: tuple[ControlClient, socket.socket],
) -> None:
    client, daemon = peer

    def answer(*frames: bytes) -> None:
        daemon.recv(MAX_FRAME)
        for frame in frames:
            daemon.sendall(frame)

    replies = [encode({"type": "result", "data": [1, 2]}), encode(error_frame("no such thing"))]

    def serve() -> None:
        for reply in replies:
            answer(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    assert client.request({"type": "sessions"}) == [1, 2]
    with pytest.raises(DaemonError, match=r"^❌ no such thing$"):
        client.request({"type": "send"})
    thread.join()


def test_the_client_reports_a_daemon_gone_mid_frame_and_an_unreadable_frame(
    peer: tuple[ControlClient, socket.socket],
) -> None:
    client, daemon = peer
    daemon.sendall(struct.pack(">I", 7) + b'{"typ')  # the rest never comes
    daemon.shutdown(socket.SHUT_WR)
    with pytest.raises(DaemonGoneError, match="the daemon stopped before it answered"):
        client.receive()


def test_the_client_refuses_an_oversized_frame_from_the_daemon(
    peer: tuple[ControlClient, socket.socket],
) -> None:
    client, daemon = peer
    daemon.sendall(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(DaemonError, match="unreadable frame: frame too large"):
        client.receive()
    daemon.sendall(struct.pack(">I", 2) + json.dumps([]).encode())
    with pytest.raises(DaemonError, match="unreadable frame"):
        client.receive()


def test_a_daemon_that_refuses_and_hangs_up_at_once_is_heard(
    peer: tuple[ControlClient, socket.socket],
) -> None:
    """The daemon refuses a stranger before reading anything: the client's write fails,
    yet it reports the daemon's words, not a daemon gone."""
    client, daemon = peer
    daemon.sendall(encode(error_frame("this daemon serves only its own user")))
    daemon.close()
    with pytest.raises(DaemonError, match=r"^❌ this daemon serves only its own user$") as caught:
        client.request({"type": "status"})
    assert not isinstance(caught.value, DaemonGoneError)


def test_a_daemon_that_hangs_up_without_a_word_is_gone(
    peer: tuple[ControlClient, socket.socket],
) -> None:
    client, daemon = peer
    daemon.close()
    with pytest.raises(DaemonGoneError):
        client.request({"type": "status"})
