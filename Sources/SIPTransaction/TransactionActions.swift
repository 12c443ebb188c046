/// A message a transaction asks its owner to put on the wire.
public enum TransactionMessage: Hashable, Sendable {
    /// Client: send the request for the first time.
    case request
    /// Client: send the request again (Timers A and E).
    case requestRetransmission
    /// Client INVITE: send the hop-by-hop ACK for the non-2xx final response just received
    /// (again for each retransmission of that response).
    case ack
    /// Client INVITE: cancel this INVITE by starting a CANCEL client transaction for it (§9.1).
    case cancel
    /// Server: send this response: the TU's, or the 100 (Trying) a proxy's INVITE transaction makes itself.
    case response(statusCode: Int)
    /// Server: send the most recent response again (a request retransmission or Timer G).
    case responseRetransmission(statusCode: Int)
}

/// Something a transaction hands up to its transaction user (TU).
public enum TransactionDelivery: Hashable, Sendable {
    /// Client: a response for the TU. `isFirstOfKind` is true for the first provisional and for the
    /// first final response; later ones (more provisionals, 2xx retransmissions or 2xx from other
    /// forks in the RFC 6026 Accepted state) are false.
    case response(statusCode: Int, isFirstOfKind: Bool)
    /// Server INVITE: an ACK that arrived in the Accepted state (RFC 6026), for the TU.
    case ack
}

/// A failure a transaction reports to its TU; the transaction is terminated with it.
public enum TransactionFailure: Hashable, Sendable {
    /// The named timer expired without the awaited message: B, F or C (the TU answers 408 or picks
    /// the best response), H (the ACK never came), or the wait after a CANCEL.
    case timeout(TransactionTimer.Kind)
    /// The transport could not send a message for this transaction (§17.1.4, §17.2.4).
    case transportError
}

/// Everything one input asks of the owner, in this order: send ``message``, hand ``delivery`` up,
/// report ``failure``, start ``timers``; then drop the transaction if ``isTerminated``.
///
/// A small inline value: producing it never allocates.
public struct TransactionActions: Hashable, Sendable {
    /// A message to send, if any.
    public var message: TransactionMessage?
    /// A response or ACK to hand to the TU, if any.
    public var delivery: TransactionDelivery?
    /// A failure to report to the TU, if any.
    public var failure: TransactionFailure?
    /// Timers to start.
    public var timers: TimerStarts
    /// Whether the transaction reached the Terminated state with this input.
    public var isTerminated: Bool

    /// Nothing to do: the input was absorbed or did not apply.
    public static let none = TransactionActions()

    /// Creates a set of actions; by default nothing to do.
    public init(
        message: TransactionMessage? = nil,
        delivery: TransactionDelivery? = nil,
        failure: TransactionFailure? = nil,
        timers: TimerStarts = TimerStarts(),
        isTerminated: Bool = false
    ) {
        self.message = message
        self.delivery = delivery
        self.failure = failure
        self.timers = timers
        self.isTerminated = isTerminated
    }

    /// Whether there is nothing to do.
    public var isEmpty: Bool {
        message == nil && delivery == nil && failure == nil && timers.isEmpty && !isTerminated
    }
}

extension TransactionActions {
    /// Arms `kind` for `milliseconds` in `armed` and adds its start to these actions.
    mutating func start(_ kind: TransactionTimer.Kind, after milliseconds: Int, in armed: inout ArmedTimers) {
        timers.append(TimerStart(timer: armed.arm(kind), milliseconds: milliseconds))
    }
}
