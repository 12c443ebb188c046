/// The method of an in-dialog request, as far as dialog state is concerned.
public enum InDialogMethod: Hashable, Sendable {
    /// A re-INVITE: tracked until its final response; a 2xx refreshes the dialog.
    case invite
    /// UPDATE (RFC 3311): a 2xx refreshes the dialog.
    case update
    /// BYE: ends the dialog.
    case bye
    /// Any other method (PRACK, INFO, REFER, NOTIFY, MESSAGE, OPTIONS...): CSeq tracking only.
    /// ACK and CANCEL have their own inputs.
    case other
}

/// A dialog as a stateful proxy follows it (not a UA): one per callee tag.
///
/// ```
///            1xx with To tag               2xx: ACK wait, lifetime
///   initial ────────────────▶ early ─────────────────────────────▶ confirmed
///      │                        │                                    │ BYE, expiry, no ACK
///      └──── 2xx ───────────────┼──────────────▶ confirmed            ▼
///      └── non-2xx, early timeout, BYE ─────────────────────────▶ terminated(reason)
/// ```
///
/// A forked INVITE can create several early dialogs, one per To tag. The first provisional with a tag
/// turns the dialog created for the INVITE into that tag's early dialog; for each further tag the
/// owner makes a sibling with ``forked(calleeTag:)`` and feeds it that tag's responses. A non-2xx
/// final response ends a dialog whatever its tag (it ends every early dialog of the INVITE), so the
/// owner gives the final response it forwards upstream to every remaining sibling.
///
/// Time comes in only through ``timerFired(_:)``: the dialog asks for timers in its actions and
/// ignores firings that were superseded or no longer apply.
public struct Dialog: Sendable {
    /// The dialog states.
    public enum State: Hashable, Sendable {
        /// The INVITE was forwarded; no response with a To tag yet.
        case initial
        /// A provisional response with this dialog's To tag arrived.
        case early
        /// A 2xx arrived.
        case confirmed
        /// The dialog ended; every further input is ignored.
        case terminated(DialogTerminationReason)
    }

    /// The current state.
    public private(set) var state: State = .initial
    /// The dialog's identity; the callee tag is filled in by the first response that carries one.
    public private(set) var id: DialogID
    /// The durations in use.
    public let settings: DialogSettings
    /// The CSeq number of the INVITE that created the dialog.
    public let inviteCSeq: UInt32
    /// The direction of the re-INVITE waiting for its final response, if any.
    public private(set) var reinviteInProgress: DialogDirection?
    /// Whether the caller sent a CANCEL for the INVITE.
    public private(set) var isCancelled = false
    /// Whether the 2xx that confirmed the dialog was ACKed.
    public private(set) var isAcknowledged = false

    private var callerCSeq: UInt32
    private var calleeCSeq: UInt32?
    private var reinviteCSeq: UInt32 = 0
    private var armedGenerations = InlineArray<3, UInt32>(repeating: 0)
    private var lastGeneration: UInt32 = 0

    /// Creates the dialog for a forwarded INVITE, in the `initial` state; call ``start()`` to arm
    /// the early lifetime.
    /// - Parameters:
    ///   - callID: the INVITE's Call-ID.
    ///   - callerTag: the INVITE's From tag.
    ///   - inviteCSeq: the INVITE's CSeq number, the first one seen from the caller.
    ///   - settings: the durations.
    public init(callID: String, callerTag: String, inviteCSeq: UInt32, settings: DialogSettings = DialogSettings()) {
        self.id = DialogID(callID: callID, callerTag: callerTag)
        self.settings = settings
        self.inviteCSeq = inviteCSeq
        self.callerCSeq = inviteCSeq
    }

