import SIPDialog
import Testing

@Suite("Dialog identity")
struct DialogIDTests {
    @Test("a request's direction follows its tags; other dialogs do not match")
    func direction() {
        let id = DialogID(callID: "c1@host", callerTag: "alice", calleeTag: "bob")
        #expect(id.direction(ofRequestWithCallID: "c1@host", fromTag: "alice", toTag: "bob") == .callerToCallee)
        #expect(id.direction(ofRequestWithCallID: "c1@host", fromTag: "bob", toTag: "alice") == .calleeToCaller)
        #expect(id.direction(ofRequestWithCallID: "c1@host", fromTag: "alice", toTag: "carol") == nil)
        #expect(id.direction(ofRequestWithCallID: "c2@host", fromTag: "alice", toTag: "bob") == nil)
        let early = DialogID(callID: "c1@host", callerTag: "alice")
        #expect(early.direction(ofRequestWithCallID: "c1@host", fromTag: "alice", toTag: "") == nil)
    }

    @Test("settings defaults")
    func settings() {
        let settings = DialogSettings()
        #expect(settings.ackTimeoutMilliseconds == 32_000)
        #expect(settings.earlyLifetimeMilliseconds == 300_000)
        #expect(settings.lifetimeMilliseconds == 43_200_000)
        #expect(DialogSettings(t1Milliseconds: 100).ackTimeoutMilliseconds == 6_400)
    }
}

@Suite("Dialog state machine for a stateful proxy")
struct DialogTests {
    static let settings = DialogSettings(earlyLifetimeMilliseconds: 200_000, lifetimeMilliseconds: 3_600_000)

    static func invite() -> Dialog {
        Dialog(callID: "call-1", callerTag: "from-1", inviteCSeq: 10, settings: settings)
    }

    /// A harness whose dialog was confirmed (and ACKed if asked) at time 1 000.
    static func confirmed(acknowledged: Bool = true) -> DialogHarness {
        var harness = DialogHarness(invite())
        harness.input { $0.start() }
        harness.advance(to: 1_000)
        harness.input { $0.receiveFinalResponse(statusCode: 200, toTag: "to-1") }
        if acknowledged { harness.input { $0.receiveACK() } }
        return harness
    }

    @Test("start arms the early lifetime once")
    func start() {
        var dialog = Self.invite()
        #expect(dialog.state == .initial)
        #expect(dialog.start().startedTimers == ["earlyLifetime=200000"])
        #expect(dialog.start() == .none)
        #expect(dialog.id == DialogID(callID: "call-1", callerTag: "from-1"))
        #expect(dialog.lastCSeq(from: .callerToCallee) == 10)
        #expect(dialog.lastCSeq(from: .calleeToCaller) == nil)
    }

    @Test("initial to early: a provisional from 101 with a To tag; 100 and tagless ones are ignored")
    func early() {
        var dialog = Self.invite()
        _ = dialog.start()
        #expect(dialog.receiveProvisional(statusCode: 100, toTag: "to-1") == .none)
        #expect(dialog.receiveProvisional(statusCode: 180, toTag: nil) == .none)
        #expect(dialog.state == .initial)
        #expect(Array(dialog.receiveProvisional(statusCode: 183, toTag: "to-1").events) == [.early])
        #expect(dialog.state == .early)
        #expect(dialog.id.calleeTag == "to-1")
        #expect(dialog.receiveProvisional(statusCode: 180, toTag: "to-1") == .none)
        #expect(dialog.receiveProvisional(statusCode: 180, toTag: "to-2") == .none)
        #expect(dialog.id.calleeTag == "to-1")
    }

