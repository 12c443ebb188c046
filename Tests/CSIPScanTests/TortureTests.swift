import Foundation
import Glibc
import CSIPScan
import Testing

/// RFC 4475 messages (Tests/Fixtures/torture, expectations in its README).
@Suite("RFC 4475 torture messages")
struct TortureTests {
    /// Header count and body length of every well-formed message, counted from the RFC text.
    static let valid: [String: (headers: Int, body: UInt32)] = [
        "wsinv": (14, 150), "intmeth": (8, 0), "esc01": (9, 150), "escnull": (9, 0), "esc02": (10, 0),
        "lwsdisp": (7, 0), "longreq": (43, 150), "dblreq": (8, 0), "semiuri": (8, 0), "transports": (12, 0),
        "mpart01": (14, 553), "unreason": (8, 154), "noreason": (7, 0), "badbranch": (8, 0), "unkscm": (7, 0),
        "novelsc": (7, 0), "unksm2": (8, 0), "bext01": (9, 0), "invut": (9, 40), "regaut01": (8, 0),
        "bcast": (9, 154), "zeromf": (7, 0), "cparam01": (8, 0), "cparam02": (8, 0), "regescrt": (8, 0),
        "sdp01": (10, 150), "inv2543": (7, 105),
    ]

    enum Expected {
        /// The scanner accepts it (a semantic check in Swift rejects it); that many headers.
        case scans(headers: Int)
        /// -1 with this error, found at the offset of `at` in the message (nil: at the end).
        case rejects(csip_scan_error, at: String?)
    }

    static let invalid: [String: Expected] = [
        "badinv01": .scans(headers: 9), "clerr": .rejects(CSIP_ERR_BODY_TRUNCATED, at: nil),
        "ncl": .rejects(CSIP_ERR_BAD_CONTENT_LENGTH, at: "-999"), "scalar02": .scans(headers: 9),
        "scalarlg": .scans(headers: 8), "quotbal": .scans(headers: 9), "ltgtruri": .scans(headers: 9),
        "lwsruri": .rejects(CSIP_ERR_BAD_REQUEST_URI, at: "lr SIP/2.0"),
        "lwsstart": .rejects(CSIP_ERR_BAD_REQUEST_URI, at: " sip:user@example.com  SIP/2.0"),
        "trws": .rejects(CSIP_ERR_BAD_START_LINE, at: "SIP/2.0  \r\n"), "escruri": .scans(headers: 9),
        "baddate": .scans(headers: 10), "regbadct": .scans(headers: 8), "badaspec": .scans(headers: 8),
        "baddn": .scans(headers: 8), "badvers": .rejects(CSIP_ERR_BAD_VERSION, at: "SIP/7.0\r\n"),
        "mismatch01": .scans(headers: 7), "mismatch02": .scans(headers: 9),
        "bigcode": .rejects(CSIP_ERR_BAD_STATUS_CODE, at: "4967301 better"), "insuf": .scans(headers: 4),
        "multi01": .scans(headers: 15), "mcl01": .rejects(CSIP_ERR_BAD_CONTENT_LENGTH, at: "5\r\nContent-Type"),
    ]

    @Test("every fixture has an expectation")
    func fixturesAreAllListed() throws {
        #expect(Set(try Fixtures.tortureNames("valid")) == Set(Self.valid.keys))
        #expect(Set(try Fixtures.tortureNames("invalid")) == Set(Self.invalid.keys))
    }

    @Test("valid messages scan in datagram mode", arguments: valid.keys.sorted())
    func validDatagram(name: String) throws {
        let message = try Fixtures.torture(name)
        let expected = try #require(Self.valid[name])
        let result = scan(message)
        // dblreq: the REGISTER ends after its empty line; the INVITE after it is ignored (RFC 3261 18.3).
        let length = name == "dblreq" ? 300 : message.count
        #expect(result.result == Int32(length))
        #expect(result.headers.count == expected.headers)
        #expect(result.message.body_len == expected.body)
        #expect(Int(result.message.body_off + result.message.body_len) == length)
        #expect(result.message.headers_complete == 1)
    }

    @Test("valid messages frame the same in stream mode", arguments: valid.keys.sorted())
    func validStream(name: String) throws {
        let message = try Fixtures.torture(name)
        let result = scan(message, stream: true)
        if name == "inv2543" {  // RFC 2543 message without Content-Length
            #expect(result.result == CSIP_SCAN_MALFORMED)
            #expect(result.error == CSIP_ERR_MISSING_CONTENT_LENGTH.code)
            #expect(result.message.headers_complete == 1)
            #expect(result.headers.count == 7)
        } else {
            #expect(result.result == Int32(name == "dblreq" ? 300 : message.count))
        }
    }

