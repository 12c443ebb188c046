/// The client INVITE transaction of RFC 3261 §17.1.1, with the Accepted state of RFC 6026.
///
/// ```
///            start                 1xx                  300-699: ACK, D (0 on reliable)
///   idle ─────────▶ calling ─────────▶ proceeding ────────────────▶ completed ──D──▶ terminated
///                    │  A: retransmit    │  1xx                      └ 300-699: ACK again
///                    │  B, C: timeout    │  C: CANCEL
///                    └──────────────────┴──── 2xx ──▶ accepted ──M──▶ terminated
///                                                      └ 2xx: to the TU
/// ```
///
/// Timer A starts at T1 and doubles after every retransmission (unreliable transports only; RFC 3261
/// does not cap it at T2, Timer B ends it). A proxy (`usesTimerC`) also runs Timer C: restarted by each
/// provisional response other than 100; when it fires before any provisional the transaction times
/// out as if a 408 had arrived, after one the owner is told to CANCEL (§16.8).
public struct ClientInviteTransaction: Sendable {
    /// The states of Figure 5 plus RFC 6026 Accepted, and `idle` before ``start()``.
    public enum State: Hashable, Sendable {
        case idle, calling, proceeding, completed, accepted, terminated
    }

    /// Where cancelling this INVITE stands (RFC 3261 §9.1: a CANCEL waits for a provisional response).
    public enum Cancellation: Hashable, Sendable {
        /// No cancel was asked for.
        case notRequested
        /// ``cancel()`` was called before any provisional response: the CANCEL goes out with the first one.
        case awaitingProvisional
        /// The owner was told to send the CANCEL; the cancel guard (64·T1) waits for the final response.
        case sent
    }

    /// The current state.
    public private(set) var state: State = .idle
    /// Where cancelling stands.
    public private(set) var cancellation: Cancellation = .notRequested
    /// Whether the request travels over a reliable transport (TCP, TLS): no Timer A, Timer D is 0.
    public let isReliableTransport: Bool
    /// Whether this is a proxy's transaction, which runs Timer C.
    public let usesTimerC: Bool
    /// The timer values in use.
    public let settings: TimerSettings

    private var armed = ArmedTimers()
    private var timerAInterval = 0

    /// Creates a transaction in the `idle` state; call ``start()`` to send the INVITE.
    /// - Parameters:
    ///   - reliableTransport: whether the transport is reliable (no retransmissions, no Timer D wait).
    ///   - usesTimerC: true for a proxy's client transaction (§16.6 step 11).
    ///   - settings: the timer values.
    public init(reliableTransport: Bool, usesTimerC: Bool = false, settings: TimerSettings = TimerSettings()) {
        self.isReliableTransport = reliableTransport
        self.usesTimerC = usesTimerC
        self.settings = settings
    }

    /// Sends the INVITE: enters Calling and starts Timers A (unreliable), B and C (proxy).
    public mutating func start() -> TransactionActions {
        guard state == .idle else { return .none }
        state = .calling
        var actions = TransactionActions(message: .request)
        if !isReliableTransport {
            timerAInterval = settings.t1Milliseconds
            actions.start(.timerA, after: timerAInterval, in: &armed)
        }
        actions.start(.timerB, after: settings.transactionTimeoutMilliseconds, in: &armed)
        if usesTimerC {
            actions.start(.timerC, after: settings.timerCMilliseconds, in: &armed)
        }
        return actions
    }

