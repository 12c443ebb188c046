/// The outcome of a completed handshake, read once from the connection (for logs and tests).
package struct TLSConnectionInfo: Sendable, Hashable {
    /// "TLSv1.3" or "TLSv1.2".
    package let protocolVersion: String
    /// The cipher (suite), such as "TLS_AES_256_GCM_SHA384".
    package let cipher: String
    /// The peer certificate's subject (RFC 2253, "CN=edge,O=Example"), when the peer sent one.
    package let peerCertificateSubject: String?
    /// Whether the handshake resumed an earlier session.
    package let sessionReused: Bool

    package init(protocolVersion: String, cipher: String, peerCertificateSubject: String?, sessionReused: Bool) {
        self.protocolVersion = protocolVersion
        self.cipher = cipher
        self.peerCertificateSubject = peerCertificateSubject
        self.sessionReused = sessionReused
    }
}
