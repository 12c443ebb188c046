import Glibc

/// Certificates and keys for the TLS tests, made once per test process with the `openssl` command
/// in a temporary directory (removed when the process exits): a test CA and certificates it signed.
public struct TestCertificates: Sendable {
    /// A certificate and its private key (PEM files).
    public struct Identity: Sendable {
        public let certificate: String
        public let privateKey: String
    }

    /// The directory holding every file.
    public let directory: String
    /// The test CA's certificate: the trust anchor of every test context.
    public let caCertificate: String
    /// A server certificate for IP 127.0.0.1 (subjectAltName IP only).
    public let serverForIP: Identity
    /// A server certificate for the DNS name localhost (subjectAltName DNS only).
    public let serverForLocalhost: Identity
    /// A server certificate for wrong.example only.
    public let serverForWrongHost: Identity
    /// A server certificate for 127.0.0.1 and localhost that expired in 2020.
    public let expiredServer: Identity
    /// A client certificate, subject "CN=test client,O=SIPREC Edge Tests".
    public let client: Identity
    /// A private key that matches none of the certificates.
    public let unrelatedKey: String

    /// The certificates, generated on first use.
    public static func shared() throws -> TestCertificates {
        try generated.get()
    }

    /// Writes `contents` to a file named `name` in the directory and returns its path.
    public func writeFile(_ name: String, contents: String) throws -> String {
        let path = "\(directory)/\(name)"
        guard let file = fopen(path, "w") else { throw TestCertificateError(message: "cannot write \(path)") }
        fputs(contents, file)
        fclose(file)
        return path
    }
}

public struct TestCertificateError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

private let generated: Result<TestCertificates, TestCertificateError> = Result { () throws(TestCertificateError) in
    try TestCertificates.generate()
}

extension TestCertificates {
    fileprivate static func generate() throws(TestCertificateError) -> TestCertificates {
        var template = Array("/tmp/siprec-edge-tls-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw TestCertificateError(message: "mkdtemp: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        atexit {
            if case .success(let certificates) = generated { removeDirectory(certificates.directory) }
        }
        let openssl = OpenSSLCommand(directory: directory)
        try openssl.writeCAConfiguration()
        try openssl.run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(directory)/ca.key", "-out", "\(directory)/ca.pem", "-days", "30", "-subj",
            "/CN=SIPREC Edge Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        let valid = ["-days", "30"]
        return TestCertificates(
            directory: directory,
            caCertificate: "\(directory)/ca.pem",
            serverForIP: try openssl.issue(
                "server-ip", subject: "/O=SIPREC Edge Tests/CN=server for 127.0.0.1", extensions: "server_ip",
                validity: valid),
            serverForLocalhost: try openssl.issue(
                "server-localhost", subject: "/O=SIPREC Edge Tests/CN=localhost server", extensions: "server_localhost",
                validity: valid),
            serverForWrongHost: try openssl.issue(
                "server-wrong", subject: "/O=SIPREC Edge Tests/CN=wrong host server", extensions: "server_wrong",
                validity: valid),
            expiredServer: try openssl.issue(
                "server-expired", subject: "/O=SIPREC Edge Tests/CN=expired server", extensions: "server_expired",
                validity: ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]),
            client: try openssl.issue(
                "client", subject: "/O=SIPREC Edge Tests/CN=test client", extensions: "client", validity: valid),
            unrelatedKey: try openssl.makeKey("unrelated"))
    }
}

/// Runs `openssl` (posix_spawn) on files of the certificate directory, its output in openssl.log.
private struct OpenSSLCommand {
    let directory: String

    func run(_ arguments: String...) throws(TestCertificateError) {
        try run(arguments)
    }

    func run(_ arguments: [String]) throws(TestCertificateError) {
        let log = "\(directory)/openssl.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = (["openssl"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, "openssl", &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw TestCertificateError(message: "cannot run openssl: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Exited normally with status 0.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw TestCertificateError(
                message: "openssl \(arguments.joined(separator: " ")) failed (status \(status)): \(readFile(log))")
        }
    }

    /// A CA configuration for `openssl ca`, the one command of OpenSSL 3.0 that can set a validity
    /// period in the past; one extension section per kind of certificate.
    func writeCAConfiguration() throws(TestCertificateError) {
        let configuration = """
            [ca]
            default_ca = test_ca
            [test_ca]
            dir = \(directory)
            database = \(directory)/index.txt
            new_certs_dir = \(directory)
            serial = \(directory)/serial
            default_md = sha256
            policy = any_name
            unique_subject = no
            copy_extensions = none
            [any_name]
            organizationName = optional
            commonName = supplied
            [server_ip]
            basicConstraints = CA:FALSE
            subjectAltName = IP:127.0.0.1
            [server_localhost]
            basicConstraints = CA:FALSE
            subjectAltName = DNS:localhost
            [server_wrong]
            basicConstraints = CA:FALSE
            subjectAltName = DNS:wrong.example
            [server_expired]
            basicConstraints = CA:FALSE
            subjectAltName = IP:127.0.0.1, DNS:localhost
            [client]
            basicConstraints = CA:FALSE
            extendedKeyUsage = clientAuth

            """
        try write("ca.cnf", configuration)
        try write("index.txt", "")
        try write("serial", "1000\n")
    }

    /// A key and a certificate signed by the test CA.
    func issue(_ name: String, subject: String, extensions: String, validity: [String]) throws(TestCertificateError)
        -> TestCertificates.Identity
    {
        try run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr", "-subj", subject)
        try run(
            [
                "ca", "-config", "\(directory)/ca.cnf", "-batch", "-notext", "-keyfile", "\(directory)/ca.key",
                "-cert", "\(directory)/ca.pem", "-in", "\(directory)/\(name).csr", "-out", "\(directory)/\(name).pem",
                "-extensions", extensions,
            ] + validity)
        return TestCertificates.Identity(
            certificate: "\(directory)/\(name).pem", privateKey: "\(directory)/\(name).key")
    }

    func makeKey(_ name: String) throws(TestCertificateError) -> String {
        try run(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out",
            "\(directory)/\(name).key")
        return "\(directory)/\(name).key"
    }

    private func write(_ name: String, _ contents: String) throws(TestCertificateError) {
        guard let file = fopen("\(directory)/\(name)", "w") else {
            throw TestCertificateError(message: "cannot write \(directory)/\(name)")
        }
        fputs(contents, file)
        fclose(file)
    }
}

private func readFile(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Removes the flat certificate directory (files the tests wrote included).
private func removeDirectory(_ path: String) {
    guard let directory = opendir(path) else { return }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." {
            let child = "\(path)/\(name)"
            if rmdir(child) != 0 { unlink(child) }
        }
    }
    closedir(directory)
    rmdir(path)
}
