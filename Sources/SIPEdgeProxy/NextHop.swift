import SIPEdgeConfig
import SIPEdgeIO
import SIPMessage

/// Where a request goes next, before name resolution.
struct NextHopTarget: Sendable {
    var host: String
    var port: UInt16?
    var transport: Transport
    /// The address, when the host is numeric and known up front (the upstream).
    var address: SocketAddress?

    /// From a Route entry or Request-URI: `maddr` wins over the host (§16.5), `transport` picks
    /// the transport, UDP by default.
    init(uri: URIParts, in message: SIPMessage) {
        host = message.text(uri.maddrRange ?? uri.hostRange)
        port = uri.port.map { UInt16($0) }
        transport = uri.transportRange.flatMap { Transport(sipText: message.text($0)) } ?? .udp
    }

    init(upstream: UpstreamTarget) {
        host = upstream.host.hasPrefix("[") ? String(upstream.host.dropFirst().dropLast()) : upstream.host
        port = upstream.port
        transport = upstream.transport == .tcp ? .tcp : .udp
        address = try? SocketAddress(ipAddress: host, port: port ?? 5060)
    }
}

extension Worker {
    /// The address of a target whose host is numeric; nil when it needs a DNS lookup.
    func numericAddress(_ target: NextHopTarget) -> SocketAddress? {
        if let address = target.address { return address }
        let port = target.port ?? 5060
        // Peers repeat: the last answer saves parsing the same host text again.
        if let (host, cachedPort, address) = lastNumericHost, cachedPort == port, host == target.host { return address }
        guard let address = try? SocketAddress(ipAddress: target.host, port: port) else { return nil }
        lastNumericHost = (target.host, port, address)
        return address
    }

    /// Resolves a target: numeric hosts at once, names through evdns (A/AAAA).
    func resolve(_ target: NextHopTarget, completion: @escaping (Result<SocketAddress, SIPIOError>) -> Void) {
        let port = target.port ?? 5060
        if let address = try? SocketAddress(ipAddress: target.host, port: port) {
            completion(.success(address))
            return
        }
        loop.resolve(host: target.host) { result in
            switch result {
            case .success(let addresses):
                // The first answer of a family we have an interface for (A before AAAA on an IPv4 proxy).
                let usable = addresses.first { candidate in
                    self.context.interfaces.all.contains { $0.address.isIPv6 == candidate.isIPv6 }
                }
                guard let usable else {
                    completion(.failure(SIPIOError(code: .nameNotFound, operation: "resolve \(target.host)", reason: "no address")))
                    return
                }
                completion(.success(usable.withPort(port)))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }
}
