import Foundation
import Glibc
import CSIPScan
import Testing

@Suite("start line and header rules")
struct StartLineAndHeaderTests {
    @Test("leading CRLFs are skipped and counted (RFC 3261 7.5)")
    func leadingCRLF() {
        let message = bytes("\r\n\r\n\n") + request()
        let r = scan(message)
        #expect(r.result == Int32(message.count))
        #expect(r.message.leading_crlf == 3)
        #expect(r.message.method_off == 5)
        #expect(r.message.method == CSIP_METHOD_OPTIONS.rawValue)
    }

    @Test("CRLF-only input is a keep-alive: EMPTY with the bytes to discard")
    func keepAlive() {
        for stream in [false, true] {
            let r = scan(bytes("\r\n\r\n"), stream: stream)
            #expect(r.result == CSIP_SCAN_MALFORMED)
            #expect(r.error == CSIP_ERR_EMPTY.code)
            #expect(r.message.error_offset == 4)
            #expect(r.message.leading_crlf == 2)
        }
        #expect(scan([]).error == CSIP_ERR_EMPTY.code)
        #expect(scan([], stream: true).result == CSIP_SCAN_INCOMPLETE)
        #expect(scan(bytes("\r\n\r"), stream: true).result == CSIP_SCAN_INCOMPLETE)
        #expect(scan(bytes("\r\n\r")).error == CSIP_ERR_BAD_LINE_ENDING.code)
    }

    @Test("bare LF line endings are accepted throughout; a bare CR is not")
    func lineEndings() {
        let lf = bytes("INVITE sip:b@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nSubject: a\n b\nl: 3\n\nabc")
        let r = scan(lf)
        #expect(r.result == Int32(lf.count))
        #expect(r.headers.count == 3)
        #expect(r.text(lf, r.headers[1].value_off, r.headers[1].value_len) == "a\n b")
        #expect(r.headers[1].is_folded == 1)
        #expect(r.message.body_len == 3)
        #expect(scan(lf, stream: true).result == Int32(lf.count))

        let bareCR = bytes("INVITE sip:b@example.com SIP/2.0\r\nVia: x\ry\r\nl: 0\r\n\r\n")
        let bad = scan(bareCR)
        #expect(bad.error == CSIP_ERR_BAD_LINE_ENDING.code)
        #expect(bad.message.error_offset == 40)
    }

    @Test("request-line errors", arguments: [
        ("INVITE sip:b@x SIP/2.1\r\n\r\n", CSIP_ERR_BAD_VERSION, 15),
        ("INVITE sip:b@x sip/2.0x\r\n\r\n", CSIP_ERR_BAD_START_LINE, 15),
        ("INV@TE sip:b@x SIP/2.0\r\n\r\n", CSIP_ERR_BAD_METHOD, 3),
        (" INVITE sip:b@x SIP/2.0\r\n\r\n", CSIP_ERR_BAD_START_LINE, 0),
        ("INVITE\r\nVia: x\r\n\r\n", CSIP_ERR_BAD_START_LINE, 6),
        ("INVITE sip:b@\u{7F}x SIP/2.0\r\n\r\n", CSIP_ERR_BAD_REQUEST_URI, 13),
        ("INVITE sip:bé SIP/2.0\r\n\r\n", CSIP_ERR_BAD_REQUEST_URI, 12),
        ("SIP/2.0 099 Low\r\n\r\n", CSIP_ERR_BAD_STATUS_CODE, 8),
        ("SIP/2.0 700 High\r\n\r\n", CSIP_ERR_BAD_STATUS_CODE, 8),
        ("SIP/2.0 20 Short\r\n\r\n", CSIP_ERR_BAD_STATUS_CODE, 8),
        ("SIP/2.0 2000 Long\r\n\r\n", CSIP_ERR_BAD_STATUS_CODE, 11),
        ("SIP/3.0 200 OK\r\n\r\n", CSIP_ERR_BAD_VERSION, 0),
        ("SIP/2.0 200 O\0K\r\n\r\n", CSIP_ERR_BAD_LINE_ENDING, 13),
    ])
    func startLineErrors(text: String, error: csip_scan_error, offset: UInt32) {
        let r = scan(bytes(text))
        #expect(r.result == CSIP_SCAN_MALFORMED)
        #expect(r.error == error.code, "\(text.debugDescription): \(r.error)")
        #expect(r.message.error_offset == offset, "\(text.debugDescription)")
    }

