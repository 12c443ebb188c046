internal import COpenSSL
import Glibc

/// OpenSSL is initialised once per process (with its error texts), before the first context or error.
let openSSLInitialized: Bool = {
    OPENSSL_init_ssl(UInt64(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS), nil) == 1
}()

/// Identifies this program's sessions in a server's cache (required once clients are verified).
private let sessionIDContext: [UInt8] = Array("siprec-edge".utf8)

extension TLSContext {
    static func make(role: Role, settings: TLSSettings) throws(TLSError) -> TLSContext {
        let side = role == .client ? "TLS client" : "TLS server"
        guard openSSLInitialized else {
            throw TLSError.drainingErrorQueue(operation: "initialise OpenSSL")
        }
        guard settings.minimumVersion <= settings.maximumVersion else {
            throw TLSError(
                operation: "configure \(side)",
                reasons: ["minimum version \(settings.minimumVersion) is above maximum \(settings.maximumVersion)"])
        }
        ERR_clear_error()
        guard let handle = SSL_CTX_new(role == .client ? TLS_client_method() : TLS_server_method()) else {
            throw TLSError.drainingErrorQueue(operation: "create \(side) context")
        }
        // From here the context owns the handle: a throw frees it.
        let context = TLSContext(role: role, settings: settings, handle: handle)
        try context.configureVersions(side: side)
        try context.configureCiphers(side: side)
        try context.configureIdentity(side: side)
        try context.configureTrust(side: side)
        switch role {
        case .client:
            SSL_CTX_set_verify(handle, settings.verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
            _ = COpenSSL_SSL_CTX_set_session_cache_mode(
                handle, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
            SSL_CTX_sess_set_new_cb(handle, storeNewSession)
        case .server:
            SSL_CTX_set_verify(
                handle, settings.verifyPeer ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE, nil)
            _ = sessionIDContext.withUnsafeBufferPointer {
                SSL_CTX_set_session_id_context(handle, $0.baseAddress, UInt32($0.count))
            }
            if settings.verifyPeer, let caFile = settings.caFile, let names = SSL_load_client_CA_file(caFile) {
                SSL_CTX_set_client_CA_list(handle, names)  // tells clients which CAs we accept
            }
        }
        // Renegotiation is a denial-of-service lever and not needed by SIP.
        _ = SSL_CTX_set_options(handle, COpenSSL_SSL_OP_NO_RENEGOTIATION)
        ERR_clear_error()
        return context
    }

    private func configureVersions(side: String) throws(TLSError) {
        guard COpenSSL_SSL_CTX_set_min_proto_version(handle, Int32(settings.minimumVersion.rawValue)) == 1,
            COpenSSL_SSL_CTX_set_max_proto_version(handle, Int32(settings.maximumVersion.rawValue)) == 1
        else {
            throw TLSError.drainingErrorQueue(operation: "set the TLS versions of the \(side)")
        }
    }

    private func configureCiphers(side: String) throws(TLSError) {
        if let cipherList = settings.cipherList, SSL_CTX_set_cipher_list(handle, cipherList) != 1 {
            throw TLSError.drainingErrorQueue(operation: "invalid TLS 1.2 cipher list '\(cipherList)'")
        }
        if let cipherSuites = settings.cipherSuites, SSL_CTX_set_ciphersuites(handle, cipherSuites) != 1 {
            throw TLSError.drainingErrorQueue(operation: "invalid TLS 1.3 cipher suites '\(cipherSuites)'")
        }
    }

    /// Our certificate (with its chain) and key: required for a server, optional for a client.
    private func configureIdentity(side: String) throws(TLSError) {
        guard let certificateFile = settings.certificateFile else {
            if role == .server {
                throw TLSError(operation: "configure \(side)", reasons: ["a certificate and private key are required"])
            }
            if let privateKeyFile = settings.privateKeyFile {
                throw TLSError(
                    operation: "configure \(side)",
                    reasons: ["private key '\(privateKeyFile)' given without a certificate"])
            }
            return
        }
        guard let privateKeyFile = settings.privateKeyFile else {
            throw TLSError(
                operation: "configure \(side)",
                reasons: ["certificate '\(certificateFile)' given without a private key"])
        }
        let certificateOperation = "cannot read certificate '\(certificateFile)'"
        try checkReadable(certificateFile, operation: certificateOperation)
        guard SSL_CTX_use_certificate_chain_file(handle, certificateFile) == 1 else {
            throw TLSError.drainingErrorQueue(operation: certificateOperation)
        }
        let keyOperation = "cannot read private key '\(privateKeyFile)'"
        try checkReadable(privateKeyFile, operation: keyOperation)
        // Read apart from using it, so that an unreadable key and a mismatched one are told apart.
        guard let file = BIO_new_file(privateKeyFile, "r") else {
            throw TLSError.drainingErrorQueue(operation: keyOperation)
        }
        // No passphrase prompt on the terminal: an encrypted key is an error.
        let key = PEM_read_bio_PrivateKey(file, nil, { _, _, _, _ in 0 }, nil)
        BIO_free(file)
        guard let key else {
            throw TLSError.drainingErrorQueue(operation: keyOperation)
        }
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(handle, key) == 1, SSL_CTX_check_private_key(handle) == 1 else {
            throw TLSError.drainingErrorQueue(
                operation: "private key '\(privateKeyFile)' does not match certificate '\(certificateFile)'")
        }
    }

    /// The CAs peers are verified against.
    private func configureTrust(side: String) throws(TLSError) {
        if let caFile = settings.caFile {
            let operation = "cannot load CA file '\(caFile)'"
            try checkReadable(caFile, operation: operation)
            guard SSL_CTX_load_verify_file(handle, caFile) == 1 else {
                throw TLSError.drainingErrorQueue(operation: operation)
            }
        }
        if let caDirectory = settings.caDirectory {
            let operation = "cannot load CA directory '\(caDirectory)'"
            try checkReadable(caDirectory, operation: operation, directory: true)
            guard SSL_CTX_load_verify_dir(handle, caDirectory) == 1 else {
                throw TLSError.drainingErrorQueue(operation: operation)
            }
        }
        let hasTrustAnchors = settings.caFile != nil || settings.caDirectory != nil
        switch role {
        case .client where !hasTrustAnchors:
            guard SSL_CTX_set_default_verify_paths(handle) == 1 else {
                throw TLSError.drainingErrorQueue(operation: "load the system's CA certificates")
            }
        case .server where settings.verifyPeer && !hasTrustAnchors:
            throw TLSError(
                operation: "configure \(side)",
                reasons: ["verifying client certificates needs caFile or caDirectory"])
        default:
            break
        }
    }

    /// Opens the path first, so a missing or unreadable file gets the system's own words ("No such
    /// file or directory", "Permission denied") rather than a decoder's.
    private func checkReadable(_ path: String, operation: String, directory: Bool = false) throws(TLSError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0))
        guard descriptor >= 0 else {
            throw TLSError(operation: operation, reasons: [String(cString: strerror(errno))])
        }
        defer { close(descriptor) }
        var status = stat()
        if !directory, fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFDIR {
            throw TLSError(operation: operation, reasons: [String(cString: strerror(EISDIR))])
        }
    }

