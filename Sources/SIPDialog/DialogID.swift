/// Which way an in-dialog request travels, seen from the proxy.
public enum DialogDirection: Hashable, Sendable {
    /// From the party that sent the initial INVITE to the one that answered it.
    case callerToCallee
    /// From the answering party back to the caller.
    case calleeToCaller
}

/// A dialog's identity as a proxy sees it (RFC 3261 §12): the Call-ID plus the caller's and the
/// callee's tags, whichever way a request travels.
///
/// In a request from the caller the From tag is ``callerTag`` and the To tag is ``calleeTag``; in a
/// request from the callee they are swapped. The callee tag is nil until a response carries one.
public struct DialogID: Hashable, Sendable {
    /// The Call-ID.
    public var callID: String
    /// The From tag of the initial INVITE.
    public var callerTag: String
    /// The To tag the callee put in its responses; nil before any response carried one.
    public var calleeTag: String?

    /// Creates a dialog identity.
    public init(callID: String, callerTag: String, calleeTag: String? = nil) {
        self.callID = callID
        self.callerTag = callerTag
        self.calleeTag = calleeTag
    }

    /// The direction of a request with these header values in this dialog, or nil if the request
    /// does not belong to it.
    public func direction(ofRequestWithCallID callID: String, fromTag: String, toTag: String) -> DialogDirection? {
        guard callID == self.callID, let calleeTag else { return nil }
        if fromTag == callerTag && toTag == calleeTag { return .callerToCallee }
        if fromTag == calleeTag && toTag == callerTag { return .calleeToCaller }
        return nil
    }
}
