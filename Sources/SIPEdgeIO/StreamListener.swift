import SIPEdgeTLS

/// A listening TCP socket on one event loop; each accepted connection is served by the same loop.
/// With a TLS context, every accepted connection runs the TLS server handshake first.
public final class StreamListener {
    /// The loop whose thread serves this listener and its connections.
    public let loop: EventLoop
    let handle: OpaquePointer
    let onAccept: (StreamConnection) -> Void
    /// The bound address (with the kernel's port when port 0 was asked for).
    public let localAddress: SocketAddress
    /// The server context of a TLS listener, nil for TCP.
    public let tls: TLSContext?

    /// Binds, listens and starts accepting.
    /// - Parameters:
    ///   - reusePort: SO_REUSEPORT, so listeners on several loops can share the port.
    ///   - tls: a server context: accepted connections do the TLS handshake (within 10 s) before
    ///     any message is delivered; a failed one closes the connection with a `.tls` error.
    ///   - onAccept: called on the loop's thread for every new connection; set its handlers here, as
    ///     reading starts when this returns.
    /// - Throws: `SIPIOError` when the address cannot be bound, or `tls` is a client context.
    public init(
        loop: EventLoop, bindTo address: SocketAddress, reusePort: Bool = false, tls: TLSContext? = nil,
        onAccept: @escaping (StreamConnection) -> Void
    ) throws(SIPIOError) {
        if let tls, tls.role != .server {
            throw SIPIOError(
                code: .tls, operation: "listen TLS \(address)", reason: "a client TLS context cannot accept connections")
        }
        self.loop = loop
        self.onAccept = onAccept
        self.tls = tls
        handle = try Self.openHandle(loop: loop, address: address, reusePort: reusePort, tls: tls != nil)
        localAddress = Self.localAddress(of: handle)
        startAccepting()
    }

    deinit {
        freeHandle()
    }
}
