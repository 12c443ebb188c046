@testable import MediaEngine
import Testing

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("Bencode")
struct BencodeTests {
    static let encodings: [(Bencode, String)] = [
        (.integer(42), "i42e"),
        (.integer(0), "i0e"),
        (.integer(-7), "i-7e"),
        (.integer(.min), "i-9223372036854775808e"),
        (.integer(.max), "i9223372036854775807e"),
        ("spam", "4:spam"),
        ("", "0:"),
        ([], "le"),
        ([:], "de"),
        (["spam", 1, ["x"]], "l4:spami1el1:xee"),
        (["cow": "moo", "spam": "eggs"], "d3:cow3:moo4:spam4:eggse"),
    ]

    @Test("encodes each kind of value", arguments: encodings)
    func encodes(value: Bencode, expected: String) {
        #expect(text(value.encode()) == expected)
    }

    @Test("dictionary keys are encoded in byte order, whatever order they were given in")
    func sortedKeys() {
        let value: Bencode = ["b": 1, "a": 2, "B": 3, "aa": 4, "é": 5, "z": 6, "": 7]
        // "" < "B" (0x42) < "a" < "aa" < "b" < "z" < "é" (0xC3 0xA9)
        #expect(text(value.encode()) == "d0:i7e1:Bi3e1:ai2e2:aai4e1:bi1e1:zi6e2:éi5ee")
    }

    @Test("binary byte strings keep every byte")
    func binaryBytes() throws {
        let value = Bencode.bytes([0, 255, 32, 58, 101])
        #expect(value.encode() == [UInt8(ascii: "5"), UInt8(ascii: ":"), 0, 255, 32, 58, 101])
        #expect(try Bencode.decode(value.encode()) == value)
        #expect(value.string == nil)  // not UTF-8
        #expect(value.bytes == [0, 255, 32, 58, 101])
    }

    @Test("decode(encode(v)) == v")
    func roundTrips() throws {
        var deep: Bencode = "core"
        for level in 0..<Bencode.maximumDepth {
            deep = level.isMultiple(of: 2) ? [deep] : ["k": deep]
        }
        let values: [Bencode] = [
            0, 1, -1, .integer(.min), .integer(.max), "", "a:b e", .bytes(Array(0...255)), [], [:], [[], [:], [[]]],
            [
                "command": "offer", "call-id": "abc@host", "flags": ["trust-address", "allow transcoding"],
                "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "nested": ["list": [1, -2, "three"], "empty": [:]],
            ],
            deep,
        ]
        for value in values {
            let decoded = try Bencode.decode(value.encode())
            #expect(decoded == value, "\(value)")
            #expect(decoded.encode() == value.encode())
        }
    }

    @Test("dictionaries in any key order are accepted (rtpengine does not sort its replies)")
    func unsortedInput() throws {
        let decoded = try Bencode.decode(bytes("d6:result2:ok3:sdp3:v=05:callsle4:abcdi-3ee"))
        #expect(decoded == ["result": "ok", "sdp": "v=0", "calls": [], "abcd": -3])
    }

    static let malformed: [(String, NGError.Code, Int)] = [
        ("", NGError.Code.truncated, 0),
        ("i", .truncated, 1),
        ("i12", .truncated, 3),
        ("i-", .truncated, 2),
        ("ie", .unexpectedByte, 1),
        ("i-e", .unexpectedByte, 2),
        ("i+1e", .unexpectedByte, 1),
        ("i1.5e", .unexpectedByte, 2),
        ("i 1e", .unexpectedByte, 1),
        ("i03e", .leadingZero, 1),
        ("i00e", .leadingZero, 1),
        ("i-03e", .leadingZero, 2),
        ("i-0e", .negativeZero, 1),
        ("i9223372036854775808e", .integerOverflow, 1),
        ("i-9223372036854775809e", .integerOverflow, 2),
        ("i99999999999999999999999e", .integerOverflow, 1),
        ("03:abc", .leadingZero, 0),
        ("00:", .leadingZero, 0),
        ("4:abc", .lengthBeyondInput, 0),
        ("1:", .lengthBeyondInput, 0),
        ("99999999999999999999:a", .lengthBeyondInput, 0),
        ("5", .truncated, 1),
        ("5x", .unexpectedByte, 1),
        ("-1:a", .unexpectedByte, 0),
        ("l", .truncated, 1),
        ("li1e", .truncated, 4),
        ("l4:spam", .truncated, 7),
        ("d", .truncated, 1),
        ("d3:key", .truncated, 6),
        ("d3:keyi1e", .truncated, 9),
        ("d1:ae", .unexpectedByte, 4),
        ("di1ei2ee", .invalidKey, 1),
        ("dl1:aei2ee", .invalidKey, 1),
        ("d1:ai1e1:ai2ee", .duplicateKey, 7),
        ("i1ei2e", .trailingBytes, 3),
        ("4:spamx", .trailingBytes, 6),
        ("le ", .trailingBytes, 2),
        ("de\n", .trailingBytes, 2),
        ("x", .unexpectedByte, 0),
        ("e", .unexpectedByte, 0),
        (" i1e", .unexpectedByte, 0),
    ]

