import Yams

/// The `recording` section of the configuration file. File-level values (timeout, legacy metadata
/// type, skip codes) are read before the rules, wherever they stand, and are the defaults of
/// instances that do not set their own.
///
/// ```yaml
/// recording:
///   rtpengine: [udp:127.0.0.1:2223]
///   pause_on_hold: true
///   start_on_early_media: false
///   skip_failover_codes: "408|487"
///   srs_timeout_ms: 5000
///   legacy_metadata_type: false
///   rules:
///     - name: sales
///       match: { request_uri: "^sip:\\+44", headers: { X-Record: "^yes$" } }
///       instances:
///         - name: primary
///           media_security: rtp            # default of its SRSs: rtp, or sdes with srtp_suites
///           srs:
///             - "sip:srs1@127.0.0.1:5090, sip:127.0.0.1:5091;transport=tcp"
///             - uri: "sips:rec.example.com"
///               timeout_ms: 3000
///               legacy_metadata_type: true
///               tls: { ca_file: rec-ca.pem, server_name: rec.example.com }   # see TLSFile.swift
///               media: sdes
///               srtp_suites: [AEAD_AES_256_GCM]
/// ```
extension ConfigurationFile {
    static func recording(_ node: Node, over base: RecordingConfiguration) throws(ConfigurationError)
        -> RecordingConfiguration
    {
        var recording = base
        var rulesNode: Node?
        try section(node, key: "recording") { name, value throws(ConfigurationError) in
            let key = "recording.\(name)"
            switch name {
            case "rtpengine": recording.mediaEngines = try mediaEngines(value, key: key)
            case "pause_on_hold": recording.pauseOnHold = try boolean(value, key: key)
            case "start_on_early_media": recording.startOnEarlyMedia = try boolean(value, key: key)
            case "legacy_metadata_type": recording.legacyMetadataType = try boolean(value, key: key)
            case "skip_failover_codes": recording.skipFailoverCodes = try skipCodes(value, key: key)
            case "srs_timeout_ms": recording.srsTimeoutMilliseconds = try timeout(value, key: key)
            case "rules": rulesNode = value
            default: throw unknown(key)
            }
        }
        if let rulesNode {
            guard case .sequence(let sequence) = rulesNode else {
                throw ConfigurationError(key: "recording.rules", problem: "expected a list of rules")
            }
            recording.rules = []
            for (index, item) in sequence.enumerated() {
                recording.rules.append(try rule(item, index: index, defaults: recording))
            }
        }
        return recording
    }

    private static func rule(_ node: Node, index: Int, defaults: RecordingConfiguration) throws(ConfigurationError)
        -> RecordingRule
    {
        guard let mapping = node.mapping else {
            throw ConfigurationError(key: "recording.rules[\(index)]", problem: "expected a mapping of keys to values")
        }
        var name = ""
        if let nameNode = mapping["name"] { name = try string(nameNode, key: "recording.rules[\(index)]: name") }
        let path = RecordingConfiguration.rulePath(index, name)
        if name.isEmpty { throw ConfigurationError(key: path, problem: "a rule needs a name") }
        var rule = RecordingRule(name: name, instances: [])
        try section(node, key: path) { key, value throws(ConfigurationError) in
            switch key {
            case "name": break
            case "match": rule.conditions = try conditions(value, path: path)
            case "instances":
                guard case .sequence(let sequence) = value else {
                    throw ConfigurationError(key: "\(path): instances", problem: "expected a list of instances")
                }
                for (instanceIndex, item) in sequence.enumerated() {
                    rule.instances.append(
                        try instance(item, ruleIndex: index, ruleName: name, index: instanceIndex, defaults: defaults))
                }
            default: throw unknown("\(path): \(key)")
            }
        }
        return rule
    }

