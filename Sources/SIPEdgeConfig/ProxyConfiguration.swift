/// Where the proxy listens: `udp:IP:PORT`, `tcp:IP:PORT`, `tls:IP:PORT`, IPv6 as `udp:[::1]:5060`.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// A TLS listener needs the global certificate and key (`tls` section or `--tls-cert`/`--tls-key`).
    public enum TransportName: String, Sendable, Hashable, CaseIterable { case udp, tcp, tls }

    public var transport: TransportName
    /// Numeric IPv4 or IPv6 address, without brackets.
    public var host: String
    public var port: UInt16

    public init(transport: TransportName, host: String, port: UInt16) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    /// Parses `udp:127.0.0.1:5060`, `tcp:[::1]:5060` or `tls:127.0.0.1:5061`.
    public init(parsing text: String) throws(ConfigurationProblem) {
        guard let colon = text.firstIndex(of: ":") else {
            throw ConfigurationProblem("expected TRANSPORT:IP:PORT such as udp:127.0.0.1:5060, got '\(text)'")
        }
        let transportText = String(text[..<colon]).lowercased()
        guard let transport = TransportName(rawValue: transportText) else {
            throw ConfigurationProblem(
                "unknown transport '\(transportText)' in '\(text)' (use udp, tcp or tls)")
        }
        let (host, port) = try parseHostPort(String(text[text.index(after: colon)...]), whole: text)
        guard let port else { throw ConfigurationProblem("missing port in '\(text)'") }
        guard isNumericAddress(host) else {
            throw ConfigurationProblem("'\(host)' in '\(text)' is not a numeric IPv4 or IPv6 address")
        }
        self.init(transport: transport, host: host, port: port)
    }

    public var description: String {
        host.contains(":") ? "\(transport.rawValue):[\(host)]:\(port)" : "\(transport.rawValue):\(host):\(port)"
    }
}

/// The fixed next hop for initial requests (`--upstream sip:host[:port][;transport=udp|tcp|tls]`).
public struct UpstreamTarget: Hashable, Sendable, CustomStringConvertible {
    public var uri: String
    public var host: String
    public var port: UInt16?
    public var transport: ListenAddress.TransportName?

    /// Parses a SIP URI; only `sip:` with an optional `transport` parameter is accepted (TLS as
    /// `transport=tls`: a sips: next hop would promise TLS on every hop of the call, which the
    /// proxy does not check).
    public init(parsing text: String) throws(ConfigurationProblem) {
        let lower = text.lowercased()
        guard lower.hasPrefix("sip:") else {
            throw ConfigurationProblem("'\(text)' is not a sip: URI (for TLS write sip:host;transport=tls)")
        }
        var rest = Substring(text.dropFirst(4))
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        var parameters: [Substring] = []
        if let semicolon = rest.firstIndex(of: ";") {
            parameters = rest[rest.index(after: semicolon)...].split(separator: ";")
            rest = rest[..<semicolon]
        }
        let (host, port) = try parseHostPort(String(rest), whole: text)
        var transport: ListenAddress.TransportName?
        for parameter in parameters {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { String($0).lowercased() }
            guard pair.first == "transport" else { continue }
            guard pair.count == 2, let value = ListenAddress.TransportName(rawValue: pair[1]) else {
                throw ConfigurationProblem(
                    "unsupported transport in '\(text)' (use transport=udp, transport=tcp or transport=tls)")
            }
            transport = value
        }
        self.uri = text
        self.host = host
        self.port = port
        self.transport = transport
    }

    public var description: String { uri }
}

/// Every setting of the proxy. Defaults are the embedded ones `make run` uses.
public struct ProxyConfiguration: Sendable, Equatable {
    public var listen: [ListenAddress] = [
        ListenAddress(transport: .udp, host: "127.0.0.1", port: 5060),
        ListenAddress(transport: .tcp, host: "127.0.0.1", port: 5060),
    ]
    public var upstream: UpstreamTarget?
    /// Worker event loops; nil means one per core.
    public var workers: Int?
    public var logLevel: LogLevelName = .info
    /// RFC 3261 timer bases in milliseconds.
    public var t1Milliseconds = 500
    public var t2Milliseconds = 4000
    public var t4Milliseconds = 5000
    /// Messages above this size are rejected (UDP datagrams above it are dropped and counted).
    public var maxMessageSize = 65535
    /// A confirmed dialog that sees no BYE and no refresh expires after this long.
    public var dialogLifetimeSeconds = 43200
    /// An INVITE that sees no final response within this time is cancelled (RFC 3261 Timer C).
    public var inviteTimeoutSeconds = 180
    /// Per-socket UDP receive buffer, bytes.
    public var udpReceiveBufferBytes = 4 * 1024 * 1024
    /// After a UDP read that found datagrams, the socket rests this long (microseconds) before it is
    /// read again, so a loaded worker wakes less often and moves larger batches; 0 (the default)
    /// reads at once. Measured on loopback it halved wakeups under SIPp load but cost more CPU than
    /// it saved under sip-replay's burstier traffic, and it adds up to the pause per hop: opt-in.
    public var udpCoalesceMicroseconds = 0
    /// Heap each worker maps at start, megabytes: transactions live for 64·T1 after their final
    /// response (RFC 6026), so a loaded worker holds tens of thousands of them.
    public var heapReserveMegabytes = 32
    /// SIPREC: which calls are recorded, toward which SRSs, through which media engines.
    public var recording = RecordingConfiguration()
    /// Global TLS settings: the TLS listener's certificate and key (and `verifyPeer`, its
    /// `verify_client`), the CA that TLS SRSs are verified against, the client certificate for
    /// mutual TLS, cipher lists. An SRS's own `tls` settings override them for that SRS.
    public var tls = TLSFiles()

