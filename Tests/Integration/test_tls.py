"""SIP over TCP and TLS toward the SRS, TLS on the edge, and media security per SRS, end to end
(RFC 3261 18, RFC 5630, RFC 5626 4.4.1, RFC 4568, RFC 7714).

Calls as in test_recording.py (SIPp caller and callee over UDP streaming RTP, rtpengine), recorded
by Python SRSs over TLS or TCP (sipstream.StreamSrs, built on the ssl module) with certificates
made at test time by `openssl` (tlscerts.py): the test CA, the SRS's certificate (IP SAN
127.0.0.1), one for another host, an expired one, one from an untrusted CA, a client certificate.
The expectations are in tlsrecording.py and recording.py, each named after what it checks; the
OpenSSL reasons the proxy's log must carry are checked against Python's OpenSSL in
test_tls_harness.py. Every test needs siprec-edge: with --proxy kamailio or none they are skipped.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import harness
import media
import recording
import siprec
import srtp
import tlscerts
import tlsrecording
from recording import MEDIA_SETTLE_S, SRS_SIGNALLING_S, assert_cleaned_up
from sipmsg import header_param, parse_route_entry, via_sent_by
from sipstream import StreamUa, client_context
from test_calls import first, requests, responses
from tlsrecording import (RECONNECT_BACKOFF_MAX_S, VERIFY_REASONS, TlsRecordingBench,
                          assert_reason_logged, assert_session_on_one_connection,
                          assert_stream_recording_ended, assert_stream_srs_invite,
                          recorded_call_checks, srs_yaml_entry)

pytestmark = pytest.mark.tls


@pytest.fixture
def rec(bench, pki) -> TlsRecordingBench:
    return TlsRecordingBench(bench, pki)


def only_connection(srs):
    """The one connection the SRS accepted, which completed its handshake."""
    assert len(srs.connections) == 1, srs.summary()
    conn = srs.connections[0]
    assert conn.established, srs.summary()
    return conn


# ----------------------------------------------------------------------------- recorded over TLS

@pytest.mark.parametrize("uri_form, ca", [
    pytest.param("transport", "file", id="transport-tls-ca-file"),
    pytest.param("sips", "file", id="sips-ca-file"),
    pytest.param("transport", "directory", id="transport-tls-ca-directory"),
])
def test_call_recorded_over_tls13(rec, uri_form, ca):
    """--srs sip:127.0.0.1:P;transport=tls or sips:127.0.0.1:P, --tls-ca the test CA (a file, or a
    hashed directory): the SRS's certificate is verified (IP SAN 127.0.0.1), TLS 1.3 is
    negotiated, the multipart INVITE arrives with Via SIP/2.0/TLS and a TLS Contact, the
    metadata validates and matches the media, the whole session uses one connection, and the
    call's BYE ends it."""
    srs = rec.stream_srs("tls", uri_form=uri_form)
    ca_path = rec.pki.ca_file if ca == "file" else rec.pki.ca_dir
    call = rec.call(rec.tls_flags([srs], ca=ca_path))
    rec.bench.finish_calls(call.uac, call.uas)

    invite, _, _ = recorded_call_checks(rec, srs, call)
    conn = only_connection(srs)
    assert conn.tls_version == "TLSv1.3", conn
    assert assert_session_on_one_connection(srs, invite) == conn.id
    assert_cleaned_up(rec, {"started": 1, "failed": 0, "failovers": 0})


def test_call_recorded_over_tcp(rec):
    """--srs sip:127.0.0.1:P;transport=tcp: Via SIP/2.0/TCP, Contact ;transport=tcp, one
    connection for the session, everything else as over UDP."""
    srs = rec.stream_srs("tcp")
    call = rec.call(rec.tls_flags([srs]))
    rec.bench.finish_calls(call.uac, call.uas)

    invite, _, _ = recorded_call_checks(rec, srs, call)
    conn = only_connection(srs)
    assert conn.transport == "TCP"
    assert_session_on_one_connection(srs, invite)
    assert_cleaned_up(rec, {"started": 1, "failed": 0, "failovers": 0})


