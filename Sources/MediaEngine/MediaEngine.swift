import SIPEdgeIO

/// A failed media-engine command: what went wrong, for which command, at which engine.
public struct MediaEngineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; new kinds can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Hashable, Sendable {
            case timeout, engineError, malformedReply, socketError
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// No reply after the last attempt.
        public static let timeout = Code(.timeout)
        /// The engine refused the command; ``MediaEngineError/reason`` is its `error-reason`.
        public static let engineError = Code(.engineError)
        /// The engine replied, but not with what the command expects (not bencode, no `result`,
        /// no `sdp` ...).
        public static let malformedReply = Code(.malformedReply)
        /// The control socket could not be opened, or the client was closed.
        public static let socketError = Code(.socketError)

        public var description: String {
            switch kind {
            case .timeout: "timeout"
            case .engineError: "engine error"
            case .malformedReply: "malformed reply"
            case .socketError: "socket error"
            }
        }
    }

    /// What failed.
    public let code: Code
    /// The NG command, such as "offer" or "subscribe request".
    public let command: String
    /// The engine the command went to, when it got that far.
    public let engine: SocketAddress?
    /// For `engineError`, the engine's `error-reason` exactly as sent; otherwise a short English
    /// explanation.
    public let reason: String

    public init(code: Code, command: String, engine: SocketAddress?, reason: String) {
        self.code = code
        self.command = command
        self.engine = engine
        self.reason = reason
    }

    public var description: String {
        let target = engine.map { " at \($0)" } ?? ""
        return "media engine \(command)\(target): \(code): \(reason)"
    }
}

/// One recorded stream of a subscription: the label the engine gave its m= line, and the call
/// participant whose media it carries.
public struct MediaStreamLabel: Sendable, Equatable {
    /// The `a=label` value of the stream's m= line (chosen by the engine, not by us).
    public var label: String
    /// The From- or To-tag of the participant whose media the stream copies.
    public var participantTag: String
    /// The participant's media index (1-based, as rtpengine counts).
    public var index: Int
    /// "audio", "video" ...
    public var mediaType: String

    public init(label: String, participantTag: String, index: Int, mediaType: String) {
        self.label = label
        self.participantTag = participantTag
        self.index = index
        self.mediaType = mediaType
    }
}

/// The result of a subscribe request: the SDP offer to send to the recording server and what
/// each of its streams carries.
public struct Subscription: Sendable, Equatable {
    /// The engine's offer for the recording server: one sendonly m= line per recorded stream.
    public var sdp: String
    /// The tag that names this subscription in later subscribe answer / unsubscribe commands.
    public var subscriptionTag: String
    /// The streams, in the order of the m= lines of ``sdp``.
    public var streams: [MediaStreamLabel]

    public init(sdp: String, subscriptionTag: String, streams: [MediaStreamLabel]) {
        self.sdp = sdp
        self.subscriptionTag = subscriptionTag
        self.streams = streams
    }
}

/// A media relay that anchors calls and forks their media to a recording server.
///
/// An implementation belongs to one event loop: every method is called on that loop's thread and
/// every completion runs there too, later (never inside the call that started it).
///
/// `flags` carry extra NG flags. An entry of the form `key=value` becomes a dictionary entry of the
/// request instead, with a string value (`transport-protocol=RTP/AVP`, `media-address=192.0.2.1`).
/// A key given twice, or a key the command already sets to a list (such as `replace`), collects
/// its values in a list; a key the command sets to a single value (such as `to-tag`) is replaced.
public protocol MediaEngine: AnyObject {
    /// Anchors the caller's offer (NG offer), returns the SDP to send to the callee.
    func offer(
        callID: String, fromTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<String, MediaEngineError>) -> Void)
    /// The callee's answer (NG answer), returns the SDP for the caller.
    func answer(
        callID: String, fromTag: String, toTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<String, MediaEngineError>) -> Void)
    /// Deletes the whole call at once (delete delay 0).
    func delete(callID: String, completion: @escaping (Result<Void, MediaEngineError>) -> Void)
    /// Starts (or restarts) the fork of every participant's media to a recording server, with the
    /// flags "all" and "siprec" plus `flags`; `mediaAddress` overrides the address in the offer.
    func subscribeRequest(
        callID: String, subscriptionTag: String, flags: [String], mediaAddress: String?,
        completion: @escaping (Result<Subscription, MediaEngineError>) -> Void)
    /// The recording server's answer, with the flag "allow transcoding" plus `flags`.
    func subscribeAnswer(
        callID: String, subscriptionTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<Void, MediaEngineError>) -> Void)
    /// Stops the fork; the subscription's ports stay reserved until the call is deleted.
    func unsubscribe(
        callID: String, subscriptionTag: String, completion: @escaping (Result<Void, MediaEngineError>) -> Void)
    /// Checks that the engine answers.
    func ping(completion: @escaping (Result<Void, MediaEngineError>) -> Void)
}
