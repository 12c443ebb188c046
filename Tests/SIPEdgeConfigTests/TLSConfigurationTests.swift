import Glibc
import Testing
import SIPEdgeConfig

/// A temporary directory with the files TLS keys can name (their content does not matter here:
/// only readability is checked), removed when the fixture goes.
private final class TLSFixture {
    let directory: String
    var ca: String { directory + "/ca.pem" }
    var certificate: String { directory + "/edge.pem" }
    var key: String { directory + "/edge.key" }
    var srsCA: String { directory + "/rec-ca.pem" }
    var caDirectory: String { directory + "/certs" }
    var missing: String { directory + "/missing.pem" }

    struct SetupFailed: Error {}

    init() throws {
        var template = Array("/tmp/siprec-edge-tls-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SetupFailed() }
        directory = String(cString: made)
        for path in [ca, certificate, key, srsCA] {
            guard let file = fopen(path, "w") else { throw SetupFailed() }
            fputs("-----BEGIN CERTIFICATE-----\n", file)
            fclose(file)
        }
        guard mkdir(caDirectory, 0o755) == 0 else { throw SetupFailed() }
    }

    deinit {
        for path in [ca, certificate, key, srsCA] { unlink(path) }
        rmdir(caDirectory)
        rmdir(directory)
    }

    /// `text` with every `$DIR` replaced by the fixture's directory.
    func yaml(_ text: String) -> String {
        text.replacingOccurrences(of: "$DIR", with: directory)
    }

    /// A recording section with one instance, rule "r" and instance "i", whose `srs` list is `srs`
    /// and which has the keys `instance` besides, under the top-level `tls` (a global CA by
    /// default); `srs` and `instance` are YAML written from column 0. `$DIR` is replaced.
    func srsYAML(_ srs: String, instance: String = "", tls: String = "tls: { ca_file: $DIR/ca.pem }") -> String {
        yaml(
            """
            \(tls)
            recording:
              rtpengine: udp:127.0.0.1:2223
              rules:
                - name: r
                  instances:
                    - name: i
            \(indented(instance, by: 10))
                      srs:
            \(indented(srs, by: 12))
            """)
    }

    private func indented(_ text: String, by count: Int) -> String {
        let prefix = String(repeating: " ", count: count)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }.joined(separator: "\n")
    }
}

private func parse(_ yaml: String) throws(ConfigurationError) -> ProxyConfiguration {
    try ConfigurationFile.parse(yaml: yaml)
}

@Suite("TLS settings")
struct TLSSettingsTests {
    @Test func defaultsHaveNoTLS() {
        let configuration = ProxyConfiguration()
        #expect(configuration.tls == TLSFiles())
        #expect(!configuration.tls.hasTrustAnchors)
        #expect(!configuration.listen.contains { $0.transport == .tls })
    }

    @Test func listenAddressesMayBeTLS() throws {
        let address = try ListenAddress(parsing: "TLS:[::1]:5061")
        #expect(address == ListenAddress(transport: .tls, host: "::1", port: 5061))
        #expect(address.description == "tls:[::1]:5061")
        #expect(ListenAddress.TransportName.allCases.map(\.rawValue) == ["udp", "tcp", "tls"])
        #expect(ListenAddress.TransportName(rawValue: "tls") == .tls)
    }

    @Test func everyGlobalKeyIsRead() throws {
        let files = try TLSFixture()
        let configuration = try parse(
            files.yaml(
                """
                listen: [udp:127.0.0.1:5060, tls:127.0.0.1:5061]
                tls:
                  ca_file: $DIR/ca.pem
                  ca_directory: $DIR/certs
                  certificate: $DIR/edge.pem
                  private_key: $DIR/edge.key
                  ciphers: "ECDHE+AESGCM:!aNULL"
                  ciphersuites: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
                  verify_client: true
                """))
        #expect(
            configuration.tls
                == TLSFiles(
                    caFile: files.ca, caDirectory: files.caDirectory, certificateFile: files.certificate,
                    privateKeyFile: files.key, cipherList: "ECDHE+AESGCM:!aNULL",
                    cipherSuites: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256", verifyPeer: true))
        #expect(configuration.listen.map(\.description) == ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"])
        #expect(configuration.listenerTLSSettings.verifyPeer == true)
    }

    @Test func aTLSListenerNeedsACertificateAndKey() throws {
        let error = #expect(throws: ConfigurationError.self) { try parse("listen: [tls:127.0.0.1:5061]") }
        #expect(
            error?.description
                == "listen: 'tls:127.0.0.1:5061' needs a certificate and its key (tls.certificate and tls.private_key, or --tls-cert and --tls-key)"
        )
        let files = try TLSFixture()
        var configuration = try ConfigurationFile.parse(yaml: "listen: [tls:127.0.0.1:5061]", validating: false)
        try TLSFlags(certificate: files.certificate, privateKey: files.key).apply(to: &configuration)
        let listener = try configuration.validated().listenerTLSSettings
        #expect(listener.certificateFile == files.certificate)
        #expect(listener.privateKeyFile == files.key)
        #expect(listener.verifyPeer == false)
        #expect(listener.serverName == nil)
    }

