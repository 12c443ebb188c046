import Glibc
import SIPEdgeIO
import SIPMessage
@testable import SIPReplayKit
import Testing

/// Replays `templates` through a relay on the engine's loop and returns what happened.
func replayThroughRelay(
    _ templates: [CallTemplate], calls: Int = 1, rate: Double = 100, transport: ReplayTransport = .udp,
    connections: Int = 1, hold: Int? = nil, timeout: Int = 2000, configure: (Relay) -> Void = { _ in }
) throws -> (report: ReplayReport, relay: Relay) {
    let port = freePort()
    let options = ReplayOptions(
        targetHost: "127.0.0.1", targetPort: port, rate: rate, calls: calls, calleePort: freePort(),
        timeoutMilliseconds: timeout, transport: transport, tcpConnections: connections, holdMilliseconds: hold)
    let engine = try ReplayEngine(templates: templates, options: options)
    let relay = try Relay(loop: engine.loop, port: port, calleePort: engine.calleeAddress.port, transport: transport)
    configure(relay)
    let report = engine.run()
    engine.close()
    relay.close()
    return (report, relay)
}

/// The URI inside a Contact value, "<sip:x>;p" → "sip:x".
func contactURI(_ value: String?) -> String? {
    guard let value, let open = value.firstIndex(of: "<"), let close = value.firstIndex(of: ">") else { return nil }
    return String(value[value.index(after: open)..<close])
}

func tag(_ value: String?) -> String? {
    guard let value else { return nil }
    return value.split(separator: ";").dropFirst().first { $0.hasPrefix("tag=") }.map { String($0.dropFirst(4)) }
}

