/// An I/O failure: which operation failed, the system error number when there is one, and why.
public struct SIPIOError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure; new kinds can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Hashable, Sendable {
            case system, invalidAddress, framing, closed, nameNotFound, nameResolution, eventLoop, tls
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// A system call failed; `errno` says how.
        public static let system = Code(.system)
        /// An address string or family that cannot be used.
        public static let invalidAddress = Code(.invalidAddress)
        /// A TCP connection was closed because its SIP framing was malformed or too large.
        public static let framing = Code(.framing)
        /// The socket or connection was already closed.
        public static let closed = Code(.closed)
        /// The host name has no A/AAAA record.
        public static let nameNotFound = Code(.nameNotFound)
        /// Any other name-resolution failure (server timeout, server failure, cancellation).
        public static let nameResolution = Code(.nameResolution)
        /// libevent failed without a system error.
        public static let eventLoop = Code(.eventLoop)
        /// A TLS handshake, certificate verification or TLS protocol failure; the reason is
        /// OpenSSL's (see `TLSError`).
        public static let tls = Code(.tls)

        public var description: String { kind.rawValue }
    }

    /// What failed.
    public let code: Code
    /// The operation that was attempted, such as "bind UDP 127.0.0.1:5060".
    public let operation: String
    /// The system error number, when the failure came from a system call.
    public let errno: Int32?
    /// A short English explanation.
    public let reason: String

    public init(code: Code, operation: String, errno: Int32? = nil, reason: String) {
        self.code = code
        self.operation = operation
        self.errno = errno
        self.reason = reason
    }

    public var description: String { "\(operation): \(reason)" }
}
