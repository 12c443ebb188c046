/// The transport a SIP message arrived on or leaves by.
public enum Transport: String, Sendable, Hashable {
    case udp
    case tcp
    /// TCP with TLS (RFC 3261 §26.2, RFC 5630).
    case tls

    /// Stream transports: no retransmissions, messages framed by Content-Length.
    public var isStream: Bool { self != .udp }

    /// The name in a Via header's sent-protocol (`SIP/2.0/UDP`).
    public var viaName: String {
        switch self {
        case .udp: return "UDP"
        case .tcp: return "TCP"
        case .tls: return "TLS"
        }
    }
}
