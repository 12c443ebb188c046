import Glibc
import SIPEdgeTLS
import TLSTestSupport
import Testing

@Suite("TLSContext")
struct TLSContextTests {
    let files: TestCertificates

    init() throws {
        files = try TestCertificates.shared()
    }

    /// The error a context creation throws, or nil when it succeeded.
    private func failure(_ make: () throws -> TLSContext) -> TLSError? {
        do {
            _ = try make()
            return nil
        } catch {
            #expect(error is TLSError)
            return error as? TLSError
        }
    }

    @Test("valid client and server contexts; a client needs no files")
    func valid() throws {
        let server = try TLSContext.server(
            TLSSettings(
                certificateFile: files.serverForIP.certificate, privateKeyFile: files.serverForIP.privateKey,
                verifyPeer: false))
        #expect(server.role == .server)
        let client = try TLSContext.client(TLSSettings())
        #expect(client.role == .client)
        _ = try TLSContext.client(
            TLSSettings(
                caFile: files.caCertificate, certificateFile: files.client.certificate,
                privateKeyFile: files.client.privateKey))
        _ = try TLSContext.server(
            TLSSettings(
                caFile: files.caCertificate, certificateFile: files.serverForIP.certificate,
                privateKeyFile: files.serverForIP.privateKey, verifyPeer: true))
    }

    @Test("a missing certificate file is named with the system's reason")
    func missingCertificate() {
        let path = "\(files.directory)/no-such-cert.pem"
        let error = failure {
            try TLSContext.server(TLSSettings(certificateFile: path, privateKeyFile: files.serverForIP.privateKey))
        }
        #expect(error?.description == "cannot read certificate '\(path)': No such file or directory")
    }

    @Test("a certificate file that is not PEM is named with OpenSSL's reason")
    func garbageCertificate() throws {
        let path = try files.writeFile("garbage-cert.pem", contents: "not a certificate\n")
        let error = failure {
            try TLSContext.server(TLSSettings(certificateFile: path, privateKeyFile: files.serverForIP.privateKey))
        }
        #expect(error?.operation == "cannot read certificate '\(path)'")
        #expect(error?.reasons.isEmpty == false)
    }

    @Test("an unreadable private key is named: garbage, a directory, a missing file")
    func unreadableKey() throws {
        let garbage = try files.writeFile(
            "garbage.key", contents: "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        let garbageError = failure {
            try TLSContext.server(TLSSettings(certificateFile: files.serverForIP.certificate, privateKeyFile: garbage))
        }
        #expect(garbageError?.operation == "cannot read private key '\(garbage)'")
        #expect(garbageError?.reasons.isEmpty == false)

        let directory = "\(files.directory)/key-directory"
        mkdir(directory, 0o700)
        let directoryError = failure {
            try TLSContext.server(
                TLSSettings(certificateFile: files.serverForIP.certificate, privateKeyFile: directory))
        }
        #expect(directoryError?.description == "cannot read private key '\(directory)': Is a directory")

        let missing = "\(files.directory)/missing.key"
        let missingError = failure {
            try TLSContext.client(TLSSettings(certificateFile: files.client.certificate, privateKeyFile: missing))
        }
        #expect(missingError?.description == "cannot read private key '\(missing)': No such file or directory")
    }

    @Test("a key without read permission is named", .enabled(if: geteuid() != 0, "root reads any file"))
    func keyWithoutPermission() throws {
        let path = try files.writeFile("private.key", contents: "secret\n")
        chmod(path, 0)
        let error = failure {
            try TLSContext.server(TLSSettings(certificateFile: files.serverForIP.certificate, privateKeyFile: path))
        }
        #expect(error?.description == "cannot read private key '\(path)': Permission denied")
    }

