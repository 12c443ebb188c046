import Glibc

/// The files and choices one TLS context is built from. The same shape serves the global `tls`
/// section (the edge's TLS listener, and the defaults toward every TLS SRS) and each SRS's own
/// overrides; nil means "not set here". This module only checks that the files are readable; the
/// TLS module loads them and checks that a key matches its certificate.
public struct TLSFiles: Hashable, Sendable {
    /// PEM file of trusted CA certificates.
    public var caFile: String?
    /// Directory of trusted CA certificates named by subject hash (`openssl rehash`).
    public var caDirectory: String?
    /// PEM certificate (chain) we present: the listener's, and our client certificate for mutual
    /// TLS toward an SRS. Given together with `privateKeyFile`.
    public var certificateFile: String?
    public var privateKeyFile: String?
    /// TLS 1.2 cipher list in OpenSSL's syntax (`ECDHE+AESGCM:!aNULL`).
    public var cipherList: String?
    /// TLS 1.3 cipher suites, colon-separated (`TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256`).
    public var cipherSuites: String?
    /// Global: whether the listener asks for client certificates and verifies them (`verify_client`,
    /// default false). Per SRS: whether the SRS's certificate is verified (`verify`, default true).
    public var verifyPeer: Bool?
    /// SRS only: the identity to check the SRS's certificate against (and to send as SNI) instead
    /// of the URI host.
    public var serverName: String?

    public init(
        caFile: String? = nil, caDirectory: String? = nil, certificateFile: String? = nil,
        privateKeyFile: String? = nil, cipherList: String? = nil, cipherSuites: String? = nil,
        verifyPeer: Bool? = nil, serverName: String? = nil
    ) {
        self.caFile = caFile
        self.caDirectory = caDirectory
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.cipherList = cipherList
        self.cipherSuites = cipherSuites
        self.verifyPeer = verifyPeer
        self.serverName = serverName
    }

    /// Field-by-field: self's values win over `defaults`' (per-SRS over global), with three
    /// exceptions that keep one level's intent whole:
    /// - the trust anchors (`caFile`, `caDirectory`) come from self if self sets either, so an SRS
    ///   with its own CA does not also trust the global one;
    /// - likewise the certificate and its key, which go together;
    /// - `verifyPeer` and `serverName` are never taken from `defaults`: the global `verifyPeer` is
    ///   the listener's `verify_client`, which must not turn off the verification of an SRS.
    public func merged(over defaults: TLSFiles) -> TLSFiles {
        let ownAnchors = caFile != nil || caDirectory != nil
        let ownIdentity = certificateFile != nil || privateKeyFile != nil
        return TLSFiles(
            caFile: ownAnchors ? caFile : defaults.caFile,
            caDirectory: ownAnchors ? caDirectory : defaults.caDirectory,
            certificateFile: ownIdentity ? certificateFile : defaults.certificateFile,
            privateKeyFile: ownIdentity ? privateKeyFile : defaults.privateKeyFile,
            cipherList: cipherList ?? defaults.cipherList,
            cipherSuites: cipherSuites ?? defaults.cipherSuites,
            verifyPeer: verifyPeer,
            serverName: serverName)
    }

    /// Whether a CA to verify peers against is given.
    public var hasTrustAnchors: Bool { caFile != nil || caDirectory != nil }

    /// The TLS 1.3 suites OpenSSL implements (names as `SSL_CTX_set_ciphersuites` takes them).
    public static let knownCipherSuites = [
        "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
    ]

    /// Rules of one level; `prefix` is its key path (`tls`, or `...: srs[1]: tls`). `global` says
    /// which verification key the level has (`verify_client`, or `verify` and `server_name`).
    func validate(prefix: String, global: Bool) throws(ConfigurationError) {
        if let certificateFile, privateKeyFile == nil {
            throw ConfigurationError(
                key: "\(prefix).private_key", problem: "missing: the certificate '\(certificateFile)' needs its key")
        }
        if let privateKeyFile, certificateFile == nil {
            throw ConfigurationError(
                key: "\(prefix).certificate", problem: "missing: the private key '\(privateKeyFile)' needs its certificate")
        }
        do throws(ConfigurationProblem) {
            if let cipherList { try Self.checkCipherList(cipherList) }
        } catch {
            throw ConfigurationError(key: "\(prefix).ciphers", problem: error.message)
        }
        do throws(ConfigurationProblem) {
            if let cipherSuites { try Self.checkCipherSuites(cipherSuites) }
        } catch {
            throw ConfigurationError(key: "\(prefix).ciphersuites", problem: error.message)
        }
        if global {
            if verifyPeer == true, !hasTrustAnchors {
                throw ConfigurationError(
                    key: "\(prefix).verify_client",
                    problem: "client certificates are verified against a CA: give tls.ca_file or tls.ca_directory (or --tls-ca)")
            }
        } else if let serverName, !(isNumericAddress(serverName) || isHostName(serverName)) {
            throw ConfigurationError(
                key: "\(prefix).server_name", problem: "'\(serverName)' is not a host name or an IP address")
        }
    }

