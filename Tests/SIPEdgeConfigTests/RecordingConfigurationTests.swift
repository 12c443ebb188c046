import Glibc
import Testing
import SIPEdgeConfig

/// A call as a rule sees it: fields and headers (header names compared case-insensitively).
private struct Call {
    var requestURI = "sip:+441234@127.0.0.1"
    var from = "\"Alice\" <sip:alice@example.com>;tag=1"
    var to = "<sip:+441234@127.0.0.1>"
    var source = "127.0.0.1:5070"
    var headers: [String: String] = ["call-id": "abc@host"]

    func lookup(_ field: CallField) -> String? {
        switch field {
        case .requestURI: requestURI
        case .from: from
        case .to: to
        case .source: source
        case .header(let name): headers[name.lowercased()]
        }
    }
}

/// The smallest valid recording section, for tests of one key at a time.
private func recordingYAML(_ instance: String = "", rule: String = "", top: String = "") -> String {
    """
    recording:
      rtpengine: udp:127.0.0.1:2223
    \(top)
      rules:
        - name: r
    \(rule)
          instances:
            - name: i
              srs: sip:127.0.0.1:5090
    \(instance)
    """
}

@Suite("Pattern")
struct PatternTests {
    @Test func anchoredSkipCodesMatchTheWholeCode() throws {
        let codes = try Pattern("408|487", anchored: true)
        #expect(codes.matches("408"))
        #expect(codes.matches("487"))
        #expect(!codes.matches("4080"))
        #expect(!codes.matches("1408"))
        #expect(!codes.matches("486"))
        let range = try Pattern("[34][0-9][0-9]", anchored: true)
        #expect(range.matches("302"))
        #expect(range.matches("486"))
        #expect(!range.matches("503"))
        #expect(!range.matches("4861"))
    }

    @Test func rulePatternsAreUnanchoredAndCaseInsensitive() throws {
        let alice = try Pattern("alice")
        #expect(alice.matches("\"Alice\" <sip:ALICE@example.com>"))
        #expect(!alice.matches("<sip:bob@example.com>"))
        let exact = try Pattern("alice", caseInsensitive: false)
        #expect(!exact.matches("ALICE"))
        #expect(exact.matches("malice"))
        let prefix = try Pattern(#"^sip:\+44"#)
        #expect(prefix.matches("sip:+441234@host"))
        #expect(!prefix.matches("sip:0441234@host"))
    }

    @Test func equalityIsBySourceAndOptions() throws {
        #expect(try Pattern("a|b") == Pattern("a|b"))
        #expect(try Pattern("a|b").hashValue == Pattern("a|b").hashValue)
        #expect(try Pattern("a|b") != Pattern("a|b", anchored: true))
        #expect(try Pattern("a|b") != Pattern("a|b", caseInsensitive: false))
        #expect(try Pattern("a|b") != Pattern("b|a"))
        #expect(try Pattern("a|b").description == "a|b")
    }

    @Test(arguments: [
        ("(", "bad regular expression '(': Unmatched ( or \\("),
        ("a{2,1}", "bad regular expression 'a{2,1}': Invalid content of \\{\\}"),
        ("", "empty regular expression"),
    ])
    func compileErrorsNameThePattern(source: String, message: String) {
        let error = #expect(throws: ConfigurationProblem.self) { try Pattern(source) }
        #expect(error?.message == message)
    }
}

@Suite("SRS targets")
struct SRSTargetTests {
    @Test func forms() throws {
        let user = try SRSTarget(parsing: " sip:srs1@127.0.0.1:5090 ")
        #expect(user.uri == "sip:srs1@127.0.0.1:5090")
        #expect(user.host == "127.0.0.1")
        #expect(user.port == 5090)
        #expect(user.transport == nil)
        #expect(user.timeoutMilliseconds == 5000)
        #expect(!user.legacyMetadataType)
        let tcp = try SRSTarget(parsing: "sip:127.0.0.1:5091;transport=TCP", defaultTimeoutMilliseconds: 3000)
        #expect(tcp.transport == .tcp)
        #expect(tcp.timeoutMilliseconds == 3000)
        let name = try SRSTarget(parsing: "sip:recorder.example.com;lr")
        #expect(name.host == "recorder.example.com")
        #expect(name.port == nil)
        let v6 = try SRSTarget(parsing: "sip:rec@[2001:db8::7]:5090;transport=udp")
        #expect(v6.host == "2001:db8::7")
        #expect(v6.transport == .udp)
        #expect(v6.description == "sip:rec@[2001:db8::7]:5090;transport=udp")
    }

