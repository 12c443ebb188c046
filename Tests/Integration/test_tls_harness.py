"""Checks of the TLS harness itself, without the proxy: the certificates `openssl` makes, the
Python SRS over TLS and TCP driven by a Python TLS client (framing, keep-alive, the recording
dialog, SAVP answers, client certificates, TLS versions, closing on demand, session resumption,
SNI), the verification errors OpenSSL reports for each bad certificate (the reasons the proxy's
log must show), and SRTP against a real rtpengine (our encryption is accepted by it, its SRTP is
decrypted by us).

They pass whatever --proxy says: when a TLS test fails, these tell whether the harness or the
proxy is at fault.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

import media
import pyua
import siprec
import sipstream
import srtp
import tlscerts
import tlsrecording
from sipstream import StreamFramer, StreamSrs, StreamUa, TlsServerSettings, client_context

pytestmark = pytest.mark.tls_harness


@pytest.fixture
def servers(bench):
    """Starts StreamSrs instances that are closed when the test ends."""
    started = []

    def start(**kwargs) -> StreamSrs:
        srs = StreamSrs(**kwargs)
        started.append(srs)
        bench._artifacts.append((f"{srs.name} {srs.port}", srs.summary))
        return srs
    yield start
    for srs in started:
        srs.close()


def tls(pki, identity=None, **kwargs) -> TlsServerSettings:
    identity = identity or pki.srs
    return TlsServerSettings(cert=identity.chain, key=identity.key, **kwargs)


# ----------------------------------------------------------------------------- certificates

def test_openssl_makes_the_certificates_the_tests_need(pki):
    for identity in (pki.srs, pki.srs_dns_only, pki.wrong_host, pki.client, pki.edge):
        ok, output = pki.verify(identity.cert)
        assert ok, output
    ok, output = pki.verify(pki.expired.cert)
    assert not ok and "certificate has expired" in output, output
    ok, output = pki.verify(pki.untrusted.cert)
    assert not ok and "unable to get local issuer certificate" in output, output
    assert pki.verify(pki.untrusted.cert, pki.rogue_ca_file)[0]

    srs = pki.text(pki.srs.cert)
    assert "IP Address:127.0.0.1" in srs and "DNS:srs.test" in srs, srs
    wrong = pki.text(pki.wrong_host.cert)
    assert "IP Address:127.0.0.1" not in wrong and "CN = 127.0.0.1" in wrong, wrong
    assert "IP Address:" not in pki.text(pki.srs_dns_only.cert).split("Subject Alternative Name")[1]
    assert "TLS Web Client Authentication" in pki.text(pki.client.cert)
    expired = pki.text(pki.expired.cert)
    assert "Not After : Jan  2 00:00:00 2020 GMT" in expired, expired

    # Keys: each matches its certificate; other.key matches none (the start-up check).
    for identity in (pki.srs, pki.client, pki.edge):
        assert pki.public_key(identity.cert, True) == pki.public_key(identity.key, False)
    assert pki.public_key(pki.other_key, False) not in \
        {pki.public_key(i.cert, True) for i in (pki.srs, pki.client, pki.edge)}
    hashed = [p.name for p in pki.ca_dir.iterdir() if p.name.endswith(".0")]
    assert len(hashed) == 1, list(pki.ca_dir.iterdir())


def test_the_ca_directory_verifies_like_the_ca_file(pki, servers):
    srs = servers(tls=tls(pki))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(capath=str(pki.ca_dir))
    ua = StreamUa(srs.port, context)
    assert ua.tls_version == "TLSv1.3"
    ua.close()


@pytest.mark.parametrize("name, reason", list(tlsrecording.VERIFY_REASONS.items()))
def test_openssl_reasons_for_each_bad_certificate(pki, servers, name, reason):
    """A client verifying 127.0.0.1 against the test CA (as the proxy must) fails with the reason
    the proxy's log line must carry; the SRS sees the handshake fail and no SIP."""
    srs = servers(tls=tls(pki, getattr(pki, name)))
    with pytest.raises(ssl.SSLCertVerificationError) as failure:
        StreamUa(srs.port, client_context(pki.ca_file))
    assert reason.search(str(failure.value)), failure.value
    srs.wait_for(srs.failed_handshakes, what="failed handshake")
    assert srs.messages() == [] and srs.established() == []


# ----------------------------------------------------------------------------- framing

