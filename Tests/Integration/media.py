"""RTP for the recording tests: ports for SIPp's media, the audio files SIPp streams, and UDP
counters standing where an SRS receives the recorded media.

The caller and the callee are SIPp instances that stream a file with `rtp_stream` (SIPp 3.6,
`-mp` sets the local RTP port, `[rtpstream_audio_port]` names it in the SDP) to the address of
the SDP they received. Each party streams a different constant byte, so that a counter at the
SRS can tell whose media a port carries, and a recording test can check the metadata's
label-to-participant mapping against the media itself.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import HarnessError, LOCALHOST

PACKET_INTERVAL_S = 0.020  # 20 ms of PCMU per RTP packet
PCMU_BYTES_PER_PACKET = 160

# The audio files the RTP scenarios stream (rtp_stream="<file>,-1,0": loop forever, PCMU). SIPp
# reads them when it loads the scenario, relative to its working directory (the test's tmp_path).
CALLER_AUDIO = "caller_audio.pcmu"
CALLEE_AUDIO = "callee_audio.pcmu"
# The byte each party's payload is made of (both are near-silence in mu-law).
CALLER_BYTE = 0xFF
CALLEE_BYTE = 0x7F
PARTY_OF_BYTE = {CALLER_BYTE: "caller", CALLEE_BYTE: "callee"}


def write_audio_files(work_dir: Path, seconds: float = 2.0) -> None:
    """Writes the caller's and the callee's audio into work_dir (looped by SIPp)."""
    frames = max(1, int(seconds / PACKET_INTERVAL_S))
    (work_dir / CALLER_AUDIO).write_bytes(bytes([CALLER_BYTE]) * PCMU_BYTES_PER_PACKET * frames)
    (work_dir / CALLEE_AUDIO).write_bytes(bytes([CALLEE_BYTE]) * PCMU_BYTES_PER_PACKET * frames)


def sipp_media_args(scenario: str, talk_ms: int | None = None) -> list[str]:
    """SIPp flags of a party with media: its own RTP port (-mp), and -set talk_ms for the
    scenarios that declare it (SIPp refuses -set for a variable a scenario does not declare)."""
    args = ["-mp", str(free_media_port())]
    text = (harness.SCENARIOS / scenario).read_text()
    if talk_ms is not None and 'variables="talk_ms"' in text:
        args += ["-set", "talk_ms", str(talk_ms)]
    return args


def free_media_port() -> int:
    """A port P with P..P+3 free on UDP (SIPp takes P for RTP, may take P+1 for RTCP and P+2
    for video), never handed out twice in this run. Linux hands out odd ports for bind(0), so P
    is usually odd: neither SIPp nor rtpengine minds."""
    for _ in range(200):
        port = harness.free_port()
        if port + 3 > 65535:
            continue
        neighbours = [port + 1, port + 2, port + 3]
        if any(p in harness._handed_out for p in neighbours):
            continue
        if all(_udp_free(p) for p in neighbours):
            harness._handed_out.update(neighbours)
            return port
    raise HarnessError("no free run of 4 UDP ports on 127.0.0.1")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


# ----------------------------------------------------------------------------- RTP packets

@dataclass
class RtpPacket:
    arrived: float  # time.time() at reception (SIPp traces use the same wall clock)
    source: tuple[str, int]
    payload_type: int
    sequence: int
    ssrc: int
    payload: bytes
    raw: bytes = b""  # the whole datagram (an SRTP packet is decrypted from it)

    @property
    def party(self) -> str | None:
        """Whose audio this is ('caller' or 'callee'), from the payload byte; None otherwise."""
        if self.payload and self.payload == bytes([self.payload[0]]) * len(self.payload):
            return PARTY_OF_BYTE.get(self.payload[0])
        return None


def parse_rtp(data: bytes, arrived: float, source) -> RtpPacket | None:
    """An RTP version-2 packet (CSRCs and an extension skipped), or None for anything else."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    csrc_count = data[0] & 0x0F
    offset = 12 + 4 * csrc_count
    if data[0] & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if data[0] & 0x20 and end > offset:
        end -= data[-1]  # padding
    sequence, = struct.unpack_from("!H", data, 2)
    ssrc, = struct.unpack_from("!I", data, 8)
    return RtpPacket(arrived, source, data[1] & 0x7F, sequence, ssrc, data[offset:end], data)


