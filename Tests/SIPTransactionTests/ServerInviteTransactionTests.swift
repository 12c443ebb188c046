import SIPTransaction
import Testing

@Suite("Server INVITE transaction (RFC 3261 §17.2.1, RFC 6026)")
struct ServerInviteTransactionTests {
    @Test("a proxy sends 100 Trying at once; retransmitted INVITEs get the last response")
    func tryingAndRetransmissions() {
        var transaction = ServerInviteTransaction(reliableTransport: false)
        #expect(transaction.start() == TransactionActions(message: .response(statusCode: 100)))
        #expect(transaction.state == .proceeding)
        #expect(transaction.start() == .none)
        #expect(
            transaction.receiveRequestRetransmission()
                == TransactionActions(message: .responseRetransmission(statusCode: 100))
        )
        #expect(transaction.sendResponse(statusCode: 180) == TransactionActions(message: .response(statusCode: 180)))
        #expect(
            transaction.receiveRequestRetransmission()
                == TransactionActions(message: .responseRetransmission(statusCode: 180))
        )
        #expect(transaction.lastResponseStatusCode == 180)
        #expect(transaction.receiveACK() == .none)
        #expect(transaction.state == .proceeding)
    }

    @Test("without an immediate 100, retransmissions are absorbed until the TU responds")
    func noImmediateTrying() {
        var transaction = ServerInviteTransaction(reliableTransport: false, sendsTryingImmediately: false)
        #expect(transaction.start() == .none)
        #expect(transaction.receiveRequestRetransmission() == .none)
        _ = transaction.sendResponse(statusCode: 183)
        #expect(transaction.receiveRequestRetransmission().message == .responseRetransmission(statusCode: 183))
    }

    @Test("Timer G doubles up to T2 until the ACK; Confirmed absorbs; Timer I terminates")
    func timerGUntilACKThenTimerI() {
        var harness = TransactionHarness(ServerInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 1_000)
        let final = harness.input { $0.sendResponse(statusCode: 486) }
        #expect(final.message == .response(statusCode: 486))
        #expect(final.startedTimers == ["timerG=500", "timerH=32000"])
        #expect(harness.machine.state == .completed)
        harness.run(until: 10_000)
        #expect(harness.input { $0.receiveRequestRetransmission() }.message == .responseRetransmission(statusCode: 486))
        #expect(harness.input { $0.sendResponse(statusCode: 200) } == .none)
        harness.run(until: 14_000)
        let ack = harness.input { $0.receiveACK() }
        #expect(ack.startedTimers == ["timerI=5000"])
        #expect(harness.machine.state == .confirmed)
        #expect(harness.input { $0.receiveACK() } == .none)
        #expect(harness.input { $0.receiveRequestRetransmission() } == .none)
        harness.run(until: 40_000)

        #expect(
            harness.times(of: .responseRetransmission(statusCode: 486)) == [1_500, 2_500, 4_500, 8_500, 10_000, 12_500]
        )
        #expect(harness.terminationTimes == [19_000])
        #expect(harness.effectiveFirings.last?.firedTimer == .timerI)
        #expect(harness.ignoredFirings.map(\.firedTimer) == [.timerG, .timerH])
        #expect(harness.log.compactMap(\.actions.failure).isEmpty)
    }

    @Test("Timer H: no ACK within 64·T1 is a failure")
    func timerHWithoutACK() {
        var harness = TransactionHarness(ServerInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.input { $0.sendResponse(statusCode: 503) }
        harness.run(until: 40_000)
        #expect(
            harness.times(of: .responseRetransmission(statusCode: 503))
                == [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        )
        #expect(harness.times(of: .timeout(.timerH)) == [32_000])
        #expect(harness.terminationTimes == [32_000])
        #expect(harness.machine.state == .terminated)
        #expect(harness.input { $0.receiveACK() } == .none)
    }

    @Test("reliable transport: no Timer G, H still runs, the ACK terminates at once (I is zero)")
    func reliable() {
        var transaction = ServerInviteTransaction(reliableTransport: true)
        _ = transaction.start()
        #expect(transaction.sendResponse(statusCode: 404).startedTimers == ["timerH=32000"])
        #expect(transaction.receiveACK() == TransactionActions(isTerminated: true))
        #expect(transaction.state == .terminated)
    }

    @Test("2xx enters Accepted: more 2xx are sent, requests absorbed, ACKs go up, L terminates")
    func acceptedAndTimerL() {
        var harness = TransactionHarness(ServerInviteTransaction(reliableTransport: false))
        harness.input { $0.start() }
        harness.run(until: 2_000)
        let success = harness.input { $0.sendResponse(statusCode: 200) }
        #expect(success.message == .response(statusCode: 200))
        #expect(success.startedTimers == ["timerL=32000"])
        #expect(harness.machine.state == .accepted)
        harness.run(until: 3_000)
        #expect(harness.input { $0.sendResponse(statusCode: 200) }.message == .response(statusCode: 200))
        #expect(harness.input { $0.sendResponse(statusCode: 180) } == .none)
        #expect(harness.input { $0.sendResponse(statusCode: 486) } == .none)
        #expect(harness.input { $0.receiveRequestRetransmission() } == .none)
        #expect(harness.input { $0.receiveACK() } == TransactionActions(delivery: .ack))
        harness.run(until: 40_000)
        #expect(harness.terminationTimes == [34_000])
        #expect(harness.log.last?.firedTimer == .timerL)
    }

    @Test("stale timers are ignored: G after the ACK, a replayed H")
    func staleTimers() throws {
        var transaction = ServerInviteTransaction(reliableTransport: false)
        _ = transaction.start()
        let final = transaction.sendResponse(statusCode: 480)
        let timerG = try #require(final.timers.first { $0.timer.kind == .timerG }).timer
        let timerH = try #require(final.timers.first { $0.timer.kind == .timerH }).timer
        let nextG = transaction.timerFired(timerG)
        #expect(nextG.message == .responseRetransmission(statusCode: 480))
        #expect(nextG.startedTimers == ["timerG=1000"])
        #expect(transaction.timerFired(timerG) == .none)
        _ = transaction.receiveACK()
        #expect(transaction.timerFired(nextG.timers[0].timer) == .none)
        #expect(transaction.timerFired(timerH) == .none)
        #expect(transaction.state == .confirmed)
    }

    @Test("transport errors terminate Proceeding, Completed and Accepted with a report")
    func transportErrors() {
        for responses in [[], [486], [200]] {
            var transaction = ServerInviteTransaction(reliableTransport: false)
            _ = transaction.start()
            for code in responses { _ = transaction.sendResponse(statusCode: code) }
            #expect(transaction.transportError() == TransactionActions(failure: .transportError, isTerminated: true))
            #expect(transaction.state == .terminated)
        }
        var confirmed = ServerInviteTransaction(reliableTransport: false)
        _ = confirmed.start()
        _ = confirmed.sendResponse(statusCode: 486)
        _ = confirmed.receiveACK()
        #expect(confirmed.transportError() == .none)
    }

    @Test("invalid status codes are refused")
    func invalidStatusCodes() {
        var transaction = ServerInviteTransaction(reliableTransport: false)
        _ = transaction.start()
        #expect(transaction.sendResponse(statusCode: 42) == .none)
        #expect(transaction.sendResponse(statusCode: 700) == .none)
        #expect(transaction.state == .proceeding)
    }

    @Test("full state sequence: proceeding, completed, confirmed, terminated")
    func fullSequence() {
        var transaction = ServerInviteTransaction(reliableTransport: false)
        var states = [transaction.state]
        _ = transaction.start(); states.append(transaction.state)
        _ = transaction.sendResponse(statusCode: 183); states.append(transaction.state)
        _ = transaction.sendResponse(statusCode: 487); states.append(transaction.state)
        let ack = transaction.receiveACK(); states.append(transaction.state)
        _ = transaction.timerFired(ack.timers[0].timer); states.append(transaction.state)
        #expect(states == [.idle, .proceeding, .proceeding, .completed, .confirmed, .terminated])
    }
}