    @Test func listsAreCommaSeparatedAndKeepTheirOrder() throws {
        let targets = try SRSTarget.list(parsing: ["sip:a.example, sip:b.example,", "sip:c.example"])
        #expect(targets.map(\.host) == ["a.example", "b.example", "c.example"])
    }

    @Test(arguments: [
        ("xyz", "'xyz' is not a sip: or sips: URI"),
        ("http://rec", "'http://rec' is not a sip: or sips: URI"),
        ("sips:rec.example;transport=udp", "'sips:rec.example;transport=udp': a sips: URI is reached over TLS, not transport=udp"),
        ("sip:rec;transport=sctp",
         "unsupported transport in 'sip:rec;transport=sctp' (use transport=udp, transport=tcp or transport=tls)"),
        ("sips:rec;transport=dtls",
         "unsupported transport in 'sips:rec;transport=dtls' (use transport=udp, transport=tcp or transport=tls)"),
        ("sips:@rec", "empty user part in 'sips:@rec'"),
        ("sip:bad_host", "'bad_host' in 'sip:bad_host' is not an IP address or a host name"),
        ("sip:1.2.3", "'1.2.3' in 'sip:1.2.3' is not an IP address or a host name"),
        ("sip:rec:0", "port '0' in 'sip:rec:0' is not between 1 and 65535"),
        ("sip:@rec", "empty user part in 'sip:@rec'"),
        ("sip:rec@", "missing host in 'sip:rec@'"),
        ("sip:rec?subject=x", "'sip:rec?subject=x': URI headers (?...) are not supported"),
        ("sip:a b", "'sip:a b' is not a sip: or sips: URI (' ' in it)"),
        ("<sip:rec>", "'<sip:rec>' is not a sip: or sips: URI"),
    ])
    func errors(text: String, message: String) {
        let error = #expect(throws: ConfigurationProblem.self) { try SRSTarget(parsing: text) }
        #expect(error?.message == message)
    }
}

@Suite("Header templates")
struct HeaderTemplateTests {
    @Test func expandsEveryPlaceholder() throws {
        var call = Call()
        call.headers["user-to-user"] = "56a390f3d2b7310023a2;encoding=hex"
        let uui = try HeaderTemplate(parsing: "X-UUI: {header:User-to-User}")
        #expect(uui.name == "X-UUI")
        #expect(uui.template == "{header:User-to-User}")
        #expect(uui.expand(call.lookup) == "56a390f3d2b7310023a2;encoding=hex")
        let all = try HeaderTemplate(
            name: "X-Call", template: "{call-id} {from} {to} {request-uri} {source} {{literal}}")
        #expect(
            all.expand(call.lookup)
                == "abc@host \"Alice\" <sip:alice@example.com>;tag=1 <sip:+441234@127.0.0.1> sip:+441234@127.0.0.1 127.0.0.1:5070 {literal}"
        )
        let plain = try HeaderTemplate(parsing: "X-Site:  edge-1 ")
        #expect(plain.template == "edge-1")
        #expect(plain.expand(call.lookup) == "edge-1")
    }

    @Test func aMissingHeaderLeavesTheHeaderOut() throws {
        let template = try HeaderTemplate(parsing: "Call-Info: <urn:x>;id={header:X-Id}")
        #expect(template.expand(Call().lookup) == nil)
        var call = Call()
        call.headers["x-id"] = ""
        #expect(template.expand(call.lookup) == "<urn:x>;id=")
    }

    @Test func lineBreaksOfLookedUpValuesAreDropped() throws {
        var call = Call()
        call.headers["x-folded"] = "a\r\n b"
        #expect(try HeaderTemplate(parsing: "X-Copy: {header:X-Folded}").expand(call.lookup) == "a b")
    }