def rtp_packet(sequence: int, timestamp: int, ssrc: int, payload: bytes, payload_type: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload


# ----------------------------------------------------------------------------- counters

@dataclass
class _Port:
    sock: socket.socket
    packets: list[RtpPacket] = field(default_factory=list)
    other: int = 0  # datagrams that were not RTP (e.g. RTCP on an RTP port)


class RtpCounter:
    """UDP sockets on 127.0.0.1 that record every RTP packet they receive, in a thread of their
    own, until closed. Ports that are not given are picked free (P+1 left free for RTCP)."""

    def __init__(self, ports: list[int] | int):
        if isinstance(ports, int):
            ports = [free_media_port() for _ in range(ports)]
        self._lock = threading.Lock()
        self._ports: dict[int, _Port] = {}
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOCALHOST, port))
            sock.settimeout(0.05)
            self._ports[port] = _Port(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-counter", daemon=True)
        self._thread.start()

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    def _run(self) -> None:
        import select
        socks = {port.sock: port for port in self._ports.values()}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(socks), [], [], 0.05)
            for sock in ready:
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:
                    continue
                packet = parse_rtp(data, time.time(), source)
                with self._lock:
                    if packet is None:
                        socks[sock].other += 1
                    else:
                        socks[sock].packets.append(packet)

    def packets(self, port: int, since: float | None = None, until: float | None = None) -> list[RtpPacket]:
        with self._lock:
            found = list(self._ports[port].packets)
        return [p for p in found
                if (since is None or p.arrived >= since) and (until is None or p.arrived < until)]

    def count(self, port: int, since: float | None = None, until: float | None = None) -> int:
        return len(self.packets(port, since, until))

    def parties(self, port: int, since: float | None = None, until: float | None = None) -> set[str | None]:
        """Whose audio arrived on the port ('caller', 'callee'; None for unknown payloads)."""
        return {p.party for p in self.packets(port, since, until)}

    def wait_for(self, port: int, count: int, timeout: float) -> int:
        """Waits until `count` packets have arrived on the port or timeout passes; returns the
        number that arrived."""
        deadline = time.monotonic() + timeout
        while self.count(port) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.count(port)

    def summary(self) -> str:
        lines = []
        with self._lock:
            for port, state in self._ports.items():
                parties = sorted({str(p.party) for p in state.packets})
                lines.append(f"port {port}: {len(state.packets)} RTP packets ({', '.join(parties)}),"
                             f" {state.other} other datagrams")
        return "\n".join(lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for state in self._ports.values():
            state.sock.close()


class RtpSender:
    """Sends PCMU RTP from one local port (for the harness checks that drive rtpengine directly)."""

    def __init__(self, port: int | None = None, byte: int = CALLER_BYTE):
        self.port = port or free_media_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, self.port))
        self.ssrc = int.from_bytes(bytes([byte, 0x5A, self.port >> 8 & 0xFF, self.port & 0xFF]), "big")
        self.payload = bytes([byte]) * PCMU_BYTES_PER_PACKET
        self.sequence = 0

    def send(self, port: int, count: int, interval: float = 0.005) -> None:
        for _ in range(count):
            self.sequence += 1
            self.sock.sendto(rtp_packet(self.sequence, self.sequence * PCMU_BYTES_PER_PACKET,
                                        self.ssrc, self.payload), (LOCALHOST, port))
            time.sleep(interval)

    def close(self) -> None:
        self.sock.close()