    /// A TLS 1.2 cipher list: OpenSSL judges its words when the TLS module loads it; here it only
    /// has to be printable text.
    static func checkCipherList(_ text: String) throws(ConfigurationProblem) {
        if trimmed(text).isEmpty { throw ConfigurationProblem("must not be empty") }
        if let bad = text.unicodeScalars.first(where: { !$0.isASCII || $0.value < 0x20 || $0.value == 0x7F }) {
            throw ConfigurationProblem("'\(text)' is not an OpenSSL cipher list (character U+\(hex(bad.value)) in it)")
        }
    }

    /// A TLS 1.3 suite list: known names separated by ':'. OpenSSL skips names it does not know,
    /// so a typo would silently narrow the list; it is caught here instead.
    static func checkCipherSuites(_ text: String) throws(ConfigurationProblem) {
        let names = text.split(separator: ":", omittingEmptySubsequences: false).map { trimmed($0) }
        if names.allSatisfy(\.isEmpty) { throw ConfigurationProblem("must not be empty") }
        for name in names where !knownCipherSuites.contains(name) {
            throw ConfigurationProblem(
                "'\(name)' is not a TLS 1.3 cipher suite (use \(knownCipherSuites.dropLast().joined(separator: ", ")) "
                    + "or \(knownCipherSuites[knownCipherSuites.count - 1]), separated by ':')")
        }
    }
}

/// How the media toward one SRS is protected: plain RTP (`RTP/AVP`) or SRTP keyed through SDES
/// (RFC 4568, `RTP/SAVP`), whatever the call's own legs use.
public enum MediaSecurity: Hashable, Sendable, CustomStringConvertible {
    case rtp
    /// The crypto suites offered, in order of preference.
    case sdes(suites: [String])

    public static let defaultSuites = ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"]
    /// The SDES crypto suites rtpengine knows.
    public static let knownSuites = [
        "AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32",
        "AES_192_CM_HMAC_SHA1_80", "AES_192_CM_HMAC_SHA1_32", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32",
        "F8_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_32", "NULL_HMAC_SHA1_80", "NULL_HMAC_SHA1_32",
    ]

    /// `rtp` or `sdes` (any case). `suites` only goes with sdes, which takes `defaultSuites`
    /// without it.
    public init(parsing name: String, suites: [String]? = nil) throws(ConfigurationProblem) {
        switch trimmed(name).lowercased() {
        case "rtp":
            if suites != nil { throw ConfigurationProblem("SRTP suites go with sdes, not rtp") }
            self = .rtp
        case "sdes": self = .sdes(suites: try suites.map(Self.suites(parsing:)) ?? Self.defaultSuites)
        default: throw ConfigurationProblem("'\(name)' is not rtp or sdes")
        }
    }

    /// Checks a list of suite names (comma-separated entries allowed) against `knownSuites`; names
    /// are matched in any case and returned as rtpengine spells them.
    public static func suites(parsing texts: [String]) throws(ConfigurationProblem) -> [String] {
        var suites: [String] = []
        for text in splitList(texts) {
            guard let suite = knownSuites.first(where: { $0 == text.uppercased() }) else {
                throw ConfigurationProblem(
                    "'\(text)' is not an SDES crypto suite rtpengine knows (\(knownSuites.joined(separator: ", ")))")
            }
            if suites.contains(suite) { throw ConfigurationProblem("\(suite) is listed twice") }
            suites.append(suite)
        }
        if suites.isEmpty { throw ConfigurationProblem("at least one suite is needed") }
        return suites
    }

    /// Whether the SRS is offered SRTP.
    public var isSRTP: Bool { self != .rtp }

    /// The m= line protocol the SRS is offered.
    public var transportProtocol: String { isSRTP ? "RTP/SAVP" : "RTP/AVP" }

    public var description: String {
        switch self {
        case .rtp: "rtp"
        case .sdes(let suites): "sdes(\(suites.joined(separator: ",")))"
        }
    }
}

