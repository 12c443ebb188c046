import Yams

/// `tls` mappings of the configuration file: the top-level section and each SRS's overrides.
///
/// ```yaml
/// tls:
///   ca_file: /etc/siprec-edge/ca.pem           # or ca_directory: /etc/ssl/certs
///   certificate: /etc/siprec-edge/edge.pem     # with private_key: the TLS listener's, and the
///   private_key: /etc/siprec-edge/edge.key     # client certificate for mutual TLS toward SRSs
///   ciphers: "ECDHE+AESGCM:ECDHE+CHACHA20"     # TLS 1.2
///   ciphersuites: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"   # TLS 1.3
///   verify_client: false                       # listener: ask for and verify client certificates
/// ```
///
/// An SRS mapping's `tls` takes the same keys, with `verify` (default true) and `server_name`
/// instead of `verify_client`. Files must exist and be readable when the file is read.
extension ConfigurationFile {
    enum TLSScope {
        /// The top-level section: `verify_client`.
        case global
        /// One SRS: `verify` and `server_name`.
        case srs
    }

    /// Reads a `tls` mapping whose key path is `prefix` (`tls`, or `...: srs[1]: tls`).
    static func tls(_ node: Node, prefix: String, scope: TLSScope) throws(ConfigurationError) -> TLSFiles {
        var files = TLSFiles()
        func path(_ node: Node, _ key: String, _ kind: PathKind) throws(ConfigurationError) -> String {
            let path = try text(node, key: key)
            do throws(ConfigurationProblem) { try readablePath(path, kind: kind) } catch {
                throw ConfigurationError(key: key, problem: error.message)
            }
            return path
        }
        try section(node, key: prefix) { name, value throws(ConfigurationError) in
            let key = "\(prefix).\(name)"
            switch (name, scope) {
            case ("ca_file", _): files.caFile = try path(value, key, .file)
            case ("ca_directory", _): files.caDirectory = try path(value, key, .directory)
            case ("certificate", _): files.certificateFile = try path(value, key, .file)
            case ("private_key", _): files.privateKeyFile = try path(value, key, .file)
            case ("ciphers", _):
                let list = try string(value, key: key)
                do throws(ConfigurationProblem) { try TLSFiles.checkCipherList(list) } catch {
                    throw ConfigurationError(key: key, problem: error.message)
                }
                files.cipherList = list
            case ("ciphersuites", _):
                let list = try string(value, key: key)
                do throws(ConfigurationProblem) { try TLSFiles.checkCipherSuites(list) } catch {
                    throw ConfigurationError(key: key, problem: error.message)
                }
                files.cipherSuites = list
            case ("verify_client", .global), ("verify", .srs): files.verifyPeer = try boolean(value, key: key)
            case ("server_name", .srs):
                let name = try text(value, key: key)
                guard isNumericAddress(name) || isHostName(name) else {
                    throw ConfigurationError(key: key, problem: "'\(name)' is not a host name or an IP address")
                }
                files.serverName = name
            default: throw unknown(key)
            }
        }
        return files
    }

    /// A single value that must not be empty.
    static func text(_ node: Node, key: String) throws(ConfigurationError) -> String {
        let text = try string(node, key: key)
        if text.isEmpty { throw ConfigurationError(key: key, problem: "must not be empty") }
        return text
    }
}