    @Test("early to confirmed: the 2xx arms the ACK wait and the lifetime; the early lifetime goes stale")
    func confirmedFromEarly() {
        var harness = DialogHarness(Self.invite())
        harness.input { $0.start() }
        harness.advance(to: 500)
        harness.input { $0.receiveProvisional(statusCode: 180, toTag: "to-1") }
        harness.advance(to: 5_000)
        let actions = harness.input { $0.receiveFinalResponse(statusCode: 200, toTag: "to-1") }
        #expect(Array(actions.events) == [.confirmed])
        #expect(actions.startedTimers == ["ackWait=32000", "lifetime=3600000"])
        #expect(harness.dialog.state == .confirmed)
        #expect(harness.input { $0.receiveFinalResponse(statusCode: 200, toTag: "to-1") } == .none)
        harness.input { $0.receiveACK() }
        #expect(harness.dialog.isAcknowledged)
        harness.advance(to: 1_000_000)
        #expect(harness.dialog.state == .confirmed)
        #expect(harness.ignoredFirings.map(\.kind) == [.ackWait, .earlyLifetime])
        #expect(harness.events.map(\.time) == [500, 5_000])
        #expect(harness.eventList == [.early, .confirmed])
    }

    @Test("initial to confirmed directly; the 2xx's tag becomes the callee tag")
    func confirmedFromInitial() {
        var dialog = Self.invite()
        #expect(Array(dialog.receiveFinalResponse(statusCode: 202, toTag: "to-9").events) == [.confirmed])
        #expect(dialog.id.calleeTag == "to-9")
        #expect(dialog.receiveProvisional(statusCode: 180, toTag: "to-9") == .none)
    }

    @Test("a 2xx with another fork's tag is ignored by this early dialog")
    func foreignSuccess() {
        var dialog = Self.invite()
        _ = dialog.receiveProvisional(statusCode: 180, toTag: "to-1")
        #expect(dialog.receiveFinalResponse(statusCode: 200, toTag: "to-2") == .none)
        #expect(dialog.state == .early)
    }

    @Test("forking: a sibling per To tag, made from the initial dialog")
    func forking() {
        var first = Self.invite()
        _ = first.start()
        _ = first.receiveCancel()
        _ = first.receiveProvisional(statusCode: 180, toTag: "tag-a")
        var second = first.forked(calleeTag: "tag-b")
        #expect(second.state == .initial)
        #expect(second.id == DialogID(callID: "call-1", callerTag: "from-1", calleeTag: "tag-b"))
        #expect(second.inviteCSeq == 10)
        #expect(second.isCancelled)
        #expect(second.start().startedTimers == ["earlyLifetime=200000"])
        #expect(second.receiveProvisional(statusCode: 183, toTag: "tag-a") == .none)
        #expect(Array(second.receiveProvisional(statusCode: 183, toTag: "tag-b").events) == [.early])

        // The forwarded final response ends every early dialog of the INVITE, whatever its tag.
        #expect(Array(first.receiveFinalResponse(statusCode: 487, toTag: "tag-a").events) == [.terminated(.cancelled)])
        #expect(Array(second.receiveFinalResponse(statusCode: 487, toTag: "tag-a").events) == [.terminated(.cancelled)])
    }

    @Test("a fork's CSeq tracking starts from the INVITE, not from its sibling's requests")
    func forkCSeq() {
        var first = Self.invite()
        _ = first.receiveProvisional(statusCode: 180, toTag: "tag-a")
        _ = first.receiveRequest(.other, direction: .callerToCallee, cseq: 11)  // PRACK
        #expect(first.lastCSeq(from: .callerToCallee) == 11)
        let second = first.forked(calleeTag: "tag-b")
        #expect(second.lastCSeq(from: .callerToCallee) == 10)
    }

    @Test("terminated(rejected): a non-2xx final response", arguments: [300, 404, 486, 487, 500, 603])
    func rejected(statusCode: Int) {
        var dialog = Self.invite()
        _ = dialog.receiveProvisional(statusCode: 180, toTag: "to-1")
        let actions = dialog.receiveFinalResponse(statusCode: statusCode, toTag: "to-1")
        #expect(Array(actions.events) == [.terminated(.rejected(statusCode: statusCode))])
        #expect(dialog.state == .terminated(.rejected(statusCode: statusCode)))
        #expect(dialog.isTerminated)
    }

