import SIPTransaction
import Testing

@Suite("Timer settings (RFC 3261 Table 4)")
struct TimerSettingsTests {
    @Test("defaults are the RFC values")
    func defaults() {
        let settings = TimerSettings()
        #expect(settings.t1Milliseconds == 500)
        #expect(settings.t2Milliseconds == 4_000)
        #expect(settings.t4Milliseconds == 5_000)
        #expect(settings.timerDMilliseconds == 32_000)
        #expect(settings.timerCMilliseconds == 180_000)
        #expect(settings.transactionTimeoutMilliseconds == 32_000)
    }

    @Test("each timer on unreliable and reliable transports")
    func perTransport() {
        let settings = TimerSettings(t1Milliseconds: 100, t2Milliseconds: 1_000, t4Milliseconds: 2_000)
        let expected: [TransactionTimer.Kind: (unreliable: Int, reliable: Int)] = [
            .timerA: (100, 0), .timerB: (6_400, 6_400), .timerC: (180_000, 180_000), .timerD: (32_000, 0),
            .timerE: (100, 0), .timerF: (6_400, 6_400), .timerG: (100, 0), .timerH: (6_400, 6_400),
            .timerI: (2_000, 0), .timerJ: (6_400, 0), .timerK: (2_000, 0), .timerL: (6_400, 6_400),
            .timerM: (6_400, 6_400), .cancelGuard: (6_400, 6_400),
        ]
        #expect(expected.count == TransactionTimer.Kind.allCases.count)
        for kind in TransactionTimer.Kind.allCases {
            #expect(settings.initialMilliseconds(of: kind, reliable: false) == expected[kind]?.unreliable, "\(kind)")
            #expect(settings.initialMilliseconds(of: kind, reliable: true) == expected[kind]?.reliable, "\(kind)")
        }
    }

    @Test("a shorter T1 shortens every 64·T1 timer of the machines")
    func customT1() {
        let settings = TimerSettings(t1Milliseconds: 50, t2Milliseconds: 400)
        var transaction = ClientNonInviteTransaction(reliableTransport: false, settings: settings)
        #expect(transaction.start().startedTimers == ["timerE=50", "timerF=3200"])
    }
}
