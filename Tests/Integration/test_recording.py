"""SIPREC recording through siprec-edge (RFC 7866, modelled on OpenSIPS' siprec module), end to
end: SIPp caller and callee streaming RTP through the proxy, rtpengine anchoring and forking the
media, SIPp SRSs answering with the ports where Python counters receive the copies.

The expectations are in recording.py, each named after what it checks; this file runs the
calls. The proxy is started as its contract says (--listen, --upstream) plus --srs and
--rtpengine, or a YAML --config with a recording section. Every test needs siprec-edge: with
--proxy kamailio or none they are skipped.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import recording
import siprec
from recording import (MEDIA_SETTLE_S, SRS_SIGNALLING_S, RecordingBench, assert_cleaned_up,
                       assert_in_dialog, assert_media_anchored, assert_media_reaches_srs,
                       assert_metadata, assert_no_media_at_srs, assert_offer_sdp,
                       assert_recording_ended, assert_srs_acked, assert_srs_invite, srs_ok)
from sipmsg import header_param
from test_calls import first, requests, responses

pytestmark = pytest.mark.recording


@pytest.fixture
def rec(bench) -> RecordingBench:
    return RecordingBench(bench)


def answered_at(call) -> float:
    return call.answered_at()


def the_invite(srs) -> "siprec.sipmsg.SipMessage":
    invites = srs.invites()
    assert invites, f"no INVITE at the SRS ({srs.uri})"
    return invites[0]


# ----------------------------------------------------------------------------- the recorded call

def test_recorded_call_anchors_media_and_forks_it_to_the_srs(rec):
    """One SRS: the media goes through rtpengine; on the answer the SRS gets the multipart INVITE
    (exact headers, rtpengine's sendonly labelled SDP, valid metadata whose labels match the SDP
    and whose participants are the call's From and To); after the SRS's 200 and our ACK it
    receives each party's RTP on the port of that party's label; the call's BYE ends the
    recording with a BYE to the SRS; rtpengine and the gauges are clean afterwards."""
    srs = rec.srs()
    call = rec.call(rec.flags([srs]))
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    assert_media_anchored(call, rec.engine)
    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call)
    labels = assert_offer_sdp(body.sdp, rec.engine)
    view = assert_metadata(body.metadata_xml, call, labels, rec.work_dir)
    invite_at = srs.time_of(invite)
    assert 0 <= invite_at - answered_at(call) <= SRS_SIGNALLING_S, \
        f"SRS INVITE {invite_at - answered_at(call):+.2f} s after the call was answered"
    assert_srs_acked(srs, invite)

    bye_sent = call.sent_time(call.uac, "BYE")
    assert_media_reaches_srs(srs, body.sdp, view, since=invite_at, until=bye_sent)
    assert_recording_ended(srs, invite, bye_sent, rec.work_dir)
    assert_no_media_at_srs(srs, since=srs.time_of(recording.srs_byes(srs)[0]) + MEDIA_SETTLE_S)
    assert_cleaned_up(rec, {"started": 1, "failed": 0, "failovers": 0})


def test_srs_allowing_update_gets_the_final_metadata_in_an_update(rec):
    """An SRS whose 200 lists UPDATE in Allow: when the call ends it gets the final metadata alone
    in an UPDATE inside the recording session (application/rs-metadata+xml, Content-Disposition
    recording-session, valid, with the session's stop-time and both participants'
    disassociate-times), and no re-INVITE; the BYE follows the UPDATE's 200."""
    srs = rec.srs("srs_update.xml")
    call = rec.call(rec.flags([srs]))
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    assert_srs_invite(invite, srs, rec.proxy_port, call)
    assert_srs_acked(srs, invite)
    assert len(srs.invites()) == 1, "a re-INVITE reached the SRS"
    updates = requests(srs.received(), "UPDATE")
    assert len({u.value("CSeq") for u in updates}) == 1, f"{len(updates)} UPDATEs at the SRS"
    update = updates[0]
    assert_in_dialog(update, invite, srs_ok(srs), "UPDATE")
    assert update.value("Content-Type") == "application/rs-metadata+xml"
    assert update.value("Content-Disposition") == "recording-session"
    # UPDATE is a target refresh request (RFC 3311 5.1): our Contact, as in the INVITE.
    assert update.value("Contact") == invite.value("Contact")
    assert update.value("Require") is None
    bye_sent = call.sent_time(call.uac, "BYE")
    assert bye_sent - 0.05 <= srs.time_of(update) <= bye_sent + SRS_SIGNALLING_S
    valid, output = siprec.validate_metadata(update.body, rec.work_dir, "update")
    assert valid, output
    final = siprec.parse_metadata(update.body)
    first_metadata = siprec.parse_metadata(siprec.recording_body(invite).metadata_xml)
    assert final.sessions[0][:2] == first_metadata.sessions[0][:2], "another session in the UPDATE"
    assert final.sessions[0][2].find(f"{{{siprec.NS}}}stop-time") is not None, "no stop-time"
    disassociated = [a for a in final.participant_session_assocs
                     if a.find(f"{{{siprec.NS}}}disassociate-time") is not None]
    assert len(disassociated) == 2, "a participant without disassociate-time"

    assert_recording_ended(srs, invite, bye_sent, rec.work_dir)
    bye = recording.srs_byes(srs)[0]
    assert int(bye.value("CSeq").split()[0]) == int(update.value("CSeq").split()[0]) + 1
    assert srs.time_of(bye) >= srs.time_of(update)
    assert_cleaned_up(rec, {"started": 1, "failed": 0})


def test_callee_hangs_up_a_recorded_call(rec):
    srs = rec.srs()
    call = rec.call(rec.flags([srs]), uac="uac_rtp_callee_bye.xml", uas="uas_rtp_callee_bye.xml")
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call)
    view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                           rec.work_dir)
    bye_sent = call.sent_time(call.uas, "BYE")
    assert_media_reaches_srs(srs, body.sdp, view, since=srs.time_of(invite), until=bye_sent)
    assert_recording_ended(srs, invite, bye_sent, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1})