    @Test("status lines: lower-case version, empty reason with or without its SP")
    func statusLines() {
        let lower = scan(bytes("sip/2.0 180 Ringing\r\nl: 0\r\n\r\n"))
        #expect(lower.message.status_code == 180)
        for text in ["SIP/2.0 200\r\nl: 0\r\n\r\n", "SIP/2.0 200 \r\nl: 0\r\n\r\n"] {
            let r = scan(bytes(text))
            #expect(r.result == Int32(text.utf8.count))
            #expect(r.message.status_code == 200)
            #expect(r.message.reason_len == 0)
        }
        let tab = bytes("SIP/2.0 486 Busy\there\r\nl: 0\r\n\r\n")
        let t = scan(tab)
        #expect(t.text(tab, t.message.reason_off, t.message.reason_len) == "Busy\there")
    }

    @Test("header-line errors", arguments: [
        ("Via x\r\n", CSIP_ERR_BAD_HEADER_NAME, 4),
        ("Via\r\n", CSIP_ERR_MISSING_COLON, 3),
        ("Via  \r\n", CSIP_ERR_MISSING_COLON, 5),
        (": x\r\n", CSIP_ERR_BAD_HEADER_NAME, 0),
        ("Bad Name: x\r\n", CSIP_ERR_BAD_HEADER_NAME, 4),
        ("X-A: a\0b\r\n", CSIP_ERR_BAD_LINE_ENDING, 6),
        ("X-A: a\rb\r\n", CSIP_ERR_BAD_LINE_ENDING, 6),
        (" folded-first: x\r\n", CSIP_ERR_BAD_HEADER_NAME, 0),
    ])
    func headerErrors(line: String, error: csip_scan_error, offsetInLine: UInt32) {
        let startLine = "OPTIONS sip:b@x SIP/2.0\r\n"
        let r = scan(bytes(startLine + line + "l: 0\r\n\r\n"))
        #expect(r.result == CSIP_SCAN_MALFORMED)
        #expect(r.error == error.code, "\(line.debugDescription): \(r.error)")
        #expect(r.message.error_offset == UInt32(startLine.utf8.count) + offsetInLine, "\(line.debugDescription)")
        #expect(r.message.headers_complete == 0)
    }

    @Test("whitespace before the colon, empty values, NUL as a quoted-pair, other controls tolerated")
    func headerValues() {
        let message = request(headers: ["Subject :\t", "X-Empty:", "Display: \"a\\\0b\"", "X-Tag: a\u{18}\u{01}b",
                                        "Content-Length \t: 0"])
        let r = scan(message)
        #expect(r.result == Int32(message.count))
        #expect(r.headers.count == 7)
        #expect(r.headers[2].kind == CSIP_HDR_SUBJECT.code)
        #expect(r.text(message, r.headers[2].name_off, r.headers[2].name_len) == "Subject")
        #expect(r.headers[2].value_len == 0)
        #expect(r.headers[3].value_len == 0)
        #expect(r.headers[4].value_len == 6)
        #expect(r.headers[5].value_len == 4)
        #expect(r.headers[6].kind == CSIP_HDR_CONTENT_LENGTH.code)
        #expect(r.message.content_length == 0)
    }

    @Test("folding: continuation lines belong to the value; a fold before the value is skipped")
    func folding() {
        let message = request(headers: ["Route:\r\n <sip:a@b;lr>", "Subject: one\r\n\ttwo \r\n three  ",
                                        "X-Trailing: v\r\n   ", "Content-Length: 0"])
        let r = scan(message)
        #expect(r.result == Int32(message.count))
        #expect(r.text(message, r.headers[2].value_off, r.headers[2].value_len) == "<sip:a@b;lr>")
        #expect(r.headers[2].is_folded == 0)
        #expect(r.text(message, r.headers[3].value_off, r.headers[3].value_len) == "one\r\n\ttwo \r\n three")
        #expect(r.headers[3].is_folded == 1)
        // A whitespace-only continuation line adds nothing to the value.
        #expect(r.text(message, r.headers[4].value_off, r.headers[4].value_len) == "v")
        #expect(r.headers[4].is_folded == 0)
    }

