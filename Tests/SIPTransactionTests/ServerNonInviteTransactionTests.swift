import SIPTransaction
import Testing

@Suite("Server non-INVITE transaction (RFC 3261 §17.2.2)")
struct ServerNonInviteTransactionTests {
    @Test("Trying absorbs, Proceeding and Completed resend the last response; J terminates")
    func lifecycleAndTimerJ() {
        var harness = TransactionHarness(ServerNonInviteTransaction(reliableTransport: false))
        #expect(harness.input { $0.start() } == .none)
        #expect(harness.machine.state == .trying)
        #expect(harness.input { $0.receiveRequestRetransmission() } == .none)
        #expect(
            harness.input { $0.sendResponse(statusCode: 100) }
                == TransactionActions(message: .response(statusCode: 100))
        )
        #expect(harness.machine.state == .proceeding)
        #expect(harness.input { $0.receiveRequestRetransmission() }.message == .responseRetransmission(statusCode: 100))
        harness.run(until: 1_000)
        let final = harness.input { $0.sendResponse(statusCode: 200) }
        #expect(final.message == .response(statusCode: 200))
        #expect(final.startedTimers == ["timerJ=32000"])
        #expect(harness.machine.state == .completed)
        harness.run(until: 20_000)
        #expect(harness.input { $0.receiveRequestRetransmission() }.message == .responseRetransmission(statusCode: 200))
        #expect(harness.input { $0.sendResponse(statusCode: 500) } == .none)
        #expect(harness.machine.lastResponseStatusCode == 200)
        harness.run(until: 40_000)
        #expect(harness.terminationTimes == [33_000])
        #expect(harness.log.last?.firedTimer == .timerJ)
        #expect(harness.input { $0.receiveRequestRetransmission() } == .none)
    }

    @Test("a final response straight from Trying; J is zero on a reliable transport")
    func reliableFinal() {
        var transaction = ServerNonInviteTransaction(reliableTransport: true)
        _ = transaction.start()
        #expect(
            transaction.sendResponse(statusCode: 202)
                == TransactionActions(message: .response(statusCode: 202), isTerminated: true)
        )
        #expect(transaction.state == .terminated)
        #expect(transaction.sendResponse(statusCode: 200) == .none)
    }

    @Test("transport errors terminate with a report; stale J is ignored")
    func transportErrorAndStaleTimer() {
        var transaction = ServerNonInviteTransaction(reliableTransport: false)
        _ = transaction.start()
        let final = transaction.sendResponse(statusCode: 481)
        #expect(transaction.transportError() == TransactionActions(failure: .transportError, isTerminated: true))
        #expect(transaction.timerFired(final.timers[0].timer) == .none)
        #expect(transaction.transportError() == .none)
    }

    @Test("inputs before start are ignored")
    func beforeStart() {
        var transaction = ServerNonInviteTransaction(reliableTransport: false)
        #expect(transaction.sendResponse(statusCode: 200) == .none)
        #expect(transaction.receiveRequestRetransmission() == .none)
        #expect(transaction.transportError() == .none)
        #expect(transaction.state == .idle)
    }
}
