/// The bytes of one received SIP message (a whole datagram, or one framed TCP or TLS message) and
/// where it came from.
///
/// The bytes are a borrowed view into the socket's receive buffer and are valid only inside the
/// callback that receives them: copy them (once) if they must be kept.
public struct ReceivedMessage: ~Escapable {
    /// The message, exactly as received.
    public let bytes: RawSpan
    /// The sender.
    public let source: SocketAddress
    /// The address it was received on (the socket's bound address).
    public let local: SocketAddress
    /// How it arrived.
    public let transport: Transport
    /// The connection it arrived on, for TCP and TLS.
    public let connection: StreamConnection?

    @_lifetime(borrow bytes)
    init(
        bytes: borrowing RawSpan, source: SocketAddress, local: SocketAddress, transport: Transport,
        connection: StreamConnection?
    ) {
        self.bytes = copy bytes
        self.source = source
        self.local = local
        self.transport = transport
        self.connection = connection
    }
}
