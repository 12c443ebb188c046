/// A listening TCP socket on one event loop; each accepted connection is served by the same loop.
public final class StreamListener {
    /// The loop whose thread serves this listener and its connections.
    public let loop: EventLoop
    let handle: OpaquePointer
    let onAccept: (StreamConnection) -> Void
    /// The bound address (with the kernel's port when port 0 was asked for).
    public let localAddress: SocketAddress

    /// Binds, listens and starts accepting.
    /// - Parameters:
    ///   - reusePort: SO_REUSEPORT, so listeners on several loops can share the port.
    ///   - onAccept: called on the loop's thread for every new connection; set its handlers here, as
    ///     reading starts when this returns.
    /// - Throws: `SIPIOError` when the address cannot be bound.
    public init(
        loop: EventLoop, bindTo address: SocketAddress, reusePort: Bool = false,
        onAccept: @escaping (StreamConnection) -> Void
    ) throws(SIPIOError) {
        self.loop = loop
        self.onAccept = onAccept
        handle = try Self.openHandle(loop: loop, address: address, reusePort: reusePort)
        localAddress = Self.localAddress(of: handle)
        startAccepting()
    }

    deinit {
        freeHandle()
    }
}