    private static func conditions(_ node: Node, path: String) throws(ConfigurationError) -> [MatchCondition] {
        var conditions: [MatchCondition] = []
        func add(_ field: CallField, _ value: Node) throws(ConfigurationError) {
            let key = "\(path): match.\(field)"
            let text = try string(value, key: key)
            do throws(ConfigurationProblem) {
                conditions.append(MatchCondition(field: field, pattern: try Pattern(text)))
            } catch {
                throw ConfigurationError(key: key, problem: error.message)
            }
        }
        try section(node, key: "\(path): match") { name, value throws(ConfigurationError) in
            switch name {
            case "request_uri": try add(.requestURI, value)
            case "from": try add(.from, value)
            case "to": try add(.to, value)
            case "source": try add(.source, value)
            case "headers":
                try section(value, key: "\(path): match.headers") { header, pattern throws(ConfigurationError) in
                    guard isToken(header) else {
                        throw ConfigurationError(
                            key: "\(path): match.headers", problem: "'\(header)' is not a valid header name")
                    }
                    try add(.header(header), pattern)
                }
            default: throw unknown("\(path): match.\(name)")
            }
        }
        return conditions
    }

    private static func instance(
        _ node: Node, ruleIndex: Int, ruleName: String, index: Int, defaults: RecordingConfiguration
    ) throws(ConfigurationError) -> RecordingInstance {
        guard let mapping = node.mapping else {
            throw ConfigurationError(
                key: "\(RecordingConfiguration.rulePath(ruleIndex, ruleName)): instances[\(index)]",
                problem: "expected a mapping of keys to values")
        }
        var name = "default"
        if let nameNode = mapping["name"] {
            name = try string(
                nameNode, key: "\(RecordingConfiguration.rulePath(ruleIndex, ruleName)): instances[\(index)]: name")
        }
        let path = RecordingConfiguration.instancePath(ruleIndex, ruleName, index, name)
        var instance = RecordingInstance(name: name, srs: [], skipFailoverCodes: defaults.skipFailoverCodes)
        var srsEntries: [SRSEntry] = []
        var timeoutMilliseconds = defaults.srsTimeoutMilliseconds
        var legacyMetadataType = defaults.legacyMetadataType
        var mediaSecurityNode: Node?
        var suitesNode: Node?

        func text(_ value: Node, _ key: String) throws(ConfigurationError) -> String {
            let text = try string(value, key: "\(path): \(key)")
            if text.isEmpty { throw ConfigurationError(key: "\(path): \(key)", problem: "must not be empty") }
            return text
        }
        func uri(_ value: Node, _ key: String) throws(ConfigurationError) -> String {
            let uri = try text(value, key)
            do throws(ConfigurationProblem) { try checkSIPURI(uri) } catch {
                throw ConfigurationError(key: "\(path): \(key)", problem: error.message)
            }
            return uri
        }

        try section(node, key: path) { key, value throws(ConfigurationError) in
            switch key {
            case "name": break
            case "srs": srsEntries = try srsList(value, key: "\(path): srs")
            case "srs_timeout_ms": timeoutMilliseconds = try timeout(value, key: "\(path): srs_timeout_ms")
            case "legacy_metadata_type":
                legacyMetadataType = try boolean(value, key: "\(path): legacy_metadata_type")
            case "skip_failover_codes":
                instance.skipFailoverCodes = try skipCodes(value, key: "\(path): skip_failover_codes")
            case "group": instance.group = try text(value, key)
            case "caller": instance.callerXML = try text(value, key)
            case "callee": instance.calleeXML = try text(value, key)
            case "session_extension": instance.sessionExtensionXML = try text(value, key)
            case "group_extension": instance.groupExtensionXML = try text(value, key)
            case "media":
                let address = try text(value, key)
                guard isNumericAddress(address) else {
                    throw ConfigurationError(
                        key: "\(path): media", problem: "'\(address)' is not a numeric IPv4 or IPv6 address")
                }
                instance.mediaAddress = address
            case "media_flags":
                instance.mediaFlags = try strings(value, key: "\(path): media_flags")
                if instance.mediaFlags.contains(where: \.isEmpty) {
                    throw ConfigurationError(key: "\(path): media_flags", problem: "a flag must not be empty")
                }
            case "headers":
                let lines = try strings(value, key: "\(path): headers")
                for (headerIndex, line) in lines.enumerated() {
                    do throws(ConfigurationProblem) {
                        instance.headers.append(try HeaderTemplate(parsing: line))
                    } catch {
                        throw ConfigurationError(key: "\(path): headers[\(headerIndex)]", problem: error.message)
                    }
                }
            case "socket":
                let socket = try text(value, key)
                do throws(ConfigurationProblem) { instance.socket = try ListenAddress(parsing: socket) } catch {
                    throw ConfigurationError(key: "\(path): socket", problem: error.message)
                }
            case "from_uri": instance.fromURI = try uri(value, key)
            case "to_uri": instance.toURI = try uri(value, key)
            case "media_security": mediaSecurityNode = value
            case "srtp_suites": suitesNode = value
            default: throw unknown("\(path): \(key)")
            }
        }
        let mediaSecurity = try mediaSecurity(
            mediaSecurityNode, suitesNode, inherited: .rtp, path: path, nameKey: "media_security")
        for (srsIndex, entry) in srsEntries.enumerated() {
            let srsPath = "\(path): srs[\(srsIndex)]"
            switch entry {
            case .uri(let text):
                do throws(ConfigurationProblem) {
                    var target = try SRSTarget(parsing: text, defaultTimeoutMilliseconds: timeoutMilliseconds)
                    target.legacyMetadataType = legacyMetadataType
                    target.mediaSecurity = mediaSecurity
                    instance.srs.append(target)
                } catch {
                    throw ConfigurationError(key: srsPath, problem: error.message)
                }
            case .mapping(let node):
                instance.srs.append(
                    try srsTarget(
                        node, path: srsPath, timeoutMilliseconds: timeoutMilliseconds,
                        legacyMetadataType: legacyMetadataType, mediaSecurity: mediaSecurity))
            }
        }
        return instance
    }