def test_sips_uri_without_a_port_means_5061(rec):
    """--srs sips:127.0.0.1: the proxy connects to port 5061 (RFC 3263's default for TLS).
    Skipped when something else holds 127.0.0.1:5061."""
    try:
        srs = rec.stream_srs("tls", uri_form="sips-default", port=tlsrecording.DEFAULT_TLS_PORT)
    except OSError as error:
        pytest.skip(f"127.0.0.1:{tlsrecording.DEFAULT_TLS_PORT} is taken: {error}")
    call = rec.call(rec.tls_flags([srs]))
    rec.bench.finish_calls(call.uac, call.uas)

    recorded_call_checks(rec, srs, call)
    assert srs.invites()[0].start_line == "INVITE sips:127.0.0.1 SIP/2.0"
    assert_cleaned_up(rec, {"started": 1, "failovers": 0})


def test_no_sni_toward_an_ip_address(rec):
    """RFC 6066 3: a literal IP address is not a HostName; toward sips:127.0.0.1:P the
    ClientHello carries no server_name."""
    srs = rec.stream_srs("tls", uri_form="sips")
    call = rec.call(rec.tls_flags([srs]), talk_ms=1500)
    rec.bench.finish_calls(call.uac, call.uas)

    assert srs.invites(), srs.summary()
    assert only_connection(srs).sni is None, srs.summary()
    assert_cleaned_up(rec, {"started": 1})


def test_configured_server_name_is_sent_and_verified(rec):
    """An SRS mapping with tls: {ca_file, server_name: srs.test}: the SNI is srs.test and the
    certificate (SAN DNS:srs.test only, no IP address) is verified against that name."""
    srs = rec.stream_srs("tls", identity=rec.pki.srs_dns_only)
    entry = srs_yaml_entry(srs.uri, tls={"ca_file": rec.pki.ca_file,
                                         "server_name": tlscerts.SERVER_NAME})
    call = rec.call(rec.yaml_srs_config(entry))
    rec.bench.finish_calls(call.uac, call.uas)

    recorded_call_checks(rec, srs, call)
    assert only_connection(srs).sni == tlscerts.SERVER_NAME, srs.summary()
    assert_cleaned_up(rec, {"started": 1, "failovers": 0})


def test_tls12_srs_is_recorded(rec):
    """An SRS that speaks TLS 1.2 at most: the proxy settles for 1.2."""
    srs = rec.stream_srs("tls", max_version="1.2")
    call = rec.call(rec.tls_flags([srs]))
    rec.bench.finish_calls(call.uac, call.uas)

    recorded_call_checks(rec, srs, call)
    assert only_connection(srs).tls_version == "TLSv1.2", srs.summary()
    assert_cleaned_up(rec, {"started": 1, "failovers": 0})


@pytest.mark.parametrize("version, setting, value", [
    pytest.param("1.3", "ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", id="tls13-ciphersuites"),
    pytest.param("1.2", "ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305", id="tls12-ciphers"),
])
def test_cipher_lists_from_the_configuration(rec, version, setting, value):
    """Top-level tls: {ca_file, ciphersuites | ciphers}: the connection to the SRS uses the one
    suite the proxy offers (the SRS would have preferred AES-256-GCM)."""
    srs = rec.stream_srs("tls", max_version=version)
    top = f'tls: {{ca_file: "{rec.pki.ca_file}", {setting}: "{value}"}}\n'
    call = rec.call(rec.yaml_srs_config(srs_yaml_entry(srs.uri), top=top), talk_ms=1500)
    rec.bench.finish_calls(call.uac, call.uas)

    assert srs.invites(), srs.summary()
    conn = only_connection(srs)
    assert (conn.tls_version, conn.cipher) == (f"TLSv{version}", value), srs.summary()
    assert_cleaned_up(rec, {"started": 1})


# ----------------------------------------------------------------------------- verification

