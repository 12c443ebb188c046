/// The TLS configuration of one side (an OpenSSL `SSL_CTX`), shared by every connection made with
/// it, on any event loop.
///
/// Everything in the settings is loaded and checked when the context is made, so a missing,
/// unreadable or mismatched file stops start-up with the file named. A client context also keeps
/// the last session of each server (name and address) and offers it on the next connection to that
/// server, so reconnecting resumes instead of repeating the full handshake.
public final class TLSContext: @unchecked Sendable {
    // Sendable: the SSL_CTX is only read once configured (OpenSSL allows that from any thread) and
    // the session cache has its own lock.

    /// Which side of the handshake a context's connections take.
    public enum Role: Sendable, Hashable {
        case client, server
    }

    /// Which side of the handshake this context's connections take.
    public let role: Role
    /// What the context was made from.
    public let settings: TLSSettings
    /// The SSL_CTX, freed in deinit.
    let handle: OpaquePointer
    /// Client contexts only: the last session per server.
    let sessions: ClientSessionCache?

    init(role: Role, settings: TLSSettings, handle: OpaquePointer) {
        self.role = role
        self.settings = settings
        self.handle = handle
        sessions = role == .client ? ClientSessionCache() : nil
    }

    deinit {
        freeHandle()
    }

    /// A client context: TLS 1.2 to 1.3, the server verified against `caFile`/`caDirectory` (or the
    /// system's CAs) unless `verifyPeer` is false, our certificate offered when one is given.
    /// - Throws: `TLSError` naming the file or setting that cannot be used.
    public static func client(_ settings: TLSSettings) throws(TLSError) -> TLSContext {
        try make(role: .client, settings: settings)
    }

    /// A server context: the certificate and key are required; with `verifyPeer`, clients must
    /// present a certificate signed by `caFile`/`caDirectory` (one of them is then required).
    /// - Throws: `TLSError` naming the file or setting that cannot be used.
    public static func server(_ settings: TLSSettings) throws(TLSError) -> TLSContext {
        try make(role: .server, settings: settings)
    }
}