@Suite struct ReplayPlanTests {
    @Test func stepsOfTheSDPExampleKeepOrderRolesAndBodies() throws {
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_SIP-SDP-Example.pcap")
        let templates = replayableTemplates(capture.templates)
        #expect(templates.count == 1)
        let steps = replaySteps(try #require(templates.first))
        #expect(steps.map(\.label) == ["INVITE", "100 (INVITE)", "180 (INVITE)", "200 (INVITE)", "ACK", "BYE", "200 (BYE)"])
        #expect(steps.map(\.role) == [.caller, .callee, .callee, .callee, .caller, .callee, .caller])
        #expect(!steps[0].body.isEmpty, "the INVITE's SDP is replayed")
        #expect(!steps[3].body.isEmpty, "the 200's SDP is replayed")
        #expect(steps[1].optionalReceipt && steps[2].optionalReceipt && !steps[3].optionalReceipt)
        #expect(steps.allSatisfy { $0.delayMilliseconds <= 2000 }, "delays are capped at 2 s")
        #expect(steps.map(\.inDialog) == [false, false, false, false, true, true, false])
    }

    @Test func holdReplacesTheDelayBeforeTheFirstRequestAfterTheACK() throws {
        let template = try #require(try answeredCall(byeDelay: 7).templates("hold.pcap").first)
        let plain = replaySteps(template)
        let held = replaySteps(template, holdMilliseconds: 25_000)
        #expect(plain[5].label == "BYE" && plain[5].delayMilliseconds == 7)
        #expect(held[5].delayMilliseconds == 25_000, "the hold is not capped at 2 s")
        #expect(held.indices.allSatisfy { $0 == 5 || held[$0].delayMilliseconds == plain[$0].delayMilliseconds })
    }

    @Test func cancelledCallSteps() throws {
        let template = try #require(try cancelledCall().templates("cancel-plan.pcap").first)
        #expect(replayProblem(template) == nil)
        let steps = replaySteps(template)
        #expect(steps.map(\.label) == ["INVITE", "100 (INVITE)", "180 (INVITE)", "CANCEL", "200 (CANCEL)", "487 (INVITE)", "ACK"])
        // The proxy answers the CANCEL and ACKs the 487 itself: the far side may see its copy first.
        #expect(steps.map(\.hopByHop) == [false, false, false, false, true, false, true])
        #expect(steps[6].acknowledgesNon2xx && steps[6].optionalReceipt)
    }

    @Test func unreplayableTemplatesSayWhy() throws {
        var ringing = SyntheticCall()
        ringing.add(true, callMessage("INVITE sip:b@y SIP/2.0", cseq: "1 INVITE", callID: "ringing"))
        ringing.add(false, callMessage("SIP/2.0 180 Ringing", cseq: "1 INVITE", callID: "ringing", toTag: "b1"))
        ringing.add(true, callMessage("BYE sip:b@y SIP/2.0", cseq: "5 BYE", callID: "bye-first", toTag: "b1"))
        ringing.add(false, callMessage("SIP/2.0 200 OK", cseq: "5 BYE", callID: "bye-first", toTag: "b1"))
        ringing.add(true, callMessage("OPTIONS sip:b@y SIP/2.0", cseq: "1 OPTIONS", callID: "unanswered"))
        ringing.add(true, callMessage("INFO sip:b@y SIP/2.0", cseq: "9 INFO", callID: "in-dialog", toTag: "b1"))
        ringing.add(false, callMessage("SIP/2.0 200 OK", cseq: "9 INFO", callID: "in-dialog", toTag: "b1"))
        ringing.add(true, callMessage("MESSAGE sip:b@y SIP/2.0", cseq: "2 MESSAGE", callID: "tagged", toTag: "b1"))
        ringing.add(false, callMessage("SIP/2.0 200 OK", cseq: "2 MESSAGE", callID: "tagged", toTag: "b1"))
        ringing.add(false, callMessage("SIP/2.0 200 OK", cseq: "3 OPTIONS", callID: "orphan", toTag: "b1"))
        let problems = try ringing.templates("problems.pcap").map { ($0.callID, replayProblem($0)) }
        #expect(problems.map(\.0) == ["ringing", "bye-first", "unanswered", "in-dialog", "tagged", "orphan"])
        #expect(problems[0].1 == "the INVITE has no final response (the capture ends mid-call)")
        #expect(problems[1].1 == "starts with BYE (the capture began mid-call)")
        #expect(problems[2].1 == "the OPTIONS has no final response")
        #expect(problems[3].1 == "starts with INFO (the capture began mid-call)")
        #expect(problems[4].1 == "the first request (MESSAGE) is inside a dialog (its To has a tag): the capture began mid-call")
        #expect(problems[5].1 == "no request, only responses")
    }

    @Test func nonINVITECallsOfTheCorpusAreReplayable() throws {
        let register = try loadTemplates(path: corpusDirectory + "/goffinet_sip-cme-zoiper-register.pcapng")
        #expect(replayableTemplates(register.templates).count == 1)
        let steps = replaySteps(try #require(register.templates.first))
        #expect(steps.map(\.label) == [
            "REGISTER", "100 (REGISTER)", "401 (REGISTER)", "REGISTER", "100 (REGISTER)", "200 (REGISTER)",
            "REGISTER", "100 (REGISTER)", "200 (REGISTER)",
        ])
        #expect(steps.allSatisfy { !$0.inDialog }, "each REGISTER is sent outside a dialog")
        let mixed = try loadTemplates(path: corpusDirectory + "/goffinet_sip-register-publish-subscribe-489-401.pcapng")
        #expect(replayableTemplates(mixed.templates).count == mixed.templates.count)
    }

    @Test func timerQueueRunsEarliestFirstAndTiesInOrder() {
        var queue = TimerQueue()
        let deadlines: [UInt64] = [50, 10, 30, 10, 70, 20, 10, 60]
        for (index, deadline) in deadlines.enumerated() { queue.schedule(at: deadline, call: index, .timeout) }
        #expect(queue.popDue(now: 5) == nil)
        var popped: [(UInt64, Int)] = []
        while let timer = queue.popDue(now: 60) { popped.append((timer.deadline, timer.call)) }
        #expect(popped.map(\.0) == [10, 10, 10, 20, 30, 50, 60])
        #expect(popped.prefix(3).map(\.1) == [1, 3, 6], "timers due at the same time run in the order scheduled")
        #expect(queue.count == 1 && queue.earliestDeadline == 70)
    }
}