    @Test("more headers than the array holds")
    func tooManyHeaders() {
        let message = request(headers: ["A: 1", "B: 2", "Content-Length: 0"])
        let r = scan(message, capacity: 3)
        #expect(r.result == CSIP_SCAN_MALFORMED)
        #expect(r.error == CSIP_ERR_TOO_MANY_HEADERS.code)
        #expect(r.headers.count == 3)
        #expect(Int(r.message.error_offset) == offsetOf("B: 2", in: message))
        #expect(scan(message, capacity: 5).result == Int32(message.count))
        #expect(scan(bytes("SIP/2.0 200 OK\r\n\r\n"), capacity: 0).result == 18)
    }
}

@Suite("Content-Length and size limits")
struct FramingTests {
    @Test("absent: the datagram's rest is the body; streams reject it")
    func absent() {
        let message = request(headers: [], body: "hello")
        let r = scan(message)
        #expect(r.result == Int32(message.count))
        #expect(r.message.content_length == -1)
        #expect(r.message.body_len == 5)
        let s = scan(message, stream: true)
        #expect(s.error == CSIP_ERR_MISSING_CONTENT_LENGTH.code)
        #expect(s.message.headers_complete == 1)
        #expect(s.headers.count == 2)
    }

    @Test("zero, exact, and bytes past Content-Length in a datagram")
    func lengths() {
        let zero = request()
        #expect(scan(zero).message.body_len == 0)
        let extra = request(headers: ["l: 3"], body: "abcdef")
        let r = scan(extra)
        #expect(r.result == Int32(extra.count - 3))
        #expect(r.message.body_len == 3)
        #expect(scan(extra, stream: true).result == Int32(extra.count - 3))
    }

    @Test("larger than the datagram: BODY_TRUNCATED; in a stream: wait")
    func truncated() {
        let message = request(headers: ["Content-Length: 10"], body: "short")
        let r = scan(message)
        #expect(r.error == CSIP_ERR_BODY_TRUNCATED.code)
        #expect(Int(r.message.error_offset) == message.count)
        #expect(r.message.headers_complete == 1)
        #expect(scan(message, stream: true).result == CSIP_SCAN_INCOMPLETE)
        #expect(scan(message + bytes("12345"), stream: true).result == Int32(message.count + 5))
    }

    @Test("duplicates: equal values pass, different values fail (also via the compact form)")
    func duplicates() {
        let same = request(headers: ["Content-Length: 4", "l: 0004"], body: "body")
        #expect(scan(same).result == Int32(same.count))
        let different = request(headers: ["Content-Length: 4", "l: 5"], body: "body!")
        let r = scan(different)
        #expect(r.error == CSIP_ERR_BAD_CONTENT_LENGTH.code)
        #expect(Int(r.message.error_offset) == offsetOf("5\r\n\r\n", in: different))
        #expect(r.message.headers_complete == 1)
        #expect(r.headers.count == 4)
    }

    @Test("malformed values", arguments: ["five", "-5", "+5", "", "5 5", "1,1", "99999999999999999999", "2147483648",
                                          "1\r\n 0"])
    func malformed(value: String) {
        let message = request(headers: ["X-Before: 1", "Content-Length: \(value)", "X-After: 2"])
        let r = scan(message)
        #expect(r.result == CSIP_SCAN_MALFORMED)
        #expect(r.error == CSIP_ERR_BAD_CONTENT_LENGTH.code, "\(value.debugDescription)")
        #expect(r.headers.count == 5)
        #expect(r.message.headers_complete == 1)
    }