def test_framer_splits_by_content_length_and_spots_keepalives():
    body = b"v=0\r\n"
    one = (b"OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 5\r\n\r\n" + body)
    two = b"BYE sip:a SIP/2.0\r\nl: 0\r\nCall-ID: 2\r\n\r\n"
    framer = StreamFramer()
    events = []
    for byte in one + b"\r\n\r\n" + two:  # byte by byte
        events += framer.feed(bytes([byte]))
    assert events == [("message", one), ("ping", b"\r\n\r\n"), ("message", two)]
    assert StreamFramer().feed(one + two + b"\r\n") == [("message", one), ("message", two)]
    assert StreamFramer(lone_crlf_is_pong=True).feed(b"\r\n") == [("pong", b"\r\n")]
    with pytest.raises(sipstream.FramingError):
        StreamFramer().feed(b"BYE sip:a SIP/2.0\r\nCall-ID: 2\r\n\r\n")


def test_srs_parses_split_and_coalesced_messages_and_answers_pings(pki, servers):
    srs = servers(tls=tls(pki))
    ua = StreamUa(srs.port, client_context(pki.ca_file))
    ua.cseq = 1
    headers = [("From", ua.from_header), ("To", f"<{srs.uri}>"), ("Call-ID", ua.call_id)]
    first = sipstream.render(f"OPTIONS {srs.uri} SIP/2.0", [("Via", ua._via("z9hG4bK-1")),
                                                           *headers, ("CSeq", "1 OPTIONS")])
    second = sipstream.render(f"INFO {srs.uri} SIP/2.0", [("Via", ua._via("z9hG4bK-2")),
                                                         *headers, ("CSeq", "2 INFO")], b"hello")
    for index in range(0, len(first), 7):  # split in small writes
        ua.send_bytes(first[index:index + 7])
        time.sleep(0.002)
    ua.send_bytes(b"\r\n\r\n" + second)  # a ping and a message in one write
    for cseq in ("1 OPTIONS", "2 INFO"):
        answer = ua.wait(lambda m, c=cseq: not m.is_request and m.value("CSeq") == c)
        assert answer.status == 200
    deadline = time.monotonic() + 2
    while not ua.pongs and time.monotonic() < deadline:
        ua._receive(0.1)
    assert ua.pongs, "no CRLF pong for the ping"
    info = srs.requests("INFO")[0]
    assert info.message.body == b"hello" and info.conn == 1
    assert len(srs.connections) == 1 and len(srs.connections[0].pings) == 1
    ua.close()


# ----------------------------------------------------------------------------- the recording dialog

def recording_offer(protocol: str = "RTP/AVP", crypto: list[str] = ()) -> bytes:
    """An SRC's multipart body: a two-stream sendonly SDP like rtpengine's, and metadata."""
    lines = ["v=0", "o=- 7 7 IN IP4 127.0.0.1", "s=src", "t=0 0"]
    for label, port in (("1", 30000), ("0", 30002)):
        lines += [f"m=audio {port} {protocol} 0", "c=IN IP4 127.0.0.1", f"a=label:{label}",
                  "a=rtpmap:0 PCMU/8000", "a=sendonly"]
        lines += [f"a=crypto:{c}" for c in crypto]
    sdp = ("\r\n".join(lines) + "\r\n").encode()
    xml = b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>complete</datamode></recording>"
    body = (b"--b\r\nContent-Type: application/sdp\r\n\r\n" + sdp +
            b"\r\n--b\r\nContent-Type: application/rs-metadata+xml\r\n"
            b"Content-Disposition: recording-session\r\n\r\n" + xml + b"\r\n--b--\r\n")
    return body


def src_invite(ua: StreamUa, srs: StreamSrs, body: bytes):
    ua.to_uri = srs.uri
    ua._to_display = "SRS"
    ua.cseq += 1
    headers = [("From", f"<{srs.uri}>;tag={ua.local_tag}"), ("To", f"<{srs.uri}>"),
               ("Call-ID", ua.call_id), ("CSeq", f"{ua.cseq} INVITE"),
               ("Contact", f"<sip:127.0.0.1:{ua.local_port};transport=tls>;+sip.src"),
               ("Require", "siprec")]
    return ua.request("INVITE", srs.uri, headers, body, content_type="multipart/mixed;boundary=b")


