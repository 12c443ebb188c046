/// Which calls are recorded through SIPREC (RFC 7866), toward which Session Recording Servers, and
/// how. Rules select calls; the first rule that matches a call gives its recording instances, each
/// of which records the call to its own SRS list in parallel with the others.
public struct RecordingConfiguration: Hashable, Sendable {
    /// Tried in order; the first matching rule wins and all of its instances record.
    public var rules: [RecordingRule]
    /// NG control addresses of the media engines (rtpengine); UDP only.
    public var mediaEngines: [ListenAddress]
    /// Pause the recording (streams inactive toward the SRS) while the call is on hold.
    public var pauseOnHold: Bool
    /// Start recording on a 183 with SDP instead of waiting for the 2xx.
    public var startOnEarlyMedia: Bool
    /// File-level defaults, already applied to the instances of `rules`; kept for the `--srs` flag,
    /// which builds its instance after the file is read.
    public var srsTimeoutMilliseconds: Int
    public var skipFailoverCodes: Pattern?
    public var legacyMetadataType: Bool

    public init(
        rules: [RecordingRule] = [], mediaEngines: [ListenAddress] = [], pauseOnHold: Bool = true,
        startOnEarlyMedia: Bool = false, srsTimeoutMilliseconds: Int = SRSTarget.defaultTimeoutMilliseconds,
        skipFailoverCodes: Pattern? = nil, legacyMetadataType: Bool = false
    ) {
        self.rules = rules
        self.mediaEngines = mediaEngines
        self.pauseOnHold = pauseOnHold
        self.startOnEarlyMedia = startOnEarlyMedia
        self.srsTimeoutMilliseconds = srsTimeoutMilliseconds
        self.skipFailoverCodes = skipFailoverCodes
        self.legacyMetadataType = legacyMetadataType
    }

    /// Whether any call can be recorded at all.
    public var isEnabled: Bool { !rules.isEmpty }

    /// The instances that record the call `lookup` describes: those of the first matching rule, or
    /// none.
    public func instances(for lookup: (CallField) -> String?) -> [RecordingInstance] {
        for rule in rules where rule.matches(lookup) { return rule.instances }
        return []
    }

    /// Walks every XML override and extension (caller, callee, session_extension, group_extension)
    /// and reports the first one `check` rejects, naming the rule, instance and key. The XML checker
    /// lives in another module, so it is injected.
    public func validateXML(_ check: (String) throws -> Void) throws(ConfigurationProblem) {
        for (ruleIndex, rule) in rules.enumerated() {
            for (instanceIndex, instance) in rule.instances.enumerated() {
                let fields: [(String, String?)] = [
                    ("caller", instance.callerXML), ("callee", instance.calleeXML),
                    ("session_extension", instance.sessionExtensionXML),
                    ("group_extension", instance.groupExtensionXML),
                ]
                for case (let key, let xml?) in fields {
                    do { try check(xml) } catch {
                        let path = Self.instancePath(ruleIndex, rule.name, instanceIndex, instance.name)
                        throw ConfigurationProblem("\(path): \(key): \(error)")
                    }
                }
            }
        }
    }

