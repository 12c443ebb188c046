"""Checks of the recording harness itself, without the proxy: the NG client against a real
rtpengine forking to a fake SRS, the SIPp SRS scenarios against a stand-in SRC (SIPp or Python),
the SIPp caller and callee streaming RTP to the address of the SDP they received, the multipart
and metadata helpers with xmllint, and the counters parser.

They pass whatever --proxy says: when a recording test fails, these tell whether the harness
or the proxy is at fault.
"""

from __future__ import annotations

import time

import pytest

import harness
import media
import pyua
import rtpengine
import siprec
from rtpengine import bdecode, bencode
from test_calls import first, requests, responses

pytestmark = pytest.mark.recording_harness

# ----------------------------------------------------------------------------- pure helpers


def test_bencode_round_trip():
    value = {"command": "offer", "flags": ["all", "siprec"], "delete delay": 0,
             "sdp": "v=0\r\n", "nested": {"list": [1, -2, "x"]}}
    encoded = bencode(value)
    assert encoded.startswith(b"d7:command5:offer")  # keys sorted as bytes
    assert bdecode(encoded) == value
    assert bdecode(b"d6:result4:ponge") == {"result": "pong"}
    with pytest.raises(ValueError):
        bdecode(b"d6:result4:pongeX")


def test_multipart_parser_follows_rfc_2046():
    body = (b"preamble to ignore\r\n"
            b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 1 RTP/AVP 0\r\n"
            b"\r\n--b1\r\nContent-Type: application/rs-metadata+xml\r\n"
            b"Content-Disposition: recording-session\r\n\r\n<recording/>"
            b"\r\n--b1--\r\nepilogue\r\n")
    for content_type in ('multipart/mixed;boundary=b1', 'multipart/mixed; boundary="b1"'):
        parts = siprec.split_multipart(content_type, body)
        assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
        assert parts[0].body == b"v=0\r\nm=audio 1 RTP/AVP 0\r\n"  # the CRLF before -- is the delimiter's
        assert parts[1].body == b"<recording/>"
        assert parts[1].header("content-disposition") == "recording-session"
    # Bare LF line ends, as some implementations write them.
    parts = siprec.split_multipart("multipart/mixed;boundary=b1", body.replace(b"\r\n", b"\n"))
    assert parts[1].body == b"<recording/>"
    with pytest.raises(AssertionError):
        siprec.split_multipart("multipart/mixed;boundary=b1", b"--b1\r\n\r\nno close delimiter\r\n")


def test_xmllint_validates_offline_and_rejects_non_base64_ids(tmp_path):
    example = (siprec.shared_dir() / "schema" / "metadata-example.xml").read_bytes()
    valid, output = siprec.validate_metadata(example, tmp_path)
    assert valid, output
    bad = example.replace(b'participant_id="srfBElmCRp2QB23b7Mpk0w=="', b'participant_id="p1"', 1)
    valid, output = siprec.validate_metadata(bad, tmp_path)
    assert not valid and "base64Binary" in output, output
    metadata = siprec.parse_metadata(example)
    assert metadata.datamode == "complete"
    assert [p.aors[0] for p in metadata.participants] == ["sip:alice@atlanta.example.com",
                                                          "sip:bob@biloxi.example.com"]
    assert [s.label for s in metadata.streams] == ["1", "2"]


def test_counters_line_parser_accepts_both_spellings():
    line = ("2026-11-26T23:23:10+0000 info siprec-edge: acks_absorbed=0 recordingsStarted=3 "
            "recordings_active=0 recordingsFailed=1 recording_failovers=2 mediaSessionsActive=0 "
            "[siprec_edge] counters")
    counters = siprec.Counters(siprec.parse_counters_line(line), line)
    assert (counters["started"], counters["active"], counters["failed"], counters["failovers"],
            counters["media_sessions"]) == (3, 0, 1, 2, 0)
    assert counters["acks_absorbed"] == 0


