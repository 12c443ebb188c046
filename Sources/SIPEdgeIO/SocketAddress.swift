/// An IPv4 or IPv6 address with a port, stored inline (no allocation), so every received datagram
/// can carry its source cheaply.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address bytes exactly as they sit in `sockaddr_in` / `sockaddr_in6` (network order).
    enum Host: Hashable, Sendable {
        case v4(UInt32)
        case v6(UInt64, UInt64, scopeID: UInt32)
    }

    let host: Host
    /// The port, in host byte order.
    public let port: UInt16

    init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Whether this is an IPv6 address.
    public var isIPv6: Bool {
        if case .v6 = host { return true }
        return false
    }

    /// "127.0.0.1:5060" or "[::1]:5060".
    public var description: String {
        isIPv6 ? "[\(ipAddress)]:\(port)" : "\(ipAddress):\(port)"
    }

    /// The same address with another port.
    public func withPort(_ port: UInt16) -> SocketAddress {
        SocketAddress(host: host, port: port)
    }
}