    /// A sibling for another fork of the same INVITE: same Call-ID, caller tag, INVITE CSeq and
    /// cancel status, in the `initial` state with `calleeTag` set. Call ``start()`` on it, then feed
    /// it the responses carrying that tag.
    public func forked(calleeTag: String) -> Dialog {
        var sibling = Dialog(callID: id.callID, callerTag: id.callerTag, inviteCSeq: inviteCSeq, settings: settings)
        sibling.id.calleeTag = calleeTag
        sibling.isCancelled = isCancelled
        return sibling
    }

    /// The highest CSeq seen from `direction`, or nil before any request from there.
    public func lastCSeq(from direction: DialogDirection) -> UInt32? {
        direction == .callerToCallee ? callerCSeq : calleeCSeq
    }

    /// Whether the dialog ended.
    public var isTerminated: Bool {
        if case .terminated = state { return true }
        return false
    }

    /// Arms the early lifetime (once, in the `initial` state).
    public mutating func start() -> DialogActions {
        guard state == .initial, !isArmed(.earlyLifetime) else { return .none }
        var actions = DialogActions()
        arm(.earlyLifetime, after: settings.earlyLifetimeMilliseconds, into: &actions)
        return actions
    }

    /// A provisional response to the INVITE arrived. One from 101 to 199 with a To tag creates the
    /// early dialog if the dialog has no callee tag yet or has this one; 100, responses without a tag
    /// and other forks' tags are ignored.
    public mutating func receiveProvisional(statusCode: Int, toTag: String?) -> DialogActions {
        guard state == .initial, (101...199).contains(statusCode), let toTag, adoptCalleeTag(toTag) else {
            return .none
        }
        state = .early
        var actions = DialogActions()
        actions.events.append(.early)
        return actions
    }

    /// A final response to the INVITE arrived (codes outside 200...699 are ignored).
    ///
    /// A 2xx with this dialog's tag (or any tag while it has none) confirms it and arms the ACK wait
    /// and the lifetime; a 2xx with another tag belongs to a sibling and is ignored. A non-2xx ends
    /// the dialog, as `cancelled` if the caller sent a CANCEL, else `rejected`.
    public mutating func receiveFinalResponse(statusCode: Int, toTag: String?) -> DialogActions {
        guard state == .initial || state == .early, (200...699).contains(statusCode) else { return .none }
        var actions = DialogActions()
        guard statusCode < 300 else {
            terminate(isCancelled ? .cancelled : .rejected(statusCode: statusCode), into: &actions)
            return actions
        }
        if let toTag, !adoptCalleeTag(toTag) { return .none }
        state = .confirmed
        disarm(.earlyLifetime)
        actions.events.append(.confirmed)
        arm(.ackWait, after: settings.ackTimeoutMilliseconds, into: &actions)
        arm(.lifetime, after: settings.lifetimeMilliseconds, into: &actions)
        return actions
    }

    /// The caller sent a CANCEL for the INVITE: remembered, so the final response that follows ends
    /// the dialog as `cancelled`. Ignored once a 2xx arrived (the CANCEL came too late).
    public mutating func receiveCancel() -> DialogActions {
        if state == .initial || state == .early { isCancelled = true }
        return .none
    }

    /// The ACK for the 2xx arrived: stops the ACK wait.
    public mutating func receiveACK() -> DialogActions {
        guard state == .confirmed, !isAcknowledged else { return .none }
        isAcknowledged = true
        disarm(.ackWait)
        return .none
    }

    /// An in-dialog request (early or confirmed dialog) went through the proxy.
    ///
    /// Its CSeq is checked against the highest seen in its direction: a lower one is flagged in
    /// `isOutOfOrder` and changes nothing else (the UA will reject it). An in-order BYE ends the
    /// dialog; a re-INVITE in a confirmed dialog starts re-INVITE tracking unless one is in progress.
    /// - Parameters:
    ///   - method: the request's method.
    ///   - direction: which way it travels.
    ///   - cseq: its CSeq number.
    public mutating func receiveRequest(
        _ method: InDialogMethod,
        direction: DialogDirection,
        cseq: UInt32
    ) -> DialogActions {
        guard state == .early || state == .confirmed else { return .none }
        var actions = DialogActions()
        if let last = lastCSeq(from: direction), cseq < last {
            actions.isOutOfOrder = true
            return actions
        }
        switch direction {
        case .callerToCallee: callerCSeq = cseq
        case .calleeToCaller: calleeCSeq = cseq
        }
        switch method {
        case .bye:
            terminate(direction == .callerToCallee ? .byeFromCaller : .byeFromCallee, into: &actions)
        case .invite where state == .confirmed && reinviteInProgress == nil:
            reinviteInProgress = direction
            reinviteCSeq = cseq
            actions.events.append(.reinviteStarted)
        case .invite, .update, .other:
            break
        }
        return actions
    }

