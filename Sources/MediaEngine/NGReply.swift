/// A reply's bencoded body, validated once and read in place: lookups walk the bytes and build
/// only what the caller asks for (the `sdp` text, a stream's label), where decoding the whole
/// reply into ``Bencode`` made a heap object of every key and string in it.
struct NGReply {
    /// One value inside the reply: where its encoding starts and ends.
    struct Value {
        fileprivate let range: Range<Int>
    }

    /// Exactly one well-formed bencode value.
    private let bytes: [UInt8]

    /// Validates `body` as strictly as ``Bencode/decode(_:)-(RawSpan)`` and keeps a copy of it.
    /// `keys` is the caller's reusable scratch space for the duplicate-key check.
    init(validating body: borrowing RawSpan, keys: inout [Range<Int>]) throws(NGError) {
        try Bencode.validate(body, keys: &keys)
        bytes = body.copyBytes(0..<body.byteCount)
    }

    /// The whole reply.
    var root: Value { Value(range: 0..<bytes.count) }

    /// The whole reply as a ``Bencode`` value.
    var message: Bencode { decoded(root) }

    // MARK: The top-level dictionary

    /// The top-level entry `key` decoded; nil when absent or when the reply is not a dictionary.
    subscript(key: String) -> Bencode? {
        entry(key, of: root).map(decoded)
    }

    /// The top-level entry `key` when it is a UTF-8 byte string.
    func string(_ key: String) -> String? {
        entry(key, of: root).flatMap(string)
    }

    // MARK: Any value

    /// The entry `key` of a dictionary; nil when absent or when `dictionary` is not one.
    func entry(_ key: String, of dictionary: Value) -> Value? {
        var found: Value?
        let span = bytes.span.bytes
        forEachEntry(of: dictionary) { name, value in
            guard span.bytes(name, equal: key) else { return true }
            found = value
            return false
        }
        return found
    }

    /// The values of two to four keys of a dictionary, found in one walk over it (a lookup per
    /// key walks it once each); nil for a key it lacks or not asked for, all nil when
    /// `dictionary` is not one.
    func entries(
        _ first: StaticString, _ second: StaticString, _ third: StaticString? = nil, _ fourth: StaticString? = nil,
        of dictionary: Value
    ) -> (Value?, Value?, Value?, Value?) {
        var found: (Value?, Value?, Value?, Value?)
        let span = bytes.span.bytes
        forEachEntry(of: dictionary) { name, value in
            if found.0 == nil, span.bytes(name, equal: first) {
                found.0 = value
            } else if found.1 == nil, span.bytes(name, equal: second) {
                found.1 = value
            } else if found.2 == nil, let third, span.bytes(name, equal: third) {
                found.2 = value
            } else if found.3 == nil, let fourth, span.bytes(name, equal: fourth) {
                found.3 = value
            }
            return true
        }
        return found
    }

    /// A dictionary's entries in reply order; empty when `dictionary` is not one.
    func entries(of dictionary: Value) -> [(key: String, value: Value)] {
        var entries: [(key: String, value: Value)] = []
        forEachEntry(of: dictionary) { name, value in
            entries.append((String(decoding: bytes[name], as: UTF8.self), value))  // validated as UTF-8
            return true
        }
        return entries
    }

    /// A list's elements; empty when `list` is not one.
    func elements(of list: Value) -> [Value] {
        let span = bytes.span.bytes
        guard span.byte(at: list.range.lowerBound) == UInt8(ascii: "l") else { return [] }
        var elements: [Value] = []
        var position = list.range.lowerBound + 1
        while span.byte(at: position) != UInt8(ascii: "e") {
            let start = position
            Bencode.skipValue(span, at: &position)
            elements.append(Value(range: start..<position))
        }
        return elements
    }

    /// A byte string as UTF-8 text; nil for other values and invalid UTF-8.
    func string(_ value: Value) -> String? {
        guard let content = stringContent(value) else { return nil }
        return bytes.withUnsafeBufferPointer { buffer in
            let text = UnsafeBufferPointer(rebasing: buffer[content])
            // ASCII (tags, labels, SDP) needs no validation pass; anything else is checked.
            return text.allSatisfy { $0 < 0x80 } ? String(decoding: text, as: UTF8.self) : String(validating: text, as: UTF8.self)
        }
    }

    /// An integer, or a byte string of decimal digits (rtpengine sends some numbers as text).
    func integer(_ value: Value) -> Int? {
        let span = bytes.span.bytes
        guard span.byte(at: value.range.lowerBound) == UInt8(ascii: "i") else { return string(value).flatMap { Int($0) } }
        return decoded(value).integer
    }

    /// A value as ``Bencode``.
    func decoded(_ value: Value) -> Bencode {
        // Validated already, so decoding cannot fail.
        (try? Bencode.decode(bytes[value.range])) ?? .dictionary([:])
    }

    // MARK: Walking

    /// Where a byte string's content is; nil for other values.
    private func stringContent(_ value: Value) -> Range<Int>? {
        let span = bytes.span.bytes
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(span.byte(at: value.range.lowerBound)) else { return nil }
        return Bencode.skipString(span, at: value.range.lowerBound)
    }

    /// Calls `body` with each key's bytes and value until it returns false.
    private func forEachEntry(of dictionary: Value, _ body: (Range<Int>, Value) -> Bool) {
        let span = bytes.span.bytes
        guard span.byte(at: dictionary.range.lowerBound) == UInt8(ascii: "d") else { return }
        var position = dictionary.range.lowerBound + 1
        while span.byte(at: position) != UInt8(ascii: "e") {
            let name = Bencode.skipString(span, at: position)
            position = name.upperBound
            Bencode.skipValue(span, at: &position)
            guard body(name, Value(range: name.upperBound..<position)) else { return }
        }
    }
}