@pytest.mark.parametrize("bad", list(VERIFY_REASONS))
def test_certificate_verification_failure_fails_over(rec, bad):
    """The first SRS presents a certificate for another host (SAN DNS:wrong.example,
    IP:127.0.0.2, CN 127.0.0.1), an expired one, or one from a CA the proxy does not trust: the
    handshake fails (no SIP reaches it), the second SRS gets the recording at once, and a log
    line names the first SRS with OpenSSL's reason."""
    refused = rec.stream_srs("tls", identity=getattr(rec.pki, bad))
    accepting = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([refused, accepting]))
    rec.bench.finish_calls(call.uac, call.uas)

    assert refused.failed_handshakes(), f"the proxy never tried {refused.uri}\n{refused.summary()}"
    tlsrecording.assert_nothing_reached(refused)
    recorded_call_checks(rec, accepting, call)
    assert_reason_logged(rec.proxy_log(), refused, VERIFY_REASONS[bad])
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_srs_offering_only_tls11_fails_over(rec):
    """TLS 1.2 and 1.3 only: an SRS that speaks nothing newer than TLS 1.1 fails the handshake
    and the next SRS records."""
    old = rec.stream_srs("tls", min_version="1.1", max_version="1.1")
    accepting = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([old, accepting]))
    rec.bench.finish_calls(call.uac, call.uas)

    assert old.failed_handshakes(), old.summary()
    tlsrecording.assert_nothing_reached(old)
    recorded_call_checks(rec, accepting, call)
    assert_reason_logged(rec.proxy_log(), old, tlsrecording.OLD_PROTOCOL_REASON)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_verify_false_accepts_an_untrusted_srs(rec):
    """An SRS mapping with tls: {verify: false} records to a server whose CA nobody trusts."""
    srs = rec.stream_srs("tls", identity=rec.pki.untrusted)
    call = rec.call(rec.yaml_srs_config(srs_yaml_entry(srs.uri, tls={"verify": False})))
    rec.bench.finish_calls(call.uac, call.uas)

    recorded_call_checks(rec, srs, call)
    assert_cleaned_up(rec, {"started": 1, "failovers": 0})


# ----------------------------------------------------------------------------- mutual TLS

@pytest.mark.parametrize("how", ["flags", "yaml"])
def test_mutual_tls_required_by_the_srs(rec, how):
    """The SRS requires a client certificate from the test CA: the proxy presents --tls-cert and
    --tls-key (or the SRS mapping's tls: {certificate, private_key}); the SRS sees its subject."""
    srs = rec.stream_srs("tls", client_ca=rec.pki.ca_file, require_client_cert=True)
    client = rec.pki.client
    if how == "flags":
        args = rec.tls_flags([srs], cert=client.cert, key=client.key)
    else:
        args = rec.yaml_srs_config(srs_yaml_entry(srs.uri, tls={
            "ca_file": rec.pki.ca_file, "certificate": client.cert, "private_key": client.key}))
    call = rec.call(args)
    rec.bench.finish_calls(call.uac, call.uas)

    recorded_call_checks(rec, srs, call)
    assert only_connection(srs).peer_subject == f"CN={tlscerts.CLIENT_CN}", srs.summary()
    assert_cleaned_up(rec, {"started": 1, "failovers": 0})


def test_srs_requiring_a_client_certificate_the_proxy_lacks_fails_over(rec):
    """No --tls-cert: the SRS ends the handshake (TLS 1.3 alert certificate_required, which the
    client reads after its own handshake ended), the proxy fails over and logs the reason."""
    strict = rec.stream_srs("tls", client_ca=rec.pki.ca_file, require_client_cert=True)
    accepting = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([strict, accepting]))
    rec.bench.finish_calls(call.uac, call.uas)

    assert strict.failed_handshakes() and not strict.established(), strict.summary()
    tlsrecording.assert_nothing_reached(strict)
    recorded_call_checks(rec, accepting, call)
    assert_reason_logged(rec.proxy_log(), strict, tlsrecording.CLIENT_CERT_REASON)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


# ----------------------------------------------------------------------------- the connection