    @Test func globalErrorsNameTheKeyAndTheFile() throws {
        let files = try TLSFixture()
        let cases: [(String, String)] = [
            ("tls: yes", "tls: expected a mapping of keys to values"),
            ("tls: { verify: true }", "tls.verify: unknown key"),
            ("tls: { server_name: rec.example }", "tls.server_name: unknown key"),
            ("tls: { certificate: $DIR/missing.pem }",
             "tls.certificate: cannot read '\(files.missing)': No such file or directory"),
            ("tls: { private_key: $DIR/edge.pem/x }",
             "tls.private_key: cannot read '\(files.certificate)/x': Not a directory"),
            ("tls: { ca_file: $DIR/certs }", "tls.ca_file: '\(files.caDirectory)' is a directory, not a file"),
            ("tls: { ca_directory: $DIR/ca.pem }", "tls.ca_directory: '\(files.ca)' is not a directory"),
            ("tls: { ca_directory: $DIR/nothing }",
             "tls.ca_directory: cannot read '\(files.directory)/nothing': No such file or directory"),
            ("tls: { certificate: $DIR }", "tls.certificate: '\(files.directory)' is a directory, not a file"),
            ("tls: { private_key: '' }", "tls.private_key: must not be empty"),
            ("tls: { ca_file: [a, b] }", "tls.ca_file: expected a single value"),
            ("tls: { ciphers: ' ' }", "tls.ciphers: must not be empty"),
            ("tls: { ciphers: \"HIGH\\t!aNULL\" }",
             "tls.ciphers: 'HIGH\t!aNULL' is not an OpenSSL cipher list (character U+0009 in it)"),
            ("tls: { ciphersuites: 'TLS_AES_256_GCM_SHA384:TLS_AES_512' }",
             "tls.ciphersuites: 'TLS_AES_512' is not a TLS 1.3 cipher suite (use TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256 or TLS_AES_128_CCM_8_SHA256, separated by ':')"),
            ("tls: { ciphersuites: '' }", "tls.ciphersuites: must not be empty"),
            ("tls: { verify_client: sometimes }", "tls.verify_client: expected true or false, got 'sometimes'"),
            ("tls: { certificate: $DIR/edge.pem }",
             "tls.private_key: missing: the certificate '\(files.certificate)' needs its key"),
            ("tls: { private_key: $DIR/edge.key }",
             "tls.certificate: missing: the private key '\(files.key)' needs its certificate"),
            ("tls: { verify_client: true }",
             "tls.verify_client: client certificates are verified against a CA: give tls.ca_file or tls.ca_directory (or --tls-ca)"),
        ]
        for (yaml, message) in cases {
            let error = #expect(throws: ConfigurationError.self, "\(yaml)") { try parse(files.yaml(yaml)) }
            #expect(error?.description == message)
        }
    }

    @Test func anUpstreamOverTLSNeedsACA() throws {
        let files = try TLSFixture()
        let configuration = try parse(
            files.yaml("upstream: sip:10.0.0.5;transport=TLS\ntls: { ca_directory: $DIR/certs }"))
        #expect(configuration.upstream?.transport == .tls)
        #expect(configuration.upstream?.port == nil)
    }
}