/// The TLS flags of the command line. Each replaces the global `tls` value of the file; per-SRS
/// `tls` settings in the file still win over them for their SRS.
///
/// - `--tls-ca PATH`: a file (CA bundle) or a directory (hashed CA certificates); it replaces the
///   file's `ca_file` and `ca_directory` both.
/// - `--tls-cert PATH` and `--tls-key PATH`, given together: the edge's certificate and key (the
///   TLS listener's, and the client certificate for mutual TLS toward SRSs).
/// - `--tls-ciphers LIST` (TLS 1.2) and `--tls-ciphersuites LIST` (TLS 1.3).
public struct TLSFlags: Sendable {
    public var ca: String?
    public var certificate: String?
    public var privateKey: String?
    public var cipherList: String?
    public var cipherSuites: String?

    public init(
        ca: String? = nil, certificate: String? = nil, privateKey: String? = nil, cipherList: String? = nil,
        cipherSuites: String? = nil
    ) {
        self.ca = ca
        self.certificate = certificate
        self.privateKey = privateKey
        self.cipherList = cipherList
        self.cipherSuites = cipherSuites
    }

    /// Applies the flags given; errors name the flag and the path. Files are checked for being
    /// readable here, not loaded.
    public func apply(to configuration: inout ProxyConfiguration) throws(ConfigurationError) {
        var tls = configuration.tls
        if let ca {
            do throws(ConfigurationProblem) {
                if try readablePath(ca, kind: .fileOrDirectory) == .directory {
                    tls.caDirectory = ca
                    tls.caFile = nil
                } else {
                    tls.caFile = ca
                    tls.caDirectory = nil
                }
            } catch {
                throw ConfigurationError(key: "--tls-ca", problem: error.message)
            }
        }
        switch (certificate, privateKey) {
        case (nil, nil): break
        case (let certificate?, let privateKey?):
            tls.certificateFile = try Self.readableFile(certificate, flag: "--tls-cert")
            tls.privateKeyFile = try Self.readableFile(privateKey, flag: "--tls-key")
        case (_?, nil):
            throw ConfigurationError(key: "--tls-cert", problem: "needs --tls-key (a certificate and its key go together)")
        case (nil, _?):
            throw ConfigurationError(key: "--tls-key", problem: "needs --tls-cert (a certificate and its key go together)")
        }
        if let cipherList {
            do { try TLSFiles.checkCipherList(cipherList) } catch {
                throw ConfigurationError(key: "--tls-ciphers", problem: error.message)
            }
            tls.cipherList = cipherList
        }
        if let cipherSuites {
            do { try TLSFiles.checkCipherSuites(cipherSuites) } catch {
                throw ConfigurationError(key: "--tls-ciphersuites", problem: error.message)
            }
            tls.cipherSuites = cipherSuites
        }
        configuration.tls = tls
    }

    private static func readableFile(_ path: String, flag: String) throws(ConfigurationError) -> String {
        do { _ = try readablePath(path, kind: .file) } catch {
            throw ConfigurationError(key: flag, problem: error.message)
        }
        return path
    }
}

extension ProxyConfiguration {
    /// The TLS settings toward `target`: its own over the global ones (see `TLSFiles.merged`),
    /// with `verifyPeer` resolved (default true) and `serverName` resolved to the URI host when the
    /// SRS does not name another.
    public func tlsSettings(toward target: SRSTarget) -> TLSFiles {
        var settings = target.tls.merged(over: tls)
        settings.verifyPeer = target.tls.verifyPeer ?? true
        settings.serverName = target.tls.serverName ?? target.host
        return settings
    }

    /// The TLS listener's settings: the global ones, `verifyPeer` (`verify_client`) resolved
    /// (default false).
    public var listenerTLSSettings: TLSFiles {
        var settings = tls
        settings.verifyPeer = tls.verifyPeer ?? false
        settings.serverName = nil
        return settings
    }
}

// MARK: - Files

enum PathKind: Equatable { case file, directory, fileOrDirectory }

/// Checks that `path` exists, is readable (a directory also searchable) and is of `kind`; returns
/// what it is (`.file` or `.directory`). Errors carry the path and the system's reason.
@discardableResult
func readablePath(_ path: String, kind: PathKind) throws(ConfigurationProblem) -> PathKind {
    var status = stat()
    guard stat(path, &status) == 0 else {
        throw ConfigurationProblem("cannot read '\(path)': \(String(cString: strerror(errno)))")
    }
    let isDirectory = (status.st_mode & S_IFMT) == S_IFDIR
    switch kind {
    case .file where isDirectory: throw ConfigurationProblem("'\(path)' is a directory, not a file")
    case .directory where !isDirectory: throw ConfigurationProblem("'\(path)' is not a directory")
    default: break
    }
    guard access(path, isDirectory ? R_OK | X_OK : R_OK) == 0 else {
        throw ConfigurationProblem("cannot read '\(path)': \(String(cString: strerror(errno)))")
    }
    return isDirectory ? .directory : .file
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
