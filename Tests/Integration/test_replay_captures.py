"""sip-replay on captures: a capture of the proxy's own traffic (taken on lo with dumpcap while SIPp
calls go through it) summarised and replayed through a fresh proxy; every basic call of the shared
corpus replayed through the proxy over UDP; unusable files refused with a message and exit 2.

A capture taken on lo around a proxy holds both legs of each call under one Call-ID: the
caller's INVITE and the proxy's copy toward the callee, the callee's responses and the proxy's
copies toward the caller. sip-replay keeps each message as its end sent it and counts the rest as
"copies on other hops left out" (CallTemplate.swift, droppingForwardedCopies); the test checks
that accounting exactly against what the two SIPp instances sent and received.

Binaries: SIP_REPLAY_BIN (default .build/debug/sip-replay) and SIPREC_EDGE_BIN (harness.py).
Every process runs on 127.0.0.1, is started and stopped by its PID, and every wait is bounded.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

import harness
import siprec
from harness import HarnessError, ManagedProcess

CORPUS = harness.REPO_ROOT.parent / "shared" / "corpus" / "pcaps"
RUN_BOUND_S = 60.0
CAPTURE_START_S = 10.0

# --------------------------------------------------------------------------------------- helpers


def sip_replay(args: list[str], timeout: float = RUN_BOUND_S) -> subprocess.CompletedProcess:
    binary = harness.sip_replay_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (swift build)")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)


SUMMARY_HEADER = re.compile(
    r"^sip: (?P<sip>\d+) messages \((?P<udp>\d+) UDP, (?P<tcp>\d+) TCP, (?P<sctp>\d+) SCTP\), "
    r"(?P<calls>\d+) calls, (?P<complete>\d+) complete\b", re.MULTILINE)
# The per-call summary line (CallTemplate.summaryLine).
CALL_LINE = re.compile(
    r"^  (?P<kind>\w+) \S+ -> \S+: (?P<messages>\d+) messages, (?P<retransmissions>\d+) retransmissions, "
    r"(?:(?P<forwarded>\d+) copies on other hops left out, )?(?P<complete>complete|incomplete)", re.MULTILINE)


def summary(path: Path) -> tuple[dict[str, int], list[dict], str]:
    """sip-replay --summary: the header counts, one dict per call, and the whole text."""
    done = sip_replay(["--summary", str(path)])
    assert done.returncode == 0, f"--summary exit {done.returncode}: {done.stderr}"
    header = SUMMARY_HEADER.search(done.stdout)
    assert header, f"no sip: line in the summary:\n{done.stdout[:2000]}"
    calls = [{key: (int(value) if value and value.isdigit() else value)
              for key, value in match.groupdict().items()}
             for match in CALL_LINE.finditer(done.stdout)]
    return {key: int(value) for key, value in header.groupdict().items()}, calls, done.stdout


def replay(bench, path: Path, rate: float, calls: int, timeout_ms: int = 5000) -> dict:
    """Replays path through a freshly started proxy over UDP; returns the JSON report after
    checking exit 0 and every call completed."""
    callee_port = harness.free_port()
    endpoints = bench.start_proxy(callee_port, "udp")
    done = sip_replay([str(path), "--target", f"udp:{harness.LOCALHOST}:{endpoints.udp_port}",
                       "--callee-port", str(callee_port), "--rate", str(rate), "--calls", str(calls),
                       "--timeout-ms", str(timeout_ms), "--json"])
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, (f"exit {done.returncode}: {report.get('failureExamples')}\n"
                                  f"{done.stderr}")
    assert report["callsAttempted"] == calls
    assert report["callsCompleted"] == calls
    assert report["callsFailed"] == 0
    bench.assert_proxy_running()
    return report


class LoopbackCapture:
    """dumpcap on lo with a capture filter, writing pcapng; started and stopped by its PID."""

    def __init__(self, work_dir: Path, capture_filter: str):
        self.path = work_dir / "lo.pcapng"
        self.process = ManagedProcess(
            "dumpcap", ["dumpcap", "-i", "lo", "-f", capture_filter, "-w", str(self.path)],
            work_dir / "dumpcap.log")

    def start(self) -> "LoopbackCapture":
        self.process.start()
        deadline = time.monotonic() + CAPTURE_START_S
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise HarnessError(f"dumpcap exited with status {self.process.popen.returncode}:\n"
                                   f"{self.process.log_tail()}")
            if "Capturing on" in self.process.log_tail():
                return self
            time.sleep(0.02)
        self.process.stop()
        raise HarnessError(f"dumpcap not capturing within {CAPTURE_START_S:.0f} s\n"
                           f"{self.process.log_tail()}")

    def stop(self) -> Path:
        """SIGTERM by PID: dumpcap writes what it has and exits 0."""
        status, _ = self.process.stop(signal.SIGTERM)
        assert status == 0, f"dumpcap exit status {status}:\n{self.process.log_tail()}"
        assert self.path.exists() and self.path.stat().st_size > 0, "dumpcap wrote nothing"
        return self.path

    def close(self) -> None:
        if self.process.popen is not None and self.process.alive():
            self.process.stop()


# ------------------------------------------------------------------ the proxy's own traffic

CAPTURED_CALLS = 10


def test_capture_of_the_proxys_own_traffic_replays_cleanly(bench, tmp_path):
    bench.skip_unless_proxy("the capture is of a proxy's two legs")
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap not installed")
    uas = bench.uas("uas_call.xml", "udp", calls=CAPTURED_CALLS)
    endpoints = bench.start_proxy(uas.local_port, "udp")
    # Both legs: caller <-> proxy on the proxy's port, proxy <-> callee on the callee's.
    capture = LoopbackCapture(tmp_path, f"udp port {endpoints.udp_port} or udp port {uas.local_port}")
    try:
        capture.start()
        uac = bench.uac("uac_call.xml", "udp", endpoints.udp_port, calls=CAPTURED_CALLS)
        bench.finish_calls(uac, uas)
        time.sleep(0.2)  # the last datagrams out of the kernel's capture buffer
        path = capture.stop()
    finally:
        capture.close()
    # What the proxy relayed for the SIPp calls, per call (INVITE, ACK, BYE; 180, 200, 200).
    counted = ("requests_forwarded", "responses_relayed")
    original = siprec.read_counters(bench.proxy)
    per_call = {name: original[name] / CAPTURED_CALLS for name in counted}
    assert per_call == {"requests_forwarded": 3, "responses_relayed": 3}, original
    bench.proxy.stop()

    # Every datagram on the wire was sent or received by exactly one of the two SIPp instances.
    on_wire = len(uac.trace()) + len(uas.trace())
    header, calls, text = summary(path)
    assert header["sip"] == on_wire, text[:3000]
    assert header["udp"] == on_wire
    assert header["calls"] == CAPTURED_CALLS
    assert header["complete"] == CAPTURED_CALLS
    assert len(calls) == CAPTURED_CALLS, text[:3000]
    for call in calls:
        assert call["kind"] == "INVITE" and call["complete"] == "complete", call
        # INVITE, 100, 180, 200, ACK, BYE, 200 as the ends sent them (retransmissions, if SIPp
        # had to resend, marked and kept); everything else is the proxy's copy on the other leg.
        assert call["messages"] - call["retransmissions"] == 7, call
        assert isinstance(call["forwarded"], int) and call["forwarded"] > 0, call
    assert sum(c["messages"] + (c["forwarded"] or 0) for c in calls) == on_wire
    # One template per call, in roles and order of the ends (first call shown).
    first_call = text.split("\ncall 2:")[0]
    steps = re.findall(r"^  \+\s+\d+ ms  (caller -> callee|caller <- callee)  (\S+(?: \(\w+\))?)", first_call,
                       re.MULTILINE)
    assert steps == [
        ("caller -> callee", "INVITE"), ("caller <- callee", "100 (INVITE)"),
        ("caller <- callee", "180 (INVITE)"), ("caller <- callee", "200 (INVITE)"),
        ("caller -> callee", "ACK"), ("caller -> callee", "BYE"), ("caller <- callee", "200 (BYE)"),
    ], first_call

    report = replay(bench, path, rate=50, calls=20)
    assert report["latencyMicroseconds"]["inviteToOK"]["count"] == 20
    assert report["latencyMicroseconds"]["byeToOK"]["count"] == 20
    # The replay made the proxy relay what the SIPp calls made it relay, no more: the proxy's
    # copies in the capture are not replayed as requests and responses of the callee.
    replayed = siprec.read_counters(bench.proxy)
    assert {name: replayed[name] for name in counted} == {name: per_call[name] * 20 for name in counted}, replayed


# ------------------------------------------------------------------------- the shared corpus

# Basic calls: (file, calls to place). Each is one complete INVITE call.
BASIC_CALLS = [
    "goffinet_SIP-SDP-Example.pcap",  # callee hangs up
    "goffinet_sip-direct.pcapng",  # caller hangs up, CSeq 20
    "heplify_sip_ipv6_udp.pcap",  # IPv6; clocks past 2^31 s (read unsigned, BYE last)
    "heplify_sip_ipv4_tcp.pcap",  # captured over TCP, replayed over UDP
    "goffinet_RTP-Protocol.pcap",  # 100rel: PRACK and its 200 before the INVITE's 200
    "goffinet_SIP-Call-with-Proxy-Server.pcap",  # both legs of a proxy: its copies left out
]


@pytest.mark.parametrize("capture", BASIC_CALLS)
def test_corpus_basic_call_replays_through_the_proxy(bench, capture):
    bench.skip_unless_proxy("the replay plays both ends; it needs a proxy between them")
    path = CORPUS / capture
    if not path.exists():
        pytest.skip(f"capture {path} not present")
    header, calls, text = summary(path)
    assert header["calls"] == 1 and header["complete"] == 1, text
    assert calls[0]["kind"] == "INVITE", text
    if capture == "goffinet_SIP-Call-with-Proxy-Server.pcap":
        # 11 messages: the 7 of the ends; the proxy's INVITE toward the callee, its own 100 and
        # its copies of the 180 and 200 toward the caller are left out.
        assert (calls[0]["messages"], calls[0]["forwarded"], calls[0]["retransmissions"]) == (7, 4, 0), text
    else:
        assert calls[0]["forwarded"] is None, text
    # The capture's delays are kept (capped at 2 s each): a call lasts up to about 10 s.
    replay(bench, path, rate=20, calls=3, timeout_ms=5000)


# --------------------------------------------------------------------------- unusable input

def pcap_header(link_type: int) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type)


def pcap_record(data: bytes, seconds: int = 1) -> bytes:
    return struct.pack("<IIII", seconds, 0, len(data), len(data)) + data


def raw_udp(payload: bytes, source: int = 5060, destination: int = 5070) -> bytes:
    """A raw IPv4 packet (link type 228) holding one UDP datagram."""
    udp = struct.pack(">HHHH", source, destination, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return ip + udp


OPTIONS = (b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
           b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: unusable-1\r\n"
           b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
RESPONSE_ONLY = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
                 b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\nCall-ID: unusable-2\r\n"
                 b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")

UNUSABLE = {
    # name: (file bytes, what stderr says)
    "unknown-link-type": (pcap_header(147) + pcap_record(b"\0" * 40),
                          r"unsupported link type 147 \(unknown\) in .*; supported: Ethernet"),
    "no-sip": (pcap_header(228) + pcap_record(raw_udp(b"not sip, just bytes")), r"no SIP messages in "),
    "truncated-header": ((pcap_header(228) + pcap_record(raw_udp(OPTIONS)))[:34],
                         r"cannot read capture .*: truncated dump file"),
    "not-a-pcap": (b"this is not a capture file\n" * 20, r"cannot open capture .*: unknown file format"),
    "empty": (b"", r"cannot open capture .*: truncated dump file"),
}


def assert_refused(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, f"exit {done.returncode} (negative: killed by a signal)\n{done.stderr}"
    assert re.search(r"^sip-replay: " + expected, done.stderr, re.MULTILINE), done.stderr
    assert done.stdout == "", done.stdout
    assert "Fatal error" not in done.stderr and "Stack dump" not in done.stderr


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_unusable_capture_exits_2_with_a_message(tmp_path, name):
    content, expected = UNUSABLE[name]
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(content)
    assert_refused(sip_replay(["--summary", str(path)], timeout=10), expected)
    # Replaying refuses it the same way before sending anything (nothing listens at the target).
    assert_refused(sip_replay([str(path), "--target", f"udp:{harness.LOCALHOST}:{harness.free_port()}",
                               "--calls", "1", "--json"], timeout=10), expected)


def test_missing_file_exits_2(tmp_path):
    assert_refused(sip_replay(["--summary", str(tmp_path / "absent.pcap")], timeout=10),
                   r"cannot open capture .*absent\.pcap: .*No such file or directory")


def test_capture_with_only_a_response_has_nothing_to_replay(tmp_path):
    path = tmp_path / "response-only.pcap"
    path.write_bytes(pcap_header(228) + pcap_record(raw_udp(RESPONSE_ONLY)))
    header, calls, _ = summary(path)  # readable: one call, not replayable
    assert (header["sip"], header["calls"], header["complete"]) == (1, 1, 0)
    done = sip_replay([str(path), "--target", f"udp:{harness.LOCALHOST}:{harness.free_port()}",
                       "--calls", "1", "--json"], timeout=10)
    assert_refused(done, r".*response-only\.pcap has no .*call.* to replay")


def test_capture_truncated_mid_packet_keeps_what_was_read(tmp_path):
    # A whole OPTIONS, then a second record cut short: a warning, the first message kept.
    path = tmp_path / "cut.pcap"
    whole = pcap_header(228) + pcap_record(raw_udp(OPTIONS))
    path.write_bytes(whole + pcap_record(raw_udp(OPTIONS), seconds=2)[:30])
    done = sip_replay(["--summary", str(path)], timeout=10)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^sip-replay: warning: capture truncated after 1 packets", done.stderr,
                     re.MULTILINE), done.stderr
    header = SUMMARY_HEADER.search(done.stdout)
    assert header and int(header["sip"]) == 1 and int(header["calls"]) == 1, done.stdout