    @Test("terminated(cancelled): CANCEL, then a non-2xx final; a CANCEL after the 2xx changes nothing")
    func cancelled() {
        var dialog = Self.invite()
        #expect(dialog.receiveCancel() == .none)
        #expect(dialog.isCancelled)
        #expect(Array(dialog.receiveFinalResponse(statusCode: 487, toTag: "to-1").events) == [.terminated(.cancelled)])

        var late = Self.invite()
        _ = late.receiveFinalResponse(statusCode: 200, toTag: "to-1")
        #expect(late.receiveCancel() == .none)
        #expect(!late.isCancelled)
        #expect(late.state == .confirmed)

        var raced = Self.invite()
        _ = raced.receiveCancel()
        #expect(Array(raced.receiveFinalResponse(statusCode: 200, toTag: "to-1").events) == [.confirmed])
    }

    @Test("terminated(byeFromCaller) and terminated(byeFromCallee)")
    func bye() {
        var harness = Self.confirmed()
        let bye = harness.input { $0.receiveRequest(.bye, direction: .callerToCallee, cseq: 11) }
        #expect(Array(bye.events) == [.terminated(.byeFromCaller)])
        #expect(!bye.isOutOfOrder)

        var other = Self.confirmed()
        other.input { $0.receiveRequest(.bye, direction: .calleeToCaller, cseq: 1) }
        #expect(other.dialog.state == .terminated(.byeFromCallee))
        other.advance(to: 10_000_000)
        #expect(other.ignoredFirings.map(\.kind) == [.ackWait, .earlyLifetime, .lifetime])
        #expect(other.events.count == 2)
    }

