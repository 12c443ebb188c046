"""The bench and the expectations of the TLS and TCP tests (test_tls.py), on top of recording.py.

A recorded call as in test_recording.py (rtpengine, SIPp caller and callee over UDP streaming RTP,
the proxy between them), with Python SRSs over TLS or TCP (sipstream.StreamSrs, Python RTP
counters on the ports their answers name), certificates made with `openssl` (tlscerts.py), and
the proxy started with --srs sips:/;transport=tls/;transport=tcp URIs and the --tls-* flags, or a
YAML file with per-SRS `tls`, `media` and `srtp_suites`. For the edge, a Python TLS caller
(sipstream.StreamUa) and a Python UDP caller that sends SRTP (SdesCaller).

Each expectation is a function named after what it checks, raising AssertionError with the
evidence, as in recording.py; the OpenSSL reasons the proxy's log must carry are regular
expressions here, checked against Python's own OpenSSL in test_tls_harness.py.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import harness
import media
import recording
import siprec
import sipmsg
import srtp
from recording import SRS_SIGNALLING_S, RecordingBench
from sipmsg import SipMessage, header_param
from sipstream import StreamSrs, TlsServerSettings
from tlscerts import TestPki

# What OpenSSL says (X509_verify_cert_error_string, alert descriptions), case-insensitive. For
# 127.0.0.1 the name check is an IP address check: "IP address mismatch".
VERIFY_REASONS = {
    "wrong_host": re.compile(r"hostname mismatch|IP address mismatch", re.IGNORECASE),
    "expired": re.compile(r"certificate has expired", re.IGNORECASE),
    "untrusted": re.compile(r"self[- ]signed certificate in certificate chain|"
                            r"unable to get local issuer certificate", re.IGNORECASE),
}
OLD_PROTOCOL_REASON = re.compile(r"protocol version|unsupported protocol|no protocols available",
                                 re.IGNORECASE)
CLIENT_CERT_REASON = re.compile(r"certificate required", re.IGNORECASE)

RECONNECT_BACKOFF_MAX_S = 1.0  # the first reconnection waits 0.5-1 s at most
KEEPALIVE_INTERVAL_S = 25.0  # the proxy's CRLF ping period on idle SRS connections (fixed)
DEFAULT_TLS_PORT = 5061


# ----------------------------------------------------------------------------- bench

class TlsRecordingBench(RecordingBench):
    """A recording bench whose SRSs are Python servers over TLS or TCP."""

    def __init__(self, bench, pki: TestPki):
        super().__init__(bench)  # skips unless siprec-edge; starts rtpengine
        self.pki = pki
        self.servers: list[StreamSrs] = []

    def tls_settings(self, identity=None, **kwargs) -> TlsServerSettings:
        identity = identity or self.pki.srs
        return TlsServerSettings(cert=identity.chain, key=identity.key, **kwargs)

    def stream_srs(self, transport: str = "tls", identity=None, uri_form: str | None = None,
                   port: int = 0, reject: tuple[int, str] | None = None,
                   srtp_suites: tuple[str, ...] | None = None, **tls_kwargs) -> StreamSrs:
        """A Python SRS over TLS (the good certificate unless identity says otherwise; tls_kwargs
        are TlsServerSettings fields) or TCP, answering with the ports of an RTP counter."""
        counter = self.bench.rtp_counter(2)
        settings = self.tls_settings(identity, **tls_kwargs) if transport == "tls" else None
        name = f"srs{len(self.servers) + 1}"
        srs = StreamSrs(tls=settings, port=port, media_ports=tuple(counter.ports), reject=reject,
                        uri_form=uri_form or ("transport" if transport == "tls" else "tcp"),
                        srtp_suites=srtp_suites, name=name)
        srs.counter = counter
        self.servers.append(srs)
        self.bench._closers.append(srs.close)
        self.bench._artifacts.append((f"{name} (Python SRS) connections and messages", srs.summary))
        return srs

    def tls_flags(self, srss, ca: Path | None = None, cert: Path | None = None,
                  key: Path | None = None, extra: list[str] = ()) -> list[str]:
        """--srs (the URIs in order) --rtpengine, --tls-ca (the test CA file unless given; not
        for TCP SRSs alone), --tls-cert/--tls-key when given."""
        args = ["--srs", ",".join(s.uri for s in srss), "--rtpengine", self.engine.ng_uri]
        if ca or any(s.transport == "TLS" for s in srss):
            args += ["--tls-ca", str(ca or self.pki.ca_file)]
        if cert:
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        return args + list(extra)

    def yaml_srs_config(self, srs_entries: str, top: str = "") -> list[str]:
        """A --config file: `top` at the top level (a tls: section...), one rule recording
        every call with one instance whose srs list is srs_entries (YAML lines, indented 10)."""
        return self.config(f"""{top}recording:
  rtpengine: [{self.engine.ng_uri}]
  rules:
    - name: everything
      match:
        request_uri: "^sip:"
      instances:
        - name: main
          srs:
{srs_entries}""")

    def proxy_log(self) -> str:
        return self.bench.proxy.log_path.read_bytes().decode("utf-8", "replace")


def srs_yaml_entry(uri: str, **settings) -> str:
    """One mapping of an instance's srs list (`uri` plus tls/media/srtp_suites), YAML flow style."""
    fields = [f'uri: "{uri}"']
    for key, value in settings.items():
        if isinstance(value, dict):
            inner = ", ".join(f'{k}: {_yaml_scalar(v)}' for k, v in value.items())
            fields.append(f"{key}: {{{inner}}}")
        elif isinstance(value, (list, tuple)):
            fields.append(f"{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
        else:
            fields.append(f"{key}: {_yaml_scalar(value)}")
    return f"            - {{{', '.join(fields)}}}\n"


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"'


# ----------------------------------------------------------------------------- expectations

def assert_stream_srs_invite(invite: SipMessage, srs: StreamSrs, call: recording.Call,
                             from_uri: str | None = None,
                             to_uri: str | None = None) -> siprec.RecordingBody:
    """The initial INVITE of a recording session over TCP or TLS: as over UDP (recording.py's
    assert_srs_invite), with Via SIP/2.0/TLS (or TCP) and a Contact for that transport
    (;transport=tls or a sips: URI; a sips: Request-URI needs a sips: Contact, RFC 3261
    8.1.1.8), and Content-Length exactly the body (a stream has no slack)."""
    assert invite.start_line == f"INVITE {srs.uri} SIP/2.0", invite.start_line
    vias = invite.values("Via")
    assert len(vias) == 1, f"the SRC's INVITE is a new request: one Via, got {vias}"
    transport, host, _ = sipmsg.via_sent_by(vias[0])
    assert (transport, host) == (srs.transport, harness.LOCALHOST), \
        f"Via {vias[0]}: expected SIP/2.0/{srs.transport} {harness.LOCALHOST}"
    assert (header_param(vias[0], "branch") or "").startswith("z9hG4bK"), vias[0]
    assert invite.value("Max-Forwards") == "70"
    from_value = invite.value("From")
    assert re.fullmatch(rf"<{re.escape(from_uri or srs.uri)}>;tag=[^;\s]+", from_value), \
        f"From: {from_value} (expected <{from_uri or srs.uri}>;tag=...)"
    assert invite.value("To") == f"<{to_uri or srs.uri}>", f"To: {invite.value('To')}"
    assert invite.call_id and invite.call_id != call.call_id
    assert re.fullmatch(r"\d+ INVITE", invite.value("CSeq") or ""), invite.value("CSeq")
    assert_contact_for_transport(invite.value("Contact"), srs)
    assert invite.value("Require") == "siprec", f"Require: {invite.value('Require')}"
    content_type = invite.value("Content-Type") or ""
    assert re.fullmatch(r'multipart/mixed;\s*boundary=("?)[^";\s]+\1', content_type), \
        f"Content-Type: {content_type}"
    assert int(invite.value("Content-Length")) == len(invite.body), \
        f"Content-Length {invite.value('Content-Length')}, body {len(invite.body)} bytes"
    body = siprec.recording_body(invite)
    assert [p.content_type for p in body.parts] == ["application/sdp",
                                                    "application/rs-metadata+xml"], \
        [p.headers for p in body.parts]
    disposition = (body.parts[1].header("Content-Disposition") or "").split(";")[0].strip()
    assert disposition == "recording-session", body.parts[1].headers
    return body


def assert_contact_for_transport(contact: str | None, srs: StreamSrs) -> None:
    """<sip:127.0.0.1[:P];transport=tls>;+sip.src (tcp for TCP), or <sips:127.0.0.1[:P]>;+sip.src
    for TLS; sips: whenever the SRS URI is sips:."""
    match = re.fullmatch(r"<(sips?):127\.0\.0\.1(?::\d+)?((?:;[^;>]+)*)>;\+sip\.src", contact or "")
    assert match, f"Contact: {contact} (expected <sip[s]:127.0.0.1[:port][;transport=...]>;+sip.src)"
    scheme = match.group(1)
    params = {p.split("=", 1)[0].lower(): (p.split("=", 1) + [""])[1].lower()
              for p in match.group(2).split(";") if p}
    if srs.uri.startswith("sips:"):
        assert scheme == "sips", f"Contact {contact}: a sips: Request-URI needs a sips: Contact"
    if srs.transport == "TLS":
        assert scheme == "sips" or params.get("transport") == "tls", \
            f"Contact {contact}: not a TLS Contact"
    else:
        assert scheme == "sip" and params.get("transport") == "tcp", \
            f"Contact {contact}: expected ;transport=tcp"


def assert_session_on_one_connection(srs: StreamSrs, invite: SipMessage) -> int:
    """Every message of the recording session reached the SRS on one connection; returns it."""
    conns = {r.conn for r in srs.messages() if r.message.call_id == invite.call_id}
    assert len(conns) == 1, f"the session used connections {conns}\n{srs.summary()}"
    return conns.pop()


def assert_stream_srs_acked(srs: StreamSrs, invite: SipMessage) -> None:
    ok = srs.ok_to(invite)
    acks = [r.message for r in srs.requests("ACK") if r.message.call_id == invite.call_id]
    assert acks, f"the SRS's 200 was not acknowledged\n{srs.summary()}"
    recording.assert_in_dialog_ack(acks[0], invite, ok)


def session_byes(srs: StreamSrs, invite: SipMessage) -> list:
    return [r for r in srs.requests("BYE") if r.message.call_id == invite.call_id]


def assert_stream_recording_ended(srs: StreamSrs, invite: SipMessage, call_ended_at: float,
                                  work_dir: Path, bound: float = SRS_SIGNALLING_S) -> float:
    """After the call: exactly one BYE in the recording session within `bound`, to the SRS's
    Contact, optionally after a final re-INVITE whose metadata validates. Returns its time."""
    ok = srs.ok_to(invite)
    byes = session_byes(srs, invite)
    assert len({b.message.value("CSeq") for b in byes}) == 1, \
        f"{len(byes)} BYEs at the SRS\n{srs.summary()}"
    bye = byes[0]
    recording.assert_in_dialog(bye.message, invite, ok, "BYE")
    assert call_ended_at - 0.05 <= bye.time <= call_ended_at + bound, \
        f"BYE to the SRS {bye.time - call_ended_at:+.2f} s after the call ended (bound {bound} s)"
    for entry in srs.requests("INVITE")[1:]:
        if entry.message.call_id == invite.call_id and entry.time >= call_ended_at - 0.05:
            recording.assert_in_dialog(entry.message, invite, ok, "INVITE")
            body = siprec.recording_body(entry.message)
            if body.metadata_xml:
                valid, output = siprec.validate_metadata(body.metadata_xml, work_dir, "final")
                assert valid, output
    return bye.time


def assert_reason_logged(log: str, srs: StreamSrs, reason: re.Pattern) -> str:
    """A line of the proxy's log names the SRS (its port) and carries OpenSSL's reason."""
    lines = [line for line in log.splitlines()
             if reason.search(line) and str(srs.port) in line]
    assert lines, (f"no log line with both {srs.uri} (port {srs.port}) and /{reason.pattern}/ "
                   f"(OpenSSL's reason); lines naming the port:\n" +
                   "\n".join(line for line in log.splitlines() if str(srs.port) in line)[-3000:])
    return lines[0]


def assert_nothing_reached(srs: StreamSrs) -> None:
    assert srs.messages() == [], f"{srs.name} got SIP it should not have:\n{srs.summary()}"


def recorded_call_checks(rec: RecordingBench, srs: StreamSrs, call: recording.Call) -> tuple:
    """The shared checks of a call recorded by one stream SRS: the INVITE, rtpengine's SDP, the
    metadata, the ACK, the media on the labels' ports, the BYE after the call. Returns
    (invite, body, view)."""
    recording.assert_media_anchored(call, rec.engine)
    invites = srs.invites()
    assert invites, f"no INVITE at {srs.name}\n{srs.summary()}"
    invite = invites[0]
    body = assert_stream_srs_invite(invite, srs, call)
    labels = recording.assert_offer_sdp(body.sdp, rec.engine)
    view = recording.assert_metadata(body.metadata_xml, call, labels, rec.work_dir)
    invite_at = srs.time_of(invite)
    assert 0 <= invite_at - call.answered_at() <= SRS_SIGNALLING_S, \
        f"SRS INVITE {invite_at - call.answered_at():+.2f} s after the call was answered"
    assert_stream_srs_acked(srs, invite)
    bye_sent = call.sent_time(call.uac, "BYE")
    recording.assert_media_reaches_srs(srs, body.sdp, view, since=invite_at, until=bye_sent)
    assert_stream_recording_ended(srs, invite, bye_sent, rec.work_dir)
    return invite, body, view


# ----------------------------------------------------------------------------- SRTP

def crypto_in_use(offer_media: siprec.SdpMedia, answer_media: siprec.SdpMedia) -> srtp.Crypto:
    """The offerer's key for the suite the answer chose (same tag, RFC 4568 5.1.2): the key the
    sender toward the SRS (rtpengine) encrypts with."""
    answered = [srtp.parse_crypto(v) for v in answer_media.attribute("crypto")]
    assert len(answered) == 1, f"the answer has {len(answered)} a=crypto lines"
    for offered in (srtp.parse_crypto(v) for v in offer_media.attribute("crypto")):
        if offered.tag == answered[0].tag:
            assert offered.suite == answered[0].suite, (offered, answered[0])
            return offered
    raise AssertionError(f"the answer's tag {answered[0].tag} is not in the offer")


def srtp_parties(counter: media.RtpCounter, offer: siprec.Sdp, answer: siprec.Sdp,
                 since: float | None = None, until: float | None = None) -> dict[int, Counter]:
    """Per SRS port (m-line order): how many packets decrypted to each party's audio (None for
    packets that did not authenticate or carry neither party's bytes)."""
    found = {}
    for index, port in enumerate(counter.ports):
        context = srtp.Context(crypto_in_use(offer.media[index], answer.media[index]))
        tally: Counter = Counter()
        for packet in counter.packets(port, since, until):
            try:
                plain = context.unprotect(packet.raw)
            except ValueError:
                tally[None] += 1
                continue
            parsed = media.parse_rtp(plain, packet.arrived, packet.source)
            tally[parsed.party if parsed else None] += 1
        found[port] = tally
    return found


def assert_srtp_media_reaches_srs(srs: StreamSrs, offer: siprec.Sdp, answer: siprec.Sdp,
                                  view: recording.MetadataView | None, since: float, until: float,
                                  minimum: int = recording.MIN_PACKETS) -> None:
    """Each SRS port got at least `minimum` SRTP packets with the tag length of the chosen suite;
    they decrypt (with the offered key of the answered tag) to one party's audio, the party the
    metadata gives that label. Without the cryptography package only sizes are checked."""
    for index, port in enumerate(srs.ports):
        packets = srs.counter.packets(port, since, until)
        assert len(packets) >= minimum, f"port {port}: {len(packets)} packets, expected " \
                                        f"{minimum}+\n{srs.counter.summary()}"
        suite = crypto_in_use(offer.media[index], answer.media[index]).suite
        sizes = Counter(len(p.raw) for p in packets)
        assert set(sizes) == {12 + media.PCMU_BYTES_PER_PACKET + srtp.overhead(suite)}, \
            f"port {port}: packet sizes {dict(sizes)} for {suite} (12 + 160 + tag)"
        assert not any(p.party for p in packets), f"port {port}: plain audio in SRTP packets"
    if not srtp.available():
        return
    parties = srtp_parties(srs.counter, offer, answer, since, until)
    for index, port in enumerate(srs.ports):
        tally = parties[port]
        assert None not in tally and len(tally) == 1, \
            f"port {port}: decrypted to {dict(tally)} (None: failed or unknown)"
        if view is not None:
            label = offer.media[index].label
            expected = {party for party, sent in view.label_of.items() if sent == label}
            assert set(tally) == expected, \
                f"m-line {index} (label {label}) carries {set(tally)}, the metadata says {expected}"


# ----------------------------------------------------------------------------- an SDES caller

@dataclass
class PythonCall:
    """What recording.assert_metadata needs of a call whose caller is Python."""

    invite: SipMessage

    def caller_invite(self) -> SipMessage:
        return self.invite

    @property
    def call_id(self) -> str:
        return self.invite.call_id


class SdesCaller:
    """A UDP caller offering RTP/SAVP with one AES_CM_128_HMAC_SHA1_80 key, sending SRTP to the
    address of the 200's SDP every 20 ms until hang_up (its payload is media.CALLER_BYTE)."""

    def __init__(self, bench, suite: str = "AES_CM_128_HMAC_SHA1_80"):
        self.ua = bench.udp_ua()
        self.media_port = media.free_media_port()
        self.sender = media.RtpSender(self.media_port, byte=media.CALLER_BYTE)
        bench._closers.append(self.sender.close)
        self.crypto = srtp.Crypto.fresh(1, suite)
        self.context = srtp.Context(self.crypto)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent_packets = 0
        self.invite_request = None
        self.ok: SipMessage | None = None
        self.route: list[str] = []
        self.bye_sent_at: float | None = None
        bench._closers.append(self.stop_media)

    def sdp(self) -> bytes:
        return ("v=0\r\n"
                f"o=alice 1 1 IN IP4 {harness.LOCALHOST}\r\ns=-\r\nc=IN IP4 {harness.LOCALHOST}\r\n"
                f"t=0 0\r\nm=audio {self.media_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                f"a={self.crypto.attribute}\r\na=sendrecv\r\n").encode()

    def call(self, proxy_port: int) -> None:
        """INVITE through the proxy, the 200, the ACK along the route set; media starts."""
        uri = f"sip:bob@{harness.LOCALHOST}:{proxy_port}"
        self.invite_request = self.ua.invite(uri, proxy_port, self.sdp(), from_name="Alice Caller",
                                             from_uri=f"sip:alice@{harness.LOCALHOST}")
        self.ok = self.ua.wait_response(self.invite_request, timeout=8)
        assert self.ok.status == 200, self.ok.start_line
        self.ua.learn_dialog(self.ok)
        self.route = list(reversed(self.ok.values("Record-Route")))
        self._in_dialog("ACK", self.invite_request.cseq)
        _, port = siprec.audio_address(self.ok.body.decode())
        self._thread = threading.Thread(target=self._stream, args=(port,), daemon=True)
        self._thread.start()

    @property
    def invite(self) -> SipMessage:
        return sipmsg.parse(self.invite_request.data)

    def _in_dialog(self, method: str, cseq: int):
        dialog = self.ua.dialog
        headers = {"Max-Forwards": "70"}
        if self.route:
            headers["Route"] = ", ".join(self.route)
        headers.update({"From": self.invite_request.headers["From"],
                        "To": self.ok.value("To"), "Call-ID": dialog.call_id,
                        "CSeq": f"{cseq} {method}"})
        return self.ua._request(method, dialog.remote_target, dialog.target_port, headers, b"")

    def _stream(self, port: int) -> None:
        seq = secrets.randbelow(20000)
        while not self._stop.is_set():
            seq += 1
            packet = media.rtp_packet(seq, seq * media.PCMU_BYTES_PER_PACKET, self.sender.ssrc,
                                      self.sender.payload)
            self.sender.sock.sendto(self.context.protect(packet), (harness.LOCALHOST, port))
            self.sent_packets += 1
            time.sleep(media.PACKET_INTERVAL_S)

    def hang_up(self) -> SipMessage:
        self.stop_media()
        self.ua.dialog.cseq = self.invite_request.cseq + 1
        self.bye_sent_at = time.time()
        bye = self._in_dialog("BYE", self.ua.dialog.cseq)
        return self.ua.wait_response(bye, timeout=8)

    def stop_media(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
