/// A bound UDP socket on one event loop. Datagrams arrive in `recvmmsg` batches and go to
/// `onMessage` one by one as borrowed views (no allocation per datagram); sends are queued and
/// leave together in `sendmmsg` batches.
public final class UDPSocket {
    /// The loop whose thread serves this socket; every call except `init` belongs to that thread.
    public let loop: EventLoop
    let handle: OpaquePointer
    let onMessage: (borrowing ReceivedMessage) -> Void
    /// The bound address (with the kernel's port when port 0 was asked for).
    public let localAddress: SocketAddress
    /// Called on the loop's thread when an ICMP error (port or host unreachable ...) comes back for a
    /// datagram sent to an address, with the errno value (RFC 3261 §18.4: a transport error).
    public var onUnreachable: ((SocketAddress, Int32) -> Void)?
    /// Set by `close()`; the rest of a batch being delivered is then dropped.
    public internal(set) var isClosed = false

    /// Binds the socket and starts receiving.
    /// - Parameters:
    ///   - reusePort: SO_REUSEPORT, so sockets on several loops can share the port.
    ///   - receiveBufferBytes: SO_RCVBUF size (the kernel may cap it at net.core.rmem_max).
    ///   - maxDatagramSize: the largest datagram delivered (1...65535); larger ones are dropped and counted in
    ///     `truncatedDatagrams`. The socket keeps 32 buffers of this size.
    ///   - coalesceMicroseconds: when positive, after a read that found datagrams the socket rests this
    ///     long before it is read again: under load, fewer wakeups and larger batches for at most this
    ///     much delay; the first datagram after a quiet spell is still read at once.
    ///   - onMessage: called on the loop's thread for every datagram; the bytes must not escape it.
    /// - Throws: `SIPIOError` when the address cannot be bound.
    public init(
        loop: EventLoop, bindTo address: SocketAddress, reusePort: Bool = false, receiveBufferBytes: Int? = nil,
        maxDatagramSize: Int = 65535, coalesceMicroseconds: Int = 0,
        onMessage: @escaping (borrowing ReceivedMessage) -> Void
    ) throws(SIPIOError) {
        self.loop = loop
        self.onMessage = onMessage
        handle = try Self.openHandle(
            loop: loop, address: address, reusePort: reusePort, receiveBufferBytes: receiveBufferBytes ?? 0,
            maxDatagramSize: maxDatagramSize, coalesceMicroseconds: coalesceMicroseconds)
        localAddress = Self.localAddress(of: handle)
        try startReceiving()
    }

    deinit {
        freeHandle()
    }

    /// Queues one datagram; it leaves in a `sendmmsg` batch after the current receive batch, or at
    /// the end of the current loop iteration. Failures are counted in `failedSends`.
    public func send(_ bytes: [UInt8], to destination: SocketAddress) {
        bytes.withUnsafeBytes { enqueue($0, to: destination) }
    }

    /// Queues one datagram from borrowed bytes (for example a received message forwarded as is).
    public func send(_ bytes: RawSpan, to destination: SocketAddress) {
        bytes.withUnsafeBytes { enqueue($0, to: destination) }
    }

    func deliver(_ bytes: borrowing RawSpan, from source: SocketAddress) {
        onMessage(ReceivedMessage(bytes: bytes, source: source, local: localAddress, transport: .udp, connection: nil))
    }
}