# ----------------------------------------------------------------------------- failover

def assert_same_recording_offered(first_invite, second_invite) -> None:
    """Failover re-sends the same offer and metadata session under a new Call-ID."""
    assert second_invite.call_id != first_invite.call_id
    one, two = siprec.recording_body(first_invite), siprec.recording_body(second_invite)
    assert one.sdp_text.replace("\r\n", "\n").strip() == two.sdp_text.replace("\r\n", "\n").strip(), \
        f"different SDP offers:\n{one.sdp_text}\n---\n{two.sdp_text}"
    meta_one, meta_two = siprec.parse_metadata(one.metadata_xml), siprec.parse_metadata(two.metadata_xml)
    assert meta_one.sessions[0][0] == meta_two.sessions[0][0], "session_id changed on failover"
    assert meta_one.sessions[0][1] == meta_two.sessions[0][1]


def test_failover_to_the_next_srs_on_503(rec):
    refusing, accepting = rec.srs("srs_reject.xml"), rec.srs()
    call = rec.call(rec.flags([refusing, accepting]))
    rec.bench.finish_calls(call.uac, call.uas, refusing.sipp, accepting.sipp)

    first_invite = the_invite(refusing)
    assert_srs_invite(first_invite, refusing, rec.proxy_port, call)
    # The 503 is acknowledged hop by hop, on the INVITE's branch (RFC 3261 17.1.1.3).
    acks = requests(refusing.received(), "ACK")
    assert acks and header_param(acks[0].values("Via")[0], "branch") == \
        header_param(first_invite.values("Via")[0], "branch")

    second_invite = the_invite(accepting)
    body = assert_srs_invite(second_invite, accepting, rec.proxy_port, call)
    assert_same_recording_offered(first_invite, second_invite)
    assert refusing.time_of(first_invite) <= accepting.time_of(second_invite)
    view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                           rec.work_dir)
    bye_sent = call.sent_time(call.uac, "BYE")
    assert_media_reaches_srs(accepting, body.sdp, view, since=accepting.time_of(second_invite),
                             until=bye_sent)
    assert_recording_ended(accepting, second_invite, bye_sent, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_failover_when_the_srs_does_not_answer(rec):
    """--srs-timeout-ms 1000: the first SRS swallows the INVITE; the second gets it once the
    timeout has passed, not before."""
    silent, accepting = rec.silent_srs(), rec.srs()
    call = rec.call(rec.flags([silent, accepting], timeout_ms=1000), talk_ms=4000)
    rec.bench.finish_calls(call.uac, call.uas, accepting.sipp)

    first_invite = the_invite(silent)
    second_invite = the_invite(accepting)
    assert_srs_invite(first_invite, silent, rec.proxy_port, call)
    body = assert_srs_invite(second_invite, accepting, rec.proxy_port, call)
    assert_same_recording_offered(first_invite, second_invite)
    waited = accepting.time_of(second_invite) - silent.time_of(first_invite)
    assert 0.9 <= waited <= 1.0 + SRS_SIGNALLING_S, f"failover after {waited:.2f} s (timeout 1 s)"
    view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                           rec.work_dir)
    bye_sent = call.sent_time(call.uac, "BYE")
    assert_media_reaches_srs(accepting, body.sdp, view, since=accepting.time_of(second_invite),
                             until=bye_sent)
    assert_recording_ended(accepting, second_invite, bye_sent, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_failover_when_the_srs_port_is_closed(rec):
    """Nothing listens at the first SRS: the ICMP port unreachable fails it at once, well before
    the default 5 s timeout."""
    closed, accepting = rec.closed_srs(), rec.srs()
    call = rec.call(rec.flags([closed, accepting]), talk_ms=4000)
    rec.bench.finish_calls(call.uac, call.uas, accepting.sipp)

    second_invite = the_invite(accepting)
    body = assert_srs_invite(second_invite, accepting, rec.proxy_port, call)
    delay = accepting.time_of(second_invite) - answered_at(call)
    assert delay <= SRS_SIGNALLING_S, f"second SRS reached {delay:.2f} s after the answer"
    view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                           rec.work_dir)
    bye_sent = call.sent_time(call.uac, "BYE")
    assert_media_reaches_srs(accepting, body.sdp, view, since=accepting.time_of(second_invite),
                             until=bye_sent)
    assert_recording_ended(accepting, second_invite, bye_sent, rec.work_dir)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_skip_failover_code_ends_the_attempt_and_the_call_goes_on(rec):
    """--skip-failover-codes 503: the 503 stops the failover; the second SRS never hears of the
    call, which completes unrecorded; recordingsFailed counts it."""
    refusing, never = rec.srs("srs_reject.xml"), rec.silent_srs()
    call = rec.call(rec.flags([refusing, never], skip_codes="503"))
    rec.bench.finish_calls(call.uac, call.uas, refusing.sipp)

    assert_srs_invite(the_invite(refusing), refusing, rec.proxy_port, call)
    assert never.sink.messages(settle=0.5) == [], \
        f"the second SRS got {[m.start_line for m in never.received()]}"
    assert_cleaned_up(rec, {"failed": 1, "failovers": 0})