    @Test("a key that does not match the certificate names both files")
    func mismatchedKey() {
        let error = failure {
            try TLSContext.server(
                TLSSettings(certificateFile: files.serverForIP.certificate, privateKeyFile: files.unrelatedKey))
        }
        #expect(
            error?.operation
                == "private key '\(files.unrelatedKey)' does not match certificate '\(files.serverForIP.certificate)'")
        #expect(error?.reasons.contains { $0.contains("key values mismatch") } == true)
    }

    @Test("a missing or broken CA file is named")
    func badCAFile() throws {
        let missing = "\(files.directory)/missing-ca.pem"
        let missingError = failure { try TLSContext.client(TLSSettings(caFile: missing)) }
        #expect(missingError?.description == "cannot load CA file '\(missing)': No such file or directory")

        let garbage = try files.writeFile("garbage-ca.pem", contents: "nothing here\n")
        let garbageError = failure { try TLSContext.client(TLSSettings(caFile: garbage)) }
        #expect(garbageError?.operation == "cannot load CA file '\(garbage)'")
        #expect(garbageError?.reasons.isEmpty == false)

        let notDirectory = failure { try TLSContext.client(TLSSettings(caDirectory: files.caCertificate)) }
        #expect(notDirectory?.description == "cannot load CA directory '\(files.caCertificate)': Not a directory")
    }

    @Test("settings that cannot work together are refused")
    func inconsistentSettings() {
        #expect(
            failure { try TLSContext.server(TLSSettings()) }?.reasons == ["a certificate and private key are required"])
        #expect(
            failure {
                try TLSContext.server(
                    TLSSettings(
                        certificateFile: files.serverForIP.certificate, privateKeyFile: files.serverForIP.privateKey,
                        verifyPeer: true))
            }?.reasons == ["verifying client certificates needs caFile or caDirectory"])
        #expect(
            failure { try TLSContext.client(TLSSettings(certificateFile: files.client.certificate)) }?.reasons
                == ["certificate '\(files.client.certificate)' given without a private key"])
        #expect(
            failure { try TLSContext.client(TLSSettings(minimumVersion: .tls13, maximumVersion: .tls12)) }?.reasons
                == ["minimum version TLSv1.3 is above maximum TLSv1.2"])
    }

    @Test("invalid cipher settings are named with OpenSSL's reason")
    func invalidCiphers() {
        let list = failure { try TLSContext.client(TLSSettings(cipherList: "NO-SUCH-CIPHER")) }
        #expect(list?.operation == "invalid TLS 1.2 cipher list 'NO-SUCH-CIPHER'")
        #expect(list?.reasons.contains("no cipher match") == true)
        let suites = failure { try TLSContext.client(TLSSettings(cipherSuites: "TLS_NO_SUCH_SUITE")) }
        #expect(suites?.operation == "invalid TLS 1.3 cipher suites 'TLS_NO_SUCH_SUITE'")
        #expect(suites?.reasons.isEmpty == false)
    }
}

@Suite("TLSError")
struct TLSErrorTests {
    /// ERR_PACK(lib, 0, reason) for OpenSSL 3.
    private func code(library: UInt, reason: UInt) -> UInt { library << 23 | reason }

    @Test("a failed verification completes OpenSSL's reason with the verification result")
    func verification() {
        let verifyFailed = code(library: 20, reason: 134)  // SSL_R_CERTIFICATE_VERIFY_FAILED
        let error = TLSError(operation: "TLS handshake", errorCodes: [verifyFailed], verifyResult: 62)
        #expect(error.reasons == ["certificate verify failed: hostname mismatch"])
        #expect(error.description == "TLS handshake: certificate verify failed: hostname mismatch")
        let expired = TLSError(operation: "TLS handshake", errorCodes: [verifyFailed], verifyResult: 10)
        #expect(expired.reasons == ["certificate verify failed: certificate has expired"])
    }

    @Test("system errors read as the system's text; repeated reasons appear once")
    func systemAndRepeated() {
        let system: UInt = 0x8000_0000 | UInt(ENOENT)  // ERR_SYSTEM_FLAG | errno
        let error = TLSError(operation: "x", errorCodes: [system, system], verifyResult: 0)
        #expect(error.reasons == ["No such file or directory"])
        #expect(TLSError(operation: "nothing", errorCodes: [], verifyResult: 0).description == "nothing")
    }
}
