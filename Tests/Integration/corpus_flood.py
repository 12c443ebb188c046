"""Floods siprec-edge with every SIP message of the pcap corpus, and with mutations of them, then
checks that it still forwards a call and stops cleanly. Run by test_corpus_flood.py inside a
private network namespace (`unshare -n`): the corpus names real hosts and private addresses, and
in there nothing but loopback exists, so nothing the proxy forwards can leave the machine.

Usage: corpus_flood.py BINARY FIXTURES_DIR MUTATIONS
Prints one line of counts; exits non-zero with a reason when the proxy fails.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOCALHOST = "127.0.0.1"


def read_corpus(directory: Path) -> list[tuple[str, bytes]]:
    """(transport, bytes) of every record of every corpus/*.sipmsgs file."""
    records = []
    for path in sorted((directory / "corpus").glob("*.sipmsgs")):
        data = path.read_bytes()
        position = data.index(b"\n") + 1  # "SIPMSGS 1"
        while position < len(data):
            end = data.index(b"\n", position)
            length, transport = data[position:end].split(b" ")[:2]
            start = end + 1
            records.append((transport.decode(), data[start:start + int(length)]))
            position = start + int(length) + 1
    return records


def mutate(message: bytes, rng: random.Random) -> bytes:
    """One random damage: flipped bytes, a cut, a duplicated slice, or a removed line."""
    data = bytearray(message)
    kind = rng.randrange(4)
    if kind == 0 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1 and data:
        del data[rng.randrange(len(data)):]
    elif kind == 2 and data:
        start = rng.randrange(len(data))
        data[start:start] = data[start:start + rng.randint(1, 200)]
    else:
        lines = bytes(data).split(b"\r\n")
        if len(lines) > 2:
            del lines[rng.randrange(1, len(lines) - 1)]
        data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def wait_bound(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((LOCALHOST, port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("proxy did not bind in time")


def invite(proxy_port: int, client_port: int, call_id: str) -> bytes:
    return (f"INVITE sip:check@{LOCALHOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{client_port};branch=z9hG4bK-{call_id}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:flood@{LOCALHOST}>;tag=f1\r\nTo: <sip:check@{LOCALHOST}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def main() -> int:
    binary, fixtures, mutations = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    port, sink_port = free_port(), free_port()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((LOCALHOST, sink_port))
    sink.setblocking(False)
    proxy = subprocess.Popen(
        [binary, "--listen", f"udp:{LOCALHOST}:{port}", "--listen", f"tcp:{LOCALHOST}:{port}",
         "--upstream", f"sip:{LOCALHOST}:{sink_port}", "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_bound(port, time.monotonic() + 10)
        records = read_corpus(fixtures)
        rng = random.Random(4475)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind((LOCALHOST, 0))
        client.setblocking(False)
        sent = 0
        stream = socket.create_connection((LOCALHOST, port), timeout=5)
        for transport, message in records:
            if transport == "tcp":
                try:
                    stream.sendall(message)
                except OSError:  # the proxy closes a stream it cannot frame; open another
                    stream.close()
                    stream = socket.create_connection((LOCALHOST, port), timeout=5)
            else:
                client.sendto(message[:65000], (LOCALHOST, port))
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.01)  # let the proxy drain its socket; this is about content, not load
        for index in range(mutations):
            _, message = records[rng.randrange(len(records))]
            client.sendto(mutate(message, rng)[:65000], (LOCALHOST, port))
            if index % 200 == 0:
                time.sleep(0.01)
        stream.close()
        if proxy.poll() is not None:
            raise SystemExit(f"proxy exited with {proxy.returncode} during the flood: "
                             f"{proxy.stderr.read().decode(errors='replace')[-2000:]}")
        # Still routing: a fresh INVITE reaches the upstream.
        time.sleep(0.5)
        try:
            while sink.recv(65536):
                pass
        except BlockingIOError:
            pass
        client.sendto(invite(port, client.getsockname()[1], "flood-check"), (LOCALHOST, port))
        deadline = time.monotonic() + 5
        forwarded = False
        while time.monotonic() < deadline and not forwarded:
            try:
                forwarded = b"Call-ID: flood-check" in sink.recv(65536)
            except BlockingIOError:
                time.sleep(0.02)
        if not forwarded:
            raise SystemExit("proxy alive but no longer forwards after the flood")
        proxy.send_signal(signal.SIGTERM)
        status = proxy.wait(timeout=10)
        if status != 0:
            raise SystemExit(f"proxy exited with {status} after SIGTERM")
        print(f"corpus flood: {sent} corpus messages and {mutations} mutations sent; proxy forwarded "
              f"a call afterwards and stopped with status 0")
        return 0
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