def test_skip_failover_codes_match_the_whole_status_code(rec):
    """--skip-failover-codes 50 does not match 503 (the pattern must match all three digits), so
    the failover happens."""
    refusing, accepting = rec.srs("srs_reject.xml"), rec.srs()
    call = rec.call(rec.flags([refusing, accepting], skip_codes="50"))
    rec.bench.finish_calls(call.uac, call.uas, refusing.sipp, accepting.sipp)

    assert_srs_invite(the_invite(accepting), accepting, rec.proxy_port, call)
    assert_cleaned_up(rec, {"started": 1, "failovers": 1, "failed": 0})


def test_every_srs_refusing_fails_the_recording(rec):
    first_srs, second_srs = rec.srs("srs_reject.xml"), rec.srs("srs_reject.xml", reject=(480, "Temporarily Unavailable"))
    call = rec.call(rec.flags([first_srs, second_srs]))
    rec.bench.finish_calls(call.uac, call.uas, first_srs.sipp, second_srs.sipp)

    assert_same_recording_offered(the_invite(first_srs), the_invite(second_srs))
    assert_cleaned_up(rec, {"failed": 1, "failovers": 1})


# ----------------------------------------------------------------------------- hold, re-INVITE

def srs_reinvites(srs, invite) -> list:
    return [m for m in srs.invites() if m.call_id == invite.call_id][1:]


def sdp_directions(message) -> set[str]:
    body = siprec.recording_body(message)
    assert body.sdp is not None, f"no SDP in {message.start_line} ({message.value('Content-Type')})"
    return {body.sdp.direction(m) for m in body.sdp.media}