@pytest.mark.parametrize("form", ["transport", "sips", "tcp"])
def test_srs_answers_a_recording_session(pki, servers, form):
    """INVITE (multipart) -> 200 with recvonly m-lines on the given ports and a Contact of the
    SRS's transport; ACK; re-INVITE a=inactive -> 200 a=inactive; BYE -> 200. Everything on
    one connection, recorded with times; TLS 1.3 by default."""
    ports = (media.free_media_port(), media.free_media_port())
    is_tls = form != "tcp"
    srs = servers(tls=tls(pki) if is_tls else None, media_ports=ports, uri_form=form)
    ua = StreamUa(srs.port, client_context(pki.ca_file) if is_tls else None)
    invite = src_invite(ua, srs, recording_offer())
    ok = ua.wait_response(invite)
    assert ok.status == 200 and ok.value("CSeq") == "1 INVITE"
    answer = siprec.parse_sdp(ok.body.decode())
    assert [m.port for m in answer.media] == list(ports)
    assert [m.protocol for m in answer.media] == ["RTP/AVP", "RTP/AVP"]
    assert {answer.direction(m) for m in answer.media} == {"recvonly"}
    assert [m.label for m in answer.media] == ["1", "0"]
    contact = ok.value("Contact")
    assert contact == srs.contact
    assert ("sips:" in contact) if form == "sips" else \
        (f";transport={'tls' if is_tls else 'tcp'}" in contact), contact
    ua.ack(invite, ok)
    hold = ua.request_in_dialog("INVITE", recording_offer().replace(b"a=sendonly", b"a=inactive"))
    held = ua.wait_response(hold)
    assert {siprec.parse_sdp(held.body.decode()).direction(m)
            for m in siprec.parse_sdp(held.body.decode()).media} == {"inactive"}
    ua.ack(hold, held)
    bye = ua.request_in_dialog("BYE")
    assert ua.wait_response(bye).status == 200
    srs.wait_request("BYE")
    methods = [r.message.method for r in srs.messages()]
    assert methods == ["INVITE", "ACK", "INVITE", "ACK", "BYE"], methods
    assert {r.conn for r in srs.messages()} == {1}
    times = [r.time for r in srs.messages()]
    assert times == sorted(times)
    conn = srs.connections[0]
    if is_tls:
        assert conn.tls_version == "TLSv1.3" and conn.cipher.startswith("TLS_"), conn
        assert conn.sni is None, "Python sends no SNI for an IP address (RFC 6066 3)"
    else:
        assert conn.transport == "TCP" and conn.tls_version is None
    assert srs.ok_to(invite.message).value("Contact") == srs.contact
    ua.close()


def test_srs_rejects_when_told_to(pki, servers):
    srs = servers(tls=tls(pki), reject=(503, "Service Unavailable"))
    ua = StreamUa(srs.port, client_context(pki.ca_file))
    invite = src_invite(ua, srs, recording_offer())
    rejected = ua.wait_response(invite)
    assert rejected.start_line == "SIP/2.0 503 Service Unavailable"
    assert sipstream.sipmsg.header_param(rejected.value("To"), "tag")
    ua.close()


def test_srs_answers_savp_offers_with_one_crypto_of_an_offered_suite(pki, servers):
    offered = [srtp.Crypto.fresh(1, "AEAD_AES_256_GCM"), srtp.Crypto.fresh(2, "AES_CM_128_HMAC_SHA1_80")]
    for accepted, expected in ((None, offered[0]), (("AES_CM_128_HMAC_SHA1_80",), offered[1])):
        srs = servers(tls=tls(pki), media_ports=(4000, 4002), srtp_suites=accepted)
        ua = StreamUa(srs.port, client_context(pki.ca_file))
        invite = src_invite(ua, srs, recording_offer("RTP/SAVP", [c.attribute[7:] for c in offered]))
        ok = ua.wait_response(invite)
        sdp = siprec.parse_sdp(ok.body.decode())
        for m in sdp.media:
            assert m.protocol == "RTP/SAVP"
            cryptos = [srtp.parse_crypto(v) for v in m.attribute("crypto")]
            assert [(c.tag, c.suite) for c in cryptos] == [(expected.tag, expected.suite)], ok.body
            assert cryptos[0].key != expected.key  # its own key
        ua.close()


# ----------------------------------------------------------------------------- TLS settings