    @Test("invalid messages: rejected with the expected error, or scanned for the Swift layer",
          arguments: invalid.keys.sorted())
    func invalidMessages(name: String) throws {
        let message = try Fixtures.torture(name)
        let result = scan(message)
        switch try #require(Self.invalid[name]) {
        case .scans(let headers):
            #expect(result.result == Int32(message.count))
            #expect(result.headers.count == headers)
        case .rejects(let error, let marker):
            #expect(result.result == CSIP_SCAN_MALFORMED)
            #expect(result.error == error.code, "\(String(cString: csip_scan_strerror(Int32(result.error))))")
            let offset = marker.map { offsetOf($0, in: message) } ?? message.count
            #expect(Int(result.message.error_offset) == offset)
        }
    }

    @Test("wsinv: folding, compact forms and whitespace before colons")
    func shortTortuousInvite() throws {
        let m = try Fixtures.torture("wsinv")
        let r = scan(m)
        #expect(r.message.is_request == 1)
        #expect(r.message.method == CSIP_METHOD_INVITE.rawValue)
        #expect(r.text(m, r.message.method_off, r.message.method_len) == "INVITE")
        #expect(r.text(m, r.message.uri_off, r.message.uri_len) == "sip:vivekg@chair-dnrc.example.com;unknownparam")
        #expect(r.message.start_line_len == 61)
        #expect(r.message.headers_off == 63)
        #expect(r.message.content_length == 150)
        let expected: [(String, csip_header_kind, String, Bool)] = [
            ("TO", CSIP_HDR_TO, "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", false),
            ("from", CSIP_HDR_FROM, "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8", true),
            ("MaX-fOrWaRdS", CSIP_HDR_MAX_FORWARDS, "0068", false),
            ("Call-ID", CSIP_HDR_CALL_ID, "wsinv.ndaksdj@192.0.2.1", false),
            ("Content-Length", CSIP_HDR_CONTENT_LENGTH, "150", false),
            ("cseq", CSIP_HDR_CSEQ, "0009\r\n  INVITE", true),
            ("Via", CSIP_HDR_VIA, "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw", true),
            ("s", CSIP_HDR_SUBJECT, "", false),
            ("NewFangledHeader", CSIP_HDR_OTHER, "newfangled value\r\n continued newfangled value", true),
            ("UnknownHeaderWithUnusualValue", CSIP_HDR_OTHER, ";;,,;;,;", false),
            ("Content-Type", CSIP_HDR_CONTENT_TYPE, "application/sdp", false),
            ("Route", CSIP_HDR_ROUTE, "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>", false),
            ("v", CSIP_HDR_VIA, "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239", true),
            ("m", CSIP_HDR_CONTACT, "\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33", true),
        ]
        #expect(r.headers.count == expected.count)
        for (header, (name, kind, value, folded)) in zip(r.headers, expected) {
            #expect(r.text(m, header.name_off, header.name_len) == name)
            #expect(header.kind == kind.code, "\(name)")
            #expect(r.text(m, header.value_off, header.value_len) == value)
            #expect((header.is_folded == 1) == folded, "\(name)")
        }
        // The empty Subject points at its own line end.
        #expect(m[Int(r.headers[7].value_off)] == UInt8(ascii: "\r"))
        // The two Via values of the folded "v" header.
        let via = r.headers[12]
        var offsets = [UInt32](repeating: 0, count: 4), lengths = [UInt32](repeating: 0, count: 4)
        let count = m.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) {
                csip_scan_split_values($0.baseAddress, via.value_off, via.value_len, &offsets, &lengths, 4)
            }
        }
        #expect(count == 2)
        #expect(r.text(m, offsets[0], lengths[0]) == "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8")
        #expect(r.text(m, offsets[1], lengths[1]) == "SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
    }

    @Test("intmeth: token method, quoted-pair controls and UTF-8 values")
    func wideRangeOfCharacters() throws {
        let m = try Fixtures.torture("intmeth")
        let r = scan(m)
        #expect(r.result == Int32(m.count))
        #expect(r.message.method == CSIP_METHOD_OTHER.rawValue)
        #expect(r.text(m, r.message.method_off, r.message.method_len) == "!interesting-Method0123456789_*+`.%indeed'~")
        let to = r.headers[1]
        #expect(to.kind == CSIP_HDR_TO.code)
        let toValue = Array(m[Int(to.value_off)..<Int(to.value_off + to.value_len)])
        #expect(toValue.prefix(14) == ArraySlice(bytes("\"BEL:\\\u{07} NUL:\\\0")))
        let ext = r.headers[6]
        #expect(r.text(m, ext.name_off, ext.name_len) == "extensionHeader-!.%*+_`'~")
        #expect(ext.kind == CSIP_HDR_OTHER.code)
        #expect(Array(m[Int(ext.value_off)..<Int(ext.value_off + ext.value_len)])
                == [0xEF, 0xBB, 0xBF, 0xE5, 0xA4, 0xA7, 0xE5, 0x81, 0x9C, 0xE9, 0x9B, 0xBB])
    }

    @Test("unreason and noreason: UTF-8 and empty reason phrases")
    func reasonPhrases() throws {
        let unreason = try Fixtures.torture("unreason")
        let r = scan(unreason)
        #expect(r.message.is_request == 0)
        #expect(r.message.status_code == 200)
        #expect(r.text(unreason, r.message.reason_off, r.message.reason_len) == "= 2**3 * 5**2 но сто девяносто девять - простое")

        let noreason = try Fixtures.torture("noreason")
        let n = scan(noreason)
        #expect(n.message.status_code == 100)
        #expect(n.message.reason_len == 0)
        #expect(n.message.reason_off == 12)
        #expect(n.message.start_line_len == 12)
    }

    @Test("longreq: 34 Via headers in every spelling, long values")
    func longValues() throws {
        let m = try Fixtures.torture("longreq")
        let r = scan(m)
        #expect(r.headers.filter { $0.kind == CSIP_HDR_VIA.code }.count == 34)
        #expect(r.headers.filter { $0.kind == CSIP_HDR_FROM.code }.count == 1)
        #expect(r.headers.filter { $0.kind == CSIP_HDR_OTHER.code }.count == 1)
        #expect(r.headers.last?.kind == CSIP_HDR_CONTENT_LENGTH.code)
    }

    @Test("esc02 and escnull: percent signs are not escapes in names and methods")
    func percentEscapes() throws {
        let m = try Fixtures.torture("esc02")
        let r = scan(m)
        #expect(r.text(m, r.message.method_off, r.message.method_len) == "RE%47IST%45R")
        #expect(r.message.method == CSIP_METHOD_OTHER.rawValue)
        #expect(r.headers.filter { $0.kind == CSIP_HDR_CONTACT.code }.count == 2)
        let fake = try #require(r.headers.first { r.text(m, $0.name_off, $0.name_len) == "C%6Fntact" })
        #expect(fake.kind == CSIP_HDR_OTHER.code)
    }

    @Test("semiuri: a header folded over three lines")
    func foldedAccept() throws {
        let m = try Fixtures.torture("semiuri")
        let r = scan(m)
        let accept = r.headers[5]
        #expect(accept.is_folded == 1)
        #expect(r.text(m, accept.value_off, accept.value_len)
                == "application/sdp, application/pkcs7-mime,\r\n        multipart/mixed, multipart/signed,\r\n        message/sip, message/sipfrag")
    }

    @Test("mpart01: a binary body with NUL bytes is framed by Content-Length only")
    func binaryBody() throws {
        let m = try Fixtures.torture("mpart01")
        let r = scan(m)
        #expect(r.message.body_len == 553)
        #expect(m[Int(r.message.body_off)...].contains(0))
    }

    @Test("clerr in stream mode waits for the 9999-byte body")
    func contentLengthLargerThanMessage() throws {
        let r = scan(try Fixtures.torture("clerr"), stream: true)
        #expect(r.result == CSIP_SCAN_INCOMPLETE)
    }

    @Test("mcl01 and ncl keep their headers for the 400")
    func badContentLengthKeepsHeaders() throws {
        for name in ["mcl01", "ncl"] {
            let m = try Fixtures.torture(name)
            let r = scan(m)
            #expect(r.message.headers_complete == 1)
            #expect(r.headers.count == 9)
            #expect(r.headers.contains { $0.kind == CSIP_HDR_CALL_ID.code })
            #expect(r.message.body_off > 0)
        }
    }
}

func offsetOf(_ marker: String, in message: [UInt8]) -> Int {
    let needle = bytes(marker)
    for start in 0...(message.count - needle.count) where Array(message[start..<start + needle.count]) == needle {
        return start
    }
    return -1
}