    /// Cross-field rules: names, lists that must not be empty, ranges, the socket against the
    /// listen addresses, a media engine whenever anything is recorded, and each SRS's TLS and media
    /// security against the global TLS settings `tls`.
    func validate(listen: [ListenAddress], tls: TLSFiles) throws(ConfigurationError) {
        if isEnabled, mediaEngines.isEmpty {
            throw ConfigurationError(
                key: "recording",
                problem: "calls are recorded but no media engine is given (give --rtpengine or recording.rtpengine)")
        }
        for engine in mediaEngines where engine.transport != .udp {
            throw ConfigurationError(key: "recording.rtpengine", problem: mediaEngineOverTCP(engine.description))
        }
        if !SRSTarget.timeoutRange.contains(srsTimeoutMilliseconds) {
            throw ConfigurationError(key: "recording.srs_timeout_ms", problem: timeoutProblem(srsTimeoutMilliseconds))
        }
        var ruleNames: [String: Int] = [:]
        for (ruleIndex, rule) in rules.enumerated() {
            let rulePath = Self.rulePath(ruleIndex, rule.name)
            if rule.name.isEmpty { throw ConfigurationError(key: rulePath, problem: "a rule needs a name") }
            if let first = ruleNames[rule.name] {
                throw ConfigurationError(
                    key: "\(rulePath): name",
                    problem: "'\(rule.name)' is already the name of \(Self.rulePath(first, rule.name))")
            }
            ruleNames[rule.name] = ruleIndex
            if rule.instances.isEmpty {
                throw ConfigurationError(key: "\(rulePath): instances", problem: "a rule needs at least one instance")
            }
            var instanceNames: [String: Int] = [:]
            for (instanceIndex, instance) in rule.instances.enumerated() {
                let path = Self.instancePath(ruleIndex, rule.name, instanceIndex, instance.name)
                if instance.name.isEmpty {
                    throw ConfigurationError(key: "\(path): name", problem: "must not be empty")
                }
                if let first = instanceNames[instance.name] {
                    throw ConfigurationError(
                        key: "\(path): name",
                        problem: "'\(instance.name)' is already the name of instances[\(first)] in this rule")
                }
                instanceNames[instance.name] = instanceIndex
                try instance.validate(path: path, listen: listen, tls: tls)
            }
        }
    }

    static func rulePath(_ index: Int, _ name: String) -> String {
        name.isEmpty ? "recording.rules[\(index)]" : "recording.rules[\(index)] (\(name))"
    }

    static func instancePath(_ ruleIndex: Int, _ ruleName: String, _ index: Int, _ name: String) -> String {
        "\(rulePath(ruleIndex, ruleName)): " + (name.isEmpty ? "instances[\(index)]" : "instances[\(index)] (\(name))")
    }
}

/// One rule: the calls it selects and the instances that record them.
public struct RecordingRule: Hashable, Sendable {
    public var name: String
    /// All must match; none selects every call.
    public var conditions: [MatchCondition]
    public var instances: [RecordingInstance]

    public init(name: String, conditions: [MatchCondition] = [], instances: [RecordingInstance]) {
        self.name = name
        self.conditions = conditions
        self.instances = instances
    }

    /// Whether every condition matches the call `lookup` describes.
    public func matches(_ lookup: (CallField) -> String?) -> Bool {
        conditions.allSatisfy { $0.matches(lookup) }
    }
}

/// A part of the initial INVITE a rule can look at.
public enum CallField: Hashable, Sendable, CustomStringConvertible {
    case requestURI
    /// The whole From header value, display name and parameters included.
    case from
    /// The whole To header value.
    case to
    /// The sender's address as `IP:PORT` (IPv6 in brackets: `[::1]:5060`).
    case source
    /// The value of the named header; absent when the request has no such header.
    case header(String)

    /// The name of the field in the configuration file, below `match`.
    public var description: String {
        switch self {
        case .requestURI: "request_uri"
        case .from: "from"
        case .to: "to"
        case .source: "source"
        case .header(let name): "headers.\(name)"
        }
    }
}

/// One condition of a rule: a field and the pattern its value must match. A field the call does
/// not have does not match.
public struct MatchCondition: Hashable, Sendable {
    public var field: CallField
    public var pattern: Pattern

    public init(field: CallField, pattern: Pattern) {
        self.field = field
        self.pattern = pattern
    }

    public func matches(_ lookup: (CallField) -> String?) -> Bool {
        guard let value = lookup(field) else { return false }
        return pattern.matches(value)
    }
}