    /// One entry of an instance's `srs` list: a URI (from a comma-separated string) or a mapping.
    private enum SRSEntry {
        case uri(String)
        case mapping(Node)
    }

    /// `srs:` as a comma-separated string, or a list whose items are such strings or mappings;
    /// entries are numbered in order across the whole list.
    private static func srsList(_ node: Node, key: String) throws(ConfigurationError) -> [SRSEntry] {
        switch node {
        case .scalar(let scalar): return splitList([scalar.string]).map(SRSEntry.uri)
        case .sequence(let sequence):
            var entries: [SRSEntry] = []
            for item in sequence {
                switch item {
                case .scalar(let scalar): entries += splitList([scalar.string]).map(SRSEntry.uri)
                case .mapping: entries.append(.mapping(item))
                default: throw ConfigurationError(key: key, problem: "expected SRS URIs or mappings with a uri")
                }
            }
            return entries
        default: throw ConfigurationError(key: key, problem: "expected an SRS URI or a list of SRS URIs or mappings")
        }
    }

    /// An SRS given as a mapping: `uri` and its own settings over the instance's.
    private static func srsTarget(
        _ node: Node, path: String, timeoutMilliseconds: Int, legacyMetadataType: Bool, mediaSecurity: MediaSecurity
    ) throws(ConfigurationError) -> SRSTarget {
        var uri: String?
        var ownTimeout: Int?
        var ownLegacyMetadataType: Bool?
        var tlsFiles = TLSFiles()
        var mediaNode: Node?
        var suitesNode: Node?
        try section(node, key: path) { name, value throws(ConfigurationError) in
            let key = "\(path): \(name)"
            switch name {
            case "uri": uri = try text(value, key: key)
            case "timeout_ms": ownTimeout = try timeout(value, key: key)
            case "legacy_metadata_type": ownLegacyMetadataType = try boolean(value, key: key)
            case "tls": tlsFiles = try tls(value, prefix: "\(path): tls", scope: .srs)
            case "media": mediaNode = value
            case "srtp_suites": suitesNode = value
            default: throw unknown(key)
            }
        }
        guard let uri else { throw ConfigurationError(key: path, problem: "an SRS mapping needs a uri") }
        var target: SRSTarget
        do throws(ConfigurationProblem) {
            target = try SRSTarget(parsing: uri, defaultTimeoutMilliseconds: ownTimeout ?? timeoutMilliseconds)
        } catch {
            throw ConfigurationError(key: "\(path): uri", problem: error.message)
        }
        target.legacyMetadataType = ownLegacyMetadataType ?? legacyMetadataType
        target.tls = tlsFiles
        target.mediaSecurity = try Self.mediaSecurity(
            mediaNode, suitesNode, inherited: mediaSecurity, path: path, nameKey: "media")
        return target
    }