    @Test("malformed input is rejected with the defect and its offset", arguments: malformed)
    func rejects(input: String, code: NGError.Code, offset: Int) {
        #expect(throws: NGError(code: code, offset: offset)) { try Bencode.decode(bytes(input)) }
    }

    @Test("validation in place rejects exactly what decoding rejects, at the same offset")
    func validationMatchesDecoding() {
        var keys: [Range<Int>] = []
        var inputs = Self.malformed.map { bytes($0.0) }
        inputs += [bytes("d1:") + [0xFF] + bytes("i1ee"), bytes("d1:ad1:bi1e1:bi2eee"), bytes("ld1:ai1e1:ai1eee")]
        inputs += [bytes("d1:ad1:bi1ee1:bd1:bi1eee"), bytes("d2:\u{E9}i1e1:xl1:ai1ee1:yde1:zi-3ee")]
        for input in inputs {
            var decodeError: NGError?
            var validateError: NGError?
            do { _ = try Bencode.decode(input) } catch { decodeError = error }
            do { try Bencode.validate(input.span.bytes, keys: &keys) } catch { validateError = error }
            #expect(validateError == decodeError, "\(text(input))")
        }
    }

    @Test("the encoded length is known before encoding", arguments: encodings)
    func encodedCount(value: Bencode, expected: String) {
        #expect(value.encodedCount == expected.utf8.count)
    }

    @Test("a reply read in place gives what the decoded reply gives")
    func replyInPlace() throws {
        let body = bytes("d6:result2:ok3:sdp6:v=0\r\n.4:listl1:ai7e2:42e5:counti3e6:nestedd5:innerl3:abcd1:ki-1eeeee")
        var keys: [Range<Int>] = []
        let reply = try NGReply(validating: body.span.bytes, keys: &keys)
        let decoded = try Bencode.decode(body)
        #expect(reply.message == decoded)
        #expect(reply.string("result") == "ok")
        #expect(reply.string("sdp") == "v=0\r\n.")
        #expect(reply.string("list") == nil)
        #expect(reply.string("absent") == nil)
        #expect(reply["nested"] == decoded["nested"])
        let list = try #require(reply.entry("list", of: reply.root))
        #expect(reply.elements(of: list).map { reply.decoded($0) } == ["a", 7, "42"])
        #expect(reply.elements(of: list).map { reply.integer($0) } == [nil, 7, 42])
        #expect(reply.entries(of: list).isEmpty)
        let nested = try #require(reply.entry("nested", of: reply.root))
        #expect(reply.entries(of: nested).map(\.key) == ["inner"])
        let inner = try #require(reply.entry("inner", of: nested))
        #expect(reply.elements(of: inner).map { reply.decoded($0) } == ["abc", ["k": -1]])
        let count = try #require(reply.entry("count", of: reply.root))
        #expect(reply.entry("0", of: count) == nil)  // an integer is not a dictionary
        let notDictionary = try NGReply(validating: bytes("l6:resulte").span.bytes, keys: &keys)
        #expect(notDictionary.string("result") == nil)
        #expect(notDictionary["result"] == nil)
    }

    @Test("an NG command encodes as the bencoded dictionary of its entries, keys in byte order")
    func commandEncoding() {
        var command = NGCommand("offer")
        command["sdp"] = .text("v=0\r\n")
        command["call-id"] = .text("c1")
        command["delete delay"] = .integer(-3)
        command["flags"] = .texts(["a", "b"])
        command["nested"] = .bencode(["x": [1, "y"]])
        command["\u{E9}"] = .text("\u{E9}t\u{E9}")
        command["Z"] = .texts([])
        command["sdp"] = .text("v=1")
        command["gone"] = .text("x")
        command["gone"] = nil
        let expected: Bencode = [
            "command": "offer", "sdp": "v=1", "call-id": "c1", "delete delay": -3, "flags": ["a", "b"],
            "nested": ["x": [1, "y"]], "\u{E9}": "\u{E9}t\u{E9}", "Z": [],
        ]
        #expect(text(command.datagram(cookie: "k1")) == text(NGDatagram.encode(cookie: "k1", message: expected)))
        #expect(command.name == "offer")
        #expect(command.callID == "c1")

        let message: [String: Bencode] = ["command": "list", "call-id": 7, "b": "x", "a": ["k": "v"]]
        let fromDictionary = NGCommand(message)
        #expect(fromDictionary.datagram(cookie: "k") == NGDatagram.encode(cookie: "k", message: .dictionary(message)))
        #expect(fromDictionary.name == "list")
        #expect(fromDictionary.callID == nil, "a call-id that is not text")
    }