def test_two_calls_share_one_connection(rec, monkeypatch):
    """--workers 1: two overlapping recorded calls, two recording sessions (their own Call-IDs),
    one TLS connection to the SRS for both."""
    monkeypatch.setenv("SIPREC_EDGE_WORKERS", "1")
    srs = rec.stream_srs("tls")
    bench = rec.bench
    callee = bench.uas("uas_rtp_call.xml", "udp", calls=2,
                       extra=media.sipp_media_args("uas_rtp_call.xml", 3000))
    rec.endpoints = bench.start_proxy(callee.local_port, "udp", explicit_transport=False,
                                      extra_args=rec.tls_flags([srs]))
    first_caller = bench.uac("uac_rtp_call.xml", "udp", rec.proxy_port,
                             extra=media.sipp_media_args("uac_rtp_call.xml", 3000))
    time.sleep(1.0)
    second_caller = bench.uac("uac_rtp_call.xml", "udp", rec.proxy_port,
                              extra=media.sipp_media_args("uac_rtp_call.xml", 2000))
    bench.finish_calls(first_caller, second_caller, callee)

    initial = [m for m in srs.invites() if not header_param(m.value("To"), "tag")]
    assert len(initial) == 2 and initial[0].call_id != initial[1].call_id, srs.summary()
    calls = {recording.Call(first_caller, callee).call_id, recording.Call(second_caller, callee).call_id}
    for invite, caller in zip(initial, (first_caller, second_caller)):
        body = assert_stream_srs_invite(invite, srs, recording.Call(caller, callee))
        assert siprec.parse_metadata(body.metadata_xml).sessions[0][1][0] in calls
        assert tlsrecording.session_byes(srs, invite), f"no BYE for {invite.call_id}"
    conn = only_connection(srs)
    assert {r.conn for r in srs.messages()} == {conn.id}
    assert_cleaned_up(rec, {"started": 2, "failovers": 0, "failed": 0})


def test_idle_srs_connection_gets_crlf_keepalives(rec):
    """RFC 5626 4.4.1: after a short recorded call the connection to the SRS stays open, and
    within the proxy's keep-alive period (25 s) plus 5 s of its last message a double-CRLF ping
    arrives on it (the SRS answers with a CRLF pong); the connection is still open afterwards.
    Takes about half a minute."""
    srs = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([srs]), talk_ms=1000)
    rec.bench.finish_calls(call.uac, call.uas)
    assert srs.requests("BYE"), srs.summary()
    conn = only_connection(srs)
    last_message = max(r.time for r in srs.messages())
    bound = tlsrecording.KEEPALIVE_INTERVAL_S + 5
    srs.wait_for(lambda: conn.pings, timeout=max(0.0, last_message + bound - time.time()),
                 what=f"CRLF keep-alive within {bound:.0f} s of the last message")
    time.sleep(0.5)
    assert conn.closed is None, f"the connection closed after the ping\n{srs.summary()}"
    assert_cleaned_up(rec, {"started": 1})


def srs_closes_after_the_ack(srs, delay: float, mode: str) -> float:
    """Waits for the recording session's ACK, then `delay` s, then closes the SRS's connections
    (the test's thread; the call goes on). Returns when it closed them."""
    srs.wait_request("ACK", timeout=10)
    time.sleep(delay)
    assert srs.close_connections(mode), f"no open connection to close\n{srs.summary()}"
    return time.time()


@pytest.mark.parametrize("mode", ["close_notify", "reset"])
def test_srs_dropping_the_connection_mid_call_the_bye_still_arrives(rec, mode):
    """The SRS closes its connection 1 s into the recording (close_notify and FIN, or a reset):
    the fork goes on (media is not signalling), and when the call ends the proxy connects again
    (back-off at most 1 s) and the session's BYE (after an optional final re-INVITE) arrives on
    the new connection, in the same dialog. No failover, nothing left over."""
    srs = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([srs]), talk_ms=4000)
    closed_at = srs_closes_after_the_ack(srs, 1.0, mode)
    rec.bench.finish_calls(call.uac, call.uas)

    invite = srs.invites()[0]
    body = assert_stream_srs_invite(invite, srs, call)
    first_conn = srs.entry_of(invite).conn
    bye_sent = call.sent_time(call.uac, "BYE")
    recording.assert_media_reaches_srs(srs, body.sdp, None, since=closed_at + MEDIA_SETTLE_S,
                                       until=bye_sent, minimum=20)
    assert_stream_recording_ended(srs, invite, bye_sent, rec.work_dir,
                                  bound=SRS_SIGNALLING_S + RECONNECT_BACKOFF_MAX_S)
    bye = tlsrecording.session_byes(srs, invite)[0]
    assert bye.conn != first_conn, f"the BYE came on the closed connection\n{srs.summary()}"
    later = [c for c in srs.connections if c.id == bye.conn][0]
    assert later.established and later.opened > closed_at, srs.summary()
    assert_cleaned_up(rec, {"started": 1, "failovers": 0, "failed": 0})