    @Test(arguments: [
        ("X-UUI value", "'X-UUI value' is not 'Name: value'"),
        ("X-UUI {header:x}", "'X-UUI {header' is not a valid header name"),
        ("X UUI: a", "'X UUI' is not a valid header name"),
        (": a", "'' is not a valid header name"),
        ("Via: a", "Via is written by the proxy and cannot be added"),
        ("content-length: 5", "content-length is written by the proxy and cannot be added"),
        ("Require: foo", "Require is written by the proxy and cannot be added"),
        ("m: <sip:x>", "m is written by the proxy and cannot be added"),
        ("X-A: {uuid}", "unknown placeholder '{uuid}' in '{uuid}' (use {header:Name}, {call-id}, {from}, {to}, {request-uri} or {source})"),
        ("X-A: {header:User to User}", "'{header:User to User}' in '{header:User to User}' does not name a header"),
        ("X-A: {header:}", "'{header:}' in '{header:}' does not name a header"),
        ("X-A: a{from", "unclosed '{' in 'a{from'"),
        ("X-A: a}b", "unmatched '}' in 'a}b' (write '}}' for a literal one)"),
    ])
    func errors(line: String, message: String) {
        let error = #expect(throws: ConfigurationProblem.self) { try HeaderTemplate(parsing: line) }
        #expect(error?.message == message)
    }

    @Test func lineBreaksInTemplatesAreRefused() {
        let error = #expect(throws: ConfigurationProblem.self) {
            try HeaderTemplate(name: "X-A", template: "a\r\nVia: x")
        }
        #expect(error?.message == "line break in 'a\r\nVia: x'")
    }
}

@Suite("Recording rules")
struct RecordingRuleTests {
    private func instance(_ name: String) throws -> RecordingInstance {
        RecordingInstance(name: name, srs: [try SRSTarget(parsing: "sip:127.0.0.1:5090")])
    }

