import SIPRECMetadata
import Testing

@Suite("RecordingMetadata")
struct RecordingMetadataTests {
    @Test("a plain two-party call, one stream per side, renders exactly in OpenSIPS order")
    func plainCall() throws {
        let document = try twoPartyCall().render()
        let session = "AQEBAQEBAQEBAQEBAQEBAQ=="
        let alice = "EREREREREREREREREREREQ=="
        let bob = "EhISEhISEhISEhISEhISEg=="
        let aliceStream = "ISEhISEhISEhISEhISEhIQ=="
        let bobStream = "IiIiIiIiIiIiIiIiIiIiIg=="
        let expected = """
            <?xml version="1.0" encoding="UTF-8"?>
            <recording xmlns="urn:ietf:params:xml:ns:recording:1">
              <datamode>complete</datamode>
              <session session_id="\(session)">
                <sipSessionID>a84b4c76e66710@pc33.atlanta.example.com</sipSessionID>
              </session>
              <participant participant_id="\(alice)">
                <nameID aor="sip:alice@atlanta.example.com">
                  <name>Alice</name>
                </nameID>
              </participant>
              <participant participant_id="\(bob)">
                <nameID aor="sip:bob@biloxi.example.com"/>
              </participant>
              <stream stream_id="\(aliceStream)" session_id="\(session)">
                <label>1</label>
              </stream>
              <stream stream_id="\(bobStream)" session_id="\(session)">
                <label>2</label>
              </stream>
              <sessionrecordingassoc session_id="\(session)">
                <associate-time>2026-11-26T23:30:05.123Z</associate-time>
              </sessionrecordingassoc>
              <participantsessionassoc participant_id="\(alice)" session_id="\(session)">
                <associate-time>2026-11-26T23:30:05.123Z</associate-time>
              </participantsessionassoc>
              <participantsessionassoc participant_id="\(bob)" session_id="\(session)">
                <associate-time>2026-11-26T23:30:05.124Z</associate-time>
              </participantsessionassoc>
              <participantstreamassoc participant_id="\(alice)">
                <send>\(aliceStream)</send>
                <recv>\(bobStream)</recv>
              </participantstreamassoc>
              <participantstreamassoc participant_id="\(bob)">
                <send>\(bobStream)</send>
                <recv>\(aliceStream)</recv>
              </participantstreamassoc>
            </recording>

            """
        #expect(document == expected)
        try expectSchemaValid(document)
    }

    @Test("a group with extensions in group and session")
    func groupAndExtensions() throws {
        var metadata = twoPartyCall()
        metadata.group = .init(id: "Z3JvdXAtMQ==", extensionXML: #"<ext:team xmlns:ext="urn:example:ext">sales</ext:team>"#)
        // Whitespace around and between the extension's elements is dropped, so indentation stays.
        metadata.sessionExtensionXML = """

              <ext:tag xmlns:ext="urn:example:ext" kind="a&amp;b">vip</ext:tag>
              <ext:more xmlns:ext="urn:example:ext"/>

            """
        metadata.sessionStartTime = fixedTime(-5000)
        let document = try metadata.render()
        #expect(
            document.contains(
                """
                  <group group_id="Z3JvdXAtMQ==">
                    <ext:team xmlns:ext="urn:example:ext">sales</ext:team>
                  </group>
                  <session session_id="AQEBAQEBAQEBAQEBAQEBAQ==">
                    <sipSessionID>a84b4c76e66710@pc33.atlanta.example.com</sipSessionID>
                    <group-ref>Z3JvdXAtMQ==</group-ref>
                    <start-time>2026-11-26T23:30:00.123Z</start-time>
                    <ext:tag xmlns:ext="urn:example:ext" kind="a&amp;b">vip</ext:tag>
                    <ext:more xmlns:ext="urn:example:ext"/>
                  </session>
                """))
        try expectSchemaValid(document)
    }

