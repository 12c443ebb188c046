/// The server INVITE transaction of RFC 3261 §17.2.1, with the Accepted state of RFC 6026.
///
/// ```
///          start: 100       300-699 from TU: G, H              ACK: I (0 on reliable)
///   idle ──────────▶ proceeding ─────────────▶ completed ───────────────▶ confirmed ──I──▶ terminated
///                     │ 1xx from TU            │ G: resend, doubling ≤ T2  └ ACKs absorbed
///                     │ request: resend last   │ H: timeout (no ACK)
///                     │                        └ request: resend final
///                     └── 2xx from TU: L ──▶ accepted ──L──▶ terminated
///                                             └ 2xx from TU sent, requests absorbed, ACK to the TU
/// ```
public struct ServerInviteTransaction: Sendable {
    /// The states of Figure 7 plus RFC 6026 Accepted, and `idle` before ``start()``.
    public enum State: Hashable, Sendable {
        case idle, proceeding, completed, confirmed, accepted, terminated
    }

    /// The current state.
    public private(set) var state: State = .idle
    /// The status code of the most recent response sent, which retransmissions repeat.
    public private(set) var lastResponseStatusCode: Int?
    /// Whether the INVITE arrived over a reliable transport: no Timer G, Timer I is 0.
    public let isReliableTransport: Bool
    /// Whether ``start()`` sends 100 (Trying) at once, as a proxy does (§16.2, §17.2.1).
    public let sendsTryingImmediately: Bool
    /// The timer values in use.
    public let settings: TimerSettings

    private var armed = ArmedTimers()
    private var timerGInterval = 0

    /// Creates a transaction for a newly received INVITE, in the `idle` state; call ``start()``.
    /// - Parameters:
    ///   - reliableTransport: whether the INVITE arrived over a reliable transport.
    ///   - sendsTryingImmediately: send 100 (Trying) on ``start()``; a UA that answers within 200 ms may not.
    ///   - settings: the timer values.
    public init(
        reliableTransport: Bool,
        sendsTryingImmediately: Bool = true,
        settings: TimerSettings = TimerSettings()
    ) {
        self.isReliableTransport = reliableTransport
        self.sendsTryingImmediately = sendsTryingImmediately
        self.settings = settings
    }

    /// Takes the INVITE in: enters Proceeding and, if configured, sends 100 (Trying).
    public mutating func start() -> TransactionActions {
        guard state == .idle else { return .none }
        state = .proceeding
        guard sendsTryingImmediately else { return .none }
        lastResponseStatusCode = 100
        return TransactionActions(message: .response(statusCode: 100))
    }

    /// The INVITE arrived again: Proceeding and Completed answer with the last response (if any was
    /// sent); Confirmed and Accepted absorb it. The TU never sees retransmissions.
    public mutating func receiveRequestRetransmission() -> TransactionActions {
        switch state {
        case .proceeding, .completed:
            guard let last = lastResponseStatusCode else { return .none }
            return TransactionActions(message: .responseRetransmission(statusCode: last))
        case .idle, .confirmed, .accepted, .terminated:
            return .none
        }
    }

    /// The TU (or, for a proxy, the response context) passes a response down.
    ///
    /// Provisionals and the final response are sent while Proceeding; further 2xx are sent while
    /// Accepted (a proxy relays every 2xx of a forked INVITE). Anything else (a code outside
    /// 100...699, a response after a non-2xx final) is refused: `message` stays nil and nothing is sent.
    public mutating func sendResponse(statusCode: Int) -> TransactionActions {
        guard (100...699).contains(statusCode) else { return .none }
        switch state {
        case .proceeding:
            lastResponseStatusCode = statusCode
            var actions = TransactionActions(message: .response(statusCode: statusCode))
            if statusCode >= 300 {
                state = .completed
                if !isReliableTransport {
                    timerGInterval = settings.t1Milliseconds
                    actions.start(.timerG, after: timerGInterval, in: &armed)
                }
                actions.start(.timerH, after: settings.transactionTimeoutMilliseconds, in: &armed)
            } else if statusCode >= 200 {
                state = .accepted
                actions.start(.timerL, after: settings.transactionTimeoutMilliseconds, in: &armed)
            }
            return actions
        case .accepted:
            guard (200..<300).contains(statusCode) else { return .none }
            lastResponseStatusCode = statusCode
            return TransactionActions(message: .response(statusCode: statusCode))
        case .idle, .completed, .confirmed, .terminated:
            return .none
        }
    }

    /// An ACK matching this transaction arrived: in Completed it confirms the non-2xx final (stops
    /// G and H, starts I); in Confirmed it is absorbed; in Accepted it goes up to the TU (RFC 6026).
    public mutating func receiveACK() -> TransactionActions {
        switch state {
        case .completed:
            state = .confirmed
            armed.disarm(.timerG)
            armed.disarm(.timerH)
            var actions = TransactionActions()
            let timerI = settings.initialMilliseconds(of: .timerI, reliable: isReliableTransport)
            if timerI > 0 {
                actions.start(.timerI, after: timerI, in: &armed)
            } else {
                terminate(&actions)
            }
            return actions
        case .accepted:
            return TransactionActions(delivery: .ack)
        case .idle, .proceeding, .confirmed, .terminated:
            return .none
        }
    }

    /// A timer this transaction started has fired; stale or superseded timers are ignored.
    public mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions {
        guard armed.consume(timer) else { return .none }
        var actions = TransactionActions()
        switch (timer.kind, state) {
        case (.timerG, .completed):
            if let last = lastResponseStatusCode {
                actions.message = .responseRetransmission(statusCode: last)
            }
            timerGInterval = min(2 * timerGInterval, settings.t2Milliseconds)
            actions.start(.timerG, after: timerGInterval, in: &armed)
        case (.timerH, .completed):
            actions.failure = .timeout(.timerH)
            terminate(&actions)
        case (.timerI, .confirmed), (.timerL, .accepted):
            terminate(&actions)
        default:
            break
        }
        return actions
    }

    /// The transport failed to send a response: the TU is told and the transaction ends.
    public mutating func transportError() -> TransactionActions {
        switch state {
        case .proceeding, .completed, .accepted:
            var actions = TransactionActions(failure: .transportError)
            terminate(&actions)
            return actions
        case .idle, .confirmed, .terminated:
            return .none
        }
    }

    private mutating func terminate(_ actions: inout TransactionActions) {
        state = .terminated
        armed = ArmedTimers()
        actions.isTerminated = true
    }
}