    func freeHandle() { SSL_CTX_free(handle) }
}

extension TLSContext {
    /// A configured client connection (an owned `SSL *`) toward `serverName`: SNI when it is a host
    /// name (never for an IP literal), and the identity the certificate must carry in its
    /// subjectAltName (DNS name or IP address; the subject's CN is never used). The last session
    /// with the same server name at `peer` is offered for resumption.
    package func makeClientConnection(serverName: String, peer: String) throws(TLSError) -> OpaquePointer {
        guard role == .client else {
            throw TLSError(operation: "TLS connection to \(peer)", reasons: ["a server TLS context cannot connect"])
        }
        ERR_clear_error()
        guard let ssl = SSL_new(handle) else {
            throw TLSError.drainingErrorQueue(operation: "create a TLS connection to \(peer)")
        }
        do throws(TLSError) {
            try configureIdentity(of: ssl, serverName: serverName, peer: peer)
        } catch {
            SSL_free(ssl)
            throw error
        }
        sessions?.attach(to: ssl, key: "\(serverName) \(peer)")
        return ssl
    }

    /// A server connection (an owned `SSL *`) for an accepted stream.
    package func makeServerConnection() -> OpaquePointer {
        precondition(role == .server, "a client TLS context cannot accept connections")
        guard let ssl = SSL_new(handle) else {
            fatalError("out of memory creating a TLS connection")
        }
        return ssl
    }

    private func configureIdentity(of ssl: OpaquePointer, serverName: String, peer: String) throws(TLSError) {
        let operation = "TLS connection to \(serverName) at \(peer)"
        var name = serverName
        if name.hasPrefix("["), name.hasSuffix("]") {
            name = String(name.dropFirst().dropLast())
        }
        guard !name.isEmpty else {
            if settings.verifyPeer {
                throw TLSError(operation: operation, reasons: ["no server name to verify the certificate against"])
            }
            return
        }
        let parameters = SSL_get0_param(ssl)
        if Self.isIPAddress(name) {
            guard X509_VERIFY_PARAM_set1_ip_asc(parameters, name) == 1 else {
                throw TLSError.drainingErrorQueue(operation: operation)
            }
            return
        }
        X509_VERIFY_PARAM_set_hostflags(
            parameters, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT))
        guard COpenSSL_SSL_set_tlsext_host_name(ssl, name) == 1,
            X509_VERIFY_PARAM_set1_host(parameters, name, 0) == 1
        else {
            throw TLSError.drainingErrorQueue(operation: operation)
        }
    }

    private static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}

extension TLSConnectionInfo {
    /// Reads the outcome of the completed handshake of `ssl`.
    package init(connection ssl: OpaquePointer) {
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? ""
        var subject: String?
        if let certificate = SSL_get0_peer_certificate(ssl), let name = X509_get_subject_name(certificate),
            let text = BIO_new(BIO_s_mem())
        {
            if X509_NAME_print_ex(text, name, 0, COpenSSL_XN_FLAG_RFC2253) >= 0 {
                let length = Int(BIO_ctrl_pending(text))
                subject = String(unsafeUninitializedCapacity: length) { buffer in
                    Int(max(BIO_read(text, buffer.baseAddress, Int32(length)), 0))
                }
            }
            BIO_free(text)
        }
        self.init(
            protocolVersion: version, cipher: cipher, peerCertificateSubject: subject,
            sessionReused: SSL_session_reused(ssl) == 1)
    }
}