    @Test func everyConditionMustMatch() throws {
        let rule = RecordingRule(
            name: "uk-from-alice",
            conditions: [
                MatchCondition(field: .requestURI, pattern: try Pattern(#"^sip:\+44"#)),
                MatchCondition(field: .from, pattern: try Pattern("alice")),
                MatchCondition(field: .header("X-Record"), pattern: try Pattern("^yes$")),
            ],
            instances: [try instance("a")])
        var call = Call()
        #expect(!rule.matches(call.lookup))  // no X-Record header at all
        call.headers["x-record"] = "YES"
        #expect(rule.matches(call.lookup))
        call.from = "<sip:bob@example.com>"
        #expect(!rule.matches(call.lookup))
        #expect(RecordingRule(name: "all", instances: []).matches(call.lookup))
    }

    @Test func theFirstMatchingRuleWinsWithAllItsInstances() throws {
        let configuration = RecordingConfiguration(rules: [
            RecordingRule(
                name: "local", conditions: [MatchCondition(field: .source, pattern: try Pattern(#"^127\.0\.0\.1:"#))],
                instances: [try instance("primary"), try instance("backup")]),
            RecordingRule(name: "rest", instances: [try instance("other")]),
        ])
        var call = Call()
        #expect(configuration.instances(for: call.lookup).map(\.name) == ["primary", "backup"])
        call.source = "10.0.0.1:5060"
        #expect(configuration.instances(for: call.lookup).map(\.name) == ["other"])
        #expect(RecordingConfiguration().instances(for: call.lookup).isEmpty)
    }

    @Test func defaultsRecordNothing() {
        let recording = ProxyConfiguration().recording
        #expect(!recording.isEnabled)
        #expect(recording.rules.isEmpty)
        #expect(recording.mediaEngines.isEmpty)
        #expect(recording.pauseOnHold)
        #expect(!recording.startOnEarlyMedia)
        #expect(recording.srsTimeoutMilliseconds == 5000)
        #expect(recording.skipFailoverCodes == nil)
        #expect(!recording.legacyMetadataType)
    }
}

@Suite("Recording configuration file")
struct RecordingFileTests {
    @Test func everyKeyIsRead() throws {
        let configuration = try ConfigurationFile.parse(
            yaml: #"""
                listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
                recording:
                  rtpengine: [udp:127.0.0.1:2223, "udp:[::1]:2224"]
                  pause_on_hold: false
                  start_on_early_media: true
                  skip_failover_codes: "408|487"
                  srs_timeout_ms: 4000
                  legacy_metadata_type: true
                  rules:
                    - name: sales
                      match:
                        request_uri: "^sip:\\+44"
                        from: alice
                        to: "sip:\\+44"
                        source: "^127\\.0\\.0\\.1:"
                        headers: { X-Record: "^yes$", X-Team: sales }
                      instances:
                        - name: primary
                          srs: ["sip:srs1@127.0.0.1:5090", "sip:127.0.0.1:5091;transport=udp"]
                          srs_timeout_ms: 3000
                          legacy_metadata_type: false
                          skip_failover_codes: "[34][0-9][0-9]"
                          group: team-a
                          caller: "<nameID aor=\"sip:a@x\"/>"
                          callee: "<nameID aor=\"sip:b@x\"/>"
                          media: 127.0.0.1
                          media_flags: [SDES-off, "transport-protocol=RTP/AVP"]
                          headers: ["X-UUI: {header:User-to-User}", "Call-Info: {header:Call-Info}"]
                          socket: udp:127.0.0.1:5060
                          from_uri: "sip:src@edge"
                          to_uri: "sip:srs@rec"
                          session_extension: "<e:x xmlns:e=\"urn:x\"/>"
                          group_extension: "<e:g xmlns:e=\"urn:x\"/>"
                        - name: backup
                          srs: "sip:rec.example.com, sip:127.0.0.1:5092;transport=tcp"
                    - name: everyone-else
                      instances:
                        - srs: sip:127.0.0.1:5093
                """#)
        let recording = configuration.recording
        #expect(recording.isEnabled)
        #expect(recording.mediaEngines.map(\.description) == ["udp:127.0.0.1:2223", "udp:[::1]:2224"])
        #expect(!recording.pauseOnHold)
        #expect(recording.startOnEarlyMedia)
        #expect(recording.skipFailoverCodes == (try Pattern("408|487", anchored: true)))
        #expect(recording.srsTimeoutMilliseconds == 4000)
        #expect(recording.legacyMetadataType)
        #expect(recording.rules.map(\.name) == ["sales", "everyone-else"])

        let sales = recording.rules[0]
        #expect(
            sales.conditions == [
                MatchCondition(field: .requestURI, pattern: try Pattern(#"^sip:\+44"#)),
                MatchCondition(field: .from, pattern: try Pattern("alice")),
                MatchCondition(field: .to, pattern: try Pattern(#"sip:\+44"#)),
                MatchCondition(field: .source, pattern: try Pattern(#"^127\.0\.0\.1:"#)),
                MatchCondition(field: .header("X-Record"), pattern: try Pattern("^yes$")),
                MatchCondition(field: .header("X-Team"), pattern: try Pattern("sales")),
            ])
        #expect(sales.instances.map(\.name) == ["primary", "backup"])

        let primary = sales.instances[0]
        #expect(primary.srs.map(\.uri) == ["sip:srs1@127.0.0.1:5090", "sip:127.0.0.1:5091;transport=udp"])
        #expect(primary.srs.map(\.timeoutMilliseconds) == [3000, 3000])
        #expect(primary.srs.map(\.legacyMetadataType) == [false, false])
        #expect(primary.skipFailoverCodes == (try Pattern("[34][0-9][0-9]", anchored: true)))
        #expect(primary.group == "team-a")
        #expect(primary.callerXML == #"<nameID aor="sip:a@x"/>"#)
        #expect(primary.calleeXML == #"<nameID aor="sip:b@x"/>"#)
        #expect(primary.mediaAddress == "127.0.0.1")
        #expect(primary.mediaFlags == ["SDES-off", "transport-protocol=RTP/AVP"])
        #expect(primary.headers == [
            try HeaderTemplate(name: "X-UUI", template: "{header:User-to-User}"),
            try HeaderTemplate(name: "Call-Info", template: "{header:Call-Info}"),
        ])
        #expect(primary.socket == ListenAddress(transport: .udp, host: "127.0.0.1", port: 5060))
        #expect(primary.fromURI == "sip:src@edge")
        #expect(primary.toURI == "sip:srs@rec")
        #expect(primary.sessionExtensionXML == #"<e:x xmlns:e="urn:x"/>"#)
        #expect(primary.groupExtensionXML == #"<e:g xmlns:e="urn:x"/>"#)

        // Without keys of its own an instance takes the section's defaults.
        let backup = sales.instances[1]
        #expect(backup.srs.map(\.host) == ["rec.example.com", "127.0.0.1"])
        #expect(backup.srs[1].transport == .tcp)
        #expect(backup.srs.map(\.timeoutMilliseconds) == [4000, 4000])
        #expect(backup.srs.map(\.legacyMetadataType) == [true, true])
        #expect(backup.skipFailoverCodes == (try Pattern("408|487", anchored: true)))
        #expect(backup.group == nil)
        #expect(backup.headers.isEmpty)
        #expect(backup.mediaFlags.isEmpty)

        let everyone = recording.rules[1]
        #expect(everyone.conditions.isEmpty)
        #expect(everyone.instances.map(\.name) == ["default"])
    }

    @Test func sectionDefaultsApplyWhereverTheyStand() throws {
        let configuration = try ConfigurationFile.parse(
            yaml: """
                recording:
                  rules:
                    - name: r
                      instances: [{ name: i, srs: "sip:127.0.0.1:5090" }]
                  srs_timeout_ms: 2500
                  skip_failover_codes: "486"
                  rtpengine: udp:127.0.0.1:2223, udp:127.0.0.2:2223
                """)
        let instance = configuration.recording.rules[0].instances[0]
        #expect(instance.srs[0].timeoutMilliseconds == 2500)
        #expect(instance.skipFailoverCodes?.source == "486")
        #expect(configuration.recording.mediaEngines.map(\.host) == ["127.0.0.1", "127.0.0.2"])
    }

    @Test(arguments: [
        ("recording: on", "recording: expected a mapping of keys to values"),
        ("recording: { colour: blue }", "recording.colour: unknown key"),
        ("recording: { rtpengine: tcp:127.0.0.1:2223 }",
         "recording.rtpengine: 'tcp:127.0.0.1:2223': the media engine is reached over udp only"),
        ("recording: { rtpengine: udp:localhost:2223 }",
         "recording.rtpengine: 'localhost' in 'udp:localhost:2223' is not a numeric IPv4 or IPv6 address"),
        ("recording: { pause_on_hold: maybe }", "recording.pause_on_hold: expected true or false, got 'maybe'"),
        ("recording: { start_on_early_media: [1] }",
         "recording.start_on_early_media: expected true or false, got a structure"),
        ("recording: { skip_failover_codes: '(' }",
         "recording.skip_failover_codes: bad regular expression '(': Unmatched ( or \\("),
        ("recording: { srs_timeout_ms: 0 }", "recording.srs_timeout_ms: must be between 1 and 600000 ms, got 0"),
        ("recording: { srs_timeout_ms: soon }", "recording.srs_timeout_ms: expected a whole number, got 'soon'"),
        ("recording: { rules: { name: r } }", "recording.rules: expected a list of rules"),
        ("recording: { rules: [r] }", "recording.rules[0]: expected a mapping of keys to values"),
        ("recording: { rules: [{ instances: [] }] }", "recording.rules[0]: a rule needs a name"),
        ("recording: { rules: [{ name: '' }] }", "recording.rules[0]: a rule needs a name"),
        ("recording: { rules: [{ name: r, instances: x }] }",
         "recording.rules[0] (r): instances: expected a list of instances"),
        ("recording: { rules: [{ name: r, instances: [x] }] }",
         "recording.rules[0] (r): instances[0]: expected a mapping of keys to values"),
        ("recording: { rules: [{ name: r, when: x }] }", "recording.rules[0] (r): when: unknown key"),
        ("recording: { rules: [{ name: r, match: { via: x } }] }", "recording.rules[0] (r): match.via: unknown key"),
        ("recording: { rules: [{ name: r, match: x }] }",
         "recording.rules[0] (r): match: expected a mapping of keys to values"),
        ("recording: { rules: [{ name: r, match: { headers: { 'X A': y } } }] }",
         "recording.rules[0] (r): match.headers: 'X A' is not a valid header name"),
        ("recording: { rules: [{ name: r, match: { headers: { X-A: '[a' } } }] }",
         "recording.rules[0] (r): match.headers.X-A: bad regular expression '[a': Unmatched [, [^, [:, [., or [="),
        ("recording: { rules: [{ name: r, match: { from: [a, b] } }] }",
         "recording.rules[0] (r): match.from: expected a single value"),
    ])
    func sectionAndRuleErrorsNameTheirKey(yaml: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse(yaml: yaml) }
        #expect(error?.description == message)
    }

    @Test func aBadRegularExpressionNamesItsRule() {
        let yaml = recordingYAML(rule: "      match: { from: '(' }")
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse(yaml: yaml) }
        #expect(error?.description == "recording.rules[0] (r): match.from: bad regular expression '(': Unmatched ( or \\(")
    }

    @Test(arguments: [
        ("colour: blue", "colour: unknown key"),
        ("srs: [sip:127.0.0.1:5091, xyz]", "srs[1]: 'xyz' is not a sip: or sips: URI"),
        ("srs: 'sip:127.0.0.1:5091, sips:rec;transport=udp'",
         "srs[1]: 'sips:rec;transport=udp': a sips: URI is reached over TLS, not transport=udp"),
        ("srs: ''", "srs: at least one SRS URI is needed"),
        ("srs_timeout_ms: 600001", "srs_timeout_ms: must be between 1 and 600000 ms, got 600001"),
        ("legacy_metadata_type: 2", "legacy_metadata_type: expected true or false, got '2'"),
        ("skip_failover_codes: '4(0'", "skip_failover_codes: bad regular expression '4(0': Unmatched ( or \\("),
        ("group: ''", "group: must not be empty"),
        ("caller: ''", "caller: must not be empty"),
        ("callee: { a: b }", "callee: expected a single value"),
        ("media: rtp.example", "media: 'rtp.example' is not a numeric IPv4 or IPv6 address"),
        ("media_flags: [a, '']", "media_flags: a flag must not be empty"),
        ("headers: ['Via: x']", "headers[0]: Via is written by the proxy and cannot be added"),
        ("headers: ['X-A: a', 'X-B: {nope}']",
         "headers[1]: unknown placeholder '{nope}' in '{nope}' (use {header:Name}, {call-id}, {from}, {to}, {request-uri} or {source})"),
        ("socket: udp:127.0.0.1", "socket: missing port in 'udp:127.0.0.1'"),
        ("socket: udp:127.0.0.1:5070", "socket: 'udp:127.0.0.1:5070' is not one of the listen addresses"),
        ("from_uri: src@edge", "from_uri: 'src@edge' is not a sip: or sips: URI"),
        ("to_uri: '<sip:srs@rec>'", "to_uri: '<sip:srs@rec>' is not a sip: or sips: URI"),
        ("group_extension: '<e:g/>'", "group_extension: needs a group"),
    ])
    func instanceErrorsNameRuleInstanceAndKey(line: String, message: String) {
        // `srs` given twice in one mapping is a YAML error, so the base instance's srs is replaced
        // by a trailing key only where the line itself does not set srs.
        let yaml = recordingYAML("          " + line).replacingSRS(when: line.contains("srs:"))
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse(yaml: yaml) }
        #expect(error?.description == "recording.rules[0] (r): instances[0] (i): " + message)
    }

    @Test(arguments: [
        ("""
            recording:
              rtpengine: udp:127.0.0.1:2223
              rules:
                - { name: a, instances: [{ srs: "sip:127.0.0.1:5090" }] }
                - { name: a, instances: [{ srs: "sip:127.0.0.1:5090" }] }
            """,
         "recording.rules[1] (a): name: 'a' is already the name of recording.rules[0] (a)"),
        ("""
            recording:
              rtpengine: udp:127.0.0.1:2223
              rules:
                - name: a
                  instances: [{ srs: "sip:127.0.0.1:5090" }, { srs: "sip:127.0.0.1:5091" }]
            """,
         "recording.rules[0] (a): instances[1] (default): name: 'default' is already the name of instances[0] in this rule"),
        ("""
            recording:
              rtpengine: udp:127.0.0.1:2223
              rules: [{ name: a }]
            """,
         "recording.rules[0] (a): instances: a rule needs at least one instance"),
        ("""
            recording:
              rtpengine: udp:127.0.0.1:2223
              rules: [{ name: a, instances: [{ name: '', srs: "sip:127.0.0.1:5090" }] }]
            """,
         "recording.rules[0] (a): instances[0]: name: must not be empty"),
        ("""
            recording:
              rules: [{ name: a, instances: [{ srs: "sip:127.0.0.1:5090" }] }]
            """,
         "recording: calls are recorded but no media engine is given (give --rtpengine or recording.rtpengine)"),
    ])
    func crossFieldErrors(yaml: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse(yaml: yaml) }
        #expect(error?.description == message)
    }

    @Test func valuesSetInCodeAreCheckedToo() throws {
        var target = try SRSTarget(parsing: "sip:127.0.0.1:5090")
        target.timeoutMilliseconds = 0
        var configuration = ProxyConfiguration()
        configuration.recording = RecordingConfiguration(
            rules: [RecordingRule(name: "r", instances: [RecordingInstance(name: "i", srs: [target])])],
            mediaEngines: [ListenAddress(transport: .udp, host: "127.0.0.1", port: 2223)])
        let error = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(
            error?.description
                == "recording.rules[0] (r): instances[0] (i): srs[0]: no-reply timeout must be between 1 and 600000 ms, got 0")
        configuration.recording.mediaEngines[0].transport = .tcp
        let engine = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(engine?.description == "recording.rtpengine: 'tcp:127.0.0.1:2223': the media engine is reached over udp only")
    }

    @Test func theReadmeExampleIsValid() throws {
        let readme = try #require(readFile(String(#filePath.split(separator: "/Tests/")[0]) + "/README.md"))
        let section = try #require(readme.split(separator: "### Choosing what to record").dropFirst().first)
        let block = try #require(section.split(separator: "```yaml\n").dropFirst().first?.split(separator: "```").first)
        let recording = try ConfigurationFile.parse(yaml: String(block)).recording
        #expect(recording.rules.map(\.name) == ["sales"])
        #expect(recording.rules[0].conditions.count == 5)
        #expect(recording.rules[0].instances[0].srs.count == 2)
        #expect(recording.rules[0].instances[0].headers.count == 2)
        #expect(recording.rules[0].instances[0].groupExtensionXML != nil)
    }

    @Test func enginesAreOnlyNeededWhenSomethingIsRecorded() throws {
        let configuration = try ConfigurationFile.parse(yaml: "recording: { rules: [], pause_on_hold: no }")
        #expect(!configuration.recording.isEnabled)
        #expect(!configuration.recording.pauseOnHold)
    }

    @Test func validationCanWaitForTheFlags() throws {
        let yaml = "recording: { rules: [{ name: a, instances: [{ srs: 'sip:127.0.0.1:5090' }] }] }"
        var configuration = try ConfigurationFile.parse(yaml: yaml, validating: false)
        #expect(configuration.recording.isEnabled)
        try RecordingFlags(rtpengine: ["udp:127.0.0.1:2223"]).apply(to: &configuration)
        #expect(try configuration.validated().recording.mediaEngines.count == 1)
    }

    @Test func xmlIsCheckedByTheInjectedChecker() throws {
        let configuration = try ConfigurationFile.parse(
            yaml: recordingYAML(
                """
                          caller: "<nameID aor='sip:a@x'/>"
                          session_extension: "<broken"
                """))
        struct NotWellFormed: Error, CustomStringConvertible {
            var description: String { "not well-formed XML" }
        }
        var seen: [String] = []
        let error = #expect(throws: ConfigurationProblem.self) {
            try configuration.recording.validateXML { xml in
                seen.append(xml)
                if !xml.hasSuffix(">") { throw NotWellFormed() }
            }
        }
        #expect(seen == ["<nameID aor='sip:a@x'/>", "<broken"])
        #expect(error?.message == "recording.rules[0] (r): instances[0] (i): session_extension: not well-formed XML")
        try configuration.recording.validateXML { _ in }
    }
}

@Suite("Recording flags")
struct RecordingFlagTests {
    private let file = """
        recording:
          rtpengine: udp:127.0.0.1:2223
          skip_failover_codes: "487"
          srs_timeout_ms: 2000
          legacy_metadata_type: true
          rules:
            - name: r
              instances:
                - { name: a, srs: "sip:127.0.0.1:5090", srs_timeout_ms: 100 }
                - { name: b, srs: "sip:127.0.0.1:5091", skip_failover_codes: "4[0-9][0-9]" }
        """

    @Test func srsReplacesTheRulesWithOneCatchAllRule() throws {
        var configuration = try ConfigurationFile.parse(yaml: file)
        try RecordingFlags(srs: "sip:srs@127.0.0.1:5095, sip:127.0.0.1:5096;transport=tcp")
            .apply(to: &configuration)
        let recording = try configuration.validated().recording
        #expect(recording.rules.count == 1)
        let rule = recording.rules[0]
        #expect(rule.name == "command-line")
        #expect(rule.conditions.isEmpty)
        #expect(rule.instances.map(\.name) == ["default"])
        let instance = rule.instances[0]
        #expect(instance.srs.map(\.uri) == ["sip:srs@127.0.0.1:5095", "sip:127.0.0.1:5096;transport=tcp"])
        // The file's section-level values are the defaults of the flag's instance.
        #expect(instance.srs.map(\.timeoutMilliseconds) == [2000, 2000])
        #expect(instance.srs.map(\.legacyMetadataType) == [true, true])
        #expect(instance.skipFailoverCodes?.source == "487")
        #expect(recording.instances(for: Call().lookup).map(\.name) == ["default"])
    }

    @Test func srsAloneRecordsWithDefaults() throws {
        var configuration = ProxyConfiguration()
        try RecordingFlags(srs: "sip:127.0.0.1:5090", rtpengine: ["udp:127.0.0.1:2223,udp:127.0.0.2:2223"])
            .apply(to: &configuration)
        let recording = try configuration.validated().recording
        #expect(recording.mediaEngines.map(\.description) == ["udp:127.0.0.1:2223", "udp:127.0.0.2:2223"])
        let instance = recording.rules[0].instances[0]
        #expect(instance.srs[0].timeoutMilliseconds == 5000)
        #expect(!instance.srs[0].legacyMetadataType)
        #expect(instance.skipFailoverCodes == nil)
    }

    @Test func skipCodesAndTimeoutGoOnTheFlagsInstance() throws {
        var configuration = try ConfigurationFile.parse(yaml: file)
        try RecordingFlags(srs: "sip:127.0.0.1:5095", skipFailoverCodes: "408|487", srsTimeoutMilliseconds: 700)
            .apply(to: &configuration)
        let instance = configuration.recording.rules[0].instances[0]
        #expect(instance.skipFailoverCodes == (try Pattern("408|487", anchored: true)))
        #expect(instance.srs[0].timeoutMilliseconds == 700)
    }

    @Test func withoutSRSTheFlagsOverrideEveryInstanceOfTheFile() throws {
        var configuration = try ConfigurationFile.parse(yaml: file)
        try RecordingFlags(
            skipFailoverCodes: "[34][0-9][0-9]", rtpengine: ["udp:127.0.0.9:2223"], srsTimeoutMilliseconds: 900
        ).apply(to: &configuration)
        let recording = configuration.recording
        #expect(recording.rules.map(\.name) == ["r"])
        #expect(recording.mediaEngines.map(\.host) == ["127.0.0.9"])
        #expect(recording.srsTimeoutMilliseconds == 900)
        #expect(recording.skipFailoverCodes?.source == "[34][0-9][0-9]")
        for instance in recording.rules[0].instances {
            #expect(instance.srs.map(\.timeoutMilliseconds) == [900])
            #expect(instance.skipFailoverCodes?.source == "[34][0-9][0-9]")
        }
    }

    @Test func noFlagsChangeNothing() throws {
        var configuration = try ConfigurationFile.parse(yaml: file)
        let before = configuration
        try RecordingFlags().apply(to: &configuration)
        #expect(configuration == before)
        #expect(configuration.recording.rules[0].instances.map { $0.srs[0].timeoutMilliseconds } == [100, 2000])
    }

    @Test(arguments: [
        (RecordingFlags(srs: "xyz"), "--srs: 'xyz' is not a sip: or sips: URI"),
        (RecordingFlags(srs: " , "), "--srs: at least one SRS URI is needed"),
        (RecordingFlags(srs: "sips:a.example;transport=udp"),
         "--srs: 'sips:a.example;transport=udp': a sips: URI is reached over TLS, not transport=udp"),
        (RecordingFlags(skipFailoverCodes: "408"),
         "--skip-failover-codes: there is no SRS to fail over from (give --srs or recording.rules)"),
        (RecordingFlags(srs: "sip:a.example", skipFailoverCodes: "(408"),
         "--skip-failover-codes: bad regular expression '(408': Unmatched ( or \\("),
        (RecordingFlags(rtpengine: ["tcp:127.0.0.1:2223"]),
         "--rtpengine: 'tcp:127.0.0.1:2223': the media engine is reached over udp only"),
        (RecordingFlags(rtpengine: ["udp:127.0.0.1"]), "--rtpengine: missing port in 'udp:127.0.0.1'"),
        (RecordingFlags(srsTimeoutMilliseconds: 0), "--srs-timeout-ms: must be between 1 and 600000 ms, got 0"),
    ])
    func flagErrorsNameTheFlag(flags: RecordingFlags, message: String) {
        var configuration = ProxyConfiguration()
        let error = #expect(throws: ConfigurationError.self) { try flags.apply(to: &configuration) }
        #expect(error?.description == message)
    }

    @Test func srsWithoutAMediaEngineIsRefused() throws {
        var configuration = ProxyConfiguration()
        try RecordingFlags(srs: "sip:127.0.0.1:5090").apply(to: &configuration)
        let error = #expect(throws: ConfigurationError.self) { try configuration.validated() }
        #expect(
            error?.description
                == "recording: calls are recorded but no media engine is given (give --rtpengine or recording.rtpengine)")
    }
}

extension String {
    /// Drops the base instance's `srs:` line (for test lines that set srs themselves).
    fileprivate func replacingSRS(when condition: Bool) -> String {
        guard condition else { return self }
        return split(separator: "\n", omittingEmptySubsequences: false)
            .filter { $0 != "          srs: sip:127.0.0.1:5090" }
            .joined(separator: "\n")
    }
}

private func readFile(_ path: String) -> String? {
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