/// One recording of a call: the SRS list tried in order (failover) and what the recording session
/// carries.
public struct RecordingInstance: Hashable, Sendable {
    public var name: String
    /// Tried in order; a negative reply or a timeout moves to the next, unless the reply's code
    /// matches `skipFailoverCodes`.
    public var srs: [SRSTarget]
    /// Matched against the whole three-digit status code (anchored).
    public var skipFailoverCodes: Pattern?
    /// Recording group (`<group>` of the metadata).
    public var group: String?
    /// Raw XML that replaces the caller's and the callee's participant in the metadata.
    public var callerXML: String?
    public var calleeXML: String?
    /// The address the media engine advertises to the SRS.
    public var mediaAddress: String?
    /// Extra NG flags for the media engine's subscribe requests.
    public var mediaFlags: [String]
    /// Extra headers of the INVITE toward the SRS, filled from the call's own headers.
    public var headers: [HeaderTemplate]
    /// The local listener the recording session is sent from; one of the listen addresses.
    public var socket: ListenAddress?
    /// From and To of the recording session (both default to the SRS URI).
    public var fromURI: String?
    public var toURI: String?
    /// Raw extension XML inside `<recording>` and inside `<group>`.
    public var sessionExtensionXML: String?
    public var groupExtensionXML: String?

    public init(
        name: String, srs: [SRSTarget], skipFailoverCodes: Pattern? = nil, group: String? = nil,
        callerXML: String? = nil, calleeXML: String? = nil, mediaAddress: String? = nil,
        mediaFlags: [String] = [], headers: [HeaderTemplate] = [], socket: ListenAddress? = nil,
        fromURI: String? = nil, toURI: String? = nil, sessionExtensionXML: String? = nil,
        groupExtensionXML: String? = nil
    ) {
        self.name = name
        self.srs = srs
        self.skipFailoverCodes = skipFailoverCodes
        self.group = group
        self.callerXML = callerXML
        self.calleeXML = calleeXML
        self.mediaAddress = mediaAddress
        self.mediaFlags = mediaFlags
        self.headers = headers
        self.socket = socket
        self.fromURI = fromURI
        self.toURI = toURI
        self.sessionExtensionXML = sessionExtensionXML
        self.groupExtensionXML = groupExtensionXML
    }

    func validate(path: String, listen: [ListenAddress], tls: TLSFiles) throws(ConfigurationError) {
        if srs.isEmpty { throw ConfigurationError(key: "\(path): srs", problem: "at least one SRS URI is needed") }
        for (index, target) in srs.enumerated() {
            try target.validate(path: "\(path): srs[\(index)]", tls: tls)
        }
        if groupExtensionXML != nil, group == nil {
            throw ConfigurationError(key: "\(path): group_extension", problem: "needs a group")
        }
        if let socket, !listen.contains(socket) {
            throw ConfigurationError(key: "\(path): socket", problem: "'\(socket)' is not one of the listen addresses")
        }
    }
}

/// One Session Recording Server: `sip:[user@]host[:port][;transport=udp|tcp|tls]` or
/// `sips:[user@]host[:port]` (TLS, RFC 5630).
public struct SRSTarget: Hashable, Sendable, CustomStringConvertible {
    public static let defaultTimeoutMilliseconds = 5000
    static let timeoutRange = 1...600_000

    public var uri: String
    /// IP address (IPv6 without brackets) or host name.
    public var host: String
    /// As written in the URI; `effectivePort` supplies the default.
    public var port: UInt16?
    /// `.tls` for `sips:` URIs and `transport=tls`; nil when the URI does not say (UDP).
    public var transport: ListenAddress.TransportName?
    /// How long the INVITE toward this SRS waits for a final reply before the next SRS is tried.
    public var timeoutMilliseconds: Int
    /// Send the metadata as `application/rs-metadata` (older recorders) instead of
    /// `application/rs-metadata+xml`.
    public var legacyMetadataType: Bool
    /// This SRS's TLS settings over the global ones (`ProxyConfiguration.tlsSettings(toward:)`);
    /// empty when it has none of its own. Only a TLS SRS may have any.
    public var tls: TLSFiles
    /// Plain RTP or SDES-SRTP toward this SRS, whatever the call's legs use.
    public var mediaSecurity: MediaSecurity

