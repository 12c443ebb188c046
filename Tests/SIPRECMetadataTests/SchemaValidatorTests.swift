import Glibc
import SIPRECMetadata
import Testing

@Suite("SchemaValidator")
struct SchemaValidatorTests {
    @Test("the shared example document validates")
    func sharedExample() throws {
        try makeValidator().validate(try readFile(schemaDirectory + "/metadata-example.xml"))
    }

    @Test("without a catalog path, the catalog beside the schema is used")
    func catalogBesideSchema() throws {
        try SchemaValidator(schemaPath: schemaPath).validate(try twoPartyCall().render())
    }

    /// Each case breaks one rule of the schema in an otherwise valid document.
    @Test(
        "invalid documents are rejected with libxml2's reason",
        arguments: [
            ("participant without nameID", #"<participant participant_id="EREREREREREREREREREREQ=="></participant>"#,
                "Missing child element(s). Expected is ( {urn:ietf:params:xml:ns:recording:1}nameID )"),
            ("id not base64", #"<participant participant_id="p1"><nameID aor="sip:a@b"/></participant>"#,
                "'p1' is not a valid value of the atomic type 'xs:base64Binary'"),
            ("stream before participant",
                #"<stream stream_id="ISEhISEhISEhISEhISEhIQ=="/><participant participant_id="EREREREREREREREREREREQ=="><nameID aor="sip:a@b"/></participant>"#,
                "Element '{urn:ietf:params:xml:ns:recording:1}participant': This element is not expected."),
            ("recv before send",
                #"<participantstreamassoc participant_id="EREREREREREREREREREREQ=="><recv>ISEhISEhISEhISEhISEhIQ==</recv><send>ISEhISEhISEhISEhISEhIQ==</send></participantstreamassoc>"#,
                "Element '{urn:ietf:params:xml:ns:recording:1}send': This element is not expected."),
            ("time without zone digits", #"<sessionrecordingassoc session_id="AQEBAQEBAQEBAQEBAQEBAQ=="><associate-time>2024-01-21T16:24:58+0000</associate-time></sessionrecordingassoc>"#,
                "is not a valid value of the atomic type 'xs:dateTime'"),
        ])
    func invalidDocuments(rule: String, body: String, reason: String) throws {
        let document = """
            <?xml version="1.0" encoding="UTF-8"?>
            <recording xmlns="urn:ietf:params:xml:ns:recording:1">
              <datamode>complete</datamode>
              \(body)
            </recording>
            """
        let validator = try makeValidator()
        let error = #expect(throws: MetadataError.self, "\(rule)") { try validator.validate(document) }
        #expect(error?.operation == "schema validation")
        #expect(error?.description.contains(reason) == true, "\(rule): \(String(describing: error))")
        #expect(error?.description.contains("line 4: ") == true, "line number of the offending element")
    }

    @Test("the wrong datamode, namespace or a malformed document are rejected")
    func otherInvalidDocuments() throws {
        let validator = try makeValidator()
        let delta = #expect(throws: MetadataError.self) {
            try validator.validate(#"<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>delta</datamode></recording>"#)
        }
        #expect(delta?.description.contains("[facet 'enumeration'] The value 'delta' is not an element of the set {'complete', 'partial'}") == true)
        let version2 = #expect(throws: MetadataError.self) {
            try validator.validate(#"<recording xmlns="urn:ietf:params:xml:ns:recording:2"/>"#)
        }
        #expect(version2?.description.contains("No matching global declaration available for the validation root") == true)
        let malformed = #expect(throws: MetadataError.self) { try validator.validate("<recording") }
        #expect(malformed?.description.contains("Couldn't find end of Start Tag recording") == true)
    }

    @Test("a missing schema or catalog file is an error")
    func missingSchema() {
        let error = #expect(throws: MetadataError.self) {
            try SchemaValidator(schemaPath: schemaDirectory + "/no-such.xsd", catalogPath: catalogPath)
        }
        #expect(error?.description.contains("no-such.xsd") == true)
        let noCatalog = #expect(throws: MetadataError.self) {
            try SchemaValidator(schemaPath: schemaPath, catalogPath: schemaDirectory + "/no-such-catalog.xml")
        }
        #expect(noCatalog?.operation == "XML catalog \(schemaDirectory)/no-such-catalog.xml", "\(String(describing: noCatalog))")
    }

    @Test("imports never reach the network: an http import fails at once instead of connecting")
    func noNetwork() throws {
        // 192.0.2.1 (TEST-NET-1) is unroutable: a real fetch would hang until a timeout.
        let schema = """
            <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test" xmlns:t="urn:test">
              <xs:import namespace="http://www.w3.org/XML/1998/namespace" schemaLocation="http://192.0.2.1/xml.xsd"/>
              <xs:element name="e"><xs:complexType><xs:attribute ref="xml:lang"/></xs:complexType></xs:element>
            </xs:schema>
            """
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp(["network.xsd"]) }
        let path = try directory.write(schema, to: "network.xsd")
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let error = #expect(throws: MetadataError.self) { try SchemaValidator(schemaPath: path, catalogPath: catalogPath) }
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(error?.description.contains("Attempt to load network entity http://192.0.2.1/xml.xsd") == true, "\(String(describing: error))")
        #expect(end.tv_sec - start.tv_sec < 2)
    }

    @Test("one validator serves concurrent validations")
    func concurrentValidation() async throws {
        let validator = try makeValidator()
        let valid = try twoPartyCall(streamsPerSide: 2).render()
        let invalid = valid.replacingFirst("<datamode>complete", with: "<datamode>delta")
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<32 {
                group.addTask {
                    do throws(MetadataError) {
                        try validator.validate(index.isMultiple(of: 2) ? valid : invalid)
                        return index.isMultiple(of: 2)
                    } catch {
                        return !index.isMultiple(of: 2) && error.description.contains("'delta'")
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.count == 32 && outcomes.allSatisfy { $0 })
    }

    @Test("xmllint agrees that a rendered document is valid", .enabled(if: access("/usr/bin/xmllint", X_OK) == 0))
    func xmllintCrossCheck() throws {
        var metadata = twoPartyCall(streamsPerSide: 2)
        metadata.group = .init(id: "Z3JvdXAtMQ==", extensionXML: #"<e:x xmlns:e="urn:e"/>"#)
        metadata.participants[0].name = "AT&T <\"Zoë\">"
        metadata.participants[1].disassociateTime = fixedTime(10)
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp(["rendered.xml", "broken.xml"]) }
        let rendered = try directory.write(try metadata.render(), to: "rendered.xml")
        let broken = try directory.write(try metadata.render().replacingFirst("<datamode>complete", with: "<datamode>delta"), to: "broken.xml")
        func xmllint(_ file: String) throws -> Int32 {
            try runProgram(
                ["/usr/bin/xmllint", "--nonet", "--noout", "--schema", schemaPath, file],
                environment: ["XML_CATALOG_FILES=\(catalogPath)"])
        }
        #expect(try xmllint(rendered) == 0)
        #expect(try xmllint(broken) != 0)
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return self[..<range.lowerBound] + replacement + self[range.upperBound...]
    }
}
