import SIPTransaction
import Testing

@Suite("Client non-INVITE transaction (RFC 3261 §17.1.2)")
struct ClientNonInviteTransactionTests {
    @Test("Timer E doubles up to T2 while Trying; Timer F times out at 64·T1")
    func timerECappedAtT2() {
        var harness = TransactionHarness(ClientNonInviteTransaction(reliableTransport: false))
        let started = harness.input { $0.start() }
        #expect(started.message == .request)
        #expect(started.startedTimers == ["timerE=500", "timerF=32000"])
        harness.run(until: 40_000)

        #expect(
            harness.times(of: .requestRetransmission)
                == [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        )
        #expect(harness.times(of: .timeout(.timerF)) == [32_000])
        #expect(harness.terminationTimes == [32_000])
        #expect(harness.ignoredFirings.map(\.firedTimer) == [.timerE])
    }

    @Test("after a provisional, Timer E retransmits every T2")
    func timerEInProceeding() {
        var harness = TransactionHarness(ClientNonInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 600)
        let provisional = harness.input { $0.receiveResponse(statusCode: 100) }
        #expect(provisional == TransactionActions(delivery: .response(statusCode: 100, isFirstOfKind: true)))
        #expect(harness.machine.state == .proceeding)
        #expect(
            harness.input { $0.receiveResponse(statusCode: 180) }.delivery
                == .response(statusCode: 180, isFirstOfKind: false)
        )
        harness.run(until: 40_000)

        // The E armed at 500 for 1 000 ms fires at 1 500; from then on every T2.
        #expect(
            harness.times(of: .requestRetransmission)
                == [500, 1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500]
        )
        #expect(harness.times(of: .timeout(.timerF)) == [32_000])
    }

    @Test("a final response goes up once; K absorbs retransmissions, then terminates")
    func finalAndTimerK() {
        var harness = TransactionHarness(ClientNonInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 2_000)
        let final = harness.input { $0.receiveResponse(statusCode: 200) }
        #expect(final.delivery == .response(statusCode: 200, isFirstOfKind: true))
        #expect(final.startedTimers == ["timerK=5000"])
        #expect(harness.machine.state == .completed)
        harness.run(until: 3_000)
        #expect(harness.input { $0.receiveResponse(statusCode: 200) } == .none)
        #expect(harness.input { $0.receiveResponse(statusCode: 100) } == .none)
        #expect(harness.input { $0.transportError() } == .none)
        harness.run(until: 40_000)

        #expect(harness.times(of: .requestRetransmission) == [500, 1_500])
        #expect(harness.terminationTimes == [7_000])
        #expect(harness.log.compactMap(\.actions.failure).isEmpty)
        #expect(harness.ignoredFirings.map(\.firedTimer) == [.timerE, .timerF])
    }

    @Test("reliable transport: no Timer E, K is zero")
    func reliable() {
        var harness = TransactionHarness(ClientNonInviteTransaction(reliableTransport: true))
        #expect(harness.input { $0.start() }.startedTimers == ["timerF=32000"])
        harness.run(until: 10_000)
        #expect(harness.times(of: .requestRetransmission).isEmpty)
        let final = harness.input { $0.receiveResponse(statusCode: 404) }
        #expect(
            final == TransactionActions(delivery: .response(statusCode: 404, isFirstOfKind: true), isTerminated: true)
        )
        harness.run(until: 40_000)
        #expect(harness.ignoredFirings.map(\.firedTimer) == [.timerF])
    }

    @Test("reliable transport without a response: F times out")
    func reliableTimeout() {
        var harness = TransactionHarness(ClientNonInviteTransaction(reliableTransport: true))
        harness.input { $0.start() }
        harness.run(until: 40_000)
        #expect(harness.times(of: .timeout(.timerF)) == [32_000])
        #expect(harness.machine.state == .terminated)
    }

    @Test("transport errors terminate Trying and Proceeding with a report")
    func transportErrors() {
        for responses in [[], [100]] {
            var transaction = ClientNonInviteTransaction(reliableTransport: false)
            _ = transaction.start()
            for code in responses { _ = transaction.receiveResponse(statusCode: code) }
            #expect(transaction.transportError() == TransactionActions(failure: .transportError, isTerminated: true))
            #expect(transaction.state == .terminated)
        }
    }

    @Test("stale timers and invalid inputs are ignored")
    func staleAndInvalid() throws {
        var transaction = ClientNonInviteTransaction(reliableTransport: false)
        #expect(transaction.receiveResponse(statusCode: 200) == .none)
        let started = transaction.start()
        #expect(transaction.start() == .none)
        let timerE = try #require(started.timers.first).timer
        #expect(transaction.receiveResponse(statusCode: 1_000) == .none)
        _ = transaction.receiveResponse(statusCode: 500)
        #expect(transaction.timerFired(timerE) == .none)
        #expect(transaction.state == .completed)
    }

    @Test("full state sequence: trying, proceeding, completed, terminated")
    func fullSequence() {
        var transaction = ClientNonInviteTransaction(reliableTransport: false)
        var states = [transaction.state]
        _ = transaction.start(); states.append(transaction.state)
        _ = transaction.receiveResponse(statusCode: 100); states.append(transaction.state)
        let final = transaction.receiveResponse(statusCode: 200); states.append(transaction.state)
        _ = transaction.timerFired(final.timers[0].timer); states.append(transaction.state)
        #expect(states == [.idle, .trying, .proceeding, .completed, .terminated])
    }
}