@Suite("TLS toward SRSs")
struct SRSTLSTests {
    @Test func secureURIsDefaultToPort5061() throws {
        let sips = try SRSTarget(parsing: "sips:rec.example")
        #expect(sips.transport == .tls)
        #expect(sips.isSecure)
        #expect(sips.isSIPSURI)
        #expect(sips.port == nil)
        #expect(sips.effectivePort == 5061)
        #expect(sips.host == "rec.example")
        #expect(sips.tls == TLSFiles())
        #expect(sips.mediaSecurity == .rtp)

        let tlsParameter = try SRSTarget(parsing: "sip:srs@10.0.0.9;transport=tls")
        #expect(tlsParameter.transport == .tls)
        #expect(tlsParameter.isSecure)
        #expect(!tlsParameter.isSIPSURI)
        #expect(tlsParameter.effectivePort == 5061)

        // RFC 5630: sips: with transport=tcp is TLS over TCP.
        let sipsTCP = try SRSTarget(parsing: "SIPS:rec@[2001:db8::7]:5071;transport=tcp")
        #expect(sipsTCP.transport == .tls)
        #expect(sipsTCP.host == "2001:db8::7")
        #expect(sipsTCP.effectivePort == 5071)
        #expect(try SRSTarget(parsing: "sips:rec.example;transport=tls").transport == .tls)

        let tcp = try SRSTarget(parsing: "sip:rec.example;transport=tcp")
        #expect(!tcp.isSecure)
        #expect(tcp.effectivePort == 5060)
        let udp = try SRSTarget(parsing: "sip:rec.example:5090")
        #expect(udp.transport == nil)
        #expect(!udp.isSecure)
        #expect(udp.effectivePort == 5090)
        #expect(try SRSTarget(parsing: "sip:rec.example").effectivePort == 5060)
    }

