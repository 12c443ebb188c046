/// One armed transaction timer: which RFC 3261 timer it is and the arming it belongs to.
///
/// A state machine hands a `TransactionTimer` out in ``TimerStart`` and the owner gives it back to
/// `timerFired(_:)` when the delay has passed. The generation tells a current arming from an older
/// one, so a machine ignores timers that were superseded (Timer C restarted by a provisional) or no
/// longer apply (Timer G after the ACK): owners never need to cancel a transaction timer.
public struct TransactionTimer: Hashable, Sendable {
    /// The RFC 3261 / RFC 6026 timers, plus the wait for a final response after a CANCEL.
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable {
        /// Client INVITE request retransmission (unreliable transports only).
        case timerA
        /// Client INVITE timeout while Calling.
        case timerB
        /// Proxy INVITE timeout (§16.6 step 11), restarted by provisional responses other than 100.
        case timerC
        /// Client INVITE wait in Completed for final-response retransmissions.
        case timerD
        /// Client non-INVITE request retransmission (unreliable transports only).
        case timerE
        /// Client non-INVITE timeout.
        case timerF
        /// Server INVITE final-response retransmission (unreliable transports only).
        case timerG
        /// Server INVITE wait for the ACK.
        case timerH
        /// Server INVITE wait in Confirmed for ACK retransmissions.
        case timerI
        /// Server non-INVITE wait in Completed for request retransmissions.
        case timerJ
        /// Client non-INVITE wait in Completed for response retransmissions.
        case timerK
        /// Server INVITE wait in Accepted for request retransmissions (RFC 6026).
        case timerL
        /// Client INVITE wait in Accepted for 2xx retransmissions and other forks' 2xx (RFC 6026).
        case timerM
        /// Client INVITE wait for a final response after a CANCEL was sent (64·T1, RFC 3261 §9.1).
        case cancelGuard
    }

    /// Which timer this is.
    public let kind: Kind
    /// Which arming of `kind` this is, within one transaction.
    public let generation: UInt32

    init(kind: Kind, generation: UInt32) {
        self.kind = kind
        self.generation = generation
    }
}

/// A request to start a timer: schedule `timer` to fire after `milliseconds`.
public struct TimerStart: Hashable, Sendable {
    /// The timer to pass back to the transaction's `timerFired(_:)`.
    public let timer: TransactionTimer
    /// The delay, in milliseconds; always positive.
    public let milliseconds: Int
}

/// The timers one input starts: at most three (a proxy's INVITE starts A, B and C at once).
///
/// A fixed-capacity collection stored inline, so returning it never allocates.
public struct TimerStarts: RandomAccessCollection, Hashable, Sendable {
    private var first: TimerStart?
    private var second: TimerStart?
    private var third: TimerStart?

    /// The number of timers to start.
    public private(set) var count: Int = 0

    /// An empty list.
    public init() {}

    /// The position of the first timer.
    public var startIndex: Int { 0 }
    /// The position after the last timer.
    public var endIndex: Int { count }

    /// The timer at `position`.
    public subscript(position: Int) -> TimerStart {
        precondition(position >= 0 && position < count, "TimerStarts index out of range")
        switch position {
        case 0: return first!
        case 1: return second!
        default: return third!
        }
    }

    mutating func append(_ start: TimerStart) {
        switch count {
        case 0: first = start
        case 1: second = start
        case 2: third = start
        default: preconditionFailure("a transaction input starts at most three timers")
        }
        count += 1
    }
}

/// The current generation of every timer kind one transaction has armed (0: not armed).
///
/// Stored inline in the state machine; arming bumps one counter, so no allocation is involved.
struct ArmedTimers: Sendable {
    /// One slot per `TransactionTimer.Kind` case, indexed by its raw value.
    private var generations = InlineArray<14, UInt32>(repeating: 0)
    private var lastGeneration: UInt32 = 0

    /// Arms `kind`, superseding any earlier arming of it, and returns the timer to hand out.
    mutating func arm(_ kind: TransactionTimer.Kind) -> TransactionTimer {
        lastGeneration &+= 1
        if lastGeneration == 0 { lastGeneration = 1 }
        generations[Int(kind.rawValue)] = lastGeneration
        return TransactionTimer(kind: kind, generation: lastGeneration)
    }

    /// Forgets `kind`, so a pending firing of it is ignored.
    mutating func disarm(_ kind: TransactionTimer.Kind) {
        generations[Int(kind.rawValue)] = 0
    }

    /// Consumes `timer` if it is the current arming of its kind: true once, false for stale firings.
    mutating func consume(_ timer: TransactionTimer) -> Bool {
        let index = Int(timer.kind.rawValue)
        guard timer.generation != 0, generations[index] == timer.generation else { return false }
        generations[index] = 0
        return true
    }

    /// Whether `kind` is armed.
    func isArmed(_ kind: TransactionTimer.Kind) -> Bool {
        generations[Int(kind.rawValue)] != 0
    }
}