@pytest.mark.parametrize("hold_direction", ["sendonly", "inactive"])
def test_hold_pauses_the_recording_and_unhold_resumes_it(rec, hold_direction):
    """Call re-INVITE with a=sendonly (or inactive): the SRS is re-INVITEd with a=inactive
    m-lines and no RTP reaches it while the parties keep streaming; unhold: a re-INVITE with
    a=sendonly and the media flows again."""
    srs = rec.srs()
    call = rec.call(rec.flags([srs]), uac="uac_rtp_reinvite.xml", talk_ms=2000,
                    uac_extra=["-key", "first_direction", hold_direction])
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call)
    labels = assert_offer_sdp(body.sdp, rec.engine)
    ok = srs_ok(srs)
    reinvites = srs_reinvites(srs, invite)
    pause = first([m for m in reinvites if sdp_directions(m) == {"inactive"}],
                  "re-INVITE to the SRS with a=inactive m-lines (pause)")
    resume = first([m for m in reinvites if srs.time_of(m) > srs.time_of(pause)
                    and sdp_directions(m) == {"sendonly"}],
                   "re-INVITE to the SRS with a=sendonly m-lines (resume)")
    for message in (pause, resume):
        assert_in_dialog(message, invite, ok, "INVITE")
        assert message.value("Contact") == f"<sip:127.0.0.1:{rec.proxy_port}>;+sip.src"
        update = siprec.recording_body(message)
        assert [m.label for m in update.sdp.media] == labels, "labels changed"
        if update.metadata_xml is not None:
            assert_metadata(update.metadata_xml, call, labels, rec.work_dir, "update")

    held = call.received_time(call.uac, 200, "2 INVITE")  # the hold re-INVITE's 200
    unhold_sent = call.sent_time(call.uac, "INVITE", cseq=3)
    assert srs.time_of(pause) - held <= SRS_SIGNALLING_S
    assert_no_media_at_srs(srs, since=max(held, srs.time_of(pause)) + MEDIA_SETTLE_S,
                           until=unhold_sent)
    assert_media_reaches_srs(srs, body.sdp, None, since=srs.time_of(resume) + MEDIA_SETTLE_S,
                             until=call.sent_time(call.uac, "BYE"), minimum=20)
    assert_cleaned_up(rec, {"started": 1})


def test_plain_reinvite_updates_the_recording_session(rec):
    """A call re-INVITE with sendrecv: the SRS gets a re-INVITE with a new sendonly SDP (same
    labels) and complete metadata of the same session; the media keeps flowing."""
    srs = rec.srs()
    call = rec.call(rec.flags([srs]), uac="uac_rtp_reinvite.xml", talk_ms=1500,
                    uac_extra=["-key", "first_direction", "sendrecv"])
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call)
    labels = assert_offer_sdp(body.sdp, rec.engine)
    initial = assert_metadata(body.metadata_xml, call, labels, rec.work_dir)
    reinvite_answered = call.received_time(call.uac, 200, "2 INVITE")
    updates = [m for m in srs_reinvites(srs, invite) if srs.time_of(m) >= reinvite_answered - 0.05]
    update = first(updates, "re-INVITE to the SRS after the call's re-INVITE")
    assert srs.time_of(update) - reinvite_answered <= SRS_SIGNALLING_S
    assert_in_dialog(update, invite, srs_ok(srs), "INVITE")
    assert update.value("Require") == "siprec"
    content = siprec.recording_body(update)
    assert content.parts, f"the update is not multipart: {update.value('Content-Type')}"
    assert_offer_sdp(content.sdp, rec.engine)
    assert [m.label for m in content.sdp.media] == labels
    updated = assert_metadata(content.metadata_xml, call, labels, rec.work_dir, "update")
    assert updated.session_id == initial.session_id
    assert (updated.caller_id, updated.callee_id) == (initial.caller_id, initial.callee_id)
    assert_media_reaches_srs(srs, body.sdp, initial, since=srs.time_of(update) + MEDIA_SETTLE_S,
                             until=call.sent_time(call.uac, "BYE"), minimum=20)
    assert_cleaned_up(rec, {"started": 1})


# ----------------------------------------------------------------------------- the SRS's requests

def test_srs_bye_stops_the_fork_and_the_call_goes_on(rec):
    """The SRS hangs up 1 s into the recording: the proxy answers 200, the copies stop, the call
    ends normally later, and the SRS hears nothing more (no BYE for the ended session)."""
    srs = rec.srs("srs_bye.xml", sets={"srs_talk_ms": 1000}, linger_ms=4000)
    call = rec.call(rec.flags([srs]), talk_ms=3500)
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    assert_srs_invite(invite, srs, rec.proxy_port, call)
    srs_bye = first([t for t in srs.sipp.trace() if t.direction == "sent" and t.message.is_request
                     and t.message.method == "BYE"], "BYE sent by the SRS")
    answer = first(responses(srs.received(), 200, "BYE"), "200 (BYE) at the SRS")
    assert answer.value("CSeq") == "1 BYE" and answer.call_id == invite.call_id
    assert requests(srs.received(), "BYE") == [], "the proxy sent a BYE for an ended session"
    assert_no_media_at_srs(srs, since=srs_bye.time + MEDIA_SETTLE_S)
    assert_cleaned_up(rec, {"started": 1})