    public init() {}

    /// Checks cross-field rules; the file loader and the flags both end here.
    public func validated() throws(ConfigurationError) -> ProxyConfiguration {
        if listen.isEmpty { throw ConfigurationError(key: "listen", problem: "at least one address is needed") }
        try tls.validate(prefix: "tls", global: true)
        if let address = listen.first(where: { $0.transport == .tls }), tls.certificateFile == nil {
            throw ConfigurationError(
                key: "listen",
                problem: "'\(address)' needs a certificate and its key (tls.certificate and tls.private_key, or --tls-cert and --tls-key)")
        }
        if let workers, !(1...256).contains(workers) {
            throw ConfigurationError(key: "workers", problem: "must be between 1 and 256, got \(workers)")
        }
        if !(1...60000).contains(t1Milliseconds) {
            throw ConfigurationError(key: "timers.t1_ms", problem: "must be between 1 and 60000")
        }
        if t2Milliseconds < t1Milliseconds {
            throw ConfigurationError(key: "timers.t2_ms", problem: "must not be smaller than timers.t1_ms")
        }
        if t4Milliseconds < 1 { throw ConfigurationError(key: "timers.t4_ms", problem: "must be positive") }
        if !(1024...1_048_576).contains(maxMessageSize) {
            throw ConfigurationError(key: "limits.max_message_size", problem: "must be between 1024 and 1048576")
        }
        if !(0...100_000).contains(udpCoalesceMicroseconds) {
            throw ConfigurationError(key: "limits.udp_coalesce_us", problem: "must be between 0 and 100000")
        }
        if !(0...4096).contains(heapReserveMegabytes) {
            throw ConfigurationError(key: "limits.heap_reserve_mb", problem: "must be between 0 and 4096")
        }
        if dialogLifetimeSeconds < 1 {
            throw ConfigurationError(key: "dialogs.lifetime_s", problem: "must be positive")
        }
        if inviteTimeoutSeconds < 1 {
            throw ConfigurationError(key: "dialogs.invite_timeout_s", problem: "must be positive")
        }
        if let upstream, upstream.transport == .tls, !tls.hasTrustAnchors {
            throw ConfigurationError(key: "upstream", problem: noCAProblem(upstream.uri))
        }
        try recording.validate(listen: listen, tls: tls)
        return self
    }
}

/// Log levels as users write them.
public enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// A problem with one value, before we know which key or flag it came from.
public struct ConfigurationProblem: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A bad configuration: which key (or flag) and what is wrong with it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var key: String
    public var problem: String
    public var file: String?

    public init(key: String, problem: String, file: String? = nil) {
        self.key = key
        self.problem = problem
        self.file = file
    }

    public var description: String {
        if let file { return "\(file): \(key): \(problem)" }
        return "\(key): \(problem)"
    }
}

func parseHostPort(_ text: String, whole: String) throws(ConfigurationProblem) -> (String, UInt16?) {
    var host: String
    var portText: Substring?
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]") else {
            throw ConfigurationProblem("unclosed '[' in '\(whole)'")
        }
        host = String(text[text.index(after: text.startIndex)..<close])
        let after = text[text.index(after: close)...]
        if !after.isEmpty {
            guard after.hasPrefix(":") else { throw ConfigurationProblem("unexpected '\(after)' in '\(whole)'") }
            portText = after.dropFirst()
        }
    } else {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2 else {
            throw ConfigurationProblem("IPv6 addresses need brackets, as in udp:[::1]:5060 ('\(whole)')")
        }
        host = String(parts[0])
        if parts.count == 2 { portText = parts[1] }
    }
    guard !host.isEmpty else { throw ConfigurationProblem("missing host in '\(whole)'") }
    guard let portText else { return (host, nil) }
    guard let port = UInt16(portText), port > 0 else {
        throw ConfigurationProblem("port '\(portText)' in '\(whole)' is not between 1 and 65535")
    }
    return (host, port)
}

/// True for a dotted-quad IPv4 address or a textual IPv6 address (checked loosely; the socket
/// layer rejects anything inet_pton does not accept).
func isNumericAddress(_ host: String) -> Bool {
    if host.contains(":") {
        return host.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    }
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { part in UInt8(part) != nil && !part.isEmpty }
}