    @Test("participant overrides replace nameID with the configured XML")
    func overrides() throws {
        var metadata = twoPartyCall()
        metadata.participants[0].overrideXML =
            #"<nameID aor="sip:alice@atlanta.example.com"><name xml:lang="en">Alice A.</name></nameID><nameID aor="tel:+15551234"/>"#
        metadata.participants[1].overrideXML = """
            <nameID aor="sip:bob@biloxi.example.com">
                <name>Bob</name>
            </nameID>
            """
        let document = try metadata.render()
        #expect(
            document.contains(
                """
                  <participant participant_id="EREREREREREREREREREREQ==">
                    <nameID aor="sip:alice@atlanta.example.com">
                      <name xml:lang="en">Alice A.</name>
                    </nameID>
                    <nameID aor="tel:+15551234"/>
                  </participant>
                  <participant participant_id="EhISEhISEhISEhISEhISEg==">
                    <nameID aor="sip:bob@biloxi.example.com">
                      <name>Bob</name>
                    </nameID>
                  </participant>
                """))
        try expectSchemaValid(document)
    }

    /// libxml2 indents no element that has text among its children; raw XML keeps that rule.
    @Test("text in raw XML turns off indentation inside its element; comments keep theirs; blank XML is no content")
    func rawXMLLayout() throws {
        var metadata = twoPartyCall()
        metadata.sessionExtensionXML = #"<!-- note --><ext:tag xmlns:ext="urn:example:ext">vip</ext:tag> and text"#
        metadata.participants[0].overrideXML = """
            <!-- configured -->
            <nameID aor="sip:zoë@example.com">
              <name>Zoë &amp; "Co"</name>
            </nameID>
            """
        metadata.participants[1].overrideXML = "  "
        metadata.sipSessionID = ""
        metadata.streams[0].label = ""
        let document = try metadata.render()
        #expect(
            document.contains(
                """
                  <session session_id="AQEBAQEBAQEBAQEBAQEBAQ=="><sipSessionID></sipSessionID><!-- note --><ext:tag xmlns:ext="urn:example:ext">vip</ext:tag> and text</session>
                  <participant participant_id="EREREREREREREREREREREQ==">
                    <!-- configured -->
                    <nameID aor="sip:zoë@example.com">
                      <name>Zoë &amp; "Co"</name>
                    </nameID>
                  </participant>
                  <participant participant_id="EhISEhISEhISEhISEhISEg=="/>
                  <stream stream_id="ISEhISEhISEhISEhISEhIQ==" session_id="AQEBAQEBAQEBAQEBAQEBAQ==">
                    <label></label>
                  </stream>
                """))
    }

    @Test("names, AORs and the Call-ID are escaped; non-ASCII stays UTF-8; forbidden controls are replaced")
    func escaping() throws {
        var metadata = twoPartyCall()
        metadata.sipSessionID = #"abc<>&"'@host"#
        metadata.participants[0].name = #"AT&T <"Sales"> 'Dept'"#
        metadata.participants[0].aor = #"sip:a&b@example.com;x="1"<'y'>"#
        metadata.participants[1].name = "Zoë Ünicode 日本\u{1}"
        let document = try metadata.render()
        #expect(document.contains(#"<sipSessionID>abc&lt;&gt;&amp;"'@host</sipSessionID>"#))
        #expect(document.contains(#"<nameID aor="sip:a&amp;b@example.com;x=&quot;1&quot;&lt;'y'&gt;">"#))
        #expect(document.contains(#"<name>AT&amp;T &lt;"Sales"&gt; 'Dept'</name>"#))
        #expect(document.contains("<name>Zoë Ünicode 日本\u{FFFD}</name>"))
        try expectSchemaValid(document)
    }

    @Test("a character to escape or replace is found at every offset of a value (the scan skips eight bytes at a time)")
    func escapingAtEveryOffset() throws {
        // (character, as text in <name>, as an attribute value in aor)
        let cases: [(String, String, String)] = [
            ("<", "&lt;", "&lt;"), (">", "&gt;", "&gt;"), ("&", "&amp;", "&amp;"), ("\"", "\"", "&quot;"),
            ("\r", "&#13;", "&#13;"), ("\n", "\n", "&#10;"), ("\t", "\t", "&#9;"), ("\u{1}", "\u{FFFD}", "\u{FFFD}"),
            ("\u{FFFE}", "\u{FFFD}", "\u{FFFD}"), ("é", "é", "é"),
        ]
        for (character, inText, inAttribute) in cases {
            for offset in 0..<20 {
                let before = String(repeating: "a", count: offset), after = String(repeating: "b", count: 19 - offset)
                var metadata = twoPartyCall()
                metadata.participants[0].name = before + character + after
                metadata.participants[0].aor = "sip:" + before + character + after + "@example.com"
                let document = try metadata.render()
                #expect(document.contains("<name>" + before + inText + after + "</name>"), "\(character.unicodeScalars.first!.value) at \(offset)")
                #expect(document.contains("aor=\"sip:" + before + inAttribute + after + "@example.com\""), "\(character.unicodeScalars.first!.value) at \(offset)")
            }
        }
    }

    @Test("two streams per side: each participant sends its own and receives the other's")
    func twoStreamsPerSide() throws {
        let document = try twoPartyCall(streamsPerSide: 2).render()
        let streams = ["ISEhISEhISEhISEhISEhIQ==", "IiIiIiIiIiIiIiIiIiIiIg==", "IyMjIyMjIyMjIyMjIyMjIw==", "JCQkJCQkJCQkJCQkJCQkJA=="]
        #expect(
            document.contains(
                """
                  <participantstreamassoc participant_id="EREREREREREREREREREREQ==">
                    <send>\(streams[0])</send>
                    <send>\(streams[1])</send>
                    <recv>\(streams[2])</recv>
                    <recv>\(streams[3])</recv>
                  </participantstreamassoc>
                  <participantstreamassoc participant_id="EhISEhISEhISEhISEhISEg==">
                    <send>\(streams[2])</send>
                    <send>\(streams[3])</send>
                    <recv>\(streams[0])</recv>
                    <recv>\(streams[1])</recv>
                  </participantstreamassoc>
                </recording>
                """))
        for (index, stream) in streams.enumerated() {
            #expect(document.contains("<stream stream_id=\"\(stream)\" session_id=\"AQEBAQEBAQEBAQEBAQEBAQ==\">\n    <label>\(index + 1)</label>"))
        }
        try expectSchemaValid(document)
    }

    @Test("disassociate and stop times of an ended call")
    func endedCall() throws {
        var metadata = twoPartyCall()
        metadata.sessionStartTime = fixedTime(-1000)
        metadata.sessionStopTime = fixedTime(60_000)
        metadata.sessionDisassociateTime = fixedTime(60_001)
        metadata.participants[0].disassociateTime = fixedTime(60_002)
        metadata.participants[1].disassociateTime = fixedTime(60_003)
        let document = try metadata.render()
        #expect(
            document.contains(
                """
                    <start-time>2026-11-26T23:30:04.123Z</start-time>
                    <stop-time>2026-11-26T23:31:05.123Z</stop-time>
                  </session>
                """))
        #expect(
            document.contains(
                """
                  <sessionrecordingassoc session_id="AQEBAQEBAQEBAQEBAQEBAQ==">
                    <associate-time>2026-11-26T23:30:05.123Z</associate-time>
                    <disassociate-time>2026-11-26T23:31:05.124Z</disassociate-time>
                  </sessionrecordingassoc>
                  <participantsessionassoc participant_id="EREREREREREREREREREREQ==" session_id="AQEBAQEBAQEBAQEBAQEBAQ==">
                    <associate-time>2026-11-26T23:30:05.123Z</associate-time>
                    <disassociate-time>2026-11-26T23:31:05.125Z</disassociate-time>
                  </participantsessionassoc>
                  <participantsessionassoc participant_id="EhISEhISEhISEhISEhISEg==" session_id="AQEBAQEBAQEBAQEBAQEBAQ==">
                    <associate-time>2026-11-26T23:30:05.124Z</associate-time>
                    <disassociate-time>2026-11-26T23:31:05.126Z</disassociate-time>
                  </participantsessionassoc>
                """))
        try expectSchemaValid(document)
    }

    @Test("random ids and the current time, no streams")
    func randomIDsNoStreams() throws {
        let metadata = RecordingMetadata(
            sessionID: .random(), sipSessionID: "call-1", sessionAssociateTime: .now(),
            participants: [
                .init(id: .random(), aor: "sip:a@example.com", associateTime: .now()),
                .init(id: .random(), aor: "tel:+15550100", name: "+1 555 0100", associateTime: .now()),
            ],
            streams: [])
        let document = try metadata.render()
        #expect(document.contains("<participantstreamassoc participant_id=\"\(metadata.participants[1].id)\"/>"))
        try expectSchemaValid(document)
    }

    @Test("a malformed override names the participant and libxml2's reason")
    func malformedOverride() {
        var metadata = twoPartyCall()
        metadata.participants[1].overrideXML = "<nameID aor='sip:x@y'><name>X</nameID>"
        let error = #expect(throws: MetadataError.self) { try metadata.render() }
        #expect(error?.operation == "override XML of participant 1")
        #expect(error?.description.contains("Opening and ending tag mismatch: name line 1 and nameID") == true)
    }

    @Test("an extension using an undeclared prefix is refused")
    func undeclaredPrefix() {
        var metadata = twoPartyCall()
        metadata.sessionExtensionXML = "<ext:tag>1</ext:tag>"
        let error = #expect(throws: MetadataError.self) { try metadata.render() }
        #expect(error?.operation == "session extension XML")
        #expect(error?.description.contains("Namespace prefix ext on tag is not defined") == true)
    }

    @Test("a group id that is not base64 is refused")
    func groupIDNotBase64() {
        var metadata = twoPartyCall()
        metadata.group = .init(id: "sales team")
        let error = #expect(throws: MetadataError.self) { try metadata.render() }
        #expect(error?.description.contains("group id 'sales team' is not base64") == true)
        #expect(!RecordingMetadata.Group.isValidID("sales team"))
        #expect(!RecordingMetadata.Group.isValidID(""))
        #expect(RecordingMetadata.Group.isValidID("c2FsZXM="))
    }

    @Test("a stream whose sender is not a participant is refused")
    func unknownSender() {
        var metadata = twoPartyCall()
        metadata.streams[1].sender = 2
        let error = #expect(throws: MetadataError.self) { try metadata.render() }
        #expect(error?.description.contains("names sender 2, but there are 2 participants") == true)
    }
}

@Suite("RecordingMetadata concurrency")
struct RecordingMetadataConcurrencyTests {
    /// libxml2's error handler is per thread: one task's broken fragment must not fail another's render.
    @Test("concurrent renders keep their errors apart")
    func concurrentRenders() async throws {
        let validator = try makeValidator()
        let results = await withTaskGroup(of: (index: Int, outcome: Result<String, MetadataError>).self) { group in
            for index in 0..<48 {
                group.addTask {
                    var metadata = twoPartyCall(streamsPerSide: 1 + index % 3)
                    metadata.sipSessionID = "call-\(index)"
                    if index % 4 == 3 { metadata.sessionExtensionXML = "<broken>" }
                    do throws(MetadataError) {
                        let document = try metadata.render()
                        try validator.validate(document)
                        return (index, .success(document))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 48)
        for (index, outcome) in results {
            switch outcome {
            case .success(let document):
                #expect(index % 4 != 3)
                #expect(document.contains("<sipSessionID>call-\(index)</sipSessionID>"))
            case .failure(let error):
                #expect(index % 4 == 3, "\(error)")
                #expect(error.operation == "session extension XML")
            }
        }
    }
}