def test_tls_session_is_resumed_on_reconnection(rec):
    """After the SRS closed the connection cleanly, the proxy's next connection resumes the TLS
    session (session ticket): the SRS sees session_reused."""
    srs = rec.stream_srs("tls")
    call = rec.call(rec.tls_flags([srs]), talk_ms=3000)
    srs_closes_after_the_ack(srs, 0.5, "close_notify")
    rec.bench.finish_calls(call.uac, call.uas)

    established = srs.established()
    assert len(established) >= 2, srs.summary()
    assert not established[0].session_reused and established[1].session_reused, srs.summary()
    assert_cleaned_up(rec, {"started": 1})


# ----------------------------------------------------------------------------- media security

def test_sdes_srtp_towards_the_srs_with_aead_aes_256_gcm(rec):
    """An SRS mapping with media: sdes, srtp_suites: [AEAD_AES_256_GCM], over TLS, for a plain
    RTP call: the SRS's INVITE offers RTP/SAVP m-lines whose first a=crypto is
    AEAD_AES_256_GCM; the SRS answers that suite; what reaches it is SRTP with a 16-byte tag
    that decrypts, with the offered key, to the audio of the party its label names."""
    srs = rec.stream_srs("tls")
    entry = srs_yaml_entry(srs.uri, tls={"ca_file": rec.pki.ca_file}, media="sdes",
                           srtp_suites=["AEAD_AES_256_GCM"])
    call = rec.call(rec.yaml_srs_config(entry))
    rec.bench.finish_calls(call.uac, call.uas)

    invite = srs.invites()[0]
    body = assert_stream_srs_invite(invite, srs, call)
    labels = recording.assert_offer_sdp(body.sdp, rec.engine)
    for m in body.sdp.media:
        assert m.protocol == "RTP/SAVP", f"m-line {m.label}: {m.protocol}\n{body.sdp.text}"
        cryptos = [srtp.parse_crypto(value) for value in m.attribute("crypto")]
        assert cryptos and cryptos[0].suite == "AEAD_AES_256_GCM", body.sdp.text
    view = recording.assert_metadata(body.metadata_xml, call, labels, rec.work_dir)
    answer = siprec.parse_sdp(srs.ok_to(invite).body.decode())
    assert {srtp.parse_crypto(m.attribute("crypto")[0]).suite for m in answer.media} == \
        {"AEAD_AES_256_GCM"}
    bye_sent = call.sent_time(call.uac, "BYE")
    tlsrecording.assert_srtp_media_reaches_srs(srs, body.sdp, answer, view,
                                               since=srs.time_of(invite), until=bye_sent)
    assert_stream_recording_ended(srs, invite, bye_sent, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1})


def test_plain_rtp_towards_the_srs_for_an_sdes_call_leg(rec):
    """The caller offers RTP/SAVP with SDES and sends SRTP; the SRS has the default media (rtp):
    its INVITE has RTP/AVP m-lines and no a=crypto, and it receives both parties' audio in the
    clear, each on the port of its label."""
    srs = rec.stream_srs("tls")
    callee = rec.bench.uas("uas_rtp_call.xml", "udp",
                           extra=media.sipp_media_args("uas_rtp_call.xml", 4000))
    rec.endpoints = rec.bench.start_proxy(callee.local_port, "udp", explicit_transport=False,
                                          extra_args=rec.tls_flags([srs]))
    caller = tlsrecording.SdesCaller(rec.bench)
    caller.call(rec.proxy_port)
    time.sleep(3.0)
    assert caller.hang_up().status == 200
    rec.bench.finish_calls(callee)

    python_call = tlsrecording.PythonCall(caller.invite)
    invite = srs.invites()[0]
    body = assert_stream_srs_invite(invite, srs, python_call)
    for m in body.sdp.media:
        assert m.protocol == "RTP/AVP" and not m.attribute("crypto"), \
            f"an SRS with media: rtp got an SRTP offer:\n{body.sdp.text}"
    labels = recording.assert_offer_sdp(body.sdp, rec.engine)
    view = recording.assert_metadata(body.metadata_xml, python_call, labels, rec.work_dir)
    recording.assert_media_reaches_srs(srs, body.sdp, view, since=srs.time_of(invite),
                                       until=caller.bye_sent_at)
    assert_stream_recording_ended(srs, invite, caller.bye_sent_at, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1})


