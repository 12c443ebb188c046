import SIPEdgeConfig
import SIPEdgeIO
import SIPMessage

/// One address the proxy listens on. Every worker opens its own socket on it (SO_REUSEPORT), so any
/// worker can send from it; the prebuilt header bytes keep string formatting off the hot path.
struct LocalInterface: Sendable {
    let index: Int
    let transport: Transport
    let address: SocketAddress
    /// "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=" — the branch value follows.
    let viaPrefix: [UInt8]
    /// "Record-Route: <sip:127.0.0.1:5060;lr>\r\n" (with ";transport=tcp" for TCP).
    let recordRoute: [UInt8]
    /// The numeric address without brackets, as URIs and Vias parse it.
    let ipText: String

    init(index: Int, listen: ListenAddress) throws(SIPIOError) {
        self.index = index
        self.transport = Transport(rawValue: listen.transport.rawValue) ?? .udp
        self.address = try SocketAddress(ipAddress: listen.host, port: listen.port)
        // The host as it appears in our URIs and Via (IPv6 in brackets).
        let hostText = listen.host.contains(":") ? "[\(listen.host)]" : listen.host
        self.ipText = address.ipAddress
        var via: [UInt8] = []
        via.append(ascii: "Via: SIP/2.0/")
        via.append(text: transport.viaName)
        via.append(UInt8(ascii: " "))
        via.append(text: hostText)
        via.append(UInt8(ascii: ":"))
        via.append(decimal: Int(listen.port))
        via.append(ascii: ";branch=")
        self.viaPrefix = via
        var recordRoute: [UInt8] = []
        recordRoute.append(ascii: "Record-Route: <sip:")
        recordRoute.append(text: hostText)
        recordRoute.append(UInt8(ascii: ":"))
        recordRoute.append(decimal: Int(listen.port))
        if transport != .udp { recordRoute.append(text: ";transport=\(transport.rawValue)") }
        recordRoute.append(ascii: ";lr>\r\n")
        self.recordRoute = recordRoute
    }
}

/// All interfaces, with the lookups routing needs.
struct LocalInterfaces: Sendable {
    let all: [LocalInterface]

    /// The interface to send from for a hop: same transport and address family if we listen on
    /// one, else any interface of the family (its address still names us in Via and Record-Route).
    func outgoing(for transport: Transport, family destination: SocketAddress) -> LocalInterface {
        all.first { $0.transport == transport && $0.address.isIPv6 == destination.isIPv6 }
            ?? all.first { $0.address.isIPv6 == destination.isIPv6 }
            ?? all[0]
    }

    /// True when the host in `hostRange` of `message` and `port` (nil = 5060), with `transport`
    /// (nil = any), name one of our interfaces. Compares bytes: no text is built.
    func isLocal(host hostRange: ByteRange, port: Int?, transport: Transport?, in message: SIPMessage) -> Bool {
        let port = port ?? 5060
        return all.contains { interface in
            Int(interface.address.port) == port && (transport == nil || interface.transport == transport)
                && message.equals(hostRange, interface.ipText)
        }
    }

    /// True when a URI in `message` points at one of our interfaces: the transport it names, or
    /// any of ours when it names none.
    func isLocal(_ uri: URIParts, in message: SIPMessage) -> Bool {
        let transport = uri.transportRange.flatMap { Transport(sipText: message.text($0)) }
        return isLocal(host: uri.hostRange, port: uri.port, transport: transport, in: message)
    }
}

extension Transport {
    /// Parses "udp"/"UDP"/"tcp"/"TCP"; nil for transports the proxy does not speak.
    init?(sipText: String) {
        switch sipText.lowercased() {
        case "udp": self = .udp
        case "tcp": self = .tcp
        case "tls": self = .tls
        default: return nil
        }
    }

    var isReliable: Bool { self != .udp }

}