    @Test func everySRSKeyIsRead() throws {
        let files = try TLSFixture()
        let configuration = try parse(
            files.srsYAML(
                """
                - "sip:127.0.0.1:5090, sips:a.example"
                - uri: "sips:rec.example:5071"
                  timeout_ms: 1500
                  legacy_metadata_type: true
                  tls:
                    ca_file: $DIR/rec-ca.pem
                    ca_directory: $DIR/certs
                    certificate: $DIR/edge.pem
                    private_key: $DIR/edge.key
                    ciphers: "ECDHE+AESGCM"
                    ciphersuites: TLS_AES_128_GCM_SHA256
                    verify: false
                    server_name: recorder.example
                  media: sdes
                  srtp_suites: [aead_aes_128_gcm, "AES_256_CM_HMAC_SHA1_80"]
                - { uri: "sip:127.0.0.1:5092;transport=tls", media: SDES }
                """,
                instance: "srs_timeout_ms: 2500"))
        let srs = configuration.recording.rules[0].instances[0].srs
        #expect(srs.map(\.uri) == ["sip:127.0.0.1:5090", "sips:a.example", "sips:rec.example:5071", "sip:127.0.0.1:5092;transport=tls"])
        #expect(srs.map(\.timeoutMilliseconds) == [2500, 2500, 1500, 2500])
        #expect(srs.map(\.legacyMetadataType) == [false, false, true, false])
        #expect(srs.map(\.effectivePort) == [5090, 5061, 5071, 5092])
        #expect(srs[0].tls == TLSFiles())
        #expect(srs[1].tls == TLSFiles())
        #expect(
            srs[2].tls
                == TLSFiles(
                    caFile: files.srsCA, caDirectory: files.caDirectory, certificateFile: files.certificate,
                    privateKeyFile: files.key, cipherList: "ECDHE+AESGCM", cipherSuites: "TLS_AES_128_GCM_SHA256",
                    verifyPeer: false, serverName: "recorder.example"))
        #expect(srs.map(\.mediaSecurity) == [
            .rtp, .rtp, .sdes(suites: ["AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80"]),
            .sdes(suites: ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"]),
        ])
    }

    @Test func instancesGiveTheirSRSsADefaultMediaSecurity() throws {
        let files = try TLSFixture()
        let yaml = files.srsYAML(
            """
            - sips:a.example
            - { uri: sips:b.example, media: rtp }
            - { uri: sips:c.example, media: sdes }
            - { uri: sips:d.example, srtp_suites: AES_CM_128_HMAC_SHA1_32 }
            - { uri: sips:e.example, media: rtp, srtp_suites: [] }
            """,
            instance: """
                media_security: sdes
                srtp_suites: "AEAD_AES_256_GCM, F8_128_HMAC_SHA1_80"
                """)
        let error = #expect(throws: ConfigurationError.self) { try parse(yaml) }
        #expect(error?.description == "recording.rules[0] (r): instances[0] (i): srs[4]: srtp_suites: only goes with media: sdes")
        let configuration = try parse(yaml.replacingOccurrences(of: ", srtp_suites: [] }", with: " }"))
        let instanceSuites = ["AEAD_AES_256_GCM", "F8_128_HMAC_SHA1_80"]
        #expect(configuration.recording.rules[0].instances[0].srs.map(\.mediaSecurity) == [
            .sdes(suites: instanceSuites), .rtp, .sdes(suites: instanceSuites),
            .sdes(suites: ["AES_CM_128_HMAC_SHA1_32"]), .rtp,
        ])

        let plain = try parse(files.srsYAML("- sips:a.example", instance: "media_security: rtp"))
        #expect(plain.recording.rules[0].instances[0].srs[0].mediaSecurity == .rtp)
    }

    @Test func errorsNameTheSRSAndTheKey() throws {
        let files = try TLSFixture()
        let cases: [(String, String)] = [
            ("- { uri: sips:a.example, colour: blue }", "srs[0]: colour: unknown key"),
            ("- { timeout_ms: 100 }", "srs[0]: an SRS mapping needs a uri"),
            ("- sip:127.0.0.1:5090\n- { uri: 'sips:a.example;transport=udp' }",
             "srs[1]: uri: 'sips:a.example;transport=udp': a sips: URI is reached over TLS, not transport=udp"),
            ("- { uri: '' }", "srs[0]: uri: must not be empty"),
            ("- { uri: sips:a.example, timeout_ms: 0 }", "srs[0]: timeout_ms: must be between 1 and 600000 ms, got 0"),
            ("- { uri: sips:a.example, legacy_metadata_type: 3 }",
             "srs[0]: legacy_metadata_type: expected true or false, got '3'"),
            ("- [sip:127.0.0.1:5090]", "srs: expected SRS URIs or mappings with a uri"),
            ("{ uri: sips:a.example }", "srs: expected an SRS URI or a list of SRS URIs or mappings"),
            ("- sip:127.0.0.1:5090\n- { uri: sips:a.example, tls: { certificate: /x/c.pem } }",
             "srs[1]: tls.certificate: cannot read '/x/c.pem': No such file or directory"),
            ("- { uri: sips:a.example, tls: { verify_client: true } }", "srs[0]: tls.verify_client: unknown key"),
            ("- { uri: sips:a.example, tls: on }", "srs[0]: tls: expected a mapping of keys to values"),
            ("- { uri: sips:a.example, tls: { server_name: 'rec example' } }",
             "srs[0]: tls.server_name: 'rec example' is not a host name or an IP address"),
            ("- { uri: sips:a.example, tls: { verify: maybe } }", "srs[0]: tls.verify: expected true or false, got 'maybe'"),
            ("- { uri: sips:a.example, tls: { ciphersuites: TLS_RSA } }",
             "srs[0]: tls.ciphersuites: 'TLS_RSA' is not a TLS 1.3 cipher suite (use TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256 or TLS_AES_128_CCM_8_SHA256, separated by ':')"),
            ("- { uri: sips:a.example, tls: { private_key: $DIR/edge.key } }",
             "srs[0]: tls.certificate: missing: the private key '\(files.key)' needs its certificate"),
            ("- { uri: 'sip:a.example;transport=tcp', tls: { verify: false } }",
             "srs[0]: tls: 'sip:a.example;transport=tcp' is not reached over TLS (use sips: or transport=tls)"),
            ("- { uri: sips:a.example, media: srtp }", "srs[0]: media: 'srtp' is not rtp or sdes"),
            ("- { uri: sips:a.example, srtp_suites: [AEAD_AES_256_GCM] }", "srs[0]: srtp_suites: only goes with media: sdes"),
            ("- { uri: sips:a.example, media: sdes, srtp_suites: [AES_CM_256] }",
             "srs[0]: srtp_suites: 'AES_CM_256' is not an SDES crypto suite rtpengine knows (AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80, AES_256_CM_HMAC_SHA1_32, AES_192_CM_HMAC_SHA1_80, AES_192_CM_HMAC_SHA1_32, AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, F8_128_HMAC_SHA1_80, F8_128_HMAC_SHA1_32, NULL_HMAC_SHA1_80, NULL_HMAC_SHA1_32)"),
            ("- { uri: sips:a.example, media: sdes, srtp_suites: 'AEAD_AES_256_GCM, aead_aes_256_gcm' }",
             "srs[0]: srtp_suites: AEAD_AES_256_GCM is listed twice"),
            ("- { uri: sips:a.example, media: sdes, srtp_suites: [] }", "srs[0]: srtp_suites: at least one suite is needed"),
            ("- { uri: sips:a.example, media: [sdes] }", "srs[0]: media: expected a single value"),
            ("- { uri: 'sip:a.example;transport=tcp', media: sdes }",
             "srs[0]: media: SDES puts the SRTP keys in the SDP, so 'sip:a.example;transport=tcp' must be reached over TLS (sips: or transport=tls)"),
        ]
        for (srs, message) in cases {
            let yaml = files.srsYAML(srs)
            let error = #expect(throws: ConfigurationError.self, "\(srs)") { try parse(yaml) }
            #expect(error?.description == "recording.rules[0] (r): instances[0] (i): " + message)
        }
    }

    @Test func instanceMediaSecurityErrors() throws {
        let files = try TLSFixture()
        let cases: [(String, String)] = [
            ("media_security: zrtp", "media_security: 'zrtp' is not rtp or sdes"),
            ("srtp_suites: AEAD_AES_256_GCM", "srtp_suites: only goes with media_security: sdes"),
            ("media_security: sdes\nsrtp_suites: [NULL_HMAC_SHA1_80, NULL]",
             "srtp_suites: 'NULL' is not an SDES crypto suite rtpengine knows (\(MediaSecurity.knownSuites.joined(separator: ", ")))"),
            ("media_security: sdes", "srs[0]: media: SDES puts the SRTP keys in the SDP, so 'sip:127.0.0.1:5090' must be reached over TLS (sips: or transport=tls)"),
        ]
        for (instance, message) in cases {
            let error = #expect(throws: ConfigurationError.self, "\(instance)") {
                try parse(files.srsYAML("- sip:127.0.0.1:5090", instance: instance))
            }
            #expect(error?.description == "recording.rules[0] (r): instances[0] (i): " + message)
        }
    }

    @Test func aVerifiedSRSNeedsACA() throws {
        let files = try TLSFixture()
        let noCA = files.srsYAML("- sips:a.example", tls: "")
        let error = #expect(throws: ConfigurationError.self) { try parse(noCA) }
        #expect(
            error?.description
                == "recording.rules[0] (r): instances[0] (i): srs[0]: 'sips:a.example' is verified against a CA and none is given (tls.ca_file or tls.ca_directory, or --tls-ca); or tls.verify: false for this SRS"
        )
        // Its own CA, the global one, or no verification at all will do.
        let own = try parse(files.srsYAML("- { uri: sips:a.example, tls: { ca_directory: $DIR/certs } }", tls: ""))
        #expect(own.recording.rules[0].instances[0].srs[0].tls.caDirectory == files.caDirectory)
        let global = try parse(files.srsYAML("- sips:a.example", tls: "tls: { ca_directory: $DIR/certs }"))
        #expect(global.tls.caDirectory == files.caDirectory)
        let unverified = try parse(files.srsYAML("- { uri: sips:a.example, tls: { verify: false } }", tls: ""))
        #expect(unverified.recording.rules[0].instances[0].srs[0].tls.verifyPeer == false)
        // A plain SRS needs none.
        let plain = try parse(files.srsYAML("- sip:a.example;transport=tcp", tls: ""))
        #expect(plain.recording.rules[0].instances[0].srs[0].transport == .tcp)
    }

    @Test func valuesSetInCodeAreChecked() throws {
        var target = try SRSTarget(parsing: "sips:a.example")
        target.mediaSecurity = .sdes(suites: ["aead_aes_256_gcm"])
        var configuration = ProxyConfiguration()
        configuration.tls.caFile = "/unchecked/in/code.pem"
        configuration.recording = RecordingConfiguration(
            rules: [RecordingRule(name: "r", instances: [RecordingInstance(name: "i", srs: [target])])],
            mediaEngines: [ListenAddress(transport: .udp, host: "127.0.0.1", port: 2223)])
        let spelling = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(
            spelling?.description
                == "recording.rules[0] (r): instances[0] (i): srs[0]: srtp_suites: suite names are written as rtpengine spells them (upper case)")
        configuration.recording.rules[0].instances[0].srs[0].mediaSecurity = .sdes(suites: [])
        let empty = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(empty?.description == "recording.rules[0] (r): instances[0] (i): srs[0]: srtp_suites: at least one suite is needed")
        configuration.recording.rules[0].instances[0].srs[0].mediaSecurity = .sdes(suites: ["AEAD_AES_256_GCM"])
        configuration.recording.rules[0].instances[0].srs[0].tls.certificateFile = "/c.pem"
        let pair = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(
            pair?.description
                == "recording.rules[0] (r): instances[0] (i): srs[0]: tls.private_key: missing: the certificate '/c.pem' needs its key")
        configuration.recording.rules[0].instances[0].srs[0].tls.privateKeyFile = "/c.key"
        #expect(try configuration.validated().recording.rules[0].instances[0].srs[0].tls.privateKeyFile == "/c.key")
    }
}