    @Test("huge but valid Content-Length: too large for the limit in a stream, truncated in a datagram")
    func huge() {
        let message = request(headers: ["Content-Length: 2147483647"])
        let s = scan(message, stream: true)
        #expect(s.error == CSIP_ERR_TOO_LARGE.code)
        #expect(s.message.headers_complete == 1)
        #expect(s.message.content_length == Int32.max)
        #expect(scan(message).error == CSIP_ERR_BODY_TRUNCATED.code)
    }

    @Test("message size limit in both modes")
    func maxSize() {
        let message = request(headers: ["Content-Length: 4"], body: "body")
        #expect(scan(message, maxSize: message.count).result == Int32(message.count))
        let dg = scan(message, maxSize: message.count - 1)
        #expect(dg.error == CSIP_ERR_TOO_LARGE.code)
        #expect(dg.message.headers_complete == 0)
        #expect(scan(message, stream: true, maxSize: message.count).result == Int32(message.count))
        let st = scan(message, stream: true, maxSize: message.count - 1)
        #expect(st.error == CSIP_ERR_TOO_LARGE.code)
        #expect(st.message.headers_complete == 1)
        // Headers still open when the limit is reached: rejected without waiting for more.
        let open = Array(message.prefix(40))
        #expect(scan(open, stream: true, maxSize: 40).error == CSIP_ERR_TOO_LARGE.code)
        #expect(scan(open, stream: true, maxSize: 41).result == CSIP_SCAN_INCOMPLETE)
        #expect(scan(open, stream: true, maxSize: 40, lastLength: 20).error == CSIP_ERR_TOO_LARGE.code)
    }

    @Test("a stream buffer holding one message and part of the next returns the first")
    func pipelined() {
        let first = request(headers: ["l: 2"], body: "ab")
        let r = scan(first + Array(request().prefix(30)), stream: true)
        #expect(r.result == Int32(first.count))
    }
}

@Suite("names, methods, value lists, error texts")
struct ClassificationTests {
    static let compactForms: [(String, csip_header_kind)] = [
        ("i", CSIP_HDR_CALL_ID), ("m", CSIP_HDR_CONTACT), ("e", CSIP_HDR_CONTENT_ENCODING),
        ("l", CSIP_HDR_CONTENT_LENGTH), ("c", CSIP_HDR_CONTENT_TYPE), ("f", CSIP_HDR_FROM), ("s", CSIP_HDR_SUBJECT),
        ("k", CSIP_HDR_SUPPORTED), ("t", CSIP_HDR_TO), ("v", CSIP_HDR_VIA), ("o", CSIP_HDR_EVENT),
        ("r", CSIP_HDR_REFER_TO), ("b", CSIP_HDR_REFERRED_BY), ("u", CSIP_HDR_ALLOW_EVENTS),
        ("a", CSIP_HDR_ACCEPT_CONTACT), ("j", CSIP_HDR_REJECT_CONTACT), ("d", CSIP_HDR_REQUEST_DISPOSITION),
        ("x", CSIP_HDR_SESSION_EXPIRES), ("y", CSIP_HDR_IDENTITY), ("n", CSIP_HDR_IDENTITY_INFO),
    ]