    public init(
        uri: String, host: String, port: UInt16? = nil, transport: ListenAddress.TransportName? = nil,
        timeoutMilliseconds: Int = SRSTarget.defaultTimeoutMilliseconds, legacyMetadataType: Bool = false,
        tls: TLSFiles = TLSFiles(), mediaSecurity: MediaSecurity = .rtp
    ) {
        self.uri = uri
        self.host = host
        self.port = port
        self.transport = transport
        self.timeoutMilliseconds = timeoutMilliseconds
        self.legacyMetadataType = legacyMetadataType
        self.tls = tls
        self.mediaSecurity = mediaSecurity
    }

    /// Parses one SRS URI (surrounding white space is ignored). `sips:` means TLS: alone, with
    /// `transport=tls` or with `transport=tcp` (RFC 5630 §3.1.3: TLS over TCP); `transport=udp`
    /// contradicts it.
    public init(parsing text: String, defaultTimeoutMilliseconds: Int = SRSTarget.defaultTimeoutMilliseconds)
        throws(ConfigurationProblem)
    {
        let text = trimmed(text)
        let lower = text.lowercased()
        let isSIPS = lower.hasPrefix("sips:")
        guard isSIPS || lower.hasPrefix("sip:") else {
            throw ConfigurationProblem("'\(text)' is not a sip: or sips: URI")
        }
        if let bad = text.first(where: { $0.isWhitespace || "<>\",".contains($0) }) {
            throw ConfigurationProblem("'\(text)' is not a sip: or sips: URI ('\(bad.isWhitespace ? " " : bad)' in it)")
        }
        if text.contains("?") { throw ConfigurationProblem("'\(text)': URI headers (?...) are not supported") }
        var rest = Substring(text.dropFirst(isSIPS ? 5 : 4))
        if let at = rest.lastIndex(of: "@") {
            if at == rest.startIndex { throw ConfigurationProblem("empty user part in '\(text)'") }
            rest = rest[rest.index(after: at)...]
        }
        var parameters: [Substring] = []
        if let semicolon = rest.firstIndex(of: ";") {
            parameters = rest[rest.index(after: semicolon)...].split(separator: ";")
            rest = rest[..<semicolon]
        }
        let (host, port) = try parseHostPort(String(rest), whole: text)
        guard isNumericAddress(host) || isHostName(host) else {
            throw ConfigurationProblem("'\(host)' in '\(text)' is not an IP address or a host name")
        }
        var transport: ListenAddress.TransportName? = isSIPS ? .tls : nil
        for parameter in parameters {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { String($0).lowercased() }
            guard pair.first == "transport" else { continue }
            guard pair.count == 2, let value = ListenAddress.TransportName(rawValue: pair[1]) else {
                throw ConfigurationProblem(
                    "unsupported transport in '\(text)' (use transport=udp, transport=tcp or transport=tls)")
            }
            if isSIPS {
                guard value != .udp else {
                    throw ConfigurationProblem("'\(text)': a sips: URI is reached over TLS, not transport=udp")
                }
            } else {
                transport = value
            }
        }
        self.init(
            uri: text, host: host, port: port, transport: transport, timeoutMilliseconds: defaultTimeoutMilliseconds)
    }

    public var description: String { uri }

    /// Whether the SRS is reached over TLS (`sips:` or `transport=tls`).
    public var isSecure: Bool { transport == .tls }

    /// Whether the URI is a sips: URI, which asks for TLS on every hop (RFC 5630).
    public var isSIPSURI: Bool { uri.lowercased().hasPrefix("sips:") }

    /// The port to connect to: the URI's, else 5061 for TLS and 5060 otherwise (RFC 3261 §19.1.2).
    public var effectivePort: UInt16 { port ?? (isSecure ? 5061 : 5060) }