def test_srs_tls_versions_and_ciphers(pki, servers):
    srs12 = servers(tls=tls(pki, max_version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    ua = StreamUa(srs12.port, client_context(pki.ca_file))
    assert ua.tls_version == "TLSv1.2"
    ua.close()
    conn = srs12.wait_for(srs12.established, what="connection")[0]
    assert (conn.tls_version, conn.cipher) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")

    srs11 = servers(tls=tls(pki, min_version="1.1", max_version="1.1"))
    with pytest.raises(ssl.SSLError) as failure:
        StreamUa(srs11.port, client_context(pki.ca_file))
    assert tlsrecording.OLD_PROTOCOL_REASON.search(str(failure.value)), failure.value
    srs11.wait_for(srs11.failed_handshakes, what="failed handshake")

    # TLS 1.3 cipher suites are the client's choice here (Python's ssl cannot restrict them on
    # the server): a client offering only ChaCha20 gets it.
    srs13 = servers(tls=tls(pki))
    context = client_context(pki.ca_file)
    context.set_ciphers("ECDHE+CHACHA20")  # TLS 1.2 list; 1.3 suites unchanged
    ua = StreamUa(srs13.port, context)
    assert ua.sock.cipher()[0].startswith("TLS_")
    ua.close()


def test_srs_requiring_a_client_certificate(pki, servers):
    srs = servers(tls=tls(pki, client_ca=pki.ca_file, require_client_cert=True))
    # TLS 1.3: the client's handshake completes; the server's alert arrives with the first read.
    ua = StreamUa(srs.port, client_context(pki.ca_file))
    with pytest.raises(ssl.SSLError) as failure:
        ua.send_bytes(b"\r\n\r\n")
        ua._receive(2.0)
        ua._receive(2.0)
    assert tlsrecording.CLIENT_CERT_REASON.search(str(failure.value)), failure.value
    refused = srs.wait_for(srs.failed_handshakes, what="failed handshake")[0]
    assert "CERTIFICATE" in refused.handshake_error.upper(), refused
    ua.close()

    ua = StreamUa(srs.port, client_context(pki.ca_file, pki.client.cert, pki.client.key))
    ua.ping()
    deadline = time.monotonic() + 2
    while not ua.pongs and time.monotonic() < deadline:
        ua._receive(0.1)
    conn = srs.established()[0]
    assert conn.peer_subject == f"CN={tlscerts.CLIENT_CN}", conn
    ua.close()


def test_srs_records_sni(pki, servers):
    srs = servers(tls=tls(pki))
    ua = StreamUa(srs.port, client_context(pki.ca_file), server_hostname="srs.test")
    ua.close()
    conn = srs.wait_for(srs.established, what="connection")[0]
    assert conn.sni == "srs.test", conn


# ----------------------------------------------------------------------------- closing, resuming

def ping_pong(ua: StreamUa) -> None:
    before = len(ua.pongs)
    ua.ping()
    deadline = time.monotonic() + 2
    while len(ua.pongs) == before and time.monotonic() < deadline:
        ua._receive(0.1)
    assert len(ua.pongs) > before, "no pong"


def test_srs_closes_its_connections_on_demand_and_accepts_new_ones(pki, servers):
    """close_notify: the client reads the end of the stream; the next connection resumes the TLS
    session (the SRS sees session_reused). reset: the client gets ECONNRESET."""
    srs = servers(tls=tls(pki))
    context = client_context(pki.ca_file)
    ua = StreamUa(srs.port, context)
    ping_pong(ua)  # reading also takes in the session tickets of TLS 1.3
    session = ua.sock.session
    assert srs.close_connections("close_notify") == [1]
    with pytest.raises(AssertionError, match="closed the connection"):
        for _ in range(20):
            ua._receive(0.1)
    assert srs.connections[0].closed_by == "srs"
    ua.close()

    raw = socket.create_connection(("127.0.0.1", srs.port))
    again = context.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
    assert again.session_reused
    conn = srs.wait_for(lambda: srs.established()[1:], what="second connection")[0]
    assert conn.id == 2 and conn.session_reused, conn
    again.close()

    ua = StreamUa(srs.port, context)
    ping_pong(ua)
    ids = srs.close_connections("reset")
    assert ids and ids[-1] == 3
    with pytest.raises((ConnectionResetError, ssl.SSLError, AssertionError)):
        for _ in range(20):
            ua._receive(0.1)
    ua.close()


# ----------------------------------------------------------------------------- the caller

def test_stream_ua_dialog_against_the_srs(pki, servers):
    """The caller of the edge test: INVITE, 200, ACK to the remote target with the route set,
    BYE; its Via and Contact name its own connection."""
    srs = servers(tls=tls(pki), media_ports=(4000, 4002))
    ua = StreamUa(srs.port, client_context(pki.ca_file))
    invite = ua.invite(f"sip:bob@127.0.0.1:{srs.port};transport=tls", pyua.simple_sdp(5000))
    ok = ua.wait_response(invite)
    ack = ua.ack(invite, ok)
    assert ack.uri == f"sip:srs@127.0.0.1:{srs.port};transport=tls"
    bye = ua.request_in_dialog("BYE")
    assert ua.wait_response(bye).status == 200
    at_srs = srs.wait_request("BYE")[0].message
    via = at_srs.values("Via")[0]
    assert sipstream.sipmsg.via_sent_by(via) == ("TLS", "127.0.0.1", ua.local_port), via
    assert srs.requests("ACK")[0].message.value("CSeq") == "1 ACK"
    ua.close()


# ----------------------------------------------------------------------------- SRTP

def test_srtp_key_derivation_matches_rfc_3711_b3():
    key = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
    salt = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
    if not srtp.available():
        pytest.skip("the cryptography package is not installed")
    assert srtp.derive(key, salt, 0, 16).hex() == "c61e7a93744f39ee10734afe3ff7a087"
    assert srtp.derive(key, salt, 2, 14).hex() == "30cbbc08863d8c85d49db34a9ae1"
    assert srtp.derive(key, salt, 1, 20).hex() == "cebe321f6ff7716b6fd4ab49af256a156d38baa4"


@pytest.mark.parametrize("suite", sorted(srtp.SUITES))
def test_srtp_round_trip_and_tamper(suite):
    if not srtp.available():
        pytest.skip("the cryptography package is not installed")
    crypto = srtp.Crypto.fresh(1, suite)
    assert srtp.parse_crypto(crypto.attribute[len("crypto:"):]) == crypto
    sender, receiver = srtp.Context(crypto), srtp.Context(crypto)
    for seq in (65534, 65535, 0, 1):  # across a wrap of the sequence number
        packet = media.rtp_packet(seq, seq * 160, 0x1234, bytes([0xFF]) * 160)
        protected = sender.protect(packet)
        assert len(protected) == len(packet) + srtp.overhead(suite)
        assert protected[12:172] != packet[12:]
        assert receiver.unprotect(protected) == packet
    tampered = bytearray(sender.protect(media.rtp_packet(2, 320, 0x1234, b"\xff" * 160)))
    tampered[20] ^= 1
    with pytest.raises(ValueError):
        receiver.unprotect(bytes(tampered))


CALLER_SDP = ("v=0\r\no=- 1001 1 IN IP4 127.0.0.1\r\ns=caller\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n{crypto}")


def test_rtpengine_srtp_towards_the_srs_and_from_an_sdes_leg(bench):
    """The media-security modes the proxy must set up, with this rtpengine: (1) a plain call,
    subscribe request with transport-protocol RTP/SAVP: the offer has a=crypto lines
    (AEAD_AES_256_GCM first), our SAVP answer is taken by `subscribe answer`, and what reaches
    the SRS decrypts with the offered keys into each party's audio; (2) a caller leg with SDES
    (our SRTP sender) and transport-protocol RTP/AVP: the SRS gets plain RTP of both parties."""
    if not srtp.available():
        pytest.skip("the cryptography package is not installed")
    engine = bench.rtpengine()
    ng = engine.ng

    # (1) plain legs, SRTP to the SRS
    caller, callee = media.RtpSender(byte=media.CALLER_BYTE), media.RtpSender(byte=media.CALLEE_BYTE)
    bench._closers += [caller.close, callee.close]
    offered = ng.offer("srtp-1", "a", CALLER_SDP.format(port=caller.port, proto="RTP/AVP", crypto=""))
    answered = ng.answer("srtp-1", "a", "b", CALLER_SDP.format(port=callee.port, proto="RTP/AVP",
                                                               crypto=""))
    to_callee, to_caller = (siprec.audio_address(offered["sdp"])[1],
                            siprec.audio_address(answered["sdp"])[1])
    subscription = ng.request("subscribe request", flags=["all", "siprec"],
                              **{"call-id": "srtp-1", "transport-protocol": "RTP/SAVP"})
    offer = siprec.parse_sdp(subscription["sdp"])
    assert [m.protocol for m in offer.media] == ["RTP/SAVP", "RTP/SAVP"], subscription["sdp"]
    for m in offer.media:
        assert srtp.parse_crypto(m.attribute("crypto")[0]).suite == "AEAD_AES_256_GCM"
    counter = bench.rtp_counter(2)
    srs = StreamSrs(media_ports=tuple(counter.ports), srtp_suites=("AEAD_AES_256_GCM",))
    bench._closers.append(srs.close)
    answer_sdp = srs.answer_sdp(sdp_request(subscription["sdp"])).decode()
    ng.request("subscribe answer", sdp=answer_sdp, flags=["allow transcoding"],
               **{"call-id": "srtp-1", "to-tag": subscription["to-tag"]})
    caller.send(to_caller, 10)
    callee.send(to_callee, 10)
    for port in counter.ports:
        assert counter.wait_for(port, 10, timeout=2) >= 10, counter.summary()
    parties = tlsrecording.srtp_parties(counter, offer, siprec.parse_sdp(answer_sdp))
    labels = subscription["media-labels"]
    for m, port in zip(offer.media, counter.ports):
        party = "caller" if labels[m.label]["tag"] == "a" else "callee"
        assert parties[port] == {party: 10}, (parties, counter.summary())
        assert {len(p.raw) for p in counter.packets(port)} == {12 + 160 + 16}, "GCM tag length"
    ng.delete("srtp-1")

    # (2) an SDES caller leg, plain RTP to the SRS
    sdes = srtp.Crypto.fresh(1, "AES_CM_128_HMAC_SHA1_80")
    sender = srtp.Context(sdes)
    # The callee's side plain (transport-protocol on the offer): only the caller's leg is SDES.
    offered = ng.offer("srtp-2", "a", CALLER_SDP.format(port=caller.port, proto="RTP/SAVP",
                                                        crypto=f"a={sdes.attribute}\r\n"),
                       **{"transport-protocol": "RTP/AVP"})
    assert "RTP/AVP" in offered["sdp"] and "a=crypto" not in offered["sdp"], offered["sdp"]
    answered = ng.answer("srtp-2", "a", "b", CALLER_SDP.format(port=callee.port, proto="RTP/AVP",
                                                               crypto=""))
    assert "RTP/SAVP" in answered["sdp"] and "a=crypto" in answered["sdp"], answered["sdp"]
    engine_to_caller = siprec.audio_address(answered["sdp"])[1]
    counter2 = bench.rtp_counter(2)
    subscription = ng.request("subscribe request", flags=["all", "siprec"],
                              **{"call-id": "srtp-2", "transport-protocol": "RTP/AVP"})
    offer = siprec.parse_sdp(subscription["sdp"])
    assert [m.protocol for m in offer.media] == ["RTP/AVP", "RTP/AVP"], subscription["sdp"]
    assert not any(m.attribute("crypto") for m in offer.media), subscription["sdp"]
    srs2 = StreamSrs(media_ports=tuple(counter2.ports))
    bench._closers.append(srs2.close)
    answer_sdp = srs2.answer_sdp(sdp_request(subscription["sdp"]))
    ng.request("subscribe answer", sdp=answer_sdp.decode(), flags=["allow transcoding"],
               **{"call-id": "srtp-2", "to-tag": subscription["to-tag"]})
    for seq in range(1, 11):
        caller.sock.sendto(sender.protect(media.rtp_packet(seq, seq * 160, caller.ssrc,
                                                           caller.payload)),
                           ("127.0.0.1", engine_to_caller))
        time.sleep(0.005)
    labels = subscription["media-labels"]
    caller_port = [port for m, port in zip(offer.media, counter2.ports)
                   if labels[m.label]["tag"] == "a"][0]
    assert counter2.wait_for(caller_port, 10, timeout=2) >= 10, counter2.summary()
    assert counter2.parties(caller_port) == {"caller"}, counter2.summary()
    ng.delete("srtp-2")


def sdp_request(sdp: str):
    """A request carrying the SDP, for StreamSrs.answer_sdp."""
    return sipstream.sipmsg.parse(b"INVITE sip:x SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n"
                                  + sdp.encode())
