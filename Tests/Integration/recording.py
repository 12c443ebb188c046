"""The recording bench and the expectations the recording tests share.

A recorded call: rtpengine (own NG port and media range), one or more SRSs (SIPp srs_*.xml with
Python RTP counters on the ports their SDP answers name, or Python sinks that never answer),
a SIPp callee and caller that stream RTP, and siprec-edge between them started with --srs and
--rtpengine (or a YAML --config). Everything runs on 127.0.0.1 and stops with the test.

The expectations of the proxy's recording interface are written once here, as functions that
raise AssertionError with the evidence, and are named after what they check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
import media
import siprec
import sipmsg
from sipmsg import SipMessage, header_param
from test_calls import first, requests, responses

TALK_MS = 3000  # default talk time of a recorded call
SRS_SIGNALLING_S = 2.0  # bound for the proxy to act towards the SRS after a trigger
MEDIA_SETTLE_S = 0.3  # RTP already in flight when the fork changes
MIN_PACKETS = 25  # at 50 packets/s: half a second of media on a port at least
CLEANUP_S = 1.5  # rtpengine `list` empty and gauges back to 0 within this after the last BYE


# ----------------------------------------------------------------------------- bench

@dataclass
class Srs:
    """One SRS: a SIPp scenario with an RTP counter on its two answer ports, or a Python sink."""

    port: int
    sipp: harness.Sipp | None = None
    counter: media.RtpCounter | None = None
    ports: tuple[int, int] | None = None
    sink: object | None = None  # pyua.UdpSink: receives, never answers

    @property
    def uri(self) -> str:
        return f"sip:{harness.LOCALHOST}:{self.port}"

    def received(self) -> list[SipMessage]:
        if self.sipp is not None:
            return self.sipp.received()
        if self.sink is not None:
            return self.sink.messages()
        return []

    def traced(self) -> list[sipmsg.TracedMessage]:
        """What the SRS received, with times (SIPp trace, or the sink's arrival times)."""
        if self.sipp is not None:
            return [t for t in self.sipp.trace() if t.direction == "received"]
        if self.sink is not None:
            return [sipmsg.TracedMessage("received", "UDP", m, when)
                    for when, m in list(self.sink.received)]
        return []

    def invites(self) -> list[SipMessage]:
        """INVITEs received, retransmissions (same branch and CSeq) counted once."""
        seen, found = set(), []
        for message in requests(self.received(), "INVITE"):
            key = (header_param(message.values("Via")[0], "branch"), message.value("CSeq"))
            if key not in seen:
                seen.add(key)
                found.append(message)
        return found

    def time_of(self, message: SipMessage) -> float:
        """When the SRS first received this message (a retransmission counts as the same)."""
        for traced in self.traced():
            if traced.message.start_line == message.start_line and \
                    traced.message.value("CSeq") == message.value("CSeq") and \
                    traced.message.value("Call-ID") == message.value("Call-ID"):
                return traced.time
        raise AssertionError(f"{message.start_line} not in the SRS's trace")


@dataclass
class Call:
    uac: harness.Sipp
    uas: harness.Sipp

    def caller_invite(self) -> SipMessage:
        return first([t.message for t in self.uac.trace() if t.direction == "sent"
                      and t.message.is_request and t.message.method == "INVITE"],
                     "INVITE sent by the caller")

    def sent_time(self, sipp: harness.Sipp, method: str, cseq: int | None = None) -> float:
        """When the party first sent the request (CSeq number cseq, else the first of the method)."""
        found = [t for t in sipp.trace() if t.direction == "sent" and t.message.is_request
                 and t.message.method == method
                 and (cseq is None or t.message.value("CSeq") == f"{cseq} {method}")]
        assert found, f"{sipp.name}: no {method} (CSeq {cseq}) sent"
        return found[0].time

    def received_time(self, sipp: harness.Sipp, status: int, cseq: str) -> float:
        """When the party first received a response with this status and CSeq ('2 INVITE')."""
        found = [t for t in sipp.trace() if t.direction == "received" and not t.message.is_request
                 and t.message.status == status and t.message.value("CSeq") == cseq]
        assert found, f"{sipp.name}: no {status} ({cseq}) received"
        return found[0].time

    def answered_at(self) -> float:
        """When the callee sent its 200 to the INVITE (the recording starts on the answer)."""
        found = [t for t in self.uas.trace() if t.direction == "sent" and not t.message.is_request
                 and t.message.status == 200 and t.message.value("CSeq") == "1 INVITE"]
        assert found, "the callee sent no 200 (1 INVITE)"
        return found[0].time

    @property
    def call_id(self) -> str:
        return self.caller_invite().call_id


class RecordingBench:
    """The processes of one recorded-call test, on top of the suite's bench."""

    def __init__(self, bench):
        if bench.kind != "siprec-edge":
            pytest.skip(f"{bench.kind}: recording is siprec-edge's (rtpengine, SIPREC)")
        self.bench = bench
        self.work_dir: Path = bench.work_dir
        media.write_audio_files(self.work_dir)
        self.engine = bench.rtpengine()
        self.endpoints: harness.ProxyEndpoints | None = None

    # --- SRSs

    def srs(self, scenario: str = "srs_answer.xml", sets: dict | None = None,
            reject: tuple[int, str] | None = None, linger_ms: int | None = None) -> Srs:
        counter = self.bench.rtp_counter(2)
        ports = tuple(counter.ports)
        keys = {"srs_port_a": ports[0], "srs_port_b": ports[1]}
        sipp = self.bench.srs(scenario, keys=keys, sets=sets, reject=reject, linger_ms=linger_ms)
        return Srs(port=sipp.local_port, sipp=sipp, counter=counter, ports=ports)

    def silent_srs(self) -> Srs:
        """An SRS address where a Python socket receives and never answers."""
        sink = self.bench.udp_sink()
        return Srs(port=sink.port, sink=sink)

    def closed_srs(self) -> Srs:
        """An SRS address where nothing listens (the proxy's datagrams get ICMP port unreachable)."""
        return Srs(port=harness.free_port())

    # --- the proxy

    def flags(self, srss: list[Srs], skip_codes: str | None = None,
              timeout_ms: int | None = None) -> list[str]:
        args = ["--srs", ",".join(s.uri for s in srss), "--rtpengine", self.engine.ng_uri]
        if skip_codes is not None:
            args += ["--skip-failover-codes", skip_codes]
        if timeout_ms is not None:
            args += ["--srs-timeout-ms", str(timeout_ms)]
        return args

    def config(self, text: str) -> list[str]:
        path = self.work_dir / "siprec-edge.yaml"
        path.write_text(text)
        return ["--config", str(path)]

    # --- calls

    def call(self, proxy_args: list[str], uac: str = "uac_rtp_call.xml", uas: str = "uas_rtp_call.xml",
             talk_ms: int = TALK_MS, uac_extra: list[str] = (), uas_linger_ms: int | None = None) -> Call:
        """Starts the callee, the proxy (upstream: the callee) and the caller."""
        callee = self.bench.uas(uas, "udp", extra=media.sipp_media_args(uas, talk_ms),
                                linger_ms=uas_linger_ms)
        self.endpoints = self.bench.start_proxy(callee.local_port, "udp", explicit_transport=False,
                                                extra_args=proxy_args)
        caller = self.bench.uac(uac, "udp", self.endpoints.udp_port,
                                extra=[*media.sipp_media_args(uac, talk_ms), *uac_extra])
        return Call(caller, callee)

    @property
    def proxy_port(self) -> int:
        return self.endpoints.udp_port

    def counters(self) -> siprec.Counters:
        return siprec.read_counters(self.bench.proxy)


# ----------------------------------------------------------------------------- expectations

def assert_media_anchored(call: Call, engine) -> None:
    """The callee sees rtpengine's address in the INVITE, the caller in the 200."""
    invite = first(requests(call.uas.received(), "INVITE"), "INVITE at the callee")
    caller_address = siprec.audio_address(call.caller_invite().body.decode())
    address, port = siprec.audio_address(invite.body.decode())
    assert address == harness.LOCALHOST and engine.owns_port(port), \
        f"the callee's INVITE SDP is not rtpengine's ({address}:{port}, range " \
        f"{engine.port_min}-{engine.port_max}):\n{invite.body.decode()}"
    assert (address, port) != caller_address
    ok = first(responses(call.uac.received(), 200, "INVITE"), "200 (INVITE) at the caller")
    address, port = siprec.audio_address(ok.body.decode())
    assert address == harness.LOCALHOST and engine.owns_port(port), \
        f"the caller's 200 SDP is not rtpengine's ({address}:{port}):\n{ok.body.decode()}"


def assert_srs_invite(invite: SipMessage, srs: Srs, proxy_port: int, call: Call,
                      from_uri: str | None = None, to_uri: str | None = None) -> siprec.RecordingBody:
    """The initial INVITE of a recording session (RFC 7866 and OpenSIPS' defaults): the SRS URI as
    Request-URI, From and To (unless configured), a new Call-ID, a +sip.src Contact naming the
    proxy, Require: siprec, a multipart/mixed body of the SDP offer and the metadata."""
    assert invite.start_line == f"INVITE {srs.uri} SIP/2.0", invite.start_line
    vias = invite.values("Via")
    assert len(vias) == 1, f"the SRC's INVITE is a new request: one Via, got {vias}"
    assert sipmsg.via_sent_by(vias[0]) == ("UDP", harness.LOCALHOST, proxy_port), vias[0]
    assert (header_param(vias[0], "branch") or "").startswith("z9hG4bK"), vias[0]
    assert invite.value("Max-Forwards") == "70"
    from_value = invite.value("From")
    assert re.fullmatch(rf"<{re.escape(from_uri or srs.uri)}>;tag=[^;\s]+", from_value), \
        f"From: {from_value} (expected <{from_uri or srs.uri}>;tag=...)"
    assert invite.value("To") == f"<{to_uri or srs.uri}>", f"To: {invite.value('To')}"
    assert invite.call_id and invite.call_id != call.call_id, \
        f"the recording session needs a Call-ID of its own, got {invite.call_id}"
    assert re.fullmatch(r"\d+ INVITE", invite.value("CSeq") or ""), invite.value("CSeq")
    assert invite.value("Contact") == f"<sip:{harness.LOCALHOST}:{proxy_port}>;+sip.src", \
        f"Contact: {invite.value('Contact')}"
    assert invite.value("Require") == "siprec", f"Require: {invite.value('Require')}"
    content_type = invite.value("Content-Type") or ""
    assert re.fullmatch(r'multipart/mixed;boundary=("?)[^";\s]+\1', content_type), \
        f"Content-Type: {content_type}"
    length = int(invite.value("Content-Length"))
    # SIPp's trace ends each message with a line end of its own, after the body.
    assert len(invite.body) >= length and not invite.body[length:].strip(), \
        f"Content-Length {length}, body {len(invite.body)} bytes"
    body = siprec.recording_body(invite)
    assert [p.content_type for p in body.parts] == ["application/sdp", "application/rs-metadata+xml"], \
        [p.headers for p in body.parts]
    disposition = (body.parts[1].header("Content-Disposition") or "").split(";")[0].strip()
    assert disposition == "recording-session", body.parts[1].headers
    return body


def assert_offer_sdp(sdp: siprec.Sdp, engine, direction: str = "sendonly") -> list[str]:
    """rtpengine's subscription SDP: two m=audio lines, each with the direction and a label,
    on rtpengine's address and ports. Returns the labels in m-line order."""
    audio = [m for m in sdp.media if m.kind == "audio"]
    assert len(audio) == 2 and len(sdp.media) == 2, f"expected 2 m=audio lines:\n{sdp.text}"
    for m in audio:
        assert sdp.direction(m) == direction, f"m={m.kind} {m.port}: not a={direction}:\n{sdp.text}"
        assert m.label, f"m={m.kind} {m.port}: no a=label:\n{sdp.text}"
        assert sdp.address(m) == harness.LOCALHOST, sdp.text
        assert engine.owns_port(m.port) or m.port == 0, f"port {m.port} is not rtpengine's"
    labels = [m.label for m in audio]
    assert len(set(labels)) == 2, f"labels must differ: {labels}"
    return labels


@dataclass
class MetadataView:
    metadata: siprec.Metadata
    session_id: str
    caller_id: str
    callee_id: str
    label_of: dict[str, str] = field(default_factory=dict)  # 'caller'/'callee' -> label they send


def assert_metadata(xml: bytes | None, call: Call, labels: list[str], work_dir: Path,
                    name: str = "metadata") -> MetadataView:
    """RFC 7865 metadata of the recorded call, complete and valid against the schema: one session
    with sipSessionID = the call's Call-ID; the caller and the callee with nameID aor = the URIs
    of From and To and name = their display names; one stream per SDP label; the associations
    (session-recording, each participant-session, each participant's send and recv streams)."""
    assert xml, "no application/rs-metadata+xml part"
    valid, output = siprec.validate_metadata(xml, work_dir, name)
    assert valid, f"metadata does not validate against RFC 7865's schema:\n{output}\n{xml.decode()}"
    metadata = siprec.parse_metadata(xml)
    assert metadata.datamode == "complete", metadata.datamode

    assert len(metadata.sessions) == 1, f"{len(metadata.sessions)} <session> elements"
    session_id, sip_session_ids, _ = metadata.sessions[0]
    assert sip_session_ids == [call.call_id], f"sipSessionID {sip_session_ids}, call {call.call_id}"

    invite = call.caller_invite()
    caller_name, caller_aor = siprec.name_addr(invite.value("From"))
    callee_name, callee_aor = siprec.name_addr(invite.value("To"))
    assert len(metadata.participants) == 2, [p.aors for p in metadata.participants]
    caller = metadata.participant_by_aor(caller_aor)
    callee = metadata.participant_by_aor(callee_aor)
    assert caller, f"no participant with aor {caller_aor}: {[p.aors for p in metadata.participants]}"
    assert callee, f"no participant with aor {callee_aor}: {[p.aors for p in metadata.participants]}"
    assert caller.participant_id != callee.participant_id
    assert [n.name for n in caller.name_ids if n.aor == caller_aor] == [caller_name]
    assert [n.name for n in callee.name_ids if n.aor == callee_aor] == [callee_name]

    stream_labels = sorted(s.label for s in metadata.streams)
    assert stream_labels == sorted(labels), f"stream labels {stream_labels}, SDP labels {labels}"
    assert len({s.stream_id for s in metadata.streams}) == len(metadata.streams)
    for stream in metadata.streams:
        assert stream.session_id in (None, session_id), stream
    assert [a.get("session_id") for a in metadata.session_recording_assocs] == [session_id]
    assert sorted((a.get("participant_id"), a.get("session_id"))
                  for a in metadata.participant_session_assocs) == \
        sorted([(caller.participant_id, session_id), (callee.participant_id, session_id)])

    view = MetadataView(metadata, session_id, caller.participant_id, callee.participant_id)
    stream_of_label = {s.label: s.stream_id for s in metadata.streams}
    label_of_stream = {v: k for k, v in stream_of_label.items()}
    for party, participant in (("caller", caller), ("callee", callee)):
        assoc = metadata.streams_of(participant.participant_id)
        assert assoc, f"no participantstreamassoc for the {party}"
        assert len(assoc.send) == 1, f"the {party} sends {assoc.send}"
        view.label_of[party] = label_of_stream[assoc.send[0]]
    for party, other in (("caller", "callee"), ("callee", "caller")):
        participant = caller if party == "caller" else callee
        assoc = metadata.streams_of(participant.participant_id)
        assert stream_of_label[view.label_of[other]] in assoc.recv, \
            f"the {party} does not receive the {other}'s stream"
    assert view.label_of["caller"] != view.label_of["callee"]
    return view


def assert_media_reaches_srs(srs: Srs, sdp: siprec.Sdp, view: MetadataView | None,
                             since: float | None = None, until: float | None = None,
                             minimum: int = MIN_PACKETS) -> None:
    """Each SRS port (m-line order of the offer = order of the SRS's answer) received at least
    `minimum` packets of exactly one party; with metadata, the party the label belongs to."""
    for index, port in enumerate(srs.ports):
        count = srs.counter.count(port, since, until)
        assert count >= minimum, f"port {port}: {count} packets, expected {minimum}+\n" \
                                 f"{srs.counter.summary()}"
        parties = srs.counter.parties(port, since, until)
        assert len(parties) == 1 and None not in parties, f"port {port}: {parties}"
        if view is not None:
            label = sdp.media[index].label
            expected = [party for party, sent in view.label_of.items() if sent == label]
            assert parties == set(expected), \
                f"m-line {index} (label {label}) carries {parties}, the metadata says {expected}"


def assert_no_media_at_srs(srs: Srs, since: float, until: float | None = None) -> None:
    for port in srs.ports:
        count = srs.counter.count(port, since, until)
        assert count == 0, f"port {port}: {count} packets after the fork should have stopped\n" \
                           f"{srs.counter.summary()}"


def assert_in_dialog(request: SipMessage, invite: SipMessage, ok: SipMessage, method: str) -> None:
    """A request of the SRC inside the recording session: same Call-ID and From tag as its INVITE,
    the SRS's To tag, a higher CSeq, sent to the SRS's Contact."""
    assert request.method == method
    assert request.call_id == invite.call_id
    assert header_param(request.value("From"), "tag") == header_param(invite.value("From"), "tag")
    assert header_param(request.value("To"), "tag") == header_param(ok.value("To"), "tag"), \
        f"To {request.value('To')}, the SRS's 200 {ok.value('To')}"
    number, cseq_method = request.value("CSeq").split()
    assert cseq_method == method and int(number) > int(invite.value("CSeq").split()[0]), \
        f"{request.value('CSeq')} after {invite.value('CSeq')}"
    _, contact = siprec.name_addr(ok.value("Contact"))
    assert request.start_line == f"{method} {contact} SIP/2.0", request.start_line


def srs_ok(srs: Srs) -> SipMessage:
    """The SRS's 200 to the initial INVITE (SIPp's trace)."""
    return first([t.message for t in srs.sipp.trace() if t.direction == "sent"
                  and not t.message.is_request and t.message.status == 200
                  and t.message.cseq_method == "INVITE"], "200 (INVITE) sent by the SRS")


def assert_srs_acked(srs: Srs, invite: SipMessage) -> None:
    ok = srs_ok(srs)
    acks = requests(srs.received(), "ACK")
    assert acks, "the SRS's 200 was not acknowledged"
    assert_in_dialog_ack(acks[0], invite, ok)


def assert_in_dialog_ack(ack: SipMessage, invite: SipMessage, ok: SipMessage) -> None:
    assert ack.call_id == invite.call_id
    assert ack.value("CSeq") == f"{invite.value('CSeq').split()[0]} ACK", ack.value("CSeq")
    assert header_param(ack.value("To"), "tag") == header_param(ok.value("To"), "tag")
    _, contact = siprec.name_addr(ok.value("Contact"))
    assert ack.start_line == f"ACK {contact} SIP/2.0", ack.start_line


def srs_byes(srs: Srs) -> list[SipMessage]:
    return requests(srs.received(), "BYE")


def assert_recording_ended(srs: Srs, invite: SipMessage, call_ended_at: float,
                           work_dir: Path) -> None:
    """After the call: the SRS got exactly one BYE in the recording session within
    SRS_SIGNALLING_S, optionally after a final re-INVITE whose metadata validates."""
    ok = srs_ok(srs)
    byes = srs_byes(srs)
    assert len({b.value("CSeq") for b in byes}) == 1, f"{len(byes)} BYEs at the SRS"
    bye = byes[0]
    assert_in_dialog(bye, invite, ok, "BYE")
    bye_at = srs.time_of(bye)
    assert call_ended_at - 0.05 <= bye_at <= call_ended_at + SRS_SIGNALLING_S, \
        f"BYE to the SRS {bye_at - call_ended_at:+.2f} s after the call ended"
    for reinvite in srs.invites()[1:]:
        if srs.time_of(reinvite) >= call_ended_at - 0.05:  # the optional final update
            assert_in_dialog(reinvite, invite, ok, "INVITE")
            body = siprec.recording_body(reinvite)
            if body.metadata_xml:
                valid, output = siprec.validate_metadata(body.metadata_xml, work_dir, "final")
                assert valid, output


def assert_cleaned_up(rec: RecordingBench, expected: dict[str, int] | None = None) -> siprec.Counters:
    """rtpengine holds no call any more and the gauges are back to 0 (plus expected counters)."""
    left = rec.engine.ng.wait_no_calls(timeout=CLEANUP_S)
    assert left == [], f"rtpengine still has calls {left} {CLEANUP_S} s after the last BYE"
    wanted = {"active": 0, "media_sessions": 0, **(expected or {})}
    counters = siprec.wait_counters(rec.bench.proxy, wanted, timeout=CLEANUP_S)
    for name, value in wanted.items():
        assert counters[name] == value, f"{siprec.COUNTER_NAMES.get(name, name)} = " \
                                        f"{counters[name]}, expected {value}: {counters}"
    return counters
