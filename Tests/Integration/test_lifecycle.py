"""Process contract of the proxy: a signal stops it cleanly, a bad flag is refused."""

from __future__ import annotations

import signal
import subprocess
import socket

import pytest

import harness
from harness import ManagedProcess

STOP_BOUND_S = 5.0


def port_is_free(transport: str, port: int) -> bool:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((harness.LOCALHOST, port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_proxy_with_status_0(bench, sig):
    bench.skip_unless_proxy("no proxy process")
    bench.skip_for_kamailio("now and then its main process waits for a worker for longer than "
                            "5 s on shutdown (about 1 stop in 60 here); the bound is siprec-edge's")
    endpoints = bench.start_proxy(harness.free_port(), "udp")
    status, seconds = bench.proxy.stop(sig, timeout=STOP_BOUND_S)
    assert seconds < STOP_BOUND_S, f"still running {STOP_BOUND_S:.0f} s after {sig.name}; killed"
    assert status == 0, f"exit status {status} after {sig.name}"
    assert port_is_free("udp", endpoints.udp_port) and port_is_free("tcp", endpoints.tcp_port)


def test_bad_listen_flag_exits_2_naming_the_flag(bench, tmp_path):
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the command-line contract is siprec-edge's")
    binary = harness.siprec_edge_binary()
    assert binary.exists(), f"proxy binary {binary} not found (swift build, or SIPREC_EDGE_BIN)"
    process = ManagedProcess("siprec-edge", [str(binary), "--listen", "foo",
                                             "--upstream", f"sip:{harness.LOCALHOST}:5080"],
                             tmp_path / "bad-flag.log").start()
    status = process.wait(timeout=10)
    output = process.log_tail()
    assert status == 2, f"exit status {status}; output:\n{output}"
    assert "--listen" in output, f"the message does not name --listen:\n{output}"


def test_bad_coalescing_pause_exits_2_naming_the_flag(bench, tmp_path):
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the command-line contract is siprec-edge's")
    process = ManagedProcess("siprec-edge", [str(harness.siprec_edge_binary()), "--udp-coalesce-us", "500000",
                                             "--listen", f"udp:{harness.LOCALHOST}:{harness.free_port()}"],
                             tmp_path / "bad-coalesce.log").start()
    status = process.wait(timeout=10)
    output = process.log_tail()
    assert status == 2, f"exit status {status}; output:\n{output}"
    assert "--udp-coalesce-us: must be between 0 and 100000" in output, output


def test_help_documents_every_flag_and_exits_0(bench):
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the command-line contract is siprec-edge's")
    result = subprocess.run([str(harness.siprec_edge_binary()), "--help"], capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    for flag in ("--listen", "--upstream", "--workers", "--udp-coalesce-us", "--config", "--log-level", "--help"):
        assert flag in result.stdout, f"--help does not document {flag}:\n{result.stdout}"


def test_bad_configuration_file_exits_2_naming_the_key(bench, tmp_path):
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the command-line contract is siprec-edge's")
    config = tmp_path / "siprec-edge.yaml"
    config.write_text("listen: [udp:127.0.0.1:5070]\ntimers: { t1_ms: soon }\n")
    result = subprocess.run([str(harness.siprec_edge_binary()), "--config", str(config)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{config}: timers.t1_ms: expected a whole number, got 'soon'" in result.stderr, result.stderr


@pytest.mark.parametrize("instance, message", [
    pytest.param('caller: "<nameID aor=\'sip:a@b\'><name>A</nameID>"',
                 "recording.rules[0] (sales): instances[0] (primary): caller: XML fragment: line 1: "
                 "Opening and ending tag mismatch: name line 1 and nameID", id="malformed-xml-override"),
    pytest.param('session_extension: "<e:x/>"',
                 "recording.rules[0] (sales): instances[0] (primary): session_extension: XML fragment: ",
                 id="undeclared-prefix"),
])
def test_bad_recording_rule_exits_2_naming_the_rule(bench, tmp_path, instance, message):
    """XML overrides and extensions are parsed at start (by libxml2); a broken one names its rule."""
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the command-line contract is siprec-edge's")
    config = tmp_path / "siprec-edge.yaml"
    config.write_text("recording:\n  rtpengine: [udp:127.0.0.1:2223]\n  rules:\n    - name: sales\n"
                      "      instances:\n        - name: primary\n          srs: [\"sip:127.0.0.1:5090\"]\n"
                      f"          {instance}\n")
    result = subprocess.run([str(harness.siprec_edge_binary()), "--config", str(config)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr


def test_second_instance_on_the_same_address_is_refused(bench):
    """The workers share their sockets through SO_REUSEPORT; a second proxy on the same address
    must not join them silently."""
    bench.skip_unless_proxy("no proxy process")
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the start-up contract is siprec-edge's")
    endpoints = bench.start_proxy(harness.free_port(), "udp")
    for listen in (f"udp:{harness.LOCALHOST}:{endpoints.udp_port}", f"tcp:{harness.LOCALHOST}:{endpoints.tcp_port}"):
        result = subprocess.run([str(harness.siprec_edge_binary()), "--listen", listen],
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 1, f"{listen}: exit {result.returncode}\n{result.stderr}"
        assert "Address already in use" in result.stderr, result.stderr
    bench.assert_proxy_running()