    @Test("the caller may end an early dialog with a BYE")
    func byeInEarly() {
        var dialog = Self.invite()
        _ = dialog.receiveProvisional(statusCode: 180, toTag: "to-1")
        #expect(
            Array(dialog.receiveRequest(.bye, direction: .callerToCallee, cseq: 11).events)
                == [.terminated(.byeFromCaller)]
        )
    }

    @Test("terminated(expired): no BYE within the lifetime after confirmation")
    func expired() {
        var harness = Self.confirmed()
        harness.advance(to: 3_600_999)
        #expect(harness.dialog.state == .confirmed)
        harness.advance(to: 4_000_000)
        #expect(harness.dialog.state == .terminated(.expired))
        #expect(harness.events.last?.time == 3_601_000)
        #expect(harness.eventList == [.confirmed, .terminated(.expired)])
    }

    @Test("a 2xx to a re-INVITE or UPDATE refreshes the lifetime; the old expiry goes stale")
    func refresh() {
        var harness = Self.confirmed()
        harness.advance(to: 1_000_000)
        harness.input { $0.receiveRequest(.update, direction: .calleeToCaller, cseq: 1) }
        let updated = harness.input {
            $0.receiveResponse(statusCode: 200, method: .update, requestDirection: .calleeToCaller, cseq: 1)
        }
        #expect(Array(updated.events) == [.refreshed])
        #expect(updated.startedTimers == ["lifetime=3600000"])
        harness.advance(to: 2_000_000)
        harness.input { $0.receiveRequest(.invite, direction: .callerToCallee, cseq: 11) }
        harness.input {
            $0.receiveResponse(statusCode: 200, method: .invite, requestDirection: .callerToCallee, cseq: 11)
        }
        // A failed UPDATE and a 2xx to another method do not refresh.
        harness.advance(to: 3_000_000)
        #expect(
            harness.input {
                $0.receiveResponse(statusCode: 500, method: .update, requestDirection: .callerToCallee, cseq: 12)
            } == .none
        )
        #expect(
            harness.input {
                $0.receiveResponse(statusCode: 200, method: .other, requestDirection: .callerToCallee, cseq: 13)
            } == .none
        )
        harness.advance(to: 10_000_000)

        #expect(harness.dialog.state == .terminated(.expired))
        #expect(harness.events.last?.time == 5_600_000)
        // The ACK wait (ACKed), the early lifetime (confirmed) and the two superseded expiries.
        #expect(harness.ignoredFirings.map(\.time) == [33_000, 200_000, 3_601_000, 4_600_000])
        #expect(
            harness.eventList == [
                .confirmed, .refreshed, .reinviteStarted, .reinviteCompleted(statusCode: 200), .refreshed,
                .terminated(.expired),
            ]
        )
    }

    @Test("terminated(earlyTimeout): no final response within the early lifetime")
    func earlyTimeout() {
        var harness = DialogHarness(Self.invite())
        harness.input { $0.start() }
        harness.advance(to: 10_000)
        harness.input { $0.receiveProvisional(statusCode: 180, toTag: "to-1") }
        harness.advance(to: 199_999)
        #expect(harness.dialog.state == .early)
        harness.advance(to: 300_000)
        #expect(harness.dialog.state == .terminated(.earlyTimeout))
        #expect(harness.events.map(\.time) == [10_000, 200_000])
        // Also from the initial state.
        var silent = DialogHarness(Self.invite())
        silent.input { $0.start() }
        silent.advance(to: 300_000)
        #expect(silent.eventList == [.terminated(.earlyTimeout)])
    }

    @Test("terminated(ackTimeout): the 2xx is never ACKed within 64·T1")
    func ackTimeout() {
        var harness = Self.confirmed(acknowledged: false)
        harness.advance(to: 32_999)
        #expect(harness.dialog.state == .confirmed)
        harness.advance(to: 40_000)
        #expect(harness.dialog.state == .terminated(.ackTimeout))
        #expect(harness.events.last?.time == 33_000)
        #expect(harness.input { $0.receiveACK() } == .none)
        #expect(!harness.dialog.isAcknowledged)
    }

    @Test("CSeq tracking per direction flags lower CSeqs as out of order, without acting on them")
    func outOfOrder() {
        var harness = Self.confirmed()
        #expect(harness.input { $0.receiveRequest(.other, direction: .callerToCallee, cseq: 15) } == .none)
        #expect(harness.input { $0.receiveRequest(.other, direction: .callerToCallee, cseq: 15) } == .none)
        let stale = harness.input { $0.receiveRequest(.bye, direction: .callerToCallee, cseq: 12) }
        #expect(stale.isOutOfOrder)
        #expect(stale.events.isEmpty)
        #expect(harness.dialog.state == .confirmed)
        #expect(harness.dialog.lastCSeq(from: .callerToCallee) == 15)
        // The callee's CSeq space is its own.
        #expect(harness.input { $0.receiveRequest(.other, direction: .calleeToCaller, cseq: 3) } == .none)
        #expect(harness.input { $0.receiveRequest(.invite, direction: .calleeToCaller, cseq: 2) }.isOutOfOrder)
        #expect(harness.dialog.reinviteInProgress == nil)
        #expect(harness.dialog.lastCSeq(from: .calleeToCaller) == 3)
        // Also in an early dialog, against the INVITE's CSeq.
        var early = Self.invite()
        _ = early.receiveProvisional(statusCode: 180, toTag: "to-1")
        #expect(early.receiveRequest(.update, direction: .callerToCallee, cseq: 9).isOutOfOrder)
    }

    @Test("re-INVITE tracking: start, glare, provisional and unrelated responses, outcome")
    func reinvite() {
        var harness = Self.confirmed()
        let started = harness.input { $0.receiveRequest(.invite, direction: .calleeToCaller, cseq: 1) }
        #expect(Array(started.events) == [.reinviteStarted])
        #expect(harness.dialog.reinviteInProgress == .calleeToCaller)
        // Retransmission, and a re-INVITE from the other side while one is pending (glare).
        #expect(harness.input { $0.receiveRequest(.invite, direction: .calleeToCaller, cseq: 1) } == .none)
        #expect(harness.input { $0.receiveRequest(.invite, direction: .callerToCallee, cseq: 11) } == .none)
        #expect(
            harness.input {
                $0.receiveResponse(statusCode: 180, method: .invite, requestDirection: .calleeToCaller, cseq: 1)
            } == .none
        )
        let glareAnswer = harness.input {
            $0.receiveResponse(statusCode: 491, method: .invite, requestDirection: .callerToCallee, cseq: 11)
        }
        #expect(glareAnswer == .none)
        let failed = harness.input {
            $0.receiveResponse(statusCode: 488, method: .invite, requestDirection: .calleeToCaller, cseq: 1)
        }
        #expect(Array(failed.events) == [.reinviteCompleted(statusCode: 488)])
        #expect(failed.timers.isEmpty)
        #expect(harness.dialog.reinviteInProgress == nil)

        harness.input { $0.receiveRequest(.invite, direction: .callerToCallee, cseq: 12) }
        let accepted = harness.input {
            $0.receiveResponse(statusCode: 200, method: .invite, requestDirection: .callerToCallee, cseq: 12)
        }
        #expect(Array(accepted.events) == [.reinviteCompleted(statusCode: 200), .refreshed])
        #expect(accepted.startedTimers == ["lifetime=3600000"])
        #expect(harness.dialog.state == .confirmed)
    }

    @Test("a BYE during a re-INVITE ends the dialog and the re-INVITE tracking")
    func byeDuringReinvite() {
        var harness = Self.confirmed()
        harness.input { $0.receiveRequest(.invite, direction: .callerToCallee, cseq: 11) }
        harness.input { $0.receiveRequest(.bye, direction: .callerToCallee, cseq: 12) }
        #expect(harness.dialog.reinviteInProgress == nil)
        #expect(
            harness.input {
                $0.receiveResponse(statusCode: 200, method: .invite, requestDirection: .callerToCallee, cseq: 11)
            } == .none
        )
        #expect(harness.eventList == [.confirmed, .reinviteStarted, .terminated(.byeFromCaller)])
    }

    @Test("inputs that do not apply are ignored: requests before the dialog exists, anything after it ended")
    func ignoredInputs() {
        var dialog = Self.invite()
        #expect(dialog.receiveRequest(.bye, direction: .callerToCallee, cseq: 11) == .none)
        #expect(dialog.receiveACK() == .none)
        #expect(
            dialog.receiveResponse(statusCode: 200, method: .update, requestDirection: .callerToCallee, cseq: 11)
                == .none
        )
        #expect(dialog.receiveFinalResponse(statusCode: 180, toTag: "to-1") == .none)
        #expect(dialog.receiveFinalResponse(statusCode: 700, toTag: "to-1") == .none)
        #expect(dialog.state == .initial)

        _ = dialog.receiveFinalResponse(statusCode: 404, toTag: "to-1")
        #expect(dialog.start() == .none)
        #expect(dialog.receiveProvisional(statusCode: 180, toTag: "to-1") == .none)
        #expect(dialog.receiveFinalResponse(statusCode: 200, toTag: "to-1") == .none)
        #expect(dialog.receiveRequest(.bye, direction: .callerToCallee, cseq: 11) == .none)
        #expect(dialog.receiveCancel() == .none)
        #expect(!dialog.isCancelled)
        #expect(dialog.state == .terminated(.rejected(statusCode: 404)))
    }

    @Test("stale and replayed timers are ignored")
    func staleTimers() throws {
        var dialog = Self.invite()
        let early = try #require(dialog.start().timers.first).timer
        let confirmed = dialog.receiveFinalResponse(statusCode: 200, toTag: "to-1")
        #expect(dialog.timerFired(early) == .none)
        let ackWait = confirmed.timers[0].timer
        let firstLifetime = confirmed.timers[1].timer
        _ = dialog.receiveRequest(.update, direction: .callerToCallee, cseq: 11)
        let refreshed = dialog.receiveResponse(
            statusCode: 200,
            method: .update,
            requestDirection: .callerToCallee,
            cseq: 11
        )
        #expect(dialog.timerFired(firstLifetime) == .none)
        #expect(Array(dialog.timerFired(ackWait).events) == [.terminated(.ackTimeout)])
        #expect(dialog.timerFired(ackWait) == .none)
        #expect(dialog.timerFired(refreshed.timers[0].timer) == .none)
        #expect(dialog.state == .terminated(.ackTimeout))
    }
}
