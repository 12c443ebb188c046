/// The client non-INVITE transaction of RFC 3261 §17.1.2 (also the one that carries a CANCEL).
///
/// ```
///          start          1xx                        200-699: K (0 on reliable)
///   idle ───────▶ trying ─────▶ proceeding ─────────────────────────▶ completed ──K──▶ terminated
///                  │ E: retransmit, interval doubles up to T2          └ responses absorbed
///                  │ F: timeout         (Proceeding: E every T2)
///                  └──────── 200-699 ─────────────────────────▶ completed
/// ```
public struct ClientNonInviteTransaction: Sendable {
    /// The states of Figure 6, and `idle` before ``start()``.
    public enum State: Hashable, Sendable {
        case idle, trying, proceeding, completed, terminated
    }

    /// The current state.
    public private(set) var state: State = .idle
    /// Whether the request travels over a reliable transport: no Timer E, Timer K is 0.
    public let isReliableTransport: Bool
    /// The timer values in use.
    public let settings: TimerSettings

    private var armed = ArmedTimers()
    private var timerEInterval = 0

    /// Creates a transaction in the `idle` state; call ``start()`` to send the request.
    public init(reliableTransport: Bool, settings: TimerSettings = TimerSettings()) {
        self.isReliableTransport = reliableTransport
        self.settings = settings
    }

    /// Sends the request: enters Trying and starts Timers E (unreliable) and F.
    public mutating func start() -> TransactionActions {
        guard state == .idle else { return .none }
        state = .trying
        var actions = TransactionActions(message: .request)
        if !isReliableTransport {
            timerEInterval = settings.t1Milliseconds
            actions.start(.timerE, after: timerEInterval, in: &armed)
        }
        actions.start(.timerF, after: settings.transactionTimeoutMilliseconds, in: &armed)
        return actions
    }

    /// A response arrived (status codes outside 100...699 are ignored): provisionals and the first
    /// final go up to the TU; final-response retransmissions in Completed are absorbed.
    public mutating func receiveResponse(statusCode: Int) -> TransactionActions {
        guard (100...699).contains(statusCode) else { return .none }
        switch state {
        case .trying, .proceeding:
            if statusCode < 200 {
                let isFirst = state == .trying
                state = .proceeding
                return TransactionActions(delivery: .response(statusCode: statusCode, isFirstOfKind: isFirst))
            }
            state = .completed
            armed.disarm(.timerE)
            armed.disarm(.timerF)
            var actions = TransactionActions(delivery: .response(statusCode: statusCode, isFirstOfKind: true))
            let timerK = settings.initialMilliseconds(of: .timerK, reliable: isReliableTransport)
            if timerK > 0 {
                actions.start(.timerK, after: timerK, in: &armed)
            } else {
                terminate(&actions)
            }
            return actions
        case .idle, .completed, .terminated:
            return .none
        }
    }

    /// A timer this transaction started has fired; stale or superseded timers are ignored.
    public mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions {
        guard armed.consume(timer) else { return .none }
        var actions = TransactionActions()
        switch (timer.kind, state) {
        case (.timerE, .trying), (.timerE, .proceeding):
            actions.message = .requestRetransmission
            // §17.1.2.2: doubling up to T2 while Trying, every T2 once a provisional arrived.
            timerEInterval =
                state == .trying ? min(2 * timerEInterval, settings.t2Milliseconds) : settings.t2Milliseconds
            actions.start(.timerE, after: timerEInterval, in: &armed)
        case (.timerF, .trying), (.timerF, .proceeding):
            actions.failure = .timeout(.timerF)
            terminate(&actions)
        case (.timerK, .completed):
            terminate(&actions)
        default:
            break
        }
        return actions
    }

    /// The transport failed to send the request: the TU is told and the transaction ends.
    public mutating func transportError() -> TransactionActions {
        switch state {
        case .trying, .proceeding:
            var actions = TransactionActions(failure: .transportError)
            terminate(&actions)
            return actions
        case .idle, .completed, .terminated:
            return .none
        }
    }

    private mutating func terminate(_ actions: inout TransactionActions) {
        state = .terminated
        armed = ArmedTimers()
        actions.isTerminated = true
    }
}
