import Testing
import SIPEdgeConfig

@Suite("Configuration")
struct ConfigurationTests {
    @Test func defaultsListenOnLoopbackUDPAndTCP() {
        let configuration = ProxyConfiguration()
        #expect(configuration.listen.map(\.description) == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
        #expect(configuration.upstream == nil)
        #expect(configuration.workers == nil)
        #expect(configuration.udpCoalesceMicroseconds == 0)
    }

    @Test func everyKeyIsRead() throws {
        let configuration = try ConfigurationFile.parse(
            yaml: """
                listen: [udp:127.0.0.1:5070, "tcp:[::1]:5071"]
                upstream: sip:127.0.0.1:5080;transport=tcp
                workers: 3
                log_level: debug
                timers: { t1_ms: 100, t2_ms: 400, t4_ms: 500 }
                limits: { max_message_size: 4096, udp_receive_buffer: 65536, udp_coalesce_us: 250 }
                dialogs: { lifetime_s: 60, invite_timeout_s: 30 }
                """)
        #expect(configuration.listen.map(\.description) == ["udp:127.0.0.1:5070", "tcp:[::1]:5071"])
        #expect(configuration.upstream?.host == "127.0.0.1")
        #expect(configuration.upstream?.port == 5080)
        #expect(configuration.upstream?.transport == .tcp)
        #expect(configuration.workers == 3)
        #expect(configuration.logLevel == .debug)
        #expect(configuration.t1Milliseconds == 100)
        #expect(configuration.t2Milliseconds == 400)
        #expect(configuration.t4Milliseconds == 500)
        #expect(configuration.maxMessageSize == 4096)
        #expect(configuration.udpReceiveBufferBytes == 65536)
        #expect(configuration.udpCoalesceMicroseconds == 250)
        #expect(configuration.dialogLifetimeSeconds == 60)
        #expect(configuration.inviteTimeoutSeconds == 30)
    }

    @Test(arguments: [
        ("listen: [udp:127.0.0.1]", "listen: missing port in 'udp:127.0.0.1'"),
        ("listen: [sctp:127.0.0.1:5060]", "listen: unknown transport 'sctp' in 'sctp:127.0.0.1:5060' (use udp, tcp or tls)"),
        ("listen: [udp:::1:5060]", "listen: IPv6 addresses need brackets, as in udp:[::1]:5060 ('udp:::1:5060')"),
        ("listen: [udp:localhost:5060]", "listen: 'localhost' in 'udp:localhost:5060' is not a numeric IPv4 or IPv6 address"),
        ("upstream: http://x", "upstream: 'http://x' is not a sip: URI (for TLS write sip:host;transport=tls)"),
        ("upstream: sips:h", "upstream: 'sips:h' is not a sip: URI (for TLS write sip:host;transport=tls)"),
        ("upstream: sip:h;transport=sctp",
         "upstream: unsupported transport in 'sip:h;transport=sctp' (use transport=udp, transport=tcp or transport=tls)"),
        ("upstream: sip:h;transport=tls",
         "upstream: 'sip:h;transport=tls' is verified against a CA and none is given (tls.ca_file or tls.ca_directory, or --tls-ca)"),
        ("workers: two", "workers: expected a whole number, got 'two'"),
        ("workers: 0", "workers: must be between 1 and 256, got 0"),
        ("log_level: loud", "log_level: 'loud' is not one of trace, debug, info, notice, warning, error, critical"),
        ("timers: { t1_ms: 0 }", "timers.t1_ms: must be between 1 and 60000"),
        ("timers: { t3_ms: 1 }", "timers.t3_ms: unknown key"),
        ("limits: { udp_coalesce_us: -1 }", "limits.udp_coalesce_us: must be between 0 and 100000"),
        ("limits: { udp_coalesce_us: 200000 }", "limits.udp_coalesce_us: must be between 0 and 100000"),
        ("colour: blue", "colour: unknown key"),
        ("- a\n- b", "(file): the top level must be a mapping of keys to values"),
    ])
    func badValuesNameTheirKey(yaml: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse(yaml: yaml) }
        #expect(error?.description == message)
    }

    @Test func unreadableFileIsNamed() {
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationFile.load(path: "/nonexistent/siprec-edge.yaml")
        }
        #expect(error?.description == "config: cannot read '/nonexistent/siprec-edge.yaml': No such file or directory")
    }

    @Test func upstreamForms() throws {
        let plain = try UpstreamTarget(parsing: "sip:127.0.0.1")
        #expect(plain.port == nil)
        #expect(plain.transport == nil)
        let withUser = try UpstreamTarget(parsing: "sip:carrier@[2001:db8::5]:5090;transport=udp;lr")
        #expect(withUser.host == "2001:db8::5")
        #expect(withUser.port == 5090)
        #expect(withUser.transport == .udp)
    }
}