def test_srs_reinvite_options_and_info_are_answered(rec):
    """The SRS re-INVITEs without SDP: the proxy's 200 carries an offer (sendonly, labelled,
    rtpengine's), the SRS's ACK the answer, and the media goes on; OPTIONS and INFO get 200."""
    srs = rec.srs("srs_reinvite.xml", sets={"srs_talk_ms": 800})
    call = rec.call(rec.flags([srs]), talk_ms=3500)
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call)
    labels = assert_offer_sdp(body.sdp, rec.engine)
    view = assert_metadata(body.metadata_xml, call, labels, rec.work_dir)
    offers = [m for m in responses(srs.received(), 200, "INVITE")
              if m.value("CSeq") == "1 INVITE" and m.call_id == invite.call_id]
    offer = first(offers, "200 to the SRS's re-INVITE")
    offered = siprec.recording_body(offer)
    assert offered.sdp is not None, f"the 200 has no SDP offer ({offer.value('Content-Type')})"
    assert assert_offer_sdp(offered.sdp, rec.engine) == labels
    for method in ("OPTIONS", "INFO"):
        first([m for m in responses(srs.received(), 200, method)], f"200 ({method}) at the SRS")
    acked = [t for t in srs.sipp.trace() if t.direction == "sent" and t.message.is_request
             and t.message.method == "ACK"][0]
    assert_media_reaches_srs(srs, body.sdp, view, since=acked.time + MEDIA_SETTLE_S,
                             until=call.sent_time(call.uac, "BYE"), minimum=20)
    assert_recording_ended(srs, invite, call.sent_time(call.uac, "BYE"), rec.work_dir)
    assert_cleaned_up(rec, {"started": 1})


def srs_answer_sdp(ports) -> bytes:
    lines = ["v=0", "o=srs 1 1 IN IP4 127.0.0.1", "s=srs", "c=IN IP4 127.0.0.1", "t=0 0"]
    for port in ports:
        lines += [f"m=audio {port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=recvonly"]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize("route", [False, True], ids=["contact", "record-route"])
def test_srs_dialog_requests_follow_its_contact_and_record_route(rec, route):
    """The SRS answers from its URI but names another Contact (and, in the second case, a
    Record-Route): the ACK, the final re-INVITE and the BYE of the recording session go to the
    Record-Route's address when there is one, else to the Contact's (RFC 3261 12.2.1.1), with the
    Contact as Request-URI and the route set in Route; nothing more reaches the SRS's URI."""
    front, moved = rec.bench.udp_ua(), rec.bench.udp_ua()
    proxy_hop = rec.bench.udp_ua() if route else moved
    ports = tuple(rec.bench.rtp_counter(2).ports)
    contact = f"<sip:srs@127.0.0.1:{moved.port}>"
    record_route = f"<sip:127.0.0.1:{proxy_hop.port};lr>"
    seen: dict[str, object] = {}

    def srs() -> None:
        try:
            invite, source = front.wait_request("INVITE", timeout=15)
            seen["invite"] = invite
            front.respond(invite, source, 200, "OK", srs_answer_sdp(ports), to_tag="srs1",
                          contact=contact, extra={"Record-Route": record_route} if route else None)
            for method in ("ACK", "INVITE", "ACK", "BYE"):
                request, source = proxy_hop.wait_request(method, timeout=15)
                seen.setdefault(method, []).append(request)
                if method == "INVITE":
                    proxy_hop.respond(request, source, 200, "OK", srs_answer_sdp(ports), contact=contact)
                elif method == "BYE":
                    proxy_hop.respond(request, source, 200, "OK")
        except AssertionError as error:
            seen["error"] = str(error)

    waiter = threading.Thread(target=srs, daemon=True)
    waiter.start()
    call = rec.call(rec.flags([recording.Srs(port=front.port)]), talk_ms=1500)
    rec.bench.finish_calls(call.uac, call.uas)
    waiter.join(20)
    assert "error" not in seen, seen.get("error")
    invite = seen["invite"]
    requests_seen = [*seen["ACK"], *seen["INVITE"], *seen["BYE"]]
    for request in requests_seen:
        assert request.start_line.split()[1] == f"sip:srs@127.0.0.1:{moved.port}", request.start_line
        assert request.values("Route") == ([record_route] if route else []), request.start_line
        assert request.call_id == invite.call_id
        assert header_param(request.value("To") or "", "tag") == "srs1"
    assert front.silent(0.5) == [], "in-dialog requests reached the SRS's URI"
    if route:
        assert moved.silent(0.1) == [], "requests skipped the Record-Route"
    assert_cleaned_up(rec, {"started": 1})


