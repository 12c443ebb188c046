/// Why a dialog ended.
public enum DialogTerminationReason: Hashable, Sendable {
    /// The INVITE got this non-2xx final response.
    case rejected(statusCode: Int)
    /// The caller cancelled the INVITE and it ended with a non-2xx final response.
    case cancelled
    /// The caller sent a BYE.
    case byeFromCaller
    /// The callee sent a BYE.
    case byeFromCallee
    /// No BYE came within the lifetime since the dialog was confirmed or last refreshed.
    case expired
    /// The INVITE got no final response within the early lifetime.
    case earlyTimeout
    /// The 2xx to the INVITE was never ACKed within 64·T1.
    case ackTimeout
}

/// A lifecycle event for observers of a dialog.
public enum DialogEvent: Hashable, Sendable {
    /// A provisional response with a To tag created the (early) dialog.
    case early
    /// A 2xx confirmed the dialog.
    case confirmed
    /// A re-INVITE started, in the direction given by ``Dialog/reinviteInProgress``.
    case reinviteStarted
    /// The re-INVITE in progress got its final response.
    case reinviteCompleted(statusCode: Int)
    /// A 2xx to a re-INVITE or UPDATE restarted the dialog's lifetime.
    case refreshed
    /// The dialog ended.
    case terminated(DialogTerminationReason)
}

/// One armed dialog timer: its kind and the arming it belongs to.
///
/// The owner schedules it and passes it back to ``Dialog/timerFired(_:)``; a dialog ignores timers
/// that were re-armed since (the lifetime after a refresh) or no longer apply, so owners never cancel.
public struct DialogTimer: Hashable, Sendable {
    /// The dialog's timers.
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable {
        /// The INVITE must get a final response in time (``DialogSettings/earlyLifetimeMilliseconds``).
        case earlyLifetime
        /// The 2xx must be ACKed in time (64·T1).
        case ackWait
        /// The confirmed dialog must be refreshed or ended in time (``DialogSettings/lifetimeMilliseconds``).
        case lifetime
    }

    /// Which timer this is.
    public let kind: Kind
    /// Which arming of `kind` this is, within one dialog.
    public let generation: UInt32

    init(kind: Kind, generation: UInt32) {
        self.kind = kind
        self.generation = generation
    }
}

/// A request to start a dialog timer: schedule `timer` to fire after `milliseconds`.
public struct DialogTimerStart: Hashable, Sendable {
    /// The timer to pass back to ``Dialog/timerFired(_:)``.
    public let timer: DialogTimer
    /// The delay, in milliseconds.
    public let milliseconds: Int
}

/// Up to two outputs of one dialog input (events or timer starts), stored inline: never allocates.
public struct DialogOutputs<Element: Hashable & Sendable>: RandomAccessCollection, Hashable, Sendable {
    private var first: Element?
    private var second: Element?

    /// The number of outputs.
    public private(set) var count = 0

    /// An empty list.
    public init() {}

    /// The position of the first output.
    public var startIndex: Int { 0 }
    /// The position after the last output.
    public var endIndex: Int { count }

    /// The output at `position`.
    public subscript(position: Int) -> Element {
        precondition(position >= 0 && position < count, "DialogOutputs index out of range")
        return position == 0 ? first! : second!
    }

    mutating func append(_ element: Element) {
        switch count {
        case 0: first = element
        case 1: second = element
        default: preconditionFailure("a dialog input has at most two outputs of a kind")
        }
        count += 1
    }
}

/// Everything one dialog input asks of its owner: events to publish, timers to start, and whether
/// the request was out of order.
public struct DialogActions: Hashable, Sendable {
    /// Lifecycle events, in order.
    public var events: DialogOutputs<DialogEvent>
    /// Timers to start.
    public var timers: DialogOutputs<DialogTimerStart>
    /// The in-dialog request has a lower CSeq than one already seen in its direction; the UA will
    /// answer 500 (RFC 3261 §12.2.2). Information only: a proxy forwards it anyway.
    public var isOutOfOrder: Bool

    /// Nothing to do.
    public static let none = DialogActions()

    /// Creates an empty set of actions.
    public init() {
        events = DialogOutputs()
        timers = DialogOutputs()
        isOutOfOrder = false
    }

    /// Whether there is nothing to do and nothing to note.
    public var isEmpty: Bool { events.isEmpty && timers.isEmpty && !isOutOfOrder }
}