@Suite("TLS merging")
struct TLSMergingTests {
    private let global = TLSFiles(
        caFile: "/g/ca.pem", caDirectory: "/g/certs", certificateFile: "/g/edge.pem", privateKeyFile: "/g/edge.key",
        cipherList: "HIGH", cipherSuites: "TLS_AES_256_GCM_SHA384", verifyPeer: false, serverName: "g.example")

    @Test func nothingOwnTakesEverythingButVerificationFromTheDefaults() {
        let merged = TLSFiles().merged(over: global)
        var expected = global
        expected.verifyPeer = nil
        expected.serverName = nil
        #expect(merged == expected)
    }

    @Test func ownValuesWinFieldByField() {
        let own = TLSFiles(cipherSuites: "TLS_AES_128_GCM_SHA256", verifyPeer: true, serverName: "rec.example")
        #expect(
            own.merged(over: global)
                == TLSFiles(
                    caFile: "/g/ca.pem", caDirectory: "/g/certs", certificateFile: "/g/edge.pem",
                    privateKeyFile: "/g/edge.key", cipherList: "HIGH", cipherSuites: "TLS_AES_128_GCM_SHA256",
                    verifyPeer: true, serverName: "rec.example"))
        #expect(TLSFiles(cipherList: "AESGCM").merged(over: global).cipherList == "AESGCM")
    }

    @Test func trustAnchorsAndIdentityComeWholeFromOneLevel() {
        let ownCA = TLSFiles(caFile: "/s/ca.pem").merged(over: global)
        #expect(ownCA.caFile == "/s/ca.pem")
        #expect(ownCA.caDirectory == nil)  // the global directory is not trusted as well
        let ownDirectory = TLSFiles(caDirectory: "/s/certs").merged(over: global)
        #expect(ownDirectory.caFile == nil)
        #expect(ownDirectory.caDirectory == "/s/certs")
        let ownIdentity = TLSFiles(certificateFile: "/s/c.pem", privateKeyFile: "/s/c.key").merged(over: global)
        #expect(ownIdentity.certificateFile == "/s/c.pem")
        #expect(ownIdentity.privateKeyFile == "/s/c.key")
        #expect(ownIdentity.caFile == "/g/ca.pem")
    }

    @Test func theSettingsTowardAnSRSAndTheListener() throws {
        var configuration = ProxyConfiguration()
        configuration.tls = TLSFiles(caFile: "/g/ca.pem", verifyPeer: true)
        let plain = try SRSTarget(parsing: "sips:rec.example")
        let settings = configuration.tlsSettings(toward: plain)
        #expect(settings == TLSFiles(caFile: "/g/ca.pem", verifyPeer: true, serverName: "rec.example"))

        // verify_client false must not switch off the verification of an SRS.
        configuration.tls.verifyPeer = false
        #expect(configuration.tlsSettings(toward: plain).verifyPeer == true)
        #expect(configuration.listenerTLSSettings == TLSFiles(caFile: "/g/ca.pem", verifyPeer: false))
        configuration.tls.verifyPeer = nil
        #expect(configuration.listenerTLSSettings.verifyPeer == false)

        var own = try SRSTarget(parsing: "sips:10.0.0.9")
        own.tls = TLSFiles(caDirectory: "/s/certs", verifyPeer: false, serverName: "rec.example")
        #expect(
            configuration.tlsSettings(toward: own)
                == TLSFiles(caDirectory: "/s/certs", verifyPeer: false, serverName: "rec.example"))
        own.tls.serverName = nil
        #expect(configuration.tlsSettings(toward: own).serverName == "10.0.0.9")
    }
}