# ----------------------------------------------------------------------------- before the answer

def test_cancel_before_answer_records_nothing(rec):
    """The recording session starts on the answer: a call CANCELled while ringing never reaches
    the SRS, and its rtpengine call is deleted."""
    never = rec.silent_srs()
    call = rec.call(rec.flags([never]), uac="uac_cancel.xml", uas="uas_cancel.xml")
    rec.bench.finish_calls(call.uac, call.uas)

    invite = first(requests(call.uas.received(), "INVITE"), "INVITE at the callee")
    _, port = siprec.audio_address(invite.body.decode())
    assert rec.engine.owns_port(port), f"the offer did not go through rtpengine:\n{invite.body.decode()}"
    assert never.sink.messages(settle=0.5) == [], \
        f"the SRS got {[m.start_line for m in never.received()]}"
    assert_cleaned_up(rec, {"started": 0})


def test_call_ending_while_the_srs_rings_cancels_the_srs_invite(rec):
    """The SRS sends 180 and never answers; the call ends after 1.5 s: the proxy CANCELs the
    pending INVITE (same branch, Request-URI, Call-ID, From, To, CSeq number) and ACKs the 487."""
    srs = rec.srs("srs_ringing_cancel.xml")
    call = rec.call(rec.flags([srs]), talk_ms=1500)
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    assert_srs_invite(invite, srs, rec.proxy_port, call)
    cancel = first(requests(srs.received(), "CANCEL"), "CANCEL at the SRS")
    assert cancel.start_line == f"CANCEL {srs.uri} SIP/2.0"
    assert cancel.values("Via") and len(cancel.values("Via")) == 1
    branch = header_param(invite.values("Via")[0], "branch")
    assert header_param(cancel.values("Via")[0], "branch") == branch
    assert cancel.call_id == invite.call_id and cancel.value("From") == invite.value("From")
    assert cancel.value("To") == invite.value("To")
    assert cancel.value("CSeq") == f"{invite.value('CSeq').split()[0]} CANCEL"
    bye_sent = call.sent_time(call.uac, "BYE")
    assert 0 <= srs.time_of(cancel) - bye_sent <= SRS_SIGNALLING_S
    acks = requests(srs.received(), "ACK")
    assert acks and header_param(acks[0].values("Via")[0], "branch") == branch
    assert acks[0].value("CSeq") == f"{invite.value('CSeq').split()[0]} ACK"
    assert_cleaned_up(rec)


# ----------------------------------------------------------------------------- configuration

def config_yaml(rec, rules: str) -> list[str]:
    return rec.config(f"recording:\n  rtpengine: [{rec.engine.ng_uri}]\n  rules:\n{rules}")


def test_two_instances_record_in_parallel(rec):
    """One rule, two instances with their own SRS: two INVITEs, each with its own Call-ID and its
    own subscription (ports), and both SRSs receive both parties' media."""
    one, two = rec.srs(), rec.srs()
    args = config_yaml(rec, f"""\
    - name: everything
      match:
        request_uri: "^sip:bob@"
      instances:
        - name: first
          srs: ["{one.uri}"]
        - name: second
          srs: ["{two.uri}"]
""")
    call = rec.call(args)
    rec.bench.finish_calls(call.uac, call.uas, one.sipp, two.sipp)

    bye_sent = call.sent_time(call.uac, "BYE")
    bodies, invites = [], []
    for srs in (one, two):
        invite = the_invite(srs)
        body = assert_srs_invite(invite, srs, rec.proxy_port, call)
        view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                               rec.work_dir, f"metadata-{srs.port}")
        assert_media_reaches_srs(srs, body.sdp, view, since=srs.time_of(invite), until=bye_sent)
        assert_recording_ended(srs, invite, bye_sent, rec.work_dir)
        bodies.append(body)
        invites.append(invite)
    assert invites[0].call_id != invites[1].call_id
    ports = [{m.port for m in b.sdp.media} for b in bodies]
    assert not ports[0] & ports[1], f"the instances share rtpengine ports {ports}: one subscription?"
    assert_cleaned_up(rec, {"started": 2})