def test_name_addr():
    assert siprec.name_addr('"Alice Caller" <sip:alice@127.0.0.1:5060>;tag=1') == \
        ("Alice Caller", "sip:alice@127.0.0.1:5060")
    assert siprec.name_addr("<sip:127.0.0.1:5070>") == (None, "sip:127.0.0.1:5070")
    assert siprec.name_addr("Bob <sip:bob@h>") == ("Bob", "sip:bob@h")


# ----------------------------------------------------------------------------- rtpengine

CALLER_SDP = ("v=0\r\no=- 1001 1 IN IP4 127.0.0.1\r\ns=caller\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def srs_answer_sdp(port_a: int, port_b: int, direction: str = "recvonly") -> str:
    return ("v=0\r\no=srs 1 1 IN IP4 127.0.0.1\r\ns=srs\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port_a} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
            f"m=audio {port_b} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n")


def test_rtpengine_forks_both_legs_to_a_fake_srs(bench):
    """offer/answer for a call between two Python RTP senders, subscribe request (all, siprec),
    subscribe answer with the counters' ports: each SRS port gets one party's packets, as
    media-labels says; unsubscribe stops the copies; delete empties `list`."""
    engine = bench.rtpengine()
    ng = engine.ng
    caller, callee = media.RtpSender(byte=media.CALLER_BYTE), media.RtpSender(byte=media.CALLEE_BYTE)
    bench._closers += [caller.close, callee.close]
    call_id = "harness-fork-1"

    offer = ng.offer(call_id, "caller-tag", CALLER_SDP.format(port=caller.port))
    _, towards_callee = siprec.audio_address(offer["sdp"])
    answer = ng.answer(call_id, "caller-tag", "callee-tag", CALLER_SDP.format(port=callee.port))
    _, towards_caller = siprec.audio_address(answer["sdp"])
    assert engine.owns_port(towards_callee) and engine.owns_port(towards_caller)
    assert ng.list_calls() == [call_id]

    subscription = ng.subscribe_request(call_id)
    sdp = siprec.parse_sdp(subscription["sdp"])
    assert [m.kind for m in sdp.media] == ["audio", "audio"]
    assert all(sdp.direction(m) == "sendonly" and m.label is not None for m in sdp.media)
    labels = subscription["media-labels"]
    assert sorted(labels) == sorted(m.label for m in sdp.media)
    party_of_label = {label: "caller" if info["tag"] == "caller-tag" else "callee"
                      for label, info in labels.items()}

    counter = bench.rtp_counter(2)
    port_a, port_b = counter.ports
    ng.subscribe_answer(call_id, subscription["to-tag"], srs_answer_sdp(port_a, port_b))
    caller.send(towards_caller, 10)  # the caller sends where the answer told it
    callee.send(towards_callee, 10)
    for port in (port_a, port_b):
        assert counter.wait_for(port, 10, timeout=2) == 10, counter.summary()
    for m, port in zip(sdp.media, (port_a, port_b)):
        assert counter.parties(port) == {party_of_label[m.label]}, counter.summary()

    query = ng.query(call_id)
    assert subscription["to-tag"] in query["tags"]

    ng.unsubscribe(call_id, subscription["to-tag"])
    stopped = time.time()
    caller.send(towards_caller, 5)
    callee.send(towards_callee, 5)
    time.sleep(0.3)
    assert counter.count(port_a, since=stopped) == 0 and counter.count(port_b, since=stopped) == 0

    ng.delete(call_id)
    assert ng.wait_no_calls(timeout=1.0) == []
    engine.stop()
    assert engine.exit_code == 0, engine.log_tail()


# ----------------------------------------------------------------------------- SRS scenarios

SRS_SDP = pyua.simple_sdp  # alias for readability below


def probe_invite_body(sdp: bytes, xml: bytes, boundary: str = "py-boundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n").encode() + sdp + \
           (f"\r\n--{boundary}\r\nContent-Type: application/rs-metadata+xml\r\n"
            f"Content-Disposition: recording-session\r\n\r\n").encode() + xml + \
           f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/mixed;boundary={boundary}"


SUBSCRIBE_LIKE_SDP = (b"v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=rtpengine\r\nt=0 0\r\n"
                      b"m=audio 30000 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=label:1\r\n"
                      b"a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
                      b"m=audio 30002 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=label:0\r\n"
                      b"a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n")


def srs_ports(bench) -> dict[str, int]:
    return {"srs_port_a": media.free_media_port(), "srs_port_b": media.free_media_port()}


def test_srs_answer_scenario_with_a_sipp_src(bench):
    """SIPp stand-in SRC (uac_src_probe.xml) -> srs_answer.xml: the SRS's trace holds the
    multipart INVITE, which the helpers split and xmllint validates; the SRS answered with the
    two recvonly ports it was given, and answered the a=inactive re-INVITE a=inactive."""
    keys = srs_ports(bench)
    srs = bench.srs("srs_answer.xml", keys=keys)
    src = bench.uac("uac_src_probe.xml", "udp", srs.local_port, extra=["-mp", str(media.free_media_port())])
    bench.finish_calls(src, srs)

    invite = first(requests(srs.received(), "INVITE"), "INVITE at the SRS")
    assert invite.value("Require") == "siprec"
    assert invite.value("Contact").endswith(";+sip.src")
    body = siprec.recording_body(invite)
    assert [p.content_type for p in body.parts] == ["application/sdp", "application/rs-metadata+xml"]
    assert [m.label for m in body.sdp.media] == ["1", "0"]
    valid, output = siprec.validate_metadata(body.metadata_xml, bench.work_dir)
    assert valid, output
    metadata = siprec.parse_metadata(body.metadata_xml)
    assert sorted(s.label for s in metadata.streams) == ["0", "1"]
    assert metadata.participant_by_aor("sip:alice@127.0.0.1").name_ids[0].name == "Alice Caller"

    answers = responses(src.received(), 200, "INVITE")
    first_answer = siprec.parse_sdp(answers[0].body.decode())
    assert [m.port for m in first_answer.media] == [keys["srs_port_a"], keys["srs_port_b"]]
    assert {first_answer.direction(m) for m in first_answer.media} == {"recvonly"}
    paused = siprec.parse_sdp(answers[-1].body.decode())
    assert {paused.direction(m) for m in paused.media} == {"inactive"}


def test_srs_answer_scenario_accepts_any_number_of_reinvites(bench):
    keys = srs_ports(bench)
    srs = bench.srs("srs_answer.xml", keys=keys)
    src = bench.udp_ua()
    uri = f"sip:127.0.0.1:{srs.local_port}"
    body, content_type = probe_invite_body(SUBSCRIBE_LIKE_SDP, b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'/>")
    invite = src.invite(uri, srs.local_port, body, content_type, from_uri=uri, to_uri=uri)
    ok = src.wait_response(invite)
    assert ok.status == 200
    src.ack(invite, ok)
    for direction, expected in (("inactive", "inactive"), ("sendonly", "recvonly"),
                                ("inactive", "inactive"), ("sendonly", "recvonly")):
        reinvite = src.request_in_dialog("INVITE", SUBSCRIBE_LIKE_SDP.replace(b"sendonly", direction.encode()))
        answer = src.wait_response(reinvite)
        sdp = siprec.parse_sdp(answer.body.decode())
        assert {sdp.direction(m) for m in sdp.media} == {expected}, answer.body
        src.ack(reinvite, answer)
    bye = src.request_in_dialog("BYE")
    assert src.wait_response(bye).status == 200
    bench.finish_calls(srs)


@pytest.mark.parametrize("reject", [None, (480, "Temporarily Unavailable")], ids=["503", "480"])
def test_srs_reject_scenario(bench, reject):
    srs = bench.srs("srs_reject.xml", reject=reject)
    src = bench.udp_ua()
    uri = f"sip:127.0.0.1:{srs.local_port}"
    invite = src.invite(uri, srs.local_port, SUBSCRIBE_LIKE_SDP, from_uri=uri, to_uri=uri)
    rejected = src.wait_response(invite)
    code, reason = reject or (503, "Service Unavailable")
    assert rejected.start_line == f"SIP/2.0 {code} {reason}"
    src.ack(invite, rejected)
    bench.finish_calls(srs)
    ack = first(requests(srs.received(), "ACK"), "ACK at the SRS")
    assert siprec.sipmsg.header_param(ack.values("Via")[0], "branch") == invite.branch


def test_srs_ringing_cancel_scenario(bench):
    srs = bench.srs("srs_ringing_cancel.xml")
    src = bench.udp_ua()
    uri = f"sip:127.0.0.1:{srs.local_port}"
    invite = src.invite(uri, srs.local_port, SUBSCRIBE_LIKE_SDP, from_uri=uri, to_uri=uri)
    ringing = src.wait_response(invite, final=False)
    assert ringing.status == 180
    cancel = src.cancel(invite)
    assert src.wait_response(cancel).status == 200
    terminated = src.wait_response(invite)
    assert terminated.status == 487 and terminated.value("CSeq") == f"{invite.cseq} INVITE"
    src.ack(invite, terminated)
    bench.finish_calls(srs)


def test_srs_bye_scenario(bench):
    srs = bench.srs("srs_bye.xml", keys=srs_ports(bench), sets={"srs_talk_ms": 300})
    src = bench.udp_ua()
    src.contact_params = ";+sip.src"
    uri = f"sip:127.0.0.1:{srs.local_port}"
    invite = src.invite(uri, srs.local_port, SUBSCRIBE_LIKE_SDP, from_uri=uri, to_uri=uri)
    ok = src.wait_response(invite)
    src.ack(invite, ok)
    bye, source = src.wait_request("BYE", timeout=3)
    assert bye.start_line == f"BYE sip:127.0.0.1:{src.port} SIP/2.0"  # to our Contact
    assert bye.value("Call-ID") == src.dialog.call_id
    assert siprec.sipmsg.header_param(bye.value("To"), "tag") == src.dialog.local_tag
    src.respond(bye, source, 200, "OK")
    bench.finish_calls(srs)


def test_srs_bye_scenario_fails_on_a_request_after_its_bye(bench):
    """The linger after the SRS's BYE is a check: a BYE from the SRC for the session the SRS
    already ended fails the scenario (what the recording test relies on)."""
    srs = bench.srs("srs_bye.xml", keys=srs_ports(bench), sets={"srs_talk_ms": 200}, linger_ms=2000)
    src = bench.udp_ua()
    uri = f"sip:127.0.0.1:{srs.local_port}"
    invite = src.invite(uri, srs.local_port, SUBSCRIBE_LIKE_SDP, from_uri=uri, to_uri=uri)
    src.ack(invite, src.wait_response(invite))
    bye, source = src.wait_request("BYE", timeout=3)
    src.respond(bye, source, 200, "OK")
    time.sleep(0.2)
    src.request_in_dialog("BYE")
    assert srs.finish() != 0, "srs_bye.xml accepted a BYE after its own"


def test_srs_reinvite_scenario(bench):
    """The SRS re-INVITEs without a body (our 200 carries the offer, its ACK the answer), then
    sends OPTIONS and INFO, then accepts our BYE."""
    keys = srs_ports(bench)
    srs = bench.srs("srs_reinvite.xml", keys=keys, sets={"srs_talk_ms": 200})
    src = bench.udp_ua()
    uri = f"sip:127.0.0.1:{srs.local_port}"
    invite = src.invite(uri, srs.local_port, SUBSCRIBE_LIKE_SDP, from_uri=uri, to_uri=uri)
    ok = src.wait_response(invite)
    src.ack(invite, ok)
    reinvite, source = src.wait_request("INVITE", timeout=3)
    assert reinvite.body == b""
    src.respond(reinvite, source, 200, "OK", body=SUBSCRIBE_LIKE_SDP)
    ack, _ = src.wait_request("ACK")
    answer = siprec.parse_sdp(ack.body.decode())
    assert [m.port for m in answer.media] == [keys["srs_port_a"], keys["srs_port_b"]]
    for method in ("OPTIONS", "INFO"):
        request, source = src.wait_request(method)
        src.respond(request, source, 200, "OK")
    bye = src.request_in_dialog("BYE")
    assert src.wait_response(bye).status == 200
    bench.finish_calls(srs)


# ----------------------------------------------------------------------------- RTP scenarios

def test_sipp_caller_streams_to_the_address_of_the_200(bench):
    media.write_audio_files(bench.work_dir)
    counter = bench.rtp_counter(1)
    callee = bench.udp_ua()
    caller = bench.uac("uac_rtp_call.xml", "udp", callee.port,
                       extra=["-mp", str(media.free_media_port()), "-set", "talk_ms", "1000"])
    invite, source = callee.wait_request("INVITE")
    _, caller_port = siprec.audio_address(invite.body.decode())
    callee.respond(invite, source, 200, "OK", body=pyua.simple_sdp(counter.ports[0]), to_tag="py1")
    callee.wait_request("ACK")
    bye, source = callee.wait_request("BYE", timeout=5)
    callee.respond(bye, source, 200, "OK")
    bench.finish_calls(caller)
    packets = counter.packets(counter.ports[0])
    assert len(packets) >= 30, counter.summary()  # 1 s at 50 packets/s, less start-up
    assert {p.party for p in packets} == {"caller"} and {p.source[1] for p in packets} == {caller_port}


def test_sipp_callee_streams_to_the_address_of_the_invite(bench):
    media.write_audio_files(bench.work_dir)
    counter = bench.rtp_counter(1)
    callee = bench.uas("uas_rtp_call.xml", "udp", extra=["-mp", str(media.free_media_port())])
    caller = bench.udp_ua()
    uri = f"sip:bob@127.0.0.1:{callee.local_port}"
    invite = caller.invite(uri, callee.local_port, pyua.simple_sdp(counter.ports[0]))
    ok = caller.wait_response(invite)
    caller.ack(invite, ok)
    assert counter.wait_for(counter.ports[0], 20, timeout=2) >= 20, counter.summary()
    assert counter.parties(counter.ports[0]) == {"callee"}
    # Hold: the callee answers recvonly (and keeps streaming, on purpose).
    hold = caller.request_in_dialog("INVITE", pyua.simple_sdp(counter.ports[0], "sendonly"))
    held = caller.wait_response(hold)
    caller.ack(hold, held)
    assert {siprec.parse_sdp(held.body.decode()).direction(m)
            for m in siprec.parse_sdp(held.body.decode()).media} == {"recvonly"}
    bye = caller.request_in_dialog("BYE")
    assert caller.wait_response(bye).status == 200
    bench.finish_calls(callee)


@pytest.mark.parametrize("uac_scenario,uas_scenario,extra", [
    pytest.param("uac_rtp_call.xml", "uas_rtp_call.xml", [], id="call"),
    pytest.param("uac_rtp_reinvite.xml", "uas_rtp_call.xml", ["-key", "first_direction", "sendonly"],
                 id="hold-unhold"),
    pytest.param("uac_rtp_reinvite.xml", "uas_rtp_call.xml", ["-key", "first_direction", "sendrecv"],
                 id="reinvite"),
    pytest.param("uac_rtp_callee_bye.xml", "uas_rtp_callee_bye.xml", [], id="callee-bye"),
])
def test_rtp_scenario_pairs_run_directly(bench, uac_scenario, uas_scenario, extra):
    """Each caller/callee pair of the recording tests completes without a proxy."""
    media.write_audio_files(bench.work_dir)
    uas = bench.uas(uas_scenario, "udp", extra=media.sipp_media_args(uas_scenario, 400))
    uac = bench.uac(uac_scenario, "udp", uas.local_port,
                    extra=[*media.sipp_media_args(uac_scenario, 400), *extra])
    bench.finish_calls(uac, uas)