    /// Per-SRS rules: the timeout's range, TLS settings only where TLS is used and a CA whenever the
    /// SRS is verified, and SDES only over TLS. `path` names the SRS (`...: srs[1]`).
    func validate(path: String, tls global: TLSFiles) throws(ConfigurationError) {
        if !Self.timeoutRange.contains(timeoutMilliseconds) {
            throw ConfigurationError(key: path, problem: "no-reply timeout " + timeoutProblem(timeoutMilliseconds))
        }
        if isSecure {
            try tls.validate(prefix: "\(path): tls", global: false)
            if tls.verifyPeer != false, !tls.merged(over: global).hasTrustAnchors {
                throw ConfigurationError(
                    key: path, problem: noCAProblem(uri) + "; or tls.verify: false for this SRS")
            }
        } else if tls != TLSFiles() {
            throw ConfigurationError(
                key: "\(path): tls", problem: "'\(uri)' is not reached over TLS (use sips: or transport=tls)")
        }
        if case .sdes(let suites) = mediaSecurity {
            do throws(ConfigurationProblem) {
                guard try MediaSecurity.suites(parsing: suites) == suites else {
                    throw ConfigurationProblem("suite names are written as rtpengine spells them (upper case)")
                }
            } catch {
                throw ConfigurationError(key: "\(path): srtp_suites", problem: error.message)
            }
            if !isSecure {
                // RFC 4568 §8.3: the keys are in the SDP, so the signalling must be encrypted.
                throw ConfigurationError(
                    key: "\(path): media",
                    problem: "SDES puts the SRTP keys in the SDP, so '\(uri)' must be reached over TLS (sips: or transport=tls)")
            }
        }
    }

    /// Parses a comma-separated list (entries trimmed, empty ones skipped), in order.
    public static func list(parsing texts: [String], defaultTimeoutMilliseconds: Int = defaultTimeoutMilliseconds)
        throws(ConfigurationProblem) -> [SRSTarget]
    {
        var targets: [SRSTarget] = []
        for entry in splitList(texts) {
            targets.append(try SRSTarget(parsing: entry, defaultTimeoutMilliseconds: defaultTimeoutMilliseconds))
        }
        return targets
    }
}

/// An extra header for the INVITE toward the SRS, as `Name: template`. The template may refer to
/// the call: `{header:Name}` (the value of one of its headers), `{call-id}`, `{from}`, `{to}`,
/// `{request-uri}`, `{source}`; `{{` and `}}` stand for literal braces.
public struct HeaderTemplate: Hashable, Sendable {
    /// Headers the proxy writes itself (compact forms included), which a template may not add.
    public static let reservedNames: Set<String> = [
        "via", "from", "to", "call-id", "cseq", "contact", "content-type", "content-length", "max-forwards",
        "require", "v", "f", "t", "i", "m", "c", "l",
    ]

    public var name: String
    public var template: String

    /// Checks the name (a SIP token the proxy does not own) and the template.
    public init(name: String, template: String) throws(ConfigurationProblem) {
        guard isToken(name) else { throw ConfigurationProblem("'\(name)' is not a valid header name") }
        guard !Self.reservedNames.contains(name.lowercased()) else {
            throw ConfigurationProblem("\(name) is written by the proxy and cannot be added")
        }
        _ = try Self.pieces(of: template)
        self.name = name
        self.template = template
    }

    /// Parses `Name: template`.
    public init(parsing line: String) throws(ConfigurationProblem) {
        guard let colon = line.firstIndex(of: ":") else {
            throw ConfigurationProblem("'\(line)' is not 'Name: value'")
        }
        try self.init(name: trimmed(line[..<colon]), template: trimmed(line[line.index(after: colon)...]))
    }

    /// The header value for the call `lookup` describes; nil when a referenced header (or field) is
    /// absent, so the header is then left out. Line breaks in looked-up values are dropped.
    public func expand(_ lookup: (CallField) -> String?) -> String? {
        guard let pieces = try? Self.pieces(of: template) else { return nil }
        var value = ""
        for piece in pieces {
            switch piece {
            case .literal(let text): value += text
            case .field(let field):
                guard let found = lookup(field) else { return nil }
                value.unicodeScalars.append(contentsOf: found.unicodeScalars.lazy.filter { $0 != "\r" && $0 != "\n" })
            }
        }
        return value
    }

    enum Piece: Equatable { case literal(String), field(CallField) }

