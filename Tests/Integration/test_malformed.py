"""Malformed input: the proxy answers what it can with the exact status line of its contract,
drops what it cannot answer, forwards none of it, and keeps serving calls (UDP and TCP).

Reply contract (siprec-edge): a 400 copies Via, From, To (adding a to-tag), Call-ID and CSeq
from the request; a request without Via cannot be answered and is dropped, as are responses the
proxy cannot route and bytes that are not SIP.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import pytest

import harness
import sipmsg
from rawsip import TcpPeer, TcpSink, UdpPeer, ack_for, build_request, new_branch

# A reply the contract leaves open: no reply at all, or some 400.
DROPPED_OR_400 = "dropped or 400"
TCP_CLOSE_TIMEOUT_S = 5.0
KAMAILIO_TEXT = "its reason phrases and header checks are not siprec-edge's reply contract"


@dataclass
class Peers:
    proxy_port: int
    client: UdpPeer
    bystander: UdpPeer  # stands for a hop that is not the proxy, to catch misrouted responses


@dataclass
class Case:
    name: str
    make: Callable[[Peers], bytes]
    expect: str | None  # exact status line; None: no reply at all
    copied: tuple[str, ...] = ("Via", "From", "To", "Call-ID", "CSeq")
    kamailio_skip: str | None = KAMAILIO_TEXT


def _random_bytes(peers: Peers) -> bytes:
    return random.Random(3261).randbytes(512)


def _truncated(peers: Peers) -> bytes:
    whole = build_request("INVITE", peers.proxy_port, peers.client.port)
    return whole[: whole.index(b"Call-ID") + 12]  # cut inside the Call-ID line, no blank line


def _unroutable_response(peers: Peers) -> bytes:
    """A 200 for no transaction of the proxy, whose top Via names another hop (the bystander)
    and whose second Via names the client: relaying it either way is a routing error."""
    lines = ["SIP/2.0 200 OK",
             f"Via: SIP/2.0/UDP {harness.LOCALHOST}:{peers.bystander.port};branch={new_branch()}",
             f"Via: SIP/2.0/UDP {harness.LOCALHOST}:{peers.client.port};branch={new_branch()}",
             f"From: <sip:raw@{harness.LOCALHOST}>;tag=caller",
             f"To: <sip:service@{harness.LOCALHOST}>;tag=callee",
             "Call-ID: no-such-transaction@127.0.0.1",
             "CSeq: 1 INVITE",
             "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _invite(**kwargs) -> Callable[[Peers], bytes]:
    return lambda peers: build_request("INVITE", peers.proxy_port, peers.client.port, **kwargs)


ALL = ("Via", "From", "To", "Call-ID", "CSeq")
CASES = [
    Case("missing-call-id", _invite(omit=("Call-ID",)), "SIP/2.0 400 Missing Call-ID header",
         copied=("Via", "From", "To", "CSeq")),
    Case("missing-from", _invite(omit=("From",)), "SIP/2.0 400 Missing From header",
         copied=("Via", "To", "Call-ID", "CSeq")),
    Case("missing-to", _invite(omit=("To",)), "SIP/2.0 400 Missing To header",
         copied=("Via", "From", "Call-ID", "CSeq")),
    Case("missing-cseq", _invite(omit=("CSeq",)), "SIP/2.0 400 Missing CSeq header",
         copied=("Via", "From", "To", "Call-ID")),
    Case("missing-via", _invite(omit=("Via",)), None, kamailio_skip=None),
    Case("content-length-not-a-number", _invite(content_length="abc"),
         "SIP/2.0 400 Bad Content-Length"),
    Case("body-shorter-than-content-length", _invite(body=b"v=0\r\n", content_length="500"),
         "SIP/2.0 400 Body shorter than Content-Length"),
    Case("cseq-method-mismatch", _invite(replace={"CSeq": "1 OPTIONS"}),
         "SIP/2.0 400 CSeq method does not match"),
    Case("max-forwards-zero", _invite(replace={"Max-Forwards": "0"}), "SIP/2.0 483 Too Many Hops",
         kamailio_skip=None),
    Case("unroutable-response", _unroutable_response, None,
         kamailio_skip="Kamailio relays a reply whose top Via names its address with another "
                       "port (it strips that Via and forwards to the next)"),
    Case("random-bytes", _random_bytes, None, kamailio_skip=None),
    Case("truncated-request", _truncated, DROPPED_OR_400, kamailio_skip=None),
]


def assert_copied(reply: sipmsg.SipMessage, request: sipmsg.SipMessage, names) -> None:
    for name in names:
        if name == "To":
            to = reply.value("To") or ""
            assert to.startswith(request.value("To")), f"To {to!r} for {request.value('To')!r}"
            assert sipmsg.header_param(to, "tag"), f"no to-tag added: {to!r}"
        else:
            assert reply.values(name) == request.values(name), (
                f"{name}: {reply.values(name)} for {request.values(name)}")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_malformed_udp_datagram(bench, case):
    bench.skip_unless_proxy("malformed input is the proxy's to answer")
    if case.kamailio_skip:
        bench.skip_for_kamailio(case.kamailio_skip)
    upstream = UdpPeer(harness.free_port())
    client, bystander = UdpPeer(), UdpPeer()
    try:
        endpoints = bench.start_proxy(upstream.port, "udp")
        data = case.make(Peers(endpoints.udp_port, client, bystander))
        client.send(data, endpoints.udp_port)

        if case.expect is None:
            got = client.silent_for()
            assert got is None, f"expected no reply, got {got[:200]!r}"
        else:
            reply = client.final_response()
            if case.expect == DROPPED_OR_400:
                assert reply is None or reply.start_line.startswith("SIP/2.0 400 "), reply
            else:
                assert reply is not None, f"no reply; expected {case.expect!r}"
                assert reply.start_line == case.expect
                request = sipmsg.parse(data)
                assert_copied(reply, request, case.copied)
                if set(case.copied) == set(ALL):
                    # The ACK for this final response ends at the proxy (hop by hop).
                    client.send(ack_for(request, reply), endpoints.udp_port)
        got = bystander.silent_for(0.1)
        assert got is None, f"misrouted to another hop: {got[:200]!r}"
        got = upstream.silent_for()
        assert got is None, f"forwarded upstream: {got[:200]!r}"
        bench.assert_proxy_running()
    finally:
        for peer in (upstream, client, bystander):
            peer.close()


GARBAGE_STREAM = (b"\x16\x03\x01\x02\x00" + random.Random(5060).randbytes(300)
                  + b"\r\n\r\nthis is not SIP\r\n\r\n")


def test_tcp_garbage_closes_only_that_connection(bench):
    """A stream that cannot be SIP gets its connection closed; another connection is served."""
    bench.skip_unless_proxy("malformed input is the proxy's to answer")
    upstream = UdpPeer(harness.free_port())
    try:
        endpoints = bench.start_proxy(upstream.port, "udp")
        healthy = TcpPeer(endpoints.tcp_port)
        garbage = TcpPeer(endpoints.tcp_port)
        garbage.send(GARBAGE_STREAM)
        assert garbage.closed_by_peer(TCP_CLOSE_TIMEOUT_S), (
            f"connection sending garbage still open after {TCP_CLOSE_TIMEOUT_S:.0f} s")
        assert_tcp_connection_served(healthy, endpoints.tcp_port)
        got = upstream.silent_for()
        assert got is None, f"forwarded upstream: {got[:200]!r}"
        bench.assert_proxy_running()
    finally:
        upstream.close()


def assert_tcp_connection_served(peer: TcpPeer, proxy_port: int) -> None:
    """The proxy still reads this connection: an INVITE with Max-Forwards 0 gets its 483 back
    on it (answered by the proxy itself, nothing reaches the upstream)."""
    data = build_request("INVITE", proxy_port, peer.local_port, transport="TCP",
                         replace={"Max-Forwards": "0"})
    peer.send(data)
    reply = peer.response()
    assert reply is not None and reply.start_line.startswith("SIP/2.0 483 "), reply
    peer.send(ack_for(sipmsg.parse(data), reply))
    peer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_garbage_between_calls(bench, transport):
    """A good call, every kind of garbage over UDP and a garbage stream over TCP, then another
    good call: the proxy forwards none of the garbage and is still running."""
    bench.skip_unless_proxy("malformed input is the proxy's to answer")
    uas_port = harness.free_port()
    uas = bench.uas("uas_call.xml", transport, port=uas_port)
    endpoints = bench.start_proxy(uas_port, transport, client_transport=transport)
    bench.finish_calls(bench.uac("uac_call.xml", transport, endpoints.port(transport)), uas)

    sink = UdpPeer(uas_port) if transport == "udp" else TcpSink(uas_port)
    client, bystander = UdpPeer(), UdpPeer()
    try:
        healthy = TcpPeer(endpoints.tcp_port)
        peers = Peers(endpoints.udp_port, client, bystander)
        for case in CASES:
            if bench.kind == "kamailio" and case.kamailio_skip:
                continue  # garbage the reference proxy is not expected to refuse
            client.send(case.make(peers), endpoints.udp_port)
        garbage = TcpPeer(endpoints.tcp_port)
        garbage.send(GARBAGE_STREAM)
        closed = garbage.closed_by_peer(TCP_CLOSE_TIMEOUT_S)
        garbage.close()
        assert_tcp_connection_served(healthy, endpoints.tcp_port)
        got = sink.silent_for()
        assert got is None, f"garbage forwarded upstream: {got[:200]!r}"
        assert closed, "garbage TCP connection left open"
    finally:
        for peer in (sink, client, bystander):
            peer.close()

    bench.assert_proxy_running()
    uas = bench.uas("uas_call.xml", transport, port=uas_port)
    bench.finish_calls(bench.uac("uac_call.xml", transport, endpoints.port(transport)), uas)


def test_tcp_request_without_content_length_gets_400_then_close(bench):
    """On a stream a request must carry Content-Length (RFC 3261 §18.3): the proxy cannot frame
    what follows, so it answers the request it could read, then closes that connection."""
    bench.skip_unless_proxy("malformed input is the proxy's to answer")
    upstream = UdpPeer(harness.free_port())
    try:
        endpoints = bench.start_proxy(upstream.port, "udp")
        peer = TcpPeer(endpoints.tcp_port)
        request = build_request("OPTIONS", endpoints.tcp_port, peer.local_port, transport="TCP")
        without_length = request.replace(b"Content-Length: 0\r\n", b"")
        peer.send(without_length)
        reply = peer.response()
        assert reply is not None and reply.start_line == "SIP/2.0 400 Missing Content-Length header", reply
        sent = sipmsg.parse(without_length)
        for name in ("Via", "From", "Call-ID", "CSeq"):
            assert reply.values(name) == sent.values(name), name
        assert peer.closed_by_peer(TCP_CLOSE_TIMEOUT_S), "connection left open after a framing error"
        assert upstream.silent_for() is None
        bench.assert_proxy_running()
    finally:
        upstream.close()
