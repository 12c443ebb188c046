import SIPTransaction
import Testing

@Suite("Client INVITE transaction (RFC 3261 §17.1.1, RFC 6026)")
struct ClientInviteTransactionTests {
    @Test("start sends the INVITE and arms A, B (and C for a proxy)")
    func startArmsTimers() {
        var unreliable = ClientInviteTransaction(reliableTransport: false)
        let actions = unreliable.start()
        #expect(actions.message == .request)
        #expect(actions.startedTimers == ["timerA=500", "timerB=32000"])
        #expect(unreliable.state == .calling)
        #expect(unreliable.start() == .none)

        var proxy = ClientInviteTransaction(reliableTransport: true, usesTimerC: true)
        #expect(proxy.start().startedTimers == ["timerB=32000", "timerC=180000"])
    }

    @Test("Timer A doubles from T1 until Timer B times the transaction out (unreliable)")
    func timerADoublesUntilTimerB() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 70_000)

        #expect(harness.times(of: .request) == [0])
        #expect(harness.times(of: .requestRetransmission) == [500, 1_500, 3_500, 7_500, 15_500, 31_500])
        let aIntervals = harness.log.flatMap {
            $0.actions.timers.filter { $0.timer.kind == .timerA }.map(\.milliseconds)
        }
        #expect(aIntervals == [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000])
        #expect(harness.times(of: .timeout(.timerB)) == [32_000])
        #expect(harness.terminationTimes == [32_000])
        #expect(harness.machine.state == .terminated)
        // The last Timer A (due at 63 500) fires after termination and is ignored.
        #expect(harness.ignoredFirings.map(\.time) == [63_500])
    }

    @Test("no Timer A on a reliable transport; B still times out")
    func reliableHasNoRetransmissions() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: true))
        harness.input { $0.start() }
        harness.run(until: 40_000)
        #expect(harness.times(of: .request) == [0])
        #expect(harness.times(of: .requestRetransmission).isEmpty)
        #expect(harness.times(of: .timeout(.timerB)) == [32_000])
    }

    @Test("a provisional moves to Proceeding, stops A and B, and goes up once as the first")
    func provisionalStopsRetransmissions() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 1_000)
        let first = harness.input { $0.receiveResponse(statusCode: 100) }
        #expect(first.delivery == .response(statusCode: 100, isFirstOfKind: true))
        #expect(first.timers.isEmpty)
        #expect(harness.machine.state == .proceeding)
        let second = harness.input { $0.receiveResponse(statusCode: 180) }
        #expect(second == TransactionActions(delivery: .response(statusCode: 180, isFirstOfKind: false)))
        harness.run(until: 100_000)

        #expect(harness.times(of: .requestRetransmission) == [500])
        #expect(harness.effectiveFirings.map(\.time) == [500])
        // A (due at 1 500) and B (due at 32 000) fire but no longer apply.
        #expect(harness.ignoredFirings.map(\.firedTimer) == [.timerA, .timerB])
        #expect(harness.machine.state == .proceeding)
    }

    @Test("a non-2xx final is ACKed, goes up once; D absorbs retransmissions and ACKs them again")
    func nonSuccessFinalAndTimerD() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 700)
        harness.input { $0.receiveResponse(statusCode: 180) }
        harness.run(until: 2_000)
        let final = harness.input { $0.receiveResponse(statusCode: 486) }
        #expect(final.message == .ack)
        #expect(final.delivery == .response(statusCode: 486, isFirstOfKind: true))
        #expect(final.startedTimers == ["timerD=32000"])
        #expect(harness.machine.state == .completed)

        harness.run(until: 3_000)
        let retransmitted = harness.input { $0.receiveResponse(statusCode: 486) }
        #expect(retransmitted == TransactionActions(message: .ack))
        #expect(harness.input { $0.receiveResponse(statusCode: 180) } == .none)
        #expect(harness.input { $0.receiveResponse(statusCode: 200) } == .none)
        harness.run(until: 40_000)

        #expect(harness.times(of: .ack) == [2_000, 3_000])
        #expect(harness.terminationTimes == [34_000])
        #expect(harness.log.last?.firedTimer == .timerD)
        #expect(harness.machine.state == .terminated)
        #expect(harness.input { $0.receiveResponse(statusCode: 486) } == .none)
    }

    @Test("Timer D is zero on a reliable transport: the final response terminates at once")
    func reliableFinalTerminates() {
        var transaction = ClientInviteTransaction(reliableTransport: true)
        _ = transaction.start()
        let final = transaction.receiveResponse(statusCode: 603)
        #expect(
            final
                == TransactionActions(
                    message: .ack,
                    delivery: .response(statusCode: 603, isFirstOfKind: true),
                    isTerminated: true
                )
        )
        #expect(transaction.state == .terminated)
    }

    @Test("a 2xx enters Accepted: later 2xx go up, other responses are absorbed, M terminates")
    func acceptedStateAndTimerM() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 1_000)
        let success = harness.input { $0.receiveResponse(statusCode: 200) }
        #expect(success.message == nil)
        #expect(success.delivery == .response(statusCode: 200, isFirstOfKind: true))
        #expect(success.startedTimers == ["timerM=32000"])
        #expect(harness.machine.state == .accepted)

        harness.run(until: 5_000)
        #expect(
            harness.input { $0.receiveResponse(statusCode: 200) }.delivery
                == .response(statusCode: 200, isFirstOfKind: false)
        )
        #expect(
            harness.input { $0.receiveResponse(statusCode: 202) }.delivery
                == .response(statusCode: 202, isFirstOfKind: false)
        )
        #expect(harness.input { $0.receiveResponse(statusCode: 183) } == .none)
        #expect(harness.input { $0.receiveResponse(statusCode: 486) } == .none)
        #expect(harness.input { $0.transportError() } == .none)
        harness.run(until: 40_000)

        #expect(harness.times(of: .requestRetransmission) == [500])
        #expect(harness.terminationTimes == [33_000])
        #expect(harness.log.last?.firedTimer == .timerM)
    }

    @Test("Timer M runs on reliable transports too")
    func timerMOnReliable() {
        var transaction = ClientInviteTransaction(reliableTransport: true)
        _ = transaction.start()
        #expect(transaction.receiveResponse(statusCode: 200).startedTimers == ["timerM=32000"])
    }

    @Test("Timer C restarts on provisionals other than 100; firing after one asks for a CANCEL")
    func timerCInProceeding() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: true, usesTimerC: true))
        harness.input { $0.start() }
        harness.run(until: 1_000)
        #expect(harness.input { $0.receiveResponse(statusCode: 100) }.timers.isEmpty)
        harness.run(until: 60_000)
        #expect(harness.input { $0.receiveResponse(statusCode: 183) }.startedTimers == ["timerC=180000"])
        harness.run(until: 100_000)
        #expect(harness.input { $0.receiveResponse(statusCode: 100) }.timers.isEmpty)
        harness.run(until: 300_000)

        #expect(harness.times(of: .cancel) == [240_000])
        #expect(harness.machine.cancellation == .sent)
        #expect(harness.times(of: .timeout(.cancelGuard)) == [272_000])
        #expect(harness.terminationTimes == [272_000])
        // B (32 s) and the superseded first C (180 s) were ignored.
        #expect(harness.ignoredFirings.map(\.time) == [32_000, 180_000])
    }

    @Test("Timer C before any provisional times the transaction out like a 408")
    func timerCInCalling() {
        let settings = TimerSettings(timerCMilliseconds: 20_000)
        var harness = TransactionHarness(
            ClientInviteTransaction(reliableTransport: false, usesTimerC: true, settings: settings)
        )
        harness.input { $0.start() }
        harness.run(until: 40_000)
        #expect(harness.times(of: .timeout(.timerC)) == [20_000])
        #expect(harness.terminationTimes == [20_000])
        #expect(harness.times(of: .requestRetransmission) == [500, 1_500, 3_500, 7_500, 15_500])
    }

    @Test("a final response in time makes the cancel guard stale")
    func cancelThenFinal() {
        var harness = TransactionHarness(ClientInviteTransaction(reliableTransport: false, usesTimerC: true))
        harness.input { $0.start() }
        harness.run(until: 200)
        // §9.1: no CANCEL before a provisional response.
        #expect(harness.input { $0.cancel() } == .none)
        #expect(harness.machine.cancellation == .awaitingProvisional)
        #expect(harness.input { $0.cancel() } == .none)
        harness.run(until: 800)
        let provisional = harness.input { $0.receiveResponse(statusCode: 180) }
        #expect(provisional.message == .cancel)
        #expect(provisional.delivery == .response(statusCode: 180, isFirstOfKind: true))
        #expect(provisional.startedTimers == ["timerC=180000", "cancelGuard=32000"])
        #expect(harness.input { $0.cancel() } == .none)
        harness.run(until: 1_500)
        let terminated = harness.input { $0.receiveResponse(statusCode: 487) }
        #expect(terminated.message == .ack)
        #expect(terminated.delivery == .response(statusCode: 487, isFirstOfKind: true))
        harness.run(until: 200_000)

        #expect(harness.times(of: .cancel) == [800])
        #expect(harness.log.compactMap(\.actions.failure).isEmpty)
        #expect(harness.terminationTimes == [33_500])
        #expect(harness.effectiveFirings.map(\.firedTimer) == [.timerA, .timerD])
    }

    @Test("cancel in Proceeding sends the CANCEL at once; it has no effect after a final")
    func cancelInProceeding() {
        var transaction = ClientInviteTransaction(reliableTransport: true)
        #expect(transaction.cancel() == .none)
        #expect(transaction.cancellation == .notRequested)
        _ = transaction.start()
        _ = transaction.receiveResponse(statusCode: 183)
        let actions = transaction.cancel()
        #expect(actions.message == .cancel)
        #expect(actions.startedTimers == ["cancelGuard=32000"])
        #expect(transaction.cancel() == .none)

        var answered = ClientInviteTransaction(reliableTransport: true)
        _ = answered.start()
        _ = answered.receiveResponse(statusCode: 200)
        #expect(answered.cancel() == .none)
        #expect(answered.cancellation == .notRequested)
    }

    @Test("a pending cancel is dropped when a final response comes first")
    func pendingCancelThenFinal() {
        var transaction = ClientInviteTransaction(reliableTransport: true)
        _ = transaction.start()
        _ = transaction.cancel()
        let final = transaction.receiveResponse(statusCode: 200)
        #expect(final.message == nil)
        #expect(transaction.state == .accepted)
    }

    @Test("stale and replayed timers are ignored")
    func staleTimers() throws {
        var transaction = ClientInviteTransaction(reliableTransport: false, usesTimerC: true)
        let started = transaction.start()
        let timerA = try #require(started.timers.first { $0.timer.kind == .timerA }).timer
        let timerB = try #require(started.timers.first { $0.timer.kind == .timerB }).timer
        let timerC = try #require(started.timers.first { $0.timer.kind == .timerC }).timer

        let retransmit = transaction.timerFired(timerA)
        #expect(retransmit.message == .requestRetransmission)
        #expect(transaction.timerFired(timerA) == .none)  // the same arming cannot fire twice

        let restarted = transaction.receiveResponse(statusCode: 180).timers[0].timer
        #expect(transaction.timerFired(timerC) == .none)  // superseded by the 180
        #expect(transaction.timerFired(timerB) == .none)  // B does not apply in Proceeding
        #expect(transaction.timerFired(restarted).message == .cancel)
    }

    @Test("transport errors terminate Calling, Proceeding and Completed with a report")
    func transportErrors() {
        for responses in [[], [180], [180, 404]] {
            var transaction = ClientInviteTransaction(reliableTransport: false)
            _ = transaction.start()
            for code in responses { _ = transaction.receiveResponse(statusCode: code) }
            #expect(transaction.transportError() == TransactionActions(failure: .transportError, isTerminated: true))
            #expect(transaction.state == .terminated)
            #expect(transaction.transportError() == .none)
        }
        var idle = ClientInviteTransaction(reliableTransport: false)
        #expect(idle.transportError() == .none)
    }

    @Test("status codes outside 100...699 and responses before start are ignored")
    func invalidInputs() {
        var transaction = ClientInviteTransaction(reliableTransport: false)
        #expect(transaction.receiveResponse(statusCode: 200) == .none)
        #expect(transaction.state == .idle)
        _ = transaction.start()
        #expect(transaction.receiveResponse(statusCode: 99) == .none)
        #expect(transaction.receiveResponse(statusCode: 700) == .none)
        #expect(transaction.state == .calling)
    }

    @Test("full state sequence: calling, proceeding, completed, terminated")
    func fullSequence() {
        var transaction = ClientInviteTransaction(reliableTransport: false)
        var states = [transaction.state]
        _ = transaction.start(); states.append(transaction.state)
        _ = transaction.receiveResponse(statusCode: 180); states.append(transaction.state)
        let final = transaction.receiveResponse(statusCode: 404); states.append(transaction.state)
        _ = transaction.timerFired(final.timers[0].timer); states.append(transaction.state)
        #expect(states == [.idle, .calling, .proceeding, .completed, .terminated])
    }
}
