/// One TCP connection carrying SIP. Incoming bytes are framed into whole messages (Content-Length
/// is mandatory on streams); CRLF keep-alives are handled here and never reach `onMessage`.
///
/// An open connection keeps itself alive until it closes, so an accepted or connecting connection
/// need not be stored anywhere. Every call belongs to the loop's thread.
public final class StreamConnection: Hashable {
    /// The loop whose thread serves this connection.
    public let loop: EventLoop
    let handle: OpaquePointer
    /// The peer.
    public let remoteAddress: SocketAddress
    private var knownLocalAddress: SocketAddress?

    /// One complete SIP message per call; the bytes must not escape the call.
    public var onMessage: ((borrowing ReceivedMessage) -> Void)?
    /// The framing failed (with the bytes scanned so far and why); the connection closes next.
    public var onMalformed: ((borrowing ReceivedMessage, _ reason: String) -> Void)?
    /// Called once, last: nil for an orderly close (by either side), otherwise what went wrong
    /// (connection refused or reset, framing error, flush timeout). The handlers are cleared after it.
    public var onClose: ((SIPIOError?) -> Void)?

    init(loop: EventLoop, handle: OpaquePointer, remoteAddress: SocketAddress) {
        self.loop = loop
        self.handle = handle
        self.remoteAddress = remoteAddress
        attach()
    }

    deinit {
        freeHandle()
    }

    /// Starts a non-blocking connect. Failures (refused, unreachable, no answer within 10 s) arrive
    /// through `onClose` on a later loop iteration, so handlers may be set after this returns.
    public static func connect(loop: EventLoop, to address: SocketAddress) -> StreamConnection {
        let connection = StreamConnection(loop: loop, handle: makeHandle(loop: loop), remoteAddress: address)
        connection.startConnecting(to: address)
        return connection
    }

    /// The local address, once the connection is established.
    public var localAddress: SocketAddress? {
        if knownLocalAddress == nil {
            knownLocalAddress = readLocalAddress()
        }
        return knownLocalAddress
    }

    /// Queues bytes (copied); bytes sent while connecting leave once connected. Ignored once closing.
    public func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { enqueue($0) }
    }

    /// Queues borrowed bytes (copied).
    public func send(_ bytes: RawSpan) {
        bytes.withUnsafeBytes { enqueue($0) }
    }

    /// Stops reading, flushes pending output (for at most 5 s), then closes; `onClose(nil)` follows.
    public func close() {
        closeHandle()
    }

    /// Whether the connection is connecting or open (false once closing).
    public var isOpen: Bool { handleIsOpen }

    /// The largest message accepted; a larger one is a framing error. Default 65535.
    public var maxMessageSize: Int {
        get { handleMaxMessageSize }
        set { handleMaxMessageSize = newValue }
    }

    func deliver(_ bytes: borrowing RawSpan) {
        guard let onMessage else { return }
        onMessage(
            ReceivedMessage(
                bytes: bytes, source: remoteAddress, local: localAddressForMessages, transport: .tcp,
                connection: self))
    }

    func deliverMalformed(_ bytes: borrowing RawSpan, reason: String) {
        guard let onMalformed else { return }
        onMalformed(
            ReceivedMessage(
                bytes: bytes, source: remoteAddress, local: localAddressForMessages, transport: .tcp,
                connection: self),
            reason)
    }

    func closed(with error: SIPIOError?) {
        let handler = onClose
        // The handlers usually capture the connection; dropping them breaks that cycle.
        onMessage = nil
        onMalformed = nil
        onClose = nil
        handler?(error)
    }

    /// A message only arrives on an established connection, whose local address is known; the
    /// unspecified address stands in should getsockname have failed.
    private var localAddressForMessages: SocketAddress {
        localAddress ?? SocketAddress(host: remoteAddress.isIPv6 ? .v6(0, 0, scopeID: 0) : .v4(0), port: 0)
    }

    public static func == (lhs: StreamConnection, rhs: StreamConnection) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(self))
    }
}
