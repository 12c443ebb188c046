"""Requests that come back to the proxy: a loop (upstream pointing at the proxy itself).

RFC 3261 16.3 checks Max-Forwards (step 3) before loop detection (step 4), so:
- Max-Forwards 70: the first pass forwards the INVITE to the proxy itself; the second pass
  finds the proxy's own Via on top with a branch whose loop part it computes again from the
  same Request-URI, tags, Call-ID, CSeq number and routing headers (16.6 step 8): a loop, not a
  spiral, so 482 Loop Detected, relayed back by the first pass.  (A proxy that rewrote the
  Request-URI on the first pass sees a spiral once and detects the loop on the third pass:
  still 482, with 67 hops to spare.)
- Max-Forwards 1: the first pass forwards with Max-Forwards 0 and the second pass stops at
  step 3 with 483 Too Many Hops before it ever reaches loop detection.
"""

from __future__ import annotations

import harness
import sipmsg
from harness import ProxyEndpoints
from rawsip import UdpPeer, ack_for, build_request

LOOP_REPLY_TIMEOUT_S = 5.0


def send_through_loop(bench, max_forwards: str) -> tuple[sipmsg.SipMessage, sipmsg.SipMessage]:
    """Starts the proxy with itself as upstream, sends one INVITE, returns it and the final
    response the caller gets (after acknowledging it)."""
    endpoints = ProxyEndpoints(udp_port=harness.free_port(), tcp_port=harness.free_port())
    bench.start_proxy(endpoints.udp_port, "udp", endpoints=endpoints)
    client = UdpPeer()
    try:
        data = build_request("INVITE", endpoints.udp_port, client.port,
                             replace={"Max-Forwards": max_forwards})
        client.send(data, endpoints.udp_port)
        reply = client.final_response(LOOP_REPLY_TIMEOUT_S)
        assert reply is not None, f"no final response within {LOOP_REPLY_TIMEOUT_S:.0f} s"
        request = sipmsg.parse(data)
        assert reply.values("Via") == request.values("Via"), reply.values("Via")
        client.send(ack_for(request, reply), endpoints.udp_port)
        return request, reply
    finally:
        client.close()


def test_loop_detected(bench):
    bench.skip_unless_proxy("a loop needs a proxy")
    bench.skip_for_kamailio("the reference configuration does no loop detection (optional in "
                            "RFC 3261 16.3 step 4): it would relay until Max-Forwards runs out")
    _, reply = send_through_loop(bench, "70")
    assert reply.start_line == "SIP/2.0 482 Loop Detected"
    bench.assert_proxy_running()


def test_max_forwards_runs_out_before_loop_detection(bench):
    bench.skip_unless_proxy("a loop needs a proxy")
    _, reply = send_through_loop(bench, "1")
    assert reply.start_line == "SIP/2.0 483 Too Many Hops"
    bench.assert_proxy_running()
