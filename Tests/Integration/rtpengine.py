"""rtpengine for the recording tests: the daemon on loopback in userspace, and a small NG client.

The daemon runs as /work/shared/reference/rtpengine-ng.md says (Debian 12, rtpengine 10.5):
no configuration file, no kernel table, one interface 127.0.0.1, the NG control port and a media
port range of its own, foreground, log to stderr (our log file). It is started by PID, is ready
once `ping` answers `pong`, and is stopped by PID like every other process of the suite.

NG protocol: each UDP datagram is `<cookie> <bencoded dictionary>`; the reply repeats the cookie.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import socket
import time
from pathlib import Path

import harness
from harness import HarnessError, LOCALHOST, ManagedProcess

READY_TIMEOUT_S = 10.0
NG_TIMEOUT_S = 1.0  # one attempt; a request is sent up to NG_ATTEMPTS times
NG_ATTEMPTS = 3

# Media ports: below the kernel's ephemeral range (32768-60999), where harness.free_port() and
# the SIPp/RTP ports of the tests come from, so rtpengine never takes a port a test handed out.
MEDIA_RANGE_BASE = 20000
MEDIA_RANGE_SIZE = 400


# ----------------------------------------------------------------------------- bencode

def bencode(value) -> bytes:
    """Integers, strings (UTF-8), bytes, lists and dictionaries (keys sorted as bytes)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return f"i{value}e".encode()
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return str(len(value)).encode() + b":" + bytes(value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, dict):
        items = sorted(((k.encode() if isinstance(k, str) else k), v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes):
    """The value encoded in data; strings that are valid UTF-8 come back as str."""
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the bencoded value")
    return value


def _decode_at(data: bytes, at: int):
    lead = data[at:at + 1]
    if lead == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if lead in (b"l", b"d"):
        at += 1
        items = []
        while data[at:at + 1] != b"e":
            if at >= len(data):
                raise ValueError("unterminated list or dictionary")
            item, at = _decode_at(data, at)
            items.append(item)
        if lead == b"l":
            return items, at + 1
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, at + 1
    if lead.isdigit():
        colon = data.index(b":", at)
        length = int(data[at:colon])
        raw = data[colon + 1:colon + 1 + length]
        if len(raw) != length:
            raise ValueError("truncated string")
        try:
            return raw.decode(), colon + 1 + length
        except UnicodeDecodeError:
            return raw, colon + 1 + length
    raise ValueError(f"unexpected byte {lead!r} at {at}")


# ----------------------------------------------------------------------------- NG client

class NgError(AssertionError):
    """rtpengine did not answer, or answered with result error."""


class NgClient:
    """Requests to rtpengine's NG port over UDP, with a cookie per request and bounded retries."""

    _serial = itertools.count(1)

    def __init__(self, port: int, host: str = LOCALHOST):
        self.address = (host, port)

    def request(self, command: str, timeout: float = NG_TIMEOUT_S, attempts: int = NG_ATTEMPTS,
                check: bool = True, **params) -> dict:
        """Sends {command, **params} (underscores in keys become spaces: delete_delay ->
        'delete delay'; dashes are spelled as dashes: call_id is passed as **{'call-id': ...})."""
        message = {"command": command}
        message.update({key.replace("_", " "): value for key, value in params.items()})
        cookie = f"{os.getpid():x}_{next(self._serial)}"
        datagram = cookie.encode() + b" " + bencode(message)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            for _ in range(attempts):
                sock.sendto(datagram, self.address)
                deadline = time.monotonic() + timeout
                while (left := deadline - time.monotonic()) > 0:
                    ready, _, _ = select.select([sock], [], [], left)
                    if not ready:
                        break
                    try:
                        reply = sock.recv(65535)
                    except ConnectionRefusedError:
                        time.sleep(min(left, 0.05))
                        break
                    head, _, body = reply.partition(b" ")
                    if head.decode(errors="replace") != cookie:
                        continue  # a late reply to an earlier attempt of another request
                    answer = bdecode(body)
                    if check and answer.get("result") not in ("ok", "pong"):
                        raise NgError(f"rtpengine {command}: {answer}")
                    return answer
        raise NgError(f"rtpengine at {self.address[0]}:{self.address[1]} did not answer {command!r}")

    # --- the commands the tests use

    def ping(self, timeout: float = NG_TIMEOUT_S, attempts: int = 1) -> bool:
        try:
            return self.request("ping", timeout=timeout, attempts=attempts).get("result") == "pong"
        except NgError:
            return False

    def list_calls(self, limit: int = 100) -> list[str]:
        return list(self.request("list", limit=limit).get("calls", []))

    def query(self, call_id: str) -> dict:
        return self.request("query", **{"call-id": call_id})

    def wait_no_calls(self, timeout: float = 2.0) -> list[str]:
        """Polls `list` until it is empty or timeout passes; returns the last list."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.list_calls()
            if not calls or time.monotonic() >= deadline:
                return calls
            time.sleep(0.05)

    def offer(self, call_id: str, from_tag: str, sdp: str, **params) -> dict:
        return self.request("offer", sdp=sdp, replace=["origin", "session-connection"],
                            **{"call-id": call_id, "from-tag": from_tag}, **params)

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str, **params) -> dict:
        return self.request("answer", sdp=sdp, replace=["origin", "session-connection"],
                            **{"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag},
                            **params)

    def subscribe_request(self, call_id: str, to_tag: str | None = None,
                          flags: tuple[str, ...] = ("all", "siprec")) -> dict:
        extra = {"to-tag": to_tag} if to_tag else {}
        return self.request("subscribe request", flags=list(flags), **{"call-id": call_id},
                            **extra)

    def subscribe_answer(self, call_id: str, to_tag: str, sdp: str,
                         flags: tuple[str, ...] = ("allow transcoding",)) -> dict:
        return self.request("subscribe answer", sdp=sdp, flags=list(flags),
                            **{"call-id": call_id, "to-tag": to_tag})

    def unsubscribe(self, call_id: str, to_tag: str) -> dict:
        return self.request("unsubscribe", **{"call-id": call_id, "to-tag": to_tag})

    def delete(self, call_id: str) -> dict:
        return self.request("delete", **{"call-id": call_id, "delete delay": 0})


# ----------------------------------------------------------------------------- the daemon

def rtpengine_available() -> bool:
    return shutil.which("rtpengine") is not None


def media_port_range(size: int = MEDIA_RANGE_SIZE) -> tuple[int, int]:
    """A port range for one daemon: below the ephemeral range, different per pytest process so
    that two runs on one machine do not share it, and checked to be free right now."""
    slots = (32768 - MEDIA_RANGE_BASE) // size
    first_slot = os.getpid() % slots
    for offset in range(slots):
        low = MEDIA_RANGE_BASE + ((first_slot + offset) % slots) * size
        if all(_udp_port_free(port) for port in range(low, low + size, 7)):
            return low, low + size - 1
    raise HarnessError("no free media port range for rtpengine")


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


class RtpEngine(ManagedProcess):
    """One rtpengine daemon on 127.0.0.1 with its own NG port and media port range."""

    def __init__(self, work_dir: Path, ng_port: int | None = None,
                 port_range: tuple[int, int] | None = None, log_level: int = 6):
        self.ng_port = ng_port or harness.free_port()
        self.port_min, self.port_max = port_range or media_port_range()
        self.pidfile = work_dir / "rtpengine.pid"
        argv = ["rtpengine", "--config-file=none", "--table=-1",
                f"--interface={LOCALHOST}",
                f"--listen-ng={LOCALHOST}:{self.ng_port}",
                f"--port-min={self.port_min}", f"--port-max={self.port_max}",
                "--foreground", "--log-stderr", f"--log-level={log_level}",
                f"--pidfile={self.pidfile}"]
        super().__init__("rtpengine", argv, work_dir / "rtpengine.log", cwd=work_dir)
        self.ng = NgClient(self.ng_port)

    @property
    def ng_uri(self) -> str:
        """The proxy's --rtpengine value."""
        return f"udp:{LOCALHOST}:{self.ng_port}"

    def owns_port(self, port: int) -> bool:
        return self.port_min <= port <= self.port_max

    def start_and_wait(self, timeout: float = READY_TIMEOUT_S) -> "RtpEngine":
        """Starts the daemon and returns once `ping` answers `pong`."""
        if not rtpengine_available():
            raise HarnessError("rtpengine not found on PATH (Debian package rtpengine-daemon)")
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"rtpengine exited with status {self.popen.returncode}\n"
                                   f"{self.log_tail()}")
            if self.ng.ping(timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise HarnessError(f"rtpengine did not answer ping within {timeout:.0f} s\n{self.log_tail()}")
