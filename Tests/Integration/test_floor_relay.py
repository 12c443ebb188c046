"""sip-floor-relay, replay-bench's floor: a call's datagrams relayed with the least a
record-routing proxy does. Its edits are checked byte for byte, then replayed calls cross it."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

import harness
from test_replay import run_replay

INVITE = (
    "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{caller};branch=z9hG4bKc1\r\n"
    "Route: <sip:127.0.0.1:{relay};lr>\r\n"
    "Route: <sip:next.example;lr>\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
    "To: <sip:bob@127.0.0.1>\r\n"
    "Call-ID: floor-1@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@127.0.0.1:{caller}>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
)


def floor_binary() -> Path:
    path = harness.built_binary("sip-floor-relay", "SIP_FLOOR_RELAY_BIN")
    if not path.exists():
        pytest.skip(f"{path} not built (swift build)")
    return path


@pytest.fixture
def relay(tmp_path):
    """A running relay: (its port, the upstream's port)."""
    relay_port, upstream_port = harness.free_port(), harness.free_port()
    process = harness.ManagedProcess(
        "sip-floor-relay",
        [str(floor_binary()), "--listen", f"{harness.LOCALHOST}:{relay_port}",
         "--upstream", f"{harness.LOCALHOST}:{upstream_port}"],
        tmp_path / "relay.log").start()
    try:
        process.wait_bound("udp", relay_port)
        yield relay_port, upstream_port
        assert process.alive(), process.log_tail()
    finally:
        process.stop()


def udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((harness.LOCALHOST, port))
    sock.settimeout(5)
    return sock


def test_relay_edits_requests_and_responses_as_a_record_routing_proxy(relay):
    relay_port, upstream_port = relay
    with udp_socket() as caller, udp_socket(upstream_port) as upstream:
        caller_port = caller.getsockname()[1]
        caller.sendto(INVITE.format(caller=caller_port, relay=relay_port).encode(), (harness.LOCALHOST, relay_port))

        forwarded, source = upstream.recvfrom(65535)
        assert source == (harness.LOCALHOST, relay_port)
        lines = forwarded.decode().split("\r\n")
        assert lines[0] == "INVITE sip:bob@127.0.0.1 SIP/2.0"
        assert lines[1] == f"Via: SIP/2.0/UDP {harness.LOCALHOST}:{relay_port};branch=z9hG4bK-floor-1"
        assert lines[2] == f"Record-Route: <sip:{harness.LOCALHOST}:{relay_port};lr>"
        assert lines[3] == f"Via: SIP/2.0/UDP 127.0.0.1:{caller_port};branch=z9hG4bKc1"
        # Only the first Route (the relay's own) is consumed.
        assert [line for line in lines if line.startswith("Route:")] == ["Route: <sip:next.example;lr>"]
        assert forwarded.endswith(b"Content-Length: 4\r\n\r\nv=0\n")

        trying = caller.recv(65535).decode()
        assert trying == (
            "SIP/2.0 100 Trying\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{caller_port};branch=z9hG4bKc1\r\n"
            "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
            "To: <sip:bob@127.0.0.1>\r\n"
            "Call-ID: floor-1@127.0.0.1\r\n"
            "CSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n")

        # The answer loses the relay's Via on its way back to the caller.
        vias = "\r\n".join(line for line in lines if line.startswith("Via:"))
        ok = ("SIP/2.0 200 OK\r\n" + vias + "\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n"
              "To: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: floor-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
              "Content-Length: 0\r\n\r\n")
        upstream.sendto(ok.encode(), (harness.LOCALHOST, relay_port))
        relayed = caller.recv(65535).decode()
        assert relayed == ok.replace(lines[1] + "\r\n", "")

        # A second request takes the next branch and, not being an INVITE, no Record-Route.
        bye = INVITE.replace("INVITE sip", "BYE sip").replace("1 INVITE", "2 BYE")
        caller.sendto(bye.format(caller=caller_port, relay=relay_port).encode(), (harness.LOCALHOST, relay_port))
        forwarded = upstream.recv(65535).decode().split("\r\n")
        assert forwarded[1].endswith(";branch=z9hG4bK-floor-2")
        assert not any(line.startswith("Record-Route:") for line in forwarded)


def test_replayed_calls_cross_the_relay(relay):
    relay_port, upstream_port = relay
    status, report, stderr = run_replay("goffinet_uac-uas-scenario-sipp.pcapng", relay_port, upstream_port,
                                        rate=100, calls=50)
    assert status == 0, f"{report['failureExamples']}\n{stderr}"
    assert report["callsCompleted"] == 50
    assert report["latencyMicroseconds"]["inviteToOK"]["count"] == 50


@pytest.mark.parametrize("argv, message", [
    ([], "--listen and --upstream are required"),
    (["--upstream", "127.0.0.1:5080", "--listen"], "every option takes a value"),
    (["--listen", "127.0.0.1", "--upstream", "127.0.0.1:5080"], "--listen is not IPv4:PORT"),
    (["--listen", "127.0.0.1:5070", "--upstream", "127.0.0.1:70000"], "--upstream is not IPv4:PORT"),
    (["--port", "5070"], "unknown option"),
])
def test_bad_arguments_are_exit_2_with_a_message(argv, message):
    done = subprocess.run([str(floor_binary()), *argv], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert done.stderr.startswith(f"sip-floor-relay: {message}\n")
    assert "usage: sip-floor-relay --listen IPv4:PORT --upstream IPv4:PORT" in done.stderr


def test_a_port_in_use_is_a_clear_error():
    with udp_socket() as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([str(floor_binary()), "--listen", f"{harness.LOCALHOST}:{port}",
                               "--upstream", f"{harness.LOCALHOST}:5080"],
                              capture_output=True, text=True, timeout=10)
    assert done.returncode == 1
    assert done.stderr.startswith(f"sip-floor-relay: udp:{harness.LOCALHOST}:{port}: ")
