"""sip-replay against the proxy: captured calls replayed over UDP through siprec-edge, the replay
tool playing both the caller and the callee (the proxy's upstream)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import harness

CORPUS = harness.REPO_ROOT.parent / "shared" / "corpus" / "pcaps"
RUN_BOUND_S = 60.0


def replay_binary() -> Path:
    configured = os.environ.get("SIP_REPLAY_BIN", ".build/debug/sip-replay")
    path = Path(configured)
    return path if path.is_absolute() else harness.REPO_ROOT / path


def run_replay(capture: str, target_port: int, callee_port: int, rate: float, calls: int,
               extra: list[str] = ()) -> tuple[int, dict, str]:
    binary = replay_binary()
    if not binary.exists():
        pytest.skip(f"{binary} not built (swift build)")
    path = CORPUS / capture
    if not path.exists():
        pytest.skip(f"capture {path} not present")
    argv = [str(binary), str(path), "--target", f"udp:{harness.LOCALHOST}:{target_port}",
            "--callee-port", str(callee_port), "--rate", str(rate), "--calls", str(calls), "--json",
            *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_BOUND_S)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, report, done.stderr


def replay_through_proxy(bench, capture: str, rate: float, calls: int) -> dict:
    bench.skip_unless_proxy("the replay plays both ends; it needs a proxy between them")
    callee_port = harness.free_port()
    endpoints = bench.start_proxy(callee_port, "udp")
    status, report, stderr = run_replay(capture, endpoints.udp_port, callee_port, rate, calls,
                                        ["--proxy-pid", str(bench.proxy.pid)])
    assert status == 0, f"exit status {status}: {report['failureExamples']}\n{stderr}"
    assert report["callsAttempted"] == calls
    assert report["callsCompleted"] == calls
    assert report["callsFailed"] == 0
    latency = report["latencyMicroseconds"]
    assert latency["inviteToOK"]["count"] == calls
    assert latency["byeToOK"]["count"] == calls
    assert report["proxyPeakMemoryKilobytes"] is not None
    bench.assert_proxy_running()
    return report


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
    binary = replay_binary()
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