    /// Media security from a name key (`media_security` of an instance, `media` of an SRS) and
    /// `srtp_suites`, over what the level above chose: naming sdes again keeps the suites from
    /// above; suites alone change only the suites and need sdes at this level or above.
    private static func mediaSecurity(
        _ nameNode: Node?, _ suitesNode: Node?, inherited: MediaSecurity, path: String, nameKey: String
    ) throws(ConfigurationError) -> MediaSecurity {
        var security = inherited
        if let nameNode {
            let key = "\(path): \(nameKey)"
            let name = try text(nameNode, key: key)
            do throws(ConfigurationProblem) {
                let named = try MediaSecurity(parsing: name)
                if named.isSRTP != inherited.isSRTP { security = named }
            } catch {
                throw ConfigurationError(key: key, problem: error.message)
            }
        }
        if let suitesNode {
            let key = "\(path): srtp_suites"
            guard security.isSRTP else {
                throw ConfigurationError(key: key, problem: "only goes with \(nameKey): sdes")
            }
            let names = try strings(suitesNode, key: key)
            do throws(ConfigurationProblem) {
                security = .sdes(suites: try MediaSecurity.suites(parsing: names))
            } catch {
                throw ConfigurationError(key: key, problem: error.message)
            }
        }
        return security
    }

    static func mediaEngines(_ node: Node, key: String) throws(ConfigurationError) -> [ListenAddress] {
        var engines: [ListenAddress] = []
        for item in splitList(try strings(node, key: key)) {
            do throws(ConfigurationProblem) { engines.append(try ListenAddress(mediaEngine: item)) } catch {
                throw ConfigurationError(key: key, problem: error.message)
            }
        }
        return engines
    }

    private static func skipCodes(_ node: Node, key: String) throws(ConfigurationError) -> Pattern {
        let text = try string(node, key: key)
        do throws(ConfigurationProblem) { return try Pattern(text, anchored: true) } catch {
            throw ConfigurationError(key: key, problem: error.message)
        }
    }

    private static func timeout(_ node: Node, key: String) throws(ConfigurationError) -> Int {
        let value = try integer(node, key: key)
        guard SRSTarget.timeoutRange.contains(value) else {
            throw ConfigurationError(key: key, problem: timeoutProblem(value))
        }
        return value
    }

    static func boolean(_ node: Node, key: String) throws(ConfigurationError) -> Bool {
        guard case .scalar(let scalar) = node else {
            throw ConfigurationError(key: key, problem: "expected true or false, got a structure")
        }
        switch scalar.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigurationError(key: key, problem: "expected true or false, got '\(scalar.string)'")
        }
    }
}

extension ListenAddress {
    /// A media engine's NG control address: `udp:IP:PORT`.
    public init(mediaEngine text: String) throws(ConfigurationProblem) {
        try self.init(parsing: text)
        guard transport == .udp else { throw ConfigurationProblem(mediaEngineOverTCP(text)) }
    }
}
