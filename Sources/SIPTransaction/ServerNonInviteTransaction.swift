/// The server non-INVITE transaction of RFC 3261 §17.2.2.
///
/// ```
///          start        1xx from TU              200-699 from TU: J (0 on reliable)
///   idle ───────▶ trying ───────────▶ proceeding ─────────────────────────▶ completed ──J──▶ terminated
///                  │ request: absorbed  │ request: resend last 1xx          └ request: resend final
///                  └──────────── 200-699 from TU ─────────────────────▶ completed
/// ```
public struct ServerNonInviteTransaction: Sendable {
    /// The states of Figure 8, and `idle` before ``start()``.
    public enum State: Hashable, Sendable {
        case idle, trying, proceeding, completed, terminated
    }

    /// The current state.
    public private(set) var state: State = .idle
    /// The status code of the most recent response sent, which retransmissions repeat.
    public private(set) var lastResponseStatusCode: Int?
    /// Whether the request arrived over a reliable transport: Timer J is 0.
    public let isReliableTransport: Bool
    /// The timer values in use.
    public let settings: TimerSettings

    private var armed = ArmedTimers()

    /// Creates a transaction for a newly received request, in the `idle` state; call ``start()``.
    public init(reliableTransport: Bool, settings: TimerSettings = TimerSettings()) {
        self.isReliableTransport = reliableTransport
        self.settings = settings
    }

    /// Takes the request in: enters Trying. Nothing is sent (§16.2: no 100 for non-INVITE requests).
    public mutating func start() -> TransactionActions {
        if state == .idle { state = .trying }
        return .none
    }

    /// The request arrived again: absorbed while Trying, answered with the last response afterwards.
    public mutating func receiveRequestRetransmission() -> TransactionActions {
        switch state {
        case .proceeding, .completed:
            guard let last = lastResponseStatusCode else { return .none }
            return TransactionActions(message: .responseRetransmission(statusCode: last))
        case .idle, .trying, .terminated:
            return .none
        }
    }

    /// The TU passes a response down: provisionals and the first final are sent; anything after the
    /// final (or a code outside 100...699) is discarded, `message` staying nil.
    public mutating func sendResponse(statusCode: Int) -> TransactionActions {
        guard (100...699).contains(statusCode) else { return .none }
        switch state {
        case .trying, .proceeding:
            lastResponseStatusCode = statusCode
            var actions = TransactionActions(message: .response(statusCode: statusCode))
            guard statusCode >= 200 else {
                state = .proceeding
                return actions
            }
            state = .completed
            let timerJ = settings.initialMilliseconds(of: .timerJ, reliable: isReliableTransport)
            if timerJ > 0 {
                actions.start(.timerJ, after: timerJ, in: &armed)
            } else {
                terminate(&actions)
            }
            return actions
        case .idle, .completed, .terminated:
            return .none
        }
    }

    /// A timer this transaction started has fired; stale timers are ignored.
    public mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions {
        guard armed.consume(timer), timer.kind == .timerJ, state == .completed else { return .none }
        var actions = TransactionActions()
        terminate(&actions)
        return actions
    }

    /// The transport failed to send a response: the TU is told and the transaction ends.
    public mutating func transportError() -> TransactionActions {
        switch state {
        case .trying, .proceeding, .completed:
            var actions = TransactionActions(failure: .transportError)
            terminate(&actions)
            return actions
        case .idle, .terminated:
            return .none
        }
    }

    private mutating func terminate(_ actions: inout TransactionActions) {
        state = .terminated
        armed = ArmedTimers()
        actions.isTerminated = true
    }
}