    /// A response to an in-dialog request went through the proxy.
    ///
    /// The final response to the re-INVITE in progress (same direction and CSeq) completes it; a 2xx
    /// to a re-INVITE or UPDATE in a confirmed dialog refreshes the lifetime.
    /// - Parameters:
    ///   - statusCode: the response's status code.
    ///   - method: the method of the request it answers.
    ///   - requestDirection: the direction of the request it answers.
    ///   - cseq: the CSeq number of the request it answers.
    public mutating func receiveResponse(
        statusCode: Int,
        method: InDialogMethod,
        requestDirection: DialogDirection,
        cseq: UInt32
    ) -> DialogActions {
        guard state == .confirmed, (200...699).contains(statusCode) else { return .none }
        var actions = DialogActions()
        if method == .invite, reinviteInProgress == requestDirection, reinviteCSeq == cseq {
            reinviteInProgress = nil
            actions.events.append(.reinviteCompleted(statusCode: statusCode))
        }
        if statusCode < 300 && (method == .invite || method == .update) {
            actions.events.append(.refreshed)
            arm(.lifetime, after: settings.lifetimeMilliseconds, into: &actions)
        }
        return actions
    }

    /// A timer this dialog asked for has fired; superseded or inapplicable timers are ignored.
    public mutating func timerFired(_ timer: DialogTimer) -> DialogActions {
        let index = Int(timer.kind.rawValue)
        guard timer.generation != 0, armedGenerations[index] == timer.generation else { return .none }
        armedGenerations[index] = 0
        var actions = DialogActions()
        switch (timer.kind, state) {
        case (.earlyLifetime, .initial), (.earlyLifetime, .early):
            terminate(.earlyTimeout, into: &actions)
        case (.ackWait, .confirmed):
            terminate(.ackTimeout, into: &actions)
        case (.lifetime, .confirmed):
            terminate(.expired, into: &actions)
        default:
            break
        }
        return actions
    }

    /// Takes `tag` as the callee tag if there is none yet; false if the dialog has another one.
    private mutating func adoptCalleeTag(_ tag: String) -> Bool {
        guard let calleeTag = id.calleeTag else {
            id.calleeTag = tag
            return true
        }
        return calleeTag == tag
    }

    private mutating func terminate(_ reason: DialogTerminationReason, into actions: inout DialogActions) {
        state = .terminated(reason)
        reinviteInProgress = nil
        armedGenerations = InlineArray(repeating: 0)
        actions.events.append(.terminated(reason))
    }

    private mutating func arm(_ kind: DialogTimer.Kind, after milliseconds: Int, into actions: inout DialogActions) {
        lastGeneration &+= 1
        if lastGeneration == 0 { lastGeneration = 1 }
        armedGenerations[Int(kind.rawValue)] = lastGeneration
        actions.timers.append(
            DialogTimerStart(timer: DialogTimer(kind: kind, generation: lastGeneration), milliseconds: milliseconds)
        )
    }

    private mutating func disarm(_ kind: DialogTimer.Kind) {
        armedGenerations[Int(kind.rawValue)] = 0
    }

    private func isArmed(_ kind: DialogTimer.Kind) -> Bool {
        armedGenerations[Int(kind.rawValue)] != 0
    }
}