def test_instance_headers_from_to_and_group_come_from_the_configuration(rec):
    """An instance with from_uri, to_uri, an extra header built from the call's User-to-User and
    a group: the SRS INVITE carries them (Request-URI still the SRS), the metadata has the group.
    The rule matches on a header of the call (X-Record: yes)."""
    srs = rec.srs()
    group = "c2FsZXMtdGVhbQ=="  # base64, as the schema wants group_id
    args = config_yaml(rec, f"""\
    - name: flagged
      match:
        headers:
          X-Record: "^yes$"
      instances:
        - name: main
          srs: ["{srs.uri}"]
          from_uri: "sip:recorder-src@127.0.0.1"
          to_uri: "sip:archive@127.0.0.1"
          group: "{group}"
          headers: ["X-UUI: {{header:User-to-User}}"]
""")
    call = rec.call(args)
    rec.bench.finish_calls(call.uac, call.uas, srs.sipp)

    invite = the_invite(srs)
    body = assert_srs_invite(invite, srs, rec.proxy_port, call,
                             from_uri="sip:recorder-src@127.0.0.1", to_uri="sip:archive@127.0.0.1")
    assert invite.value("X-UUI") == call.caller_invite().value("User-to-User") == \
        "56a390f3d2b7310023a2;encoding=hex"
    view = assert_metadata(body.metadata_xml, call, assert_offer_sdp(body.sdp, rec.engine),
                           rec.work_dir)
    assert [g for g, _ in view.metadata.groups] == [group]
    session = view.metadata.sessions[0][2]
    assert [e.text for e in session.findall(f"{{{siprec.NS}}}group-ref")] == [group]
    assert_cleaned_up(rec, {"started": 1})


def test_call_not_matching_any_rule_is_not_recorded(rec):
    never = rec.silent_srs()
    args = config_yaml(rec, f"""\
    - name: carol-only
      match:
        from: "carol@"
      instances:
        - name: main
          srs: ["{never.uri}"]
""")
    call = rec.call(args, talk_ms=1500)
    rec.bench.finish_calls(call.uac, call.uas)

    assert never.sink.messages(settle=0.5) == [], \
        f"the SRS got {[m.start_line for m in never.received()]}"
    assert_cleaned_up(rec, {"started": 0})


# ----------------------------------------------------------------------------- media engine down

def test_call_goes_on_unrecorded_when_the_media_engine_does_not_answer(rec):
    """--rtpengine names an address where nothing answers: the offer times out, the INVITE goes on
    with the caller's own SDP (a little late), the call completes, no SRS hears of it, and the
    failure is counted."""
    never = rec.silent_srs()
    dead_engine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_engine.bind(("127.0.0.1", 0))
    dead_engine.setblocking(False)
    try:
        args = ["--srs", never.uri, "--rtpengine", f"udp:127.0.0.1:{dead_engine.getsockname()[1]}"]
        call = rec.call(args)
        rec.bench.finish_calls(call.uac, call.uas)
        requests_seen = []
        while True:
            try:
                requests_seen.append(dead_engine.recv(65535))
            except BlockingIOError:
                break
    finally:
        dead_engine.close()

    caller_sdp = call.caller_invite().body.decode()
    invite = first(requests(call.uas.received(), "INVITE"), "INVITE at the callee")
    assert siprec.audio_address(invite.body.decode()) == siprec.audio_address(caller_sdp), \
        "an unanchored call keeps the caller's own media address"
    offers = [m for m in requests_seen if b"7:command5:offer" in m]
    assert len(offers) == 3 and len(set(offers)) == 1, \
        f"expected the same offer tried three times at the engine, got {requests_seen}"
    assert never.sink.messages(settle=0.5) == [], "the SRS heard of an unrecorded call"
    counters = siprec.read_counters(rec.bench.proxy)
    assert counters["calls_not_recorded"] == 1, counters
    assert counters["media_engine_failures"] == 1, counters
    assert counters["started"] == 0 and counters["active"] == 0 and counters["media_sessions"] == 0, counters