    static func pieces(of template: String) throws(ConfigurationProblem) -> [Piece] {
        if template.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) {
            throw ConfigurationProblem("line break in '\(template)'")
        }
        var pieces: [Piece] = []
        var literal = ""
        var index = template.startIndex
        while index < template.endIndex {
            let character = template[index]
            let next = template.index(after: index)
            if character == "}" {
                guard next < template.endIndex, template[next] == "}" else {
                    throw ConfigurationProblem("unmatched '}' in '\(template)' (write '}}' for a literal one)")
                }
                literal.append("}")
                index = template.index(after: next)
            } else if character == "{" {
                if next < template.endIndex, template[next] == "{" {
                    literal.append("{")
                    index = template.index(after: next)
                    continue
                }
                guard let close = template[next...].firstIndex(of: "}") else {
                    throw ConfigurationProblem("unclosed '{' in '\(template)'")
                }
                let placeholder = template[next..<close]
                if !literal.isEmpty { pieces.append(.literal(literal)) }
                literal = ""
                pieces.append(.field(try field(named: placeholder, in: template)))
                index = template.index(after: close)
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        return pieces
    }

    private static func field(named placeholder: Substring, in template: String) throws(ConfigurationProblem)
        -> CallField
    {
        let lower = placeholder.lowercased()
        if lower.hasPrefix("header:") {
            let name = String(placeholder.dropFirst("header:".count))
            guard isToken(name) else {
                throw ConfigurationProblem("'{\(placeholder)}' in '\(template)' does not name a header")
            }
            return .header(name)
        }
        switch lower {
        case "call-id": return .header("Call-ID")
        case "from": return .from
        case "to": return .to
        case "request-uri": return .requestURI
        case "source": return .source
        default:
            throw ConfigurationProblem(
                "unknown placeholder '{\(placeholder)}' in '\(template)' "
                    + "(use {header:Name}, {call-id}, {from}, {to}, {request-uri} or {source})")
        }
    }
}

// MARK: - Shared checks

/// RFC 3261 token: the characters a header name may have.
func isToken(_ text: String) -> Bool {
    !text.isEmpty
        && text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII
                && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || "-.!%*_+`'~".unicodeScalars.contains(scalar))
        }
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, not all digits.
func isHostName(_ host: String) -> Bool {
    let labels = host.split(separator: ".", omittingEmptySubsequences: false)
    guard !labels.isEmpty, !host.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else { return false }
    return labels.allSatisfy { label in
        !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
            && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
}

/// A URI for From or To of the recording session: `sip:` or `sips:`, no white space or brackets.
func checkSIPURI(_ text: String) throws(ConfigurationProblem) {
    let lower = text.lowercased()
    let scheme = lower.hasPrefix("sip:") ? 4 : lower.hasPrefix("sips:") ? 5 : 0
    guard scheme > 0, text.count > scheme, !text.contains(where: { $0.isWhitespace || "<>\"".contains($0) })
    else {
        throw ConfigurationProblem("'\(text)' is not a sip: or sips: URI")
    }
}

/// Splits comma-separated entries of every item, trims them and drops empty ones.
func splitList(_ items: [String]) -> [String] {
    items.flatMap { $0.split(separator: ",") }.map { trimmed($0) }.filter { !$0.isEmpty }
}

func trimmed<S: StringProtocol>(_ text: S) -> String {
    guard let first = text.firstIndex(where: { !$0.isWhitespace }),
        let last = text.lastIndex(where: { !$0.isWhitespace })
    else { return "" }
    return String(text[first...last])
}

func timeoutProblem(_ value: Int) -> String {
    "must be between \(SRSTarget.timeoutRange.lowerBound) and \(SRSTarget.timeoutRange.upperBound) ms, got \(value)"
}

func mediaEngineOverTCP(_ text: String) -> String {
    "'\(text)': the media engine is reached over udp only"
}

func noCAProblem(_ uri: String) -> String {
    "'\(uri)' is verified against a CA and none is given (tls.ca_file or tls.ca_directory, or --tls-ca)"
}
