import SIPEdgeTLS

/// How a client connection runs TLS: the context (trust, our certificate, ciphers, sessions) and the
/// server's identity.
public struct TLSClientOptions: Sendable {
    /// A client context (`TLSContext.client`), usually shared by every connection.
    public var context: TLSContext
    /// The host name or IP literal of the URI: sent as SNI when it is a name (never for an IP), and
    /// the identity the server's certificate must carry in its subjectAltName (DNS name or IP
    /// address; the subject's common name is not used).
    public var serverName: String

    public init(context: TLSContext, serverName: String) {
        self.context = context
        self.serverName = serverName
    }
}