    static let fullNames: [(String, csip_header_kind)] = [
        ("Via", CSIP_HDR_VIA), ("Call-ID", CSIP_HDR_CALL_ID), ("CSeq", CSIP_HDR_CSEQ), ("From", CSIP_HDR_FROM),
        ("To", CSIP_HDR_TO), ("Route", CSIP_HDR_ROUTE), ("Record-Route", CSIP_HDR_RECORD_ROUTE),
        ("Max-Forwards", CSIP_HDR_MAX_FORWARDS), ("Contact", CSIP_HDR_CONTACT),
        ("Content-Length", CSIP_HDR_CONTENT_LENGTH), ("Content-Type", CSIP_HDR_CONTENT_TYPE),
        ("Content-Encoding", CSIP_HDR_CONTENT_ENCODING), ("Content-Disposition", CSIP_HDR_CONTENT_DISPOSITION),
        ("Supported", CSIP_HDR_SUPPORTED), ("Require", CSIP_HDR_REQUIRE), ("Proxy-Require", CSIP_HDR_PROXY_REQUIRE),
        ("Expires", CSIP_HDR_EXPIRES), ("Subject", CSIP_HDR_SUBJECT), ("Event", CSIP_HDR_EVENT),
        ("Allow", CSIP_HDR_ALLOW), ("Allow-Events", CSIP_HDR_ALLOW_EVENTS), ("Refer-To", CSIP_HDR_REFER_TO),
        ("Referred-By", CSIP_HDR_REFERRED_BY), ("Session-Expires", CSIP_HDR_SESSION_EXPIRES),
        ("User-Agent", CSIP_HDR_USER_AGENT), ("Server", CSIP_HDR_SERVER), ("Accept-Contact", CSIP_HDR_ACCEPT_CONTACT),
        ("Reject-Contact", CSIP_HDR_REJECT_CONTACT), ("Request-Disposition", CSIP_HDR_REQUEST_DISPOSITION),
        ("Identity", CSIP_HDR_IDENTITY), ("Identity-Info", CSIP_HDR_IDENTITY_INFO),
        ("Proxy-Authorization", CSIP_HDR_PROXY_AUTHORIZATION), ("Authorization", CSIP_HDR_AUTHORIZATION),
        ("Unsupported", CSIP_HDR_UNSUPPORTED),
    ]