@Suite(.serialized) struct ReplayEngineTests {
    @Test func answeredCallOverUDP() throws {
        let (report, relay) = try replayThroughRelay(try answeredCall().templates("answered.pcap"), calls: 3)
        #expect(report.callsCompleted == 3 && report.callsFailed == 0, "\(report.failureExamples)")
        #expect(report.inviteToOK.count == 3 && report.byeToOK.count == 3)
        #expect(report.replayCPUSecondsPer1000Calls != nil)
        #expect(report.peakConcurrentCalls >= 1)
        let call = relay.call(0)
        #expect(call.map(\.arrowed) == [
            "→ INVITE", "← 100 (INVITE)", "← 180 (INVITE)", "← 200 (INVITE)", "→ ACK", "→ BYE", "← 200 (BYE)",
        ])
        let invite = call[0]
        let ok = call[3]
        let ack = call[4]
        #expect(invite.message.text(invite.message.requestURIRange) == "sip:service@127.0.0.1:\(relay.port)")
        #expect(invite.header(.via)?.hasPrefix("SIP/2.0/UDP 127.0.0.1:") == true)
        #expect(invite.header(.via)?.hasSuffix(";rport") == true)
        #expect(tag(invite.header(.to)) == nil)
        #expect(invite.header(.contentType) == "application/sdp")
        #expect(invite.message.bodyRange.count == sampleSDP.utf8.count)
        let calleeTag = try #require(tag(ok.header(.to)))
        #expect(calleeTag.hasPrefix("s"))
        #expect(contactURI(ok.header(.contact)) == "sip:callee@127.0.0.1:\(relay.calleePort)")
        #expect(tag(ack.header(.to)) == calleeTag)
        #expect(ack.branch != invite.branch, "the ACK of a 2xx is a new transaction")
        #expect(ack.message.text(ack.message.requestURIRange) == contactURI(ok.header(.contact)))
        #expect(Set(call.compactMap { $0.header(.callID) }).count == 1)
        #expect(Set(relay.relayed.compactMap { $0.header(.callID) }).count == 3, "every call has its own Call-ID")
    }

    @Test func cancelledCallCarriesTheINVITEsBranchAndCSeq() throws {
        let (report, relay) = try replayThroughRelay(try cancelledCall().templates("cancel.pcap"), calls: 2)
        #expect(report.callsCompleted == 2 && report.callsFailed == 0, "\(report.failureExamples)")
        let call = relay.call(0)
        #expect(call.map(\.arrowed) == [
            "→ INVITE", "← 100 (INVITE)", "← 180 (INVITE)", "→ CANCEL", "← 200 (CANCEL)", "← 487 (INVITE)", "→ ACK",
        ])
        let invite = call[0]
        let cancel = call[3]
        let terminated = call[5]
        let ack = call[6]
        #expect(cancel.branch == invite.branch)
        #expect(cancel.header(.cseq) == "1 CANCEL")
        #expect(cancel.message.text(cancel.message.requestURIRange) == invite.message.text(invite.message.requestURIRange))
        #expect(tag(cancel.header(.to)) == nil)
        #expect(cancel.header(.from) == invite.header(.from))
        #expect(ack.branch == invite.branch, "the ACK of a non-2xx is part of the INVITE transaction")
        #expect(ack.header(.cseq) == "1 ACK")
        #expect(tag(ack.header(.to)) == tag(terminated.header(.to)))
        #expect(terminated.header(.via) == invite.header(.via), "the 487 answers the INVITE, not the CANCEL")
        #expect(report.inviteToOK.count == 0)
    }

    @Test func registerAfterAChallengeIsTwoTransactionsOutsideADialog() throws {
        var capture = SyntheticCall()
        capture.add(true, callMessage("REGISTER sip:y SIP/2.0", cseq: "1 REGISTER", extra: ["Expires: 3600"]))
        capture.add(false, callMessage("SIP/2.0 401 Unauthorized", cseq: "1 REGISTER", toTag: "b1", contact: false))
        capture.add(true, callMessage("REGISTER sip:y SIP/2.0", cseq: "2 REGISTER", branch: "z9hG4bK2", extra: ["Expires: 3600"]))
        capture.add(false, callMessage("SIP/2.0 200 OK", cseq: "2 REGISTER", branch: "z9hG4bK2", toTag: "b1"))
        let (report, relay) = try replayThroughRelay(try capture.templates("register.pcap"), calls: 2)
        #expect(report.callsCompleted == 2 && report.callsFailed == 0, "\(report.failureExamples)")
        let call = relay.call(1)
        #expect(call.map(\.arrowed) == ["→ REGISTER", "← 401 (REGISTER)", "→ REGISTER", "← 200 (REGISTER)"])
        for register in [call[0], call[2]] {
            #expect(register.message.text(register.message.requestURIRange) == "sip:127.0.0.1:\(relay.port)")
            #expect(tag(register.header(.to)) == nil)
            #expect(register.header(.expires) == "3600")
            #expect(register.header(.contact) != nil)
        }
        #expect(call[0].branch != call[2].branch)
        #expect(call.map { $0.header(.cseq) } == ["1 REGISTER", "1 REGISTER", "2 REGISTER", "2 REGISTER"])
    }

    @Test func subscribeThenNotifyFromTheCallee() throws {
        var capture = SyntheticCall()
        capture.add(true, callMessage("SUBSCRIBE sip:b@y SIP/2.0", cseq: "1 SUBSCRIBE", extra: ["Event: presence", "Expires: 600"]))
        capture.add(false, callMessage("SIP/2.0 200 OK", cseq: "1 SUBSCRIBE", toTag: "b1", extra: ["Expires: 600"]))
        capture.add(
            false,
            callMessage(
                "NOTIFY sip:a@10.0.0.1 SIP/2.0", cseq: "1 NOTIFY", branch: "z9hG4bK7", toTag: "a1",
                extra: ["Event: presence", "Subscription-State: active;expires=600"]))
        capture.add(true, callMessage("SIP/2.0 200 OK", cseq: "1 NOTIFY", branch: "z9hG4bK7", toTag: "a1", contact: false))
        let (report, relay) = try replayThroughRelay(try capture.templates("subscribe.pcap"))
        #expect(report.callsCompleted == 1 && report.callsFailed == 0, "\(report.failureExamples)")
        let call = relay.call(0)
        #expect(call.map(\.arrowed) == ["→ SUBSCRIBE", "← 200 (SUBSCRIBE)", "← NOTIFY", "→ 200 (NOTIFY)"])
        let subscribe = call[0]
        let ok = call[1]
        let notify = call[2]
        #expect(notify.message.text(notify.message.requestURIRange) == contactURI(subscribe.header(.contact)))
        #expect(tag(notify.header(.to)) == tag(subscribe.header(.from)))
        #expect(tag(notify.header(.from)) == tag(ok.header(.to)))
        #expect(notify.header(.event) == "presence")
        let state = try #require(notify.message.firstHeader(named: "Subscription-State"))
        #expect(notify.message.text(state.valueRange) == "active;expires=600")
        #expect(contactURI(ok.header(.contact)) == "sip:callee@127.0.0.1:\(relay.calleePort)")
    }

    @Test func tcpCallsTakeThePoolsConnectionsInTurn() throws {
        let (report, relay) = try replayThroughRelay(
            try answeredCall().templates("tcp.pcap"), calls: 4, transport: .tcp, connections: 2)
        #expect(report.callsCompleted == 4 && report.callsFailed == 0, "\(report.failureExamples)")
        #expect(report.retransmissions == 0)
        #expect(relay.acceptedConnections == 2)
        #expect(report.target == "tcp:127.0.0.1:\(relay.port)")
        let call = relay.call(0)
        #expect(call.count == 7)
        let invite = call[0]
        #expect(invite.header(.via)?.hasPrefix("SIP/2.0/TCP 127.0.0.1:") == true)
        #expect(invite.message.text(invite.message.requestURIRange) == "sip:service@127.0.0.1:\(relay.port);transport=tcp")
        #expect(contactURI(invite.header(.contact))?.hasSuffix(";transport=tcp") == true)
        #expect(contactURI(call[3].header(.contact)) == "sip:callee@127.0.0.1:\(relay.calleePort);transport=tcp")
    }

    @Test func aTCPTargetThatDropsItsConnectionsFailsTheCallsWithReasonTransport() throws {
        let (report, relay) = try replayThroughRelay(
            try answeredCall().templates("tcp-drop.pcap"), calls: 3, transport: .tcp, timeout: 3000,
            configure: { $0.refuseStreams = true })
        #expect(report.callsAttempted == 3)
        #expect(report.failures[.transportError] == 3, "\(report.failureExamples)")
        #expect(report.exitStatus == 1)
        #expect(report.durationSeconds < 2, "a dropped connection fails its calls at once, not by timeout")
        #expect(relay.acceptedConnections >= 1)
        #expect(report.failureExamples.first?.contains("TCP connection to 127.0.0.1:\(relay.port)") == true)
    }

    @Test func holdKeepsEveryCallUpAtOnce() throws {
        let (report, relay) = try replayThroughRelay(
            try answeredCall().templates("held.pcap"), calls: 10, rate: 100, hold: 400)
        #expect(report.callsCompleted == 10 && report.callsFailed == 0, "\(report.failureExamples)")
        #expect(report.peakConcurrentCalls == 10)
        for index in 0..<10 {
            let call = relay.call(index)
            let ack = try #require(call.first { $0.label == "ACK" })
            let bye = try #require(call.first { $0.label == "BYE" })
            #expect(bye.milliseconds - ack.milliseconds >= 395)
        }
    }

    @Test func replayWithNothingAtTheTargetFailsByTimeout() throws {
        // Nothing listens on 127.0.0.1:9 (discard): every call waits in vain for its INVITE.
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_uac-uas-scenario-sipp.pcapng")
        let options = ReplayOptions(
            targetHost: "127.0.0.1", targetPort: 9, rate: 50, calls: 2, calleePort: 0, timeoutMilliseconds: 1200)
        let engine = try ReplayEngine(templates: capture.templates, options: options)
        let report = engine.run()
        #expect(report.callsAttempted == 2)
        #expect(report.callsCompleted == 0)
        #expect(report.failures[.timeout] == 2)
        #expect(report.failureExamples.first?.contains("no INVITE within 1200 ms") == true, "\(report.failureExamples)")
        #expect(report.retransmissions == 2, "the INVITE is resent over UDP once (after 500 ms) before the timeout")
        #expect(report.exitStatus == 1)
        #expect(report.durationSeconds < 3)
    }

    @Test func resetRunsAgainOnTheSameSocketsWithAFreshReport() throws {
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_uac-uas-scenario-sipp.pcapng")
        let options = ReplayOptions(
            targetHost: "127.0.0.1", targetPort: 9, rate: 50, calls: 1, calleePort: 0, timeoutMilliseconds: 200)
        let engine = try ReplayEngine(templates: capture.templates, options: options)
        let callee = engine.calleeAddress
        #expect(engine.run().failures[.timeout] == 1)
        engine.settle(milliseconds: 50)
        engine.reset(rate: 100, calls: 2)
        let second = engine.run()
        #expect(engine.calleeAddress == callee)
        #expect(second.rateOffered == 100)
        #expect(second.callsAttempted == 2)
        #expect(second.failures[.timeout] == 2)
    }
}