@Suite("TLS flags")
struct TLSFlagTests {
    @Test func flagsReplaceTheFilesGlobalValues() throws {
        let files = try TLSFixture()
        let other = try TLSFixture()
        var configuration = try parse(
            files.yaml(
                """
                tls:
                  ca_file: $DIR/ca.pem
                  certificate: $DIR/edge.pem
                  private_key: $DIR/edge.key
                  ciphers: HIGH
                  ciphersuites: TLS_AES_256_GCM_SHA384
                  verify_client: true
                """))
        try TLSFlags(
            ca: other.caDirectory, certificate: other.certificate, privateKey: other.key, cipherList: "ECDHE+AESGCM",
            cipherSuites: "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
        ).apply(to: &configuration)
        #expect(
            configuration.tls
                == TLSFiles(
                    caFile: nil, caDirectory: other.caDirectory, certificateFile: other.certificate,
                    privateKeyFile: other.key, cipherList: "ECDHE+AESGCM",
                    cipherSuites: "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", verifyPeer: true))
        // A CA file in turn replaces the directory.
        try TLSFlags(ca: files.ca).apply(to: &configuration)
        #expect(configuration.tls.caFile == files.ca)
        #expect(configuration.tls.caDirectory == nil)
        _ = try configuration.validated()
    }

    @Test func noFlagsChangeNothing() throws {
        let files = try TLSFixture()
        var configuration = try parse(files.yaml("tls: { ca_directory: $DIR/certs, ciphers: HIGH }"))
        let before = configuration
        try TLSFlags().apply(to: &configuration)
        #expect(configuration == before)
    }

    @Test func flagSRSsUseTheGlobalSettings() throws {
        let files = try TLSFixture()
        var configuration = ProxyConfiguration()
        try RecordingFlags(srs: "sips:rec.example, sip:10.0.0.9;transport=tls", rtpengine: ["udp:127.0.0.1:2223"])
            .apply(to: &configuration)
        let error = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(
            error?.description
                == "recording.rules[0] (command-line): instances[0] (default): srs[0]: 'sips:rec.example' is verified against a CA and none is given (tls.ca_file or tls.ca_directory, or --tls-ca); or tls.verify: false for this SRS"
        )
        try TLSFlags(ca: files.ca).apply(to: &configuration)
        let srs = try configuration.validated().recording.rules[0].instances[0].srs
        #expect(srs.map(\.effectivePort) == [5061, 5061])
        #expect(srs.map { configuration.tlsSettings(toward: $0) } == [
            TLSFiles(caFile: files.ca, verifyPeer: true, serverName: "rec.example"),
            TLSFiles(caFile: files.ca, verifyPeer: true, serverName: "10.0.0.9"),
        ])
    }

    @Test func flagErrorsNameTheFlagAndThePath() throws {
        let files = try TLSFixture()
        let cases: [(TLSFlags, String)] = [
            (TLSFlags(ca: files.missing), "--tls-ca: cannot read '\(files.missing)': No such file or directory"),
            (TLSFlags(certificate: files.missing, privateKey: files.key),
             "--tls-cert: cannot read '\(files.missing)': No such file or directory"),
            (TLSFlags(certificate: files.certificate, privateKey: files.caDirectory),
             "--tls-key: '\(files.caDirectory)' is a directory, not a file"),
            (TLSFlags(certificate: files.certificate), "--tls-cert: needs --tls-key (a certificate and its key go together)"),
            (TLSFlags(privateKey: files.key), "--tls-key: needs --tls-cert (a certificate and its key go together)"),
            (TLSFlags(cipherList: ""), "--tls-ciphers: must not be empty"),
            (TLSFlags(cipherSuites: "TLS_AES_256_GCM_SHA384::"),
             "--tls-ciphersuites: '' is not a TLS 1.3 cipher suite (use \(TLSFiles.knownCipherSuites.dropLast().joined(separator: ", ")) or TLS_AES_128_CCM_8_SHA256, separated by ':')"),
        ]
        for (flags, message) in cases {
            var configuration = ProxyConfiguration()
            let error = #expect(throws: ConfigurationError.self, "\(message)") { try flags.apply(to: &configuration) }
            #expect(error?.description == message)
            #expect(configuration.tls == TLSFiles())
        }
    }

    @Test func theReadmeTLSExampleIsValid() throws {
        let files = try TLSFixture()
        let readme = try #require(readText(String(#filePath.split(separator: "/Tests/")[0]) + "/README.md"))
        let section = try #require(readme.split(separator: "### TLS").dropFirst().first)
        let block = try #require(section.split(separator: "```yaml\n").dropFirst().first?.split(separator: "```").first)
        // The example's files live in /etc/siprec-edge; the fixture stands in for that directory.
        let yaml = String(block).replacingOccurrences(of: "/etc/siprec-edge/rec-ca.pem", with: files.srsCA)
            .replacingOccurrences(of: "/etc/siprec-edge/ca.pem", with: files.ca)
            .replacingOccurrences(of: "/etc/siprec-edge/edge.pem", with: files.certificate)
            .replacingOccurrences(of: "/etc/siprec-edge/edge.key", with: files.key)
        let configuration = try parse(yaml)
        #expect(configuration.listen.contains { $0.transport == .tls })
        #expect(configuration.tls.certificateFile == files.certificate)
        let srs = configuration.recording.rules[0].instances[0].srs
        #expect(srs.count == 2)
        #expect(srs[0].isSecure)
        #expect(srs[0].mediaSecurity == .sdes(suites: ["AEAD_AES_256_GCM"]))
        #expect(srs[0].tls.caFile == files.srsCA)
        #expect(srs[1].mediaSecurity == .rtp)
    }
}