    func kind(_ name: String) -> Int32 {
        let utf8 = Array(name.utf8)
        return utf8.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { csip_scan_header_kind($0.baseAddress, $0.count) }
        }
    }

    @Test("every compact form in both cases")
    func compact() {
        for (letter, expected) in Self.compactForms {
            #expect(kind(letter) == Int32(expected.rawValue), "\(letter)")
            #expect(kind(letter.uppercased()) == Int32(expected.rawValue), "\(letter.uppercased())")
        }
        for other in ["g", "h", "p", "q", "w", "z", "-", "1"] {
            #expect(kind(other) == Int32(CSIP_HDR_OTHER.rawValue), "\(other)")
        }
    }

    @Test("every full name in any case; near misses are OTHER")
    func full() {
        #expect(Self.fullNames.count == Int(CSIP_HDR_KIND_COUNT.rawValue) - 1)
        for (name, expected) in Self.fullNames {
            #expect(kind(name) == Int32(expected.rawValue), "\(name)")
            #expect(kind(name.lowercased()) == Int32(expected.rawValue))
            #expect(kind(name.uppercased()) == Int32(expected.rawValue))
            #expect(kind(name + "x") == Int32(CSIP_HDR_OTHER.rawValue))
            #expect(kind(String(name.dropLast())) == Int32(CSIP_HDR_OTHER.rawValue) || name.count == 2)
        }
        for miss in ["Call_ID", "Call\rID", "Vía", "C%6Fntact", "Content-Lengtg", "X-Via", "", "ViaVia"] {
            #expect(kind(miss) == Int32(CSIP_HDR_OTHER.rawValue), "\(miss.debugDescription)")
        }
    }

    @Test("methods are case-sensitive bit flags")
    func methods() {
        let known: [(String, csip_method)] = [
            ("INVITE", CSIP_METHOD_INVITE), ("ACK", CSIP_METHOD_ACK), ("BYE", CSIP_METHOD_BYE),
            ("CANCEL", CSIP_METHOD_CANCEL), ("OPTIONS", CSIP_METHOD_OPTIONS), ("REGISTER", CSIP_METHOD_REGISTER),
            ("PRACK", CSIP_METHOD_PRACK), ("UPDATE", CSIP_METHOD_UPDATE), ("INFO", CSIP_METHOD_INFO),
            ("SUBSCRIBE", CSIP_METHOD_SUBSCRIBE), ("NOTIFY", CSIP_METHOD_NOTIFY), ("REFER", CSIP_METHOD_REFER),
            ("MESSAGE", CSIP_METHOD_MESSAGE), ("PUBLISH", CSIP_METHOD_PUBLISH),
        ]
        func method(_ s: String) -> UInt32 {
            Array(s.utf8).withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { csip_scan_method($0.baseAddress, $0.count) }
            }
        }
        var seen: UInt32 = 0
        for (name, bit) in known {
            #expect(method(name) == bit.rawValue)
            #expect(method(name.lowercased()) == CSIP_METHOD_OTHER.rawValue)
            #expect(seen & bit.rawValue == 0)
            seen |= bit.rawValue
        }
        #expect(method("NEWMETHOD") == CSIP_METHOD_OTHER.rawValue)
    }

    func split(_ value: String, capacity: Int = 8) -> (count: Int32, elements: [String]) {
        let buffer = Array(("XX" + value).utf8)
        var offsets = [UInt32](repeating: 0, count: capacity), lengths = [UInt32](repeating: 0, count: capacity)
        let count = buffer.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) {
                csip_scan_split_values($0.baseAddress, 2, UInt32(buffer.count - 2), &offsets, &lengths, capacity)
            }
        }
        let written = max(0, min(Int(count), capacity))
        return (count, (0..<written).map {
            String(decoding: buffer[Int(offsets[$0])..<Int(offsets[$0] + lengths[$0])], as: UTF8.self)
        })
    }

    @Test("comma lists honour quotes, escapes and angle brackets")
    func splitValues() {
        #expect(split("SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b").elements == ["SIP/2.0/UDP a;branch=1", "SIP/2.0/TCP b"])
        #expect(split("\"Doe, John\" <sip:j@x>, <sip:a,b@y;lr>").elements == ["\"Doe, John\" <sip:j@x>", "<sip:a,b@y;lr>"])
        #expect(split("\"a \\\" , b\" <sip:x>,c").elements == ["\"a \\\" , b\" <sip:x>", "c"])
        #expect(split("a,\r\n b").elements == ["a", "b"])
        #expect(split("a,,b ,").elements == ["a", "", "b", ""])
        #expect(split("").count == 0)
        #expect(split("  \r\n ").count == 0)
        #expect(split("single").elements == ["single"])
        #expect(split("\"open, x").count == -1)
        #expect(split("<sip:open, x").count == -1)
        #expect(split("\"tail\\").count == -1)
        let many = split("1,2,3,4,5", capacity: 2)
        #expect(many.count == 5)
        #expect(many.elements == ["1", "2"])
    }

    @Test("a comma, quote or angle bracket is found at every offset (the scan skips eight bytes at a time)")
    func splitValuesAtEveryOffset() {
        let filler = "abcdefghijklmnopqrstuvwxyz0123456789"
        for offset in 0..<30 {
            let head = String(filler.prefix(offset)), tail = String(filler.dropFirst(offset).prefix(20))
            #expect(split(head + "," + tail).elements == (head.isEmpty ? ["", tail] : [head, tail]), "comma at \(offset)")
            #expect(split(head + "\"x,y\"" + tail).elements == [head + "\"x,y\"" + tail], "quotes at \(offset)")
            #expect(split(head + "<x,y>" + tail + "," + head).elements == [head + "<x,y>" + tail, head], "angles at \(offset)")
            #expect(split(head + "\"open" + tail).count == -1, "open quote at \(offset)")
        }
    }

    @Test("error texts are short, distinct and fit a reason phrase")
    func errorTexts() {
        #expect(String(cString: csip_scan_strerror(Int32(CSIP_ERR_BAD_CONTENT_LENGTH.rawValue))) == "Bad Content-Length")
        #expect(String(cString: csip_scan_strerror(999)) == "Unknown Error")
        var texts = Set<String>()
        for code in Int32(CSIP_ERR_NONE.rawValue)...Int32(CSIP_ERR_NO_HEADER_END.rawValue) {
            let text = String(cString: csip_scan_strerror(code))
            #expect(!text.isEmpty && text.count <= 40 && text != "Unknown Error")
            #expect(!text.contains("\r") && !text.contains("\n"))
            texts.insert(text)
        }
        #expect(texts.count == Int(CSIP_ERR_NO_HEADER_END.rawValue) + 1)
    }
}
