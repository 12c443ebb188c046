/// The RFC 3261 timer values (§17, Table 4) one transaction layer uses.
///
/// Every duration is in milliseconds. Timers that derive from T1 are computed, so changing T1 (for a
/// low-latency network, say) moves B, F, H, J, L and M with it. `TimerSettings` only holds values: the
/// transaction state machines decide which timers run on which transport.
public struct TimerSettings: Hashable, Sendable {
    /// T1, the round-trip time estimate: the first retransmission interval (RFC default 500 ms).
    public var t1Milliseconds: Int
    /// T2, the cap on non-INVITE request and INVITE response retransmission intervals (RFC default 4 s).
    public var t2Milliseconds: Int
    /// T4, the longest time a message stays in the network (RFC default 5 s); Timers I and K on unreliable transports.
    public var t4Milliseconds: Int
    /// Timer D on unreliable transports: how long a client INVITE transaction absorbs final-response
    /// retransmissions (RFC: at least 32 s; reliable transports use 0).
    public var timerDMilliseconds: Int
    /// Timer C (§16.6 step 11): how long a proxy waits for a final response to a forwarded INVITE;
    /// restarted by every provisional response other than 100. The RFC asks for more than 3 minutes.
    public var timerCMilliseconds: Int

    /// Creates timer settings; the defaults are the RFC 3261 values (Timer C: 180 s).
    /// - Precondition: every value is positive and `t2Milliseconds >= t1Milliseconds`.
    public init(
        t1Milliseconds: Int = 500,
        t2Milliseconds: Int = 4_000,
        t4Milliseconds: Int = 5_000,
        timerDMilliseconds: Int = 32_000,
        timerCMilliseconds: Int = 180_000
    ) {
        precondition(t1Milliseconds > 0 && t4Milliseconds > 0, "T1 and T4 must be positive")
        precondition(t2Milliseconds >= t1Milliseconds, "T2 must not be shorter than T1")
        precondition(timerDMilliseconds > 0 && timerCMilliseconds > 0, "Timers C and D must be positive")
        self.t1Milliseconds = t1Milliseconds
        self.t2Milliseconds = t2Milliseconds
        self.t4Milliseconds = t4Milliseconds
        self.timerDMilliseconds = timerDMilliseconds
        self.timerCMilliseconds = timerCMilliseconds
    }

    /// 64·T1: Timers B, F, H, J, L and M, and the wait for a final response after a CANCEL (§9.1).
    public var transactionTimeoutMilliseconds: Int { 64 * t1Milliseconds }

    /// The first interval of `kind` on the given transport; 0 means the timer does not run there
    /// (A, E and G on reliable transports) or fires at once (D, I, J and K on reliable transports).
    ///
    /// The retransmission timers A, E and G start at T1 and their later intervals are computed by the
    /// state machines (doubling, capped at T2 for E and G).
    public func initialMilliseconds(of kind: TransactionTimer.Kind, reliable: Bool) -> Int {
        switch kind {
        case .timerA, .timerE, .timerG:
            return reliable ? 0 : t1Milliseconds
        case .timerB, .timerF, .timerH, .timerL, .timerM, .cancelGuard:
            return transactionTimeoutMilliseconds
        case .timerJ:
            return reliable ? 0 : transactionTimeoutMilliseconds
        case .timerC:
            return timerCMilliseconds
        case .timerD:
            return reliable ? 0 : timerDMilliseconds
        case .timerI, .timerK:
            return reliable ? 0 : t4Milliseconds
        }
    }
}