    @Test("a dictionary key that is not UTF-8 is rejected")
    func nonUTF8Key() {
        let input: [UInt8] = bytes("d1:") + [0xFF] + bytes("i1ee")
        #expect(throws: NGError(code: .invalidKey, offset: 1)) { try Bencode.decode(input) }
    }

    @Test("nesting: 32 levels decode, 33 are rejected", arguments: ["l", "d1:k"])
    func depthLimit(opener: String) throws {
        func nested(_ depth: Int) -> [UInt8] {
            bytes(String(repeating: opener, count: depth) + "i1e" + String(repeating: "e", count: depth))
        }
        #expect(throws: Never.self) { try Bencode.decode(nested(32)) }
        #expect(throws: NGError(code: .tooDeep, offset: 32 * opener.utf8.count)) { try Bencode.decode(nested(33)) }
        // Depth is checked as the value opens, so a deep input that is also truncated fails on depth.
        #expect(throws: NGError(code: .tooDeep, offset: 32)) {
            try Bencode.decode(bytes(String(repeating: "l", count: 10_000)))
        }
    }

    @Test("slices, spans and other collections decode with offsets relative to their start")
    func inputKinds() throws {
        let buffer = bytes("xxd3:keyi7eeyy")
        #expect(try Bencode.decode(buffer[2..<12]) == ["key": 7])
        #expect(try Bencode.decode(buffer.span.bytes.extracting(2..<12)) == ["key": 7])
        #expect(try Bencode.decode("4:spam".utf8) == "spam")
        #expect(throws: NGError(code: .trailingBytes, offset: 10)) { try Bencode.decode(buffer[2...]) }
    }

    @Test("accessors")
    func accessors() throws {
        let reply = try Bencode.decode(bytes("d6:result2:ok5:callsl1:a1:be5:counti3e4:tagsd1:xi1eee"))
        #expect(reply["result"]?.string == "ok")
        #expect(reply["calls"]?.list == ["a", "b"])
        #expect(reply["calls"]?.list?.compactMap(\.string) == ["a", "b"])
        #expect(reply["count"]?.integer == 3)
        #expect(reply["tags"]?["x"]?.integer == 1)
        #expect(reply["tags"]?.dictionary?.keys.sorted() == ["x"])
        #expect(reply["missing"] == nil)
        #expect(reply["result"]?.integer == nil)
        #expect(reply["count"]?.string == nil)
        #expect(reply["result"]?["x"] == nil)  // subscript on a non-dictionary
        #expect(Bencode.integer(1).list == nil)
        #expect(Bencode.list([]).dictionary == nil)
    }
}

@Suite("NGDatagram")
struct NGDatagramTests {
    @Test("a datagram is the cookie, one space and the bencoded message")
    func encodes() throws {
        let datagram = NGDatagram.encode(cookie: "6e61_1", message: ["command": "ping"])
        #expect(text(datagram) == "6e61_1 d7:command4:pinge")
        let (cookie, message) = try NGDatagram.decode(datagram)
        #expect(cookie == "6e61_1")
        #expect(message == ["command": "ping"])
    }

    @Test(
        "datagrams without a cookie are rejected",
        arguments: [
            ("", 0), ("d6:result2:oke", 14), (" d6:result2:oke", 0), ("ab\u{1}c d6:result2:oke", 2),
            ("tab\tcookie de", 3), (String(repeating: "c", count: 200) + " de", 129),
        ])
    func missingCookie(datagram: String, offset: Int) {
        #expect(throws: NGError(code: .missingCookie, offset: offset)) { try NGDatagram.decode(bytes(datagram)) }
    }

    @Test("body errors report offsets within the whole datagram")
    func bodyOffsets() {
        #expect(throws: NGError(code: .leadingZero, offset: 6)) { try NGDatagram.decode(bytes("abcd i01e")) }
        #expect(throws: NGError(code: .truncated, offset: 5)) { try NGDatagram.decode(bytes("abcd ")) }
    }

    @Test("the longest accepted cookie")
    func longCookie() throws {
        let cookie = String(repeating: "k", count: NGDatagram.maximumCookieLength)
        #expect(try NGDatagram.decode(bytes(cookie + " de")).cookie == cookie)
    }
}
