"""sip-replay against the proxy: captured calls replayed over UDP and TCP through siprec-edge, the
replay tool playing both the caller and the callee (the proxy's upstream): INVITE calls, CANCELled
calls (a synthetic capture written here), REGISTER, held calls; and its command line."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest

import harness
from recording import RecordingBench, assert_cleaned_up

CORPUS = harness.REPO_ROOT.parent / "shared" / "corpus" / "pcaps"
RUN_BOUND_S = 60.0


def run_replay(capture: str | Path, target_port: int, callee_port: int, rate: float,
               calls: int | None, extra: list[str] = (), transport: str = "udp") -> tuple[int, dict, str]:
    binary = harness.sip_replay_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (swift build)")
    path = capture if isinstance(capture, Path) else CORPUS / capture
    if not path.exists():
        pytest.skip(f"capture {path} not present")
    argv = [str(binary), str(path), "--target", f"{transport}:{harness.LOCALHOST}:{target_port}",
            "--callee-port", str(callee_port), "--rate", str(rate), "--json", *extra]
    if calls is not None:
        argv += ["--calls", str(calls)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_BOUND_S)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, report, done.stderr


def replay_through_proxy(bench, capture: str | Path, rate: float, calls: int | None,
                         transport: str = "udp", extra: list[str] = (),
                         answered: bool = True) -> dict:
    """Replays through the proxy (its upstream the callee side, over `transport`) and asserts
    every call completed; answered calls also have an INVITE->200 and a BYE->200 each."""
    bench.skip_unless_proxy("the replay plays both ends; it needs a proxy between them")
    callee_port = harness.free_port()
    endpoints = bench.start_proxy(callee_port, transport)
    status, report, stderr = run_replay(capture, endpoints.port(transport), callee_port, rate,
                                        calls, ["--proxy-pid", str(bench.proxy.pid), *extra],
                                        transport=transport)
    assert status == 0, f"exit status {status}: {report['failureExamples']}\n{stderr}"
    attempted = report["callsAttempted"]
    assert calls is None or attempted == calls
    assert report["callsCompleted"] == attempted > 0
    assert report["callsFailed"] == 0
    assert report["target"] == f"{transport}:{harness.LOCALHOST}:{endpoints.port(transport)}"
    latency = report["latencyMicroseconds"]
    if answered:
        assert latency["inviteToOK"]["count"] == attempted
        assert latency["byeToOK"]["count"] == attempted
    assert report["proxyPeakMemoryKilobytes"] is not None
    assert report["replayCPUSecondsPer1000Calls"] is not None
    bench.assert_proxy_running()
    return report


# ----------------------------------------------------------------------------- synthetic captures

def _sip(start: str, cseq: str, branch: str = "z9hG4bK1", to_tag: str = "", body: str = "",
         contact: bool = True) -> bytes:
    to = "<sip:b@y>" + (f";tag={to_tag}" if to_tag else "")
    lines = [start, f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}", "From: <sip:a@x>;tag=a1",
             f"To: {to}", "Call-ID: synthetic-cancel", f"CSeq: {cseq}", "Max-Forwards: 70"]
    if contact:
        lines.append("Contact: <sip:a@10.0.0.1:5060>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def write_udp_pcap(path: Path, flow: list[tuple[float, bool, bytes]]) -> Path:
    """A classic pcap (DLT_NULL, IPv4/UDP) of (time, from the caller?, SIP message) packets
    between 10.0.0.1 and 10.0.0.2."""
    caller, callee = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0)
    for when, from_caller, payload in flow:
        source, destination = (caller, callee) if from_caller else (callee, caller)
        datagram = struct.pack("!HHHH", 5060, 5060, 8 + len(payload), 0) + payload
        packet = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(datagram), 1, 0, 64, 17, 0,
                             source, destination) + datagram
        frame = struct.pack("<I", 2) + packet  # DLT_NULL: AF_INET in host order
        out += struct.pack("<IIII", int(when), round((when % 1) * 1e6), len(frame), len(frame))
        out += frame
    path.write_bytes(out)
    return path


SDP = ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0\r\n")


def cancelled_call_capture(directory: Path) -> Path:
    """INVITE / 100 / 180 / CANCEL / 200 (CANCEL) / 487 / ACK, as one UA pair saw it."""
    return write_udp_pcap(directory / "cancelled.pcap", [
        (10.00, True, _sip("INVITE sip:b@y SIP/2.0", "1 INVITE", body=SDP)),
        (10.01, False, _sip("SIP/2.0 100 Trying", "1 INVITE", contact=False)),
        (10.02, False, _sip("SIP/2.0 180 Ringing", "1 INVITE", to_tag="b1")),
        (10.10, True, _sip("CANCEL sip:b@y SIP/2.0", "1 CANCEL", contact=False)),
        (10.11, False, _sip("SIP/2.0 200 OK", "1 CANCEL", to_tag="b1", contact=False)),
        (10.12, False, _sip("SIP/2.0 487 Request Terminated", "1 INVITE", to_tag="b1",
                            contact=False)),
        (10.13, True, _sip("ACK sip:b@y SIP/2.0", "1 ACK", to_tag="b1", contact=False)),
    ])


def test_replay_sdp_example_callee_hangs_up(bench):
    # INVITE/100/180/200/ACK from the caller, BYE from the callee: the callee's BYE follows the
    # Record-Route it saw in the INVITE, the caller answers it.
    report = replay_through_proxy(bench, "goffinet_SIP-SDP-Example.pcap", rate=20, calls=40)
    # The capture's callee answered after 1.9 s: the replay keeps that delay.
    assert report["latencyMicroseconds"]["inviteToOK"]["min"] >= 1_500_000


def test_replay_sipp_capture_at_100_calls_per_second(bench):
    replay_through_proxy(bench, "goffinet_uac-uas-scenario-sipp.pcapng", rate=100, calls=200)


def test_replay_without_proxy_times_out_with_status_1(bench):
    # Nothing listens at the target: every call fails by timeout within --timeout-ms.
    status, report, stderr = run_replay("goffinet_uac-uas-scenario-sipp.pcapng", harness.free_port(),
                                        harness.free_port(), rate=20, calls=3,
                                        extra=["--timeout-ms", "500"])
    assert status == 1, stderr
    assert report["callsCompleted"] == 0
    assert report["callsFailed"] == 3
    assert report["failures"]["timeout"] == 3
    assert report["durationSeconds"] < 5


def test_replay_ramp_through_proxy(bench):
    # Steps of 2 s at 50, 100, 200 and 400 calls/s (the next, 800, passes --ramp-max): every step
    # passes, no bisection step, the highest zero-failure rate is the last.
    bench.skip_unless_proxy("the replay plays both ends; it needs a proxy between them")
    binary = harness.sip_replay_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (swift build)")
    path = CORPUS / "goffinet_uac-uas-scenario-sipp.pcapng"
    if not path.exists():
        pytest.skip(f"capture {path} not present")
    callee_port = harness.free_port()
    endpoints = bench.start_proxy(callee_port, "udp")
    argv = [str(binary), str(path), "--target", f"udp:{harness.LOCALHOST}:{endpoints.udp_port}",
            "--callee-port", str(callee_port), "--ramp", "--ramp-start", "50", "--ramp-factor", "2",
            "--ramp-step-seconds", "2", "--ramp-max", "400", "--json",
            "--proxy-pid", str(bench.proxy.pid)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_BOUND_S)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"{report['ramp']} {report['failureExamples']}\n{done.stderr}"
    assert [step["rate"] for step in report["ramp"]] == [50.0, 100.0, 200.0, 400.0]
    assert all(step["verdict"] == "pass" and step["failed"] == 0 for step in report["ramp"]), report["ramp"]
    assert [step["completed"] for step in report["ramp"]] == [100, 200, 400, 800]
    assert report["highestZeroFailureRate"] == 400.0
    assert report["callsAttempted"] == 1500
    assert report["callsFailed"] == 0
    assert report["exitStatus"] == 0
    bench.assert_proxy_running()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_replay_cancelled_calls_through_the_stateful_proxy(bench, tmp_path, transport):
    # The proxy answers the CANCEL itself, CANCELs toward the callee side once it has the 180, relays
    # the 487 and ACKs it hop by hop; the caller side's ACK carries the INVITE's branch. A call only
    # completes when each side saw every message the template gives it.
    report = replay_through_proxy(bench, cancelled_call_capture(tmp_path), rate=50, calls=60,
                                  transport=transport, answered=False)
    assert report["latencyMicroseconds"]["inviteToOK"]["count"] == 0
    if transport == "tcp":
        assert report["retransmissions"] == 0


def test_replay_over_tcp_with_two_connections(bench):
    report = replay_through_proxy(bench, "goffinet_uac-uas-scenario-sipp.pcapng", rate=100,
                                  calls=200, transport="tcp", extra=["--tcp-connections", "2"])
    assert report["retransmissions"] == 0, "nothing is resent over TCP"


def test_replay_registrations_with_a_challenge(bench):
    # REGISTER / 100 / 401, REGISTER / 100 / 200, REGISTER / 100 / 200: each REGISTER a new
    # transaction outside any dialog, the proxy absorbing the 100s.
    report = replay_through_proxy(bench, "goffinet_sip-cme-zoiper-register.pcapng", rate=20,
                                  calls=20, answered=False)
    assert report["latencyMicroseconds"]["inviteToOK"]["count"] == 0


def test_replay_hold_keeps_every_call_up(bench):
    # 200 calls over 1 s (--duration), each held 1.5 s after its ACK: all are up at once.
    report = replay_through_proxy(bench, "goffinet_uac-uas-scenario-sipp.pcapng", rate=200,
                                  calls=None, extra=["--duration", "1", "--hold-ms", "1500"])
    assert report["callsAttempted"] == 200
    assert report["peakConcurrentCalls"] == 200
    assert report["durationSeconds"] >= 2.4


def test_replay_with_a_tcp_target_that_refuses_fails_calls_as_transport(bench):
    # Nothing listens on the target port: each connection is refused and its calls fail at once.
    status, report, stderr = run_replay("goffinet_uac-uas-scenario-sipp.pcapng",
                                        harness.free_port(), harness.free_port(), rate=20, calls=4,
                                        extra=["--timeout-ms", "4000"], transport="tcp")
    assert status == 1, stderr
    assert report["failures"]["transport"] == 4, report["failureExamples"]
    assert report["durationSeconds"] < 2


# ----------------------------------------------------------------------------- recorded replays

def recorded_replay(bench, calls: int, rate: float, extra: list[str] = ()) -> tuple[int, dict, str, RecordingBench]:
    """rtpengine (started by PID), the proxy recording every call to sip-replay's SRS on a free
    port (--srs sip:srs@127.0.0.1:P --rtpengine ...), and sip-replay replaying the SIPp capture
    (an SDP offer in every INVITE) through it with --srs-port P."""
    rec = RecordingBench(bench)  # skips unless the proxy is siprec-edge; starts rtpengine
    callee_port, srs_port = harness.free_port(), harness.free_port()
    endpoints = bench.start_proxy(callee_port, "udp", extra_args=[
        "--srs", f"sip:srs@{harness.LOCALHOST}:{srs_port}", "--rtpengine", rec.engine.ng_uri])
    rec.endpoints = endpoints
    status, report, stderr = run_replay("goffinet_uac-uas-scenario-sipp.pcapng", endpoints.udp_port,
                                        callee_port, rate, calls,
                                        ["--srs-port", str(srs_port), "--proxy-pid", str(bench.proxy.pid),
                                         *extra])
    assert f"SRS on {harness.LOCALHOST}:{srs_port} UDP and TCP" in stderr, stderr
    return status, report, stderr, rec


def assert_calls_completed(report: dict, calls: int) -> None:
    assert report["callsAttempted"] == calls
    assert report["callsCompleted"] == calls, report["failureExamples"]
    assert report["callsFailed"] == 0


@pytest.mark.recording
def test_recorded_replay_through_the_proxy_and_rtpengine(bench):
    # Every replayed call is anchored at rtpengine and recorded to sip-replay's SRS: one recording
    # session per call, its INVITE with metadata, ACKed, a last UPDATE (stop-time metadata alone:
    # the replay's SRS lists UPDATE in its 200's Allow),
    # ended by BYE; nothing left active at the SRS, the proxy or rtpengine.
    # Each call is held 300 ms after its ACK, so its recording is up (answered, ACKed) before the
    # call's BYE: then the proxy ends it with an UPDATE carrying stop-time, then a BYE. (Calls
    # that end within a millisecond of their answer race the recording's start.)
    calls = 20
    status, report, stderr, rec = recorded_replay(bench, calls=calls, rate=20, extra=["--hold-ms", "300"])
    assert status == 0, f"exit status {status}: {report.get('recordingProblems')}\n{stderr}"
    assert_calls_completed(report, calls)
    srs = report["srs"]
    assert srs["sessionsOffered"] == srs["sessionsAnswered"] == calls, srs
    assert srs["sessionsEndedByBye"] == srs["sessionsAnswered"], srs
    assert srs["sessionsWithoutACK"] == 0 and srs["sessionsCancelled"] == 0, srs
    # The initial INVITE and the last UPDATE (stop-time) of each session carry metadata; no
    # re-INVITE, since the final metadata changes no media.
    assert srs["updatesAnswered"] == calls and srs["reInvitesAnswered"] == 0, srs
    assert srs["metadataPartsSeen"] == srs["sessionsOffered"] + srs["updatesAnswered"], srs
    assert srs["metadataPartsMissing"] == 0, srs
    assert srs["activeSessions"] == 0, srs
    assert 2 <= srs["peakActiveSessions"] <= calls, srs  # 300 ms calls starting every 50 ms
    assert srs["requestsRejected"] == 0 and srs["rejections"] == {}, srs
    assert report["recordingProblems"] == []
    assert report["srsRejectStatus"] is None
    assert 0 <= report["srsDrainSeconds"] < 5.5, report["srsDrainSeconds"]
    assert report["exitStatus"] == 0
    assert_cleaned_up(rec, {"started": calls, "failed": 0})


@pytest.mark.recording
def test_recorded_replay_with_the_srs_rejecting_503(bench):
    # --srs-reject 503: every recording INVITE is refused, the proxy (one SRS, nothing to fail over
    # to) gives the recording up and the calls go on; the rejections were asked for: exit 0.
    # Calls are held 300 ms so every 503 arrives while its call is up: a call that ends first ends
    # its pending recording without counting a failure (seen once in CI: 9 failed of 10).
    calls = 10
    status, report, stderr, rec = recorded_replay(bench, calls=calls, rate=20,
                                                  extra=["--srs-reject", "503", "--hold-ms", "300"])
    assert status == 0, f"exit status {status}: {report.get('recordingProblems')}\n{stderr}"
    assert_calls_completed(report, calls)
    srs = report["srs"]
    assert srs["sessionsOffered"] == calls, srs
    assert srs["sessionsAnswered"] == 0 and srs["activeSessions"] == 0, srs
    assert srs["requestsRejected"] == calls, srs
    assert srs["rejections"] == {"503 Service Unavailable": calls}, srs
    assert report["srsRejectStatus"] == 503
    assert report["recordingProblems"] == []
    assert_cleaned_up(rec, {"started": 0, "failed": calls})


@pytest.mark.recording
def test_recorded_replay_with_a_slow_srs_gets_its_invites_cancelled(bench):
    # --srs-answer-delay-ms 3000: the SRS sends 100 and would answer 3 s later, but each call ends
    # a few milliseconds after its answer, so the proxy CANCELs the ringing recording INVITE: 487,
    # nothing answered, nothing left; the calls complete and the run is clean.
    calls = 5
    status, report, stderr, rec = recorded_replay(bench, calls=calls, rate=20,
                                                  extra=["--srs-answer-delay-ms", "3000"])
    assert status == 0, f"exit status {status}: {report.get('recordingProblems')}\n{stderr}"
    assert_calls_completed(report, calls)
    srs = report["srs"]
    assert srs["sessionsOffered"] == srs["sessionsCancelled"] == calls, srs
    assert srs["sessionsAnswered"] == 0 and srs["activeSessions"] == 0, srs
    assert srs["rejections"] == {}, srs
    assert report["recordingProblems"] == []
    assert report["srsDrainSeconds"] < 3, "the CANCELs ended the sessions, not the drain limit"
    assert_cleaned_up(rec, {"started": 0})


def run_cli(*args: str) -> subprocess.CompletedProcess:
    binary = harness.sip_replay_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (swift build)")
    return subprocess.run([str(binary), *args], capture_output=True, text=True,
                          timeout=RUN_BOUND_S)


def test_unknown_target_transport_is_exit_2_with_a_clear_message():
    capture = CORPUS / "goffinet_uac-uas-scenario-sipp.pcapng"
    if not capture.exists():
        pytest.skip(f"capture {capture} not present")
    done = run_cli(str(capture), "--target", "sctp:127.0.0.1:5060")
    assert done.returncode == 2
    assert "unknown transport 'sctp'" in done.stderr
    assert done.stdout == ""
    for bad in (["--calls", "5", "--duration", "2"], ["--tcp-connections", "2"],
                ["--hold-ms", "-1"]):
        done = run_cli(str(capture), "--target", "udp:127.0.0.1:5060", *bad)
        assert done.returncode == 2, (bad, done.stderr)


def test_bad_srs_flags_are_exit_2_with_a_message():
    capture = CORPUS / "goffinet_uac-uas-scenario-sipp.pcapng"
    if not capture.exists():
        pytest.skip(f"capture {capture} not present")
    port = str(harness.free_port())
    for bad, message in (
            (["--srs-port", "0"], "--srs-port must be a port from 1 to 65535"),
            (["--srs-port", "70000"], "--srs-port must be a port from 1 to 65535"),
            (["--srs-port", "http"], "--srs-port"),
            (["--srs-reject", "503"], "need --srs-port"),
            (["--srs-answer-delay-ms", "10"], "need --srs-port"),
            (["--srs-port", port, "--srs-reject", "200"], "--srs-reject must be a failure status from 400 to 699"),
            (["--srs-port", port, "--srs-reject", "700"], "--srs-reject must be a failure status from 400 to 699"),
            (["--srs-port", port, "--srs-answer-delay-ms=-1"], "--srs-answer-delay-ms must not be negative"),
            (["--srs-port", port, "--srs-reject", "503", "--srs-answer-delay-ms", "10"], "with --srs-reject"),
            (["--srs-port", port, "--callee-port", port], "--srs-port and --callee-port must differ")):
        done = run_cli(str(capture), "--target", "udp:127.0.0.1:9", "--calls", "1", *bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert message in done.stderr, (bad, done.stderr)
        assert done.stdout == ""
    # A port another socket holds: the SRS cannot bind, nothing is replayed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((harness.LOCALHOST, 0))
        held = holder.getsockname()[1]
        done = run_cli(str(capture), "--target", "udp:127.0.0.1:9", "--calls", "1", "--srs-port", str(held))
        assert done.returncode == 2, done.stderr
        assert f"127.0.0.1:{held}" in done.stderr, done.stderr
        assert done.stdout == ""


def test_help_documents_every_flag_and_summary_gives_reasons():
    done = run_cli("--help")
    assert done.returncode == 0
    for flag in ("--summary", "--target", "--rate", "--calls", "--duration", "--hold-ms",
                 "--tcp-connections", "--ramp", "--ramp-start", "--ramp-factor",
                 "--ramp-step-seconds", "--ramp-max", "--callee-port", "--timeout-ms",
                 "--proxy-pid", "--json", "--srs-port", "--srs-reject", "--srs-answer-delay-ms"):
        assert flag in done.stdout, flag
    capture = CORPUS / "goffinet_uac-uas-scenario-sipp.pcapng"
    if not capture.exists():
        pytest.skip(f"capture {capture} not present")
    summary = run_cli("--summary", str(capture))
    assert summary.returncode == 0
    assert "would not be replayed: the final response to the INVITE is never ACKed" in summary.stdout
    assert "would not be replayed: the call is answered but never ended by BYE" in summary.stdout
    assert "771 calls, 768 complete, 768 replayable" in summary.stdout
