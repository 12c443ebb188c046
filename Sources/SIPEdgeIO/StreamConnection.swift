import SIPEdgeTLS

/// One TCP or TLS connection carrying SIP. Incoming bytes are framed into whole messages
/// (Content-Length is mandatory on streams); CRLF keep-alives are handled here and never reach
/// `onMessage`. TLS connections frame, keep alive and close exactly like TCP ones, over the
/// decrypted bytes, once their handshake is done.
///
/// An open connection keeps itself alive until it closes, so an accepted or connecting connection
/// need not be stored anywhere. Every call belongs to the loop's thread.
public final class StreamConnection: Hashable {
    /// The loop whose thread serves this connection.
    public let loop: EventLoop
    let handle: OpaquePointer
    /// The peer.
    public let remoteAddress: SocketAddress
    /// Whether the connection runs TLS (its messages arrive with transport `.tls`).
    public let isTLS: Bool
    private var knownLocalAddress: SocketAddress?
    /// The handshake's outcome, once it completed (kept after the close, for logs).
    var tlsInfo: TLSConnectionInfo?
    /// Why the TLS client connection could not even be set up (reported through `onClose`).
    var setupFailure: TLSError?

    /// One complete SIP message per call; the bytes must not escape the call.
    public var onMessage: ((borrowing ReceivedMessage) -> Void)?
    /// The framing failed (with the bytes scanned so far and why); the connection closes next.
    public var onMalformed: ((borrowing ReceivedMessage, _ reason: String) -> Void)?
    /// Called once, last: nil for an orderly close (by either side), otherwise what went wrong
    /// (connection refused or reset, framing error, flush timeout, TLS failure with code `.tls`).
    /// The handlers are cleared after it.
    public var onClose: ((SIPIOError?) -> Void)?

    init(loop: EventLoop, handle: OpaquePointer, remoteAddress: SocketAddress, isTLS: Bool) {
        self.loop = loop
        self.handle = handle
        self.remoteAddress = remoteAddress
        self.isTLS = isTLS
        attach()
    }

    deinit {
        freeHandle()
    }

    /// Starts a non-blocking TCP connect. Failures (refused, unreachable, no answer within 10 s)
    /// arrive through `onClose` on a later loop iteration, so handlers may be set after this returns.
    public static func connect(loop: EventLoop, to address: SocketAddress) -> StreamConnection {
        connect(loop: loop, to: address, tls: nil)
    }

    /// Starts a non-blocking connect, then a TLS handshake when `tls` is given (plain TCP when nil).
    /// Messages sent before the handshake completes leave after it. Connect and handshake must
    /// finish within 10 s. A failed handshake or certificate verification closes the connection:
    /// `onClose` gets an error with code `.tls` whose reason is OpenSSL's (such as "TLS handshake:
    /// certificate verify failed: hostname mismatch").
    public static func connect(loop: EventLoop, to address: SocketAddress, tls: TLSClientOptions?) -> StreamConnection {
        let connection = StreamConnection(
            loop: loop, handle: makeHandle(loop: loop), remoteAddress: address, isTLS: tls != nil)
        if let tls {
            connection.startConnecting(to: address, tls: tls)
        } else {
            connection.startConnecting(to: address)
        }
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

    /// The negotiated TLS version ("TLSv1.3", "TLSv1.2") once the handshake completed, else nil.
    public var tlsProtocol: String? { tlsInfo?.protocolVersion }

    /// The negotiated cipher (suite) once the handshake completed, such as "TLS_AES_256_GCM_SHA384".
    public var tlsCipher: String? { tlsInfo?.cipher }

    /// The subject of the certificate the peer presented (RFC 2253: "CN=edge,O=Example"), once the
    /// handshake completed; nil without TLS or when the peer sent no certificate.
    public var peerCertificateSubject: String? { tlsInfo?.peerCertificateSubject }

    /// Whether the TLS handshake resumed an earlier session (a shorter handshake).
    public var sessionReused: Bool { tlsInfo?.sessionReused ?? false }

    /// The transport of the messages this connection delivers.
    var transport: Transport { isTLS ? .tls : .tcp }

    func deliver(_ bytes: borrowing RawSpan) {
        guard let onMessage else { return }
        onMessage(
            ReceivedMessage(
                bytes: bytes, source: remoteAddress, local: localAddressForMessages, transport: transport,
                connection: self))
    }

    func deliverMalformed(_ bytes: borrowing RawSpan, reason: String) {
        guard let onMalformed else { return }
        onMalformed(
            ReceivedMessage(
                bytes: bytes, source: remoteAddress, local: localAddressForMessages, transport: transport,
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
