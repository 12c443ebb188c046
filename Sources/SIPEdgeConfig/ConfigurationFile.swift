import Glibc
import Yams

/// Reads the YAML configuration file. Every key the flags know has a place here; unknown keys and
/// values of the wrong type are errors that name the key.
///
/// ```yaml
/// listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060, tls:127.0.0.1:5061]
/// upstream: sip:127.0.0.1:5080;transport=udp
/// workers: 2
/// log_level: info
/// timers: { t1_ms: 500, t2_ms: 4000, t4_ms: 5000 }
/// limits: { max_message_size: 65535, udp_receive_buffer: 4194304, udp_coalesce_us: 0, heap_reserve_mb: 32 }
/// dialogs: { lifetime_s: 43200, invite_timeout_s: 180 }
/// tls: { certificate: edge.pem, private_key: edge.key, ca_file: ca.pem }   # see TLSFile.swift
/// recording: { rtpengine: [udp:127.0.0.1:2223], rules: [...] }   # see RecordingFile.swift
/// ```
public enum ConfigurationFile {
    /// Loads `path` on top of `base`. With `validating` false the cross-field rules are left for
    /// the caller, which applies flags first (a rule's media engine may come from `--rtpengine`).
    public static func load(
        path: String, over base: ProxyConfiguration = ProxyConfiguration(), validating: Bool = true
    ) throws(ConfigurationError) -> ProxyConfiguration {
        guard let text = readFile(path) else {
            throw ConfigurationError(key: "config", problem: "cannot read '\(path)': \(String(cString: strerror(errno)))")
        }
        do {
            return try parse(yaml: text, over: base, validating: validating)
        } catch {
            var located = error
            located.file = path
            throw located
        }
    }

    /// Parses YAML text on top of `base`.
    public static func parse(
        yaml text: String, over base: ProxyConfiguration = ProxyConfiguration(), validating: Bool = true
    ) throws(ConfigurationError) -> ProxyConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError(key: "(file)", problem: "not valid YAML: \(error)")
        }
        var configuration = base
        guard let root else { return configuration }
        guard let mapping = root.mapping else {
            throw ConfigurationError(key: "(file)", problem: "the top level must be a mapping of keys to values")
        }
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? "?"
            switch key {
            case "listen":
                let items = try strings(value, key: key)
                var addresses: [ListenAddress] = []
                for item in items {
                    do { addresses.append(try ListenAddress(parsing: item)) } catch {
                        throw ConfigurationError(key: key, problem: error.message)
                    }
                }
                configuration.listen = addresses
            case "upstream":
                let text = try string(value, key: key)
                do { configuration.upstream = try UpstreamTarget(parsing: text) } catch {
                    throw ConfigurationError(key: key, problem: error.message)
                }
            case "workers":
                configuration.workers = try integer(value, key: key)
            case "log_level":
                let text = try string(value, key: key)
                guard let level = LogLevelName(rawValue: text.lowercased()) else {
                    throw ConfigurationError(
                        key: key,
                        problem: "'\(text)' is not one of \(LogLevelName.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                configuration.logLevel = level
            case "timers":
                try section(value, key: key) { name, node throws(ConfigurationError) in
                    switch name {
                    case "t1_ms": configuration.t1Milliseconds = try integer(node, key: "timers.t1_ms")
                    case "t2_ms": configuration.t2Milliseconds = try integer(node, key: "timers.t2_ms")
                    case "t4_ms": configuration.t4Milliseconds = try integer(node, key: "timers.t4_ms")
                    default: throw unknown("timers.\(name)")
                    }
                }
            case "limits":
                try section(value, key: key) { name, node throws(ConfigurationError) in
                    switch name {
                    case "max_message_size":
                        configuration.maxMessageSize = try integer(node, key: "limits.max_message_size")
                    case "udp_receive_buffer":
                        configuration.udpReceiveBufferBytes = try integer(node, key: "limits.udp_receive_buffer")
                    case "udp_coalesce_us":
                        configuration.udpCoalesceMicroseconds = try integer(node, key: "limits.udp_coalesce_us")
                    case "heap_reserve_mb":
                        configuration.heapReserveMegabytes = try integer(node, key: "limits.heap_reserve_mb")
                    default: throw unknown("limits.\(name)")
                    }
                }
            case "dialogs":
                try section(value, key: key) { name, node throws(ConfigurationError) in
                    switch name {
                    case "lifetime_s": configuration.dialogLifetimeSeconds = try integer(node, key: "dialogs.lifetime_s")
                    case "invite_timeout_s":
                        configuration.inviteTimeoutSeconds = try integer(node, key: "dialogs.invite_timeout_s")
                    default: throw unknown("dialogs.\(name)")
                    }
                }
            case "tls":
                configuration.tls = try tls(value, prefix: key, scope: .global)
            case "recording":
                configuration.recording = try recording(value, over: configuration.recording)
            default:
                throw unknown(key)
            }
        }
        return validating ? try configuration.validated() : configuration
    }

    static func unknown(_ key: String) -> ConfigurationError {
        ConfigurationError(key: key, problem: "unknown key")
    }

    static func string(_ node: Node, key: String) throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = node else {
            throw ConfigurationError(key: key, problem: "expected a single value")
        }
        return scalar.string
    }

    static func strings(_ node: Node, key: String) throws(ConfigurationError) -> [String] {
        switch node {
        case .scalar(let scalar): return [scalar.string]
        case .sequence(let sequence):
            var result: [String] = []
            for item in sequence {
                guard case .scalar(let scalar) = item else {
                    throw ConfigurationError(key: key, problem: "expected a list of values")
                }
                result.append(scalar.string)
            }
            return result
        default: throw ConfigurationError(key: key, problem: "expected a value or a list of values")
        }
    }

    static func integer(_ node: Node, key: String) throws(ConfigurationError) -> Int {
        guard case .scalar(let scalar) = node, let value = Int(scalar.string) else {
            throw ConfigurationError(key: key, problem: "expected a whole number, got '\(node.string ?? "a structure")'")
        }
        return value
    }

    static func section(
        _ node: Node, key: String, _ body: (String, Node) throws(ConfigurationError) -> Void
    ) throws(ConfigurationError) {
        guard let mapping = node.mapping else {
            throw ConfigurationError(key: key, problem: "expected a mapping of keys to values")
        }
        for (name, value) in mapping { try body(name.string ?? "?", value) }
    }

    private static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count > 0 { data.append(contentsOf: buffer[0..<count]) }
            if count < buffer.count { break }
        }
        if ferror(file) != 0 { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