    /// A response to the INVITE arrived (status codes outside 100...699 are ignored).
    ///
    /// Provisionals go up to the TU and, in Calling, stop retransmissions; a 2xx goes up and moves to
    /// Accepted (Timer M); a 300-699 goes up once, is ACKed, and every retransmission of it in
    /// Completed is ACKed again without reaching the TU.
    public mutating func receiveResponse(statusCode: Int) -> TransactionActions {
        guard (100...699).contains(statusCode) else { return .none }
        switch state {
        case .calling, .proceeding:
            if statusCode < 200 {
                return receiveProvisional(statusCode: statusCode)
            }
            stopWaitingForFinal()
            var actions = TransactionActions(delivery: .response(statusCode: statusCode, isFirstOfKind: true))
            if statusCode < 300 {
                state = .accepted
                actions.start(.timerM, after: settings.transactionTimeoutMilliseconds, in: &armed)
                return actions
            }
            state = .completed
            actions.message = .ack
            let timerD = settings.initialMilliseconds(of: .timerD, reliable: isReliableTransport)
            if timerD > 0 {
                actions.start(.timerD, after: timerD, in: &armed)
            } else {
                terminate(&actions)
            }
            return actions
        case .completed:
            return statusCode >= 300 ? TransactionActions(message: .ack) : .none
        case .accepted:
            guard (200..<300).contains(statusCode) else { return .none }
            return TransactionActions(delivery: .response(statusCode: statusCode, isFirstOfKind: false))
        case .idle, .terminated:
            return .none
        }
    }

    /// Asks to cancel the INVITE: at once after a provisional response, otherwise when the first one
    /// arrives (§9.1). Has no effect once a final response arrived or a CANCEL was already sent.
    public mutating func cancel() -> TransactionActions {
        switch state {
        case .calling:
            if cancellation == .notRequested { cancellation = .awaitingProvisional }
            return .none
        case .proceeding:
            guard cancellation != .sent else { return .none }
            var actions = TransactionActions()
            sendCancel(&actions)
            return actions
        case .idle, .completed, .accepted, .terminated:
            return .none
        }
    }

    /// A timer this transaction started has fired; stale or superseded timers are ignored.
    public mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions {
        guard armed.consume(timer) else { return .none }
        var actions = TransactionActions()
        switch (timer.kind, state) {
        case (.timerA, .calling):
            actions.message = .requestRetransmission
            timerAInterval *= 2
            actions.start(.timerA, after: timerAInterval, in: &armed)
        case (.timerB, .calling), (.timerC, .calling), (.cancelGuard, .proceeding):
            actions.failure = .timeout(timer.kind)
            terminate(&actions)
        case (.timerC, .proceeding):
            if cancellation != .sent { sendCancel(&actions) }
        case (.timerD, .completed), (.timerM, .accepted):
            terminate(&actions)
        default:
            break
        }
        return actions
    }

    /// The transport failed to send the INVITE or an ACK: the TU is told and the transaction ends.
    public mutating func transportError() -> TransactionActions {
        switch state {
        case .calling, .proceeding, .completed:
            var actions = TransactionActions(failure: .transportError)
            terminate(&actions)
            return actions
        case .idle, .accepted, .terminated:
            return .none
        }
    }

    private mutating func receiveProvisional(statusCode: Int) -> TransactionActions {
        let isFirst = state == .calling
        if isFirst {
            state = .proceeding
            armed.disarm(.timerA)
            armed.disarm(.timerB)
        }
        var actions = TransactionActions(delivery: .response(statusCode: statusCode, isFirstOfKind: isFirst))
        // §16.7 step 2: only provisionals other than 100 show the call is progressing.
        if usesTimerC && statusCode > 100 {
            actions.start(.timerC, after: settings.timerCMilliseconds, in: &armed)
        }
        if cancellation == .awaitingProvisional {
            sendCancel(&actions)
        }
        return actions
    }

    private mutating func sendCancel(_ actions: inout TransactionActions) {
        cancellation = .sent
        actions.message = .cancel
        actions.start(.cancelGuard, after: settings.transactionTimeoutMilliseconds, in: &armed)
    }

    private mutating func stopWaitingForFinal() {
        armed.disarm(.timerA)
        armed.disarm(.timerB)
        armed.disarm(.timerC)
        armed.disarm(.cancelGuard)
    }

    private mutating func terminate(_ actions: inout TransactionActions) {
        state = .terminated
        armed = ArmedTimers()
        actions.isTerminated = true
    }
}