def test_recorder_without_srtp_never_gets_an_srtp_offer(rec):
    """srs: [{first, media: sdes}, {second, media: rtp}]: the first refuses (488); the failover
    offer to the second, and every later request to it, has RTP/AVP m-lines and no a=crypto, and
    it receives the audio in the clear."""
    sdes = rec.stream_srs("tls", reject=(488, "Not Acceptable Here"))
    plain = rec.stream_srs("tls")
    entries = (srs_yaml_entry(sdes.uri, tls={"ca_file": rec.pki.ca_file}, media="sdes")
               + srs_yaml_entry(plain.uri, tls={"ca_file": rec.pki.ca_file}, media="rtp"))
    call = rec.call(rec.yaml_srs_config(entries))
    rec.bench.finish_calls(call.uac, call.uas)

    refused = sdes.invites()[0]
    offered = siprec.recording_body(refused).sdp
    assert {m.protocol for m in offered.media} == {"RTP/SAVP"} and \
        all(m.attribute("crypto") for m in offered.media), offered.text
    invite, body, view = recorded_call_checks(rec, plain, call)
    for message in plain.invites():
        sdp = siprec.recording_body(message).sdp
        if sdp is not None:
            assert all(m.protocol == "RTP/AVP" and not m.attribute("crypto") for m in sdp.media), \
                f"{message.start_line} ({message.value('CSeq')}) offers SRTP:\n{sdp.text}"
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


# ----------------------------------------------------------------------------- TLS on the edge

def start_edge(bench, pki, callee_port: int) -> tuple[harness.ProxyEndpoints, int]:
    """The proxy with --listen tls:127.0.0.1:T (the edge certificate) besides its UDP and TCP
    listeners, relaying to the callee over UDP; returns once T is bound."""
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the TLS listener is siprec-edge's")
    tls_port = harness.free_port()
    endpoints = bench.start_proxy(callee_port, "udp", explicit_transport=False, extra_args=[
        "--listen", f"tls:{harness.LOCALHOST}:{tls_port}",
        "--tls-cert", str(pki.edge.chain), "--tls-key", str(pki.edge.key)])
    bench.proxy.wait_bound("tcp", tls_port)
    return endpoints, tls_port


def assert_route_entry(entry: str, port: int, tls: bool) -> None:
    route = parse_route_entry(entry)
    assert (route.host, route.port) == (harness.LOCALHOST, port), entry
    assert "lr" in route.params, f"not a loose-routing entry: {entry}"
    if tls:
        assert entry.lstrip("<").startswith("sips:") or route.transport == "tls", \
            f"the caller's side is TLS: {entry}"
    else:
        assert route.transport == "udp" and not entry.lstrip("<").startswith("sips:"), entry