@Suite("Media security")
struct MediaSecurityTests {
    @Test func parsing() throws {
        #expect(try MediaSecurity(parsing: "rtp") == .rtp)
        #expect(try MediaSecurity(parsing: " RTP ") == .rtp)
        #expect(try MediaSecurity(parsing: "sdes") == .sdes(suites: ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"]))
        #expect(MediaSecurity.defaultSuites == ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"])
        #expect(try MediaSecurity(parsing: "SDES", suites: ["aes_256_cm_hmac_sha1_32", "NULL_HMAC_SHA1_32"])
            == .sdes(suites: ["AES_256_CM_HMAC_SHA1_32", "NULL_HMAC_SHA1_32"]))
        #expect(try MediaSecurity.suites(parsing: ["F8_128_HMAC_SHA1_80, AES_192_CM_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
            == ["F8_128_HMAC_SHA1_80", "AES_192_CM_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
        #expect(MediaSecurity.knownSuites.count == 12)
        #expect(Set(MediaSecurity.knownSuites).count == 12)
    }

    @Test func whatTheSRSIsOffered() throws {
        #expect(MediaSecurity.rtp.transportProtocol == "RTP/AVP")
        #expect(!MediaSecurity.rtp.isSRTP)
        let sdes = try MediaSecurity(parsing: "sdes")
        #expect(sdes.transportProtocol == "RTP/SAVP")
        #expect(sdes.isSRTP)
        #expect(sdes.description == "sdes(AEAD_AES_256_GCM,AES_CM_128_HMAC_SHA1_80)")
        #expect(MediaSecurity.rtp.description == "rtp")
    }

    @Test func errors() {
        let cases: [(() throws(ConfigurationProblem) -> MediaSecurity, String)] = [
            ({ () throws(ConfigurationProblem) in try MediaSecurity(parsing: "dtls") }, "'dtls' is not rtp or sdes"),
            ({ () throws(ConfigurationProblem) in try MediaSecurity(parsing: "rtp", suites: ["AEAD_AES_256_GCM"]) },
             "SRTP suites go with sdes, not rtp"),
            ({ () throws(ConfigurationProblem) in try MediaSecurity(parsing: "sdes", suites: [" , "]) },
             "at least one suite is needed"),
            ({ () throws(ConfigurationProblem) in try MediaSecurity(parsing: "sdes", suites: ["AES_CM_128_HMAC_SHA1_80", "aes_cm_128_hmac_sha1_80"]) },
             "AES_CM_128_HMAC_SHA1_80 is listed twice"),
        ]
        for (make, message) in cases {
            let error = #expect(throws: ConfigurationProblem.self, "\(message)") { try make() }
            #expect(error?.message == message)
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

private func readText(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        data.append(contentsOf: buffer[0..<count])
        if count < buffer.count { break }
    }
    return String(decoding: data, as: UTF8.self)
}
