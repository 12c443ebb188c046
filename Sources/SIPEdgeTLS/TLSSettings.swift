/// A TLS protocol version.
public enum TLSVersion: Int, Sendable, Hashable, Comparable, CustomStringConvertible {
    case tls12 = 0x0303
    case tls13 = 0x0304

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }

    /// "TLSv1.2", as OpenSSL names it.
    public var description: String {
        switch self {
        case .tls12: "TLSv1.2"
        case .tls13: "TLSv1.3"
        }
    }
}

/// What a `TLSContext` is made from: files (PEM), ciphers and verification.
public struct TLSSettings: Sendable, Hashable {
    /// Trusted CA certificates (PEM, several allowed). Without it and `caDirectory`, a client trusts
    /// the system's default CAs.
    public var caFile: String?
    /// A directory of trusted CA certificates named by subject hash (`openssl rehash`).
    public var caDirectory: String?
    /// Our certificate (PEM); the chain may follow it in the same file. Required for a server,
    /// optional for a client (mutual TLS, together with `privateKeyFile`).
    public var certificateFile: String?
    /// The private key of `certificateFile` (PEM, unencrypted).
    public var privateKeyFile: String?
    /// TLS 1.2 ciphers in OpenSSL's cipher list syntax; nil keeps OpenSSL's default.
    public var cipherList: String?
    /// TLS 1.3 cipher suites ("TLS_AES_128_GCM_SHA256:..."); nil keeps OpenSSL's default.
    public var cipherSuites: String?
    /// A client verifies the server's certificate and identity; a server requests and requires a
    /// client certificate signed by `caFile`/`caDirectory`.
    public var verifyPeer: Bool
    /// The lowest version accepted (default TLS 1.2).
    public var minimumVersion: TLSVersion
    /// The highest version offered or accepted (default TLS 1.3, which OpenSSL prefers).
    public var maximumVersion: TLSVersion

    public init(
        caFile: String? = nil, caDirectory: String? = nil, certificateFile: String? = nil,
        privateKeyFile: String? = nil, cipherList: String? = nil, cipherSuites: String? = nil,
        verifyPeer: Bool = true, minimumVersion: TLSVersion = .tls12, maximumVersion: TLSVersion = .tls13
    ) {
        self.caFile = caFile
        self.caDirectory = caDirectory
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.cipherList = cipherList
        self.cipherSuites = cipherSuites
        self.verifyPeer = verifyPeer
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
    }
}
