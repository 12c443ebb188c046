/// How long a proxy keeps a dialog in each phase, in milliseconds.
public struct DialogSettings: Hashable, Sendable {
    /// T1 (RFC 3261 default 500 ms): a 2xx not ACKed within 64·T1 ends the dialog.
    public var t1Milliseconds: Int
    /// How long the INVITE may go without a final response (initial and early states).
    public var earlyLifetimeMilliseconds: Int
    /// How long a confirmed dialog lives without a BYE; restarted by each 2xx to a re-INVITE or UPDATE.
    public var lifetimeMilliseconds: Int

    /// Creates settings. The defaults: T1 500 ms, 5 minutes for the early phase (beyond a proxy's
    /// Timer C plus the wait after its CANCEL), 12 hours for a confirmed dialog without refresh.
    /// - Precondition: every value is positive.
    public init(
        t1Milliseconds: Int = 500,
        earlyLifetimeMilliseconds: Int = 300_000,
        lifetimeMilliseconds: Int = 43_200_000
    ) {
        precondition(
            t1Milliseconds > 0 && earlyLifetimeMilliseconds > 0 && lifetimeMilliseconds > 0,
            "dialog durations must be positive"
        )
        self.t1Milliseconds = t1Milliseconds
        self.earlyLifetimeMilliseconds = earlyLifetimeMilliseconds
        self.lifetimeMilliseconds = lifetimeMilliseconds
    }

    /// 64·T1: how long a 2xx to the initial INVITE may wait for its ACK.
    public var ackTimeoutMilliseconds: Int { 64 * t1Milliseconds }
}