def test_tls_caller_through_the_edge_to_a_udp_callee(bench, pki):
    """A Python caller on TLS (verifying the edge's certificate, TLS 1.3) calls a SIPp callee on
    UDP: the INVITE at the callee has the proxy's UDP Via above the caller's TLS Via, Max-Forwards
    69, and two Record-Route entries (RFC 5658): the top one the UDP side, the second the TLS side
    (;transport=tls or sips:); the 200 comes back on the TLS connection with both; the ACK and
    the BYE, routed by the caller through both entries, reach the callee with no Route left."""
    callee = bench.uas("uas_call.xml", "udp")
    endpoints, tls_port = start_edge(bench, pki, callee.local_port)
    caller = StreamUa(tls_port, client_context(pki.ca_file))
    bench._closers.append(caller.close)
    assert caller.tls_version == "TLSv1.3"
    invite = caller.invite(f"sip:bob@{harness.LOCALHOST}:{tls_port}",
                           body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                                b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    ok = caller.wait_response(invite, timeout=8)
    assert ok.status == 200, ok.start_line
    caller.ack(invite, ok)
    time.sleep(0.3)
    bye = caller.request_in_dialog("BYE")
    assert caller.wait_response(bye, timeout=8).status == 200
    bench.finish_calls(callee)

    at_callee = callee.received()
    relayed = first(requests(at_callee, "INVITE"), "INVITE at the callee")
    vias = relayed.values("Via")
    assert len(vias) == 2 and vias[1] == invite.message.values("Via")[0], vias
    assert via_sent_by(vias[0]) == ("UDP", harness.LOCALHOST, endpoints.udp_port), vias[0]
    assert (header_param(vias[0], "branch") or "").startswith("z9hG4bK"), vias[0]
    assert relayed.value("Max-Forwards") == "69"
    entries = relayed.values("Record-Route")
    assert len(entries) == 2, f"Record-Route {entries}: one per transport (RFC 5658)"
    assert_route_entry(entries[0], endpoints.udp_port, tls=False)
    assert_route_entry(entries[1], tls_port, tls=True)

    first(responses(caller.received(), 100, "INVITE"), "100 Trying at the TLS caller")
    assert ok.values("Via") == invite.message.values("Via"), ok.values("Via")
    assert ok.values("Record-Route") == entries, ok.values("Record-Route")
    sent_ack = [m for m in caller.sent() if m.is_request and m.method == "ACK"][0]
    assert sent_ack.values("Route") == list(reversed(entries))
    for method, sent in (("ACK", sent_ack), ("BYE", bye.message)):
        arrived = requests(at_callee, method)
        assert len(arrived) == 1, f"{len(arrived)} {method}s at the callee"
        assert arrived[0].values("Route") == [], arrived[0].values("Route")
        assert arrived[0].values("Via")[1:] == sent.values("Via"), arrived[0].values("Via")
        assert via_sent_by(arrived[0].values("Via")[0])[0] == "UDP"
    bench.assert_proxy_running()


def test_callee_hangs_up_toward_a_tls_caller(bench, pki):
    """The callee's BYE follows the route set to the caller's Contact
    (sip:alice@127.0.0.1:PORT;transport=tls, PORT the caller's side of its connection): the proxy
    sends it on the caller's TLS connection (it has no other way to reach the caller), with its
    own Via, and relays the caller's 200 back."""
    callee = bench.uas("uas_callee_bye.xml", "udp")
    endpoints, tls_port = start_edge(bench, pki, callee.local_port)
    caller = StreamUa(tls_port, client_context(pki.ca_file))
    bench._closers.append(caller.close)
    invite = caller.invite(f"sip:bob@{harness.LOCALHOST}:{tls_port}")
    ok = caller.wait_response(invite, timeout=8)
    caller.ack(invite, ok)
    bye = caller.wait_request("BYE", timeout=8)
    assert bye.start_line == f"BYE {caller.contact[1:-1]} SIP/2.0", bye.start_line
    assert via_sent_by(bye.values("Via")[0])[0] == "TLS", bye.values("Via")
    assert bye.values("Route") == [], bye.values("Route")
    caller.respond(bye, 200, "OK")
    bench.finish_calls(callee)
    first(responses(callee.received(), 200, "BYE"), "200 (BYE) at the callee")


def test_edge_answers_a_crlf_keepalive_ping(bench, pki):
    """RFC 5626 4.4.1: a double CRLF on the caller's TLS connection gets a single CRLF back, and
    the connection stays usable."""
    _, tls_port = start_edge(bench, pki, harness.free_port())
    caller = StreamUa(tls_port, client_context(pki.ca_file))
    bench._closers.append(caller.close)
    for _ in range(2):
        before = len(caller.pongs)
        caller.ping()
        deadline = time.monotonic() + 2
        while len(caller.pongs) == before and time.monotonic() < deadline:
            caller._receive(0.1)
        assert len(caller.pongs) == before + 1, "no CRLF pong within 2 s"
    bench.assert_proxy_running()


# ----------------------------------------------------------------------------- start-up

def start_up(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    argv = harness.siprec_edge_argv(harness.ProxyEndpoints(harness.free_port(), harness.free_port()),
                                    f"sip:{harness.LOCALHOST}:{harness.free_port()}", args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def SRS_ARGS(pki) -> list[str]:
    """A TLS SRS and everything else it needs, so that only the client key is wrong."""
    return ["--srs", "sips:127.0.0.1:5999", "--rtpengine", "udp:127.0.0.1:2223",
            "--tls-ca", str(pki.ca_file)]


STARTUP_CASES = {
    # name: (flags builder (pki, tls port) -> args, the paths one of which the message must name)
    "missing-cert": (lambda p, t: ["--listen", t, "--tls-cert", str(p.missing), "--tls-key", str(p.edge.key)],
                     lambda p: [p.missing]),
    "missing-key": (lambda p, t: ["--listen", t, "--tls-cert", str(p.edge.cert), "--tls-key", str(p.missing)],
                    lambda p: [p.missing]),
    "garbage-cert": (lambda p, t: ["--listen", t, "--tls-cert", str(p.garbage), "--tls-key", str(p.edge.key)],
                     lambda p: [p.garbage]),
    "garbage-key": (lambda p, t: ["--listen", t, "--tls-cert", str(p.edge.cert), "--tls-key", str(p.garbage)],
                    lambda p: [p.garbage]),
    "key-not-matching": (lambda p, t: ["--listen", t, "--tls-cert", str(p.edge.cert), "--tls-key", str(p.other_key)],
                         lambda p: [p.other_key, p.edge.cert]),
    "client-cert-missing-key": (lambda p, t: [*SRS_ARGS(p), "--tls-cert", str(p.client.cert), "--tls-key", str(p.missing)],
                                lambda p: [p.missing]),
    "client-key-not-matching": (lambda p, t: [*SRS_ARGS(p), "--tls-cert", str(p.client.cert), "--tls-key", str(p.other_key)],
                                lambda p: [p.other_key, p.client.cert]),
}


@pytest.mark.parametrize("case", list(STARTUP_CASES))
def test_bad_certificate_or_key_stops_start_up_naming_the_file(bench, pki, case):
    """A missing or unreadable (not PEM) certificate or key, or a key that does not match its
    certificate (the listener's, or the client certificate for SRSs): exit status 2 and a message
    on stderr naming the file (for a mismatch, the key or the certificate)."""
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the start-up contract is siprec-edge's")
    build, named = STARTUP_CASES[case]
    result = start_up(build(pki, f"tls:{harness.LOCALHOST}:{harness.free_port()}"), bench.work_dir)
    assert result.returncode == 2, f"exit status {result.returncode}\n{result.stdout}{result.stderr}"
    paths = [str(p) for p in named(pki)]
    assert any(p in result.stderr for p in paths), \
        f"stderr names none of {paths}:\n{result.stderr}"


def test_bad_key_in_the_configuration_file_stops_start_up(bench, pki):
    """The same for an SRS mapping's tls.private_key in the YAML file."""
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the start-up contract is siprec-edge's")
    config = bench.work_dir / "siprec-edge.yaml"
    config.write_text(f"""recording:
  rtpengine: [udp:127.0.0.1:2223]
  rules:
    - name: everything
      instances:
        - name: main
          srs:
{srs_yaml_entry("sips:127.0.0.1:5999", tls={"certificate": pki.client.cert, "private_key": pki.missing})}""")
    result = start_up(["--config", str(config)], bench.work_dir)
    assert result.returncode == 2, f"exit status {result.returncode}\n{result.stdout}{result.stderr}"
    assert str(pki.missing) in result.stderr, result.stderr


def test_tls_listener_without_a_certificate_is_refused(bench, tmp_path):
    if bench.kind != "siprec-edge":
        pytest.skip(f"{bench.kind}: the start-up contract is siprec-edge's")
    result = start_up(["--listen", f"tls:{harness.LOCALHOST}:{harness.free_port()}"], tmp_path)
    assert result.returncode == 2, f"exit status {result.returncode}\n{result.stdout}{result.stderr}"
    assert "--tls-cert" in result.stderr or "certificate" in result.stderr, result.stderr
