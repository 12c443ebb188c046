/// A bencode value, the encoding of rtpengine's NG protocol: integers (`i42e`), byte strings
/// (`4:spam`), lists (`l…e`) and dictionaries with string keys (`d…e`).
///
/// Dictionaries are encoded with their keys in byte order, as the bencode specification asks;
/// the decoder accepts any key order (rtpengine does not sort its replies).
public enum Bencode: Sendable, Hashable {
    case integer(Int)
    case bytes([UInt8])
    case list([Bencode])
    case dictionary([String: Bencode])

    /// The deepest nesting of lists and dictionaries the decoder accepts; a top-level list is at
    /// depth 1.
    public static let maximumDepth = 32

    /// A byte string holding `text` as UTF-8.
    public static func string(_ text: String) -> Bencode { .bytes(Array(text.utf8)) }

    // MARK: - Accessors

    /// The byte string as UTF-8 text; nil for other values or invalid UTF-8.
    public var string: String? {
        guard case .bytes(let bytes) = self else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The byte string's bytes; nil for other values.
    public var bytes: [UInt8]? {
        guard case .bytes(let bytes) = self else { return nil }
        return bytes
    }

    /// The integer; nil for other values.
    public var integer: Int? {
        guard case .integer(let value) = self else { return nil }
        return value
    }

    /// The list's elements; nil for other values.
    public var list: [Bencode]? {
        guard case .list(let elements) = self else { return nil }
        return elements
    }

    /// The dictionary's entries; nil for other values.
    public var dictionary: [String: Bencode]? {
        guard case .dictionary(let entries) = self else { return nil }
        return entries
    }

    /// The dictionary entry for `key`; nil when absent or when this is not a dictionary.
    public subscript(key: String) -> Bencode? {
        guard case .dictionary(let entries) = self else { return nil }
        return entries[key]
    }

    // MARK: - Encoding

    /// The encoded bytes, written in place into one allocation of the measured size.
    public func encode() -> [UInt8] {
        BencodeWriter.bytes(count: encodedCount) { write(to: &$0) }
    }

    /// The length of the encoding, so that a datagram is allocated once at its full size.
    var encodedCount: Int {
        switch self {
        case .integer(let value): return 2 + Self.decimalDigits(value)
        case .bytes(let bytes): return Self.encodedStringCount(bytes.count)
        case .list(let elements): return elements.reduce(2) { $0 + $1.encodedCount }
        case .dictionary(let entries):
            return entries.reduce(2) { count, entry in
                count + Self.encodedStringCount(entry.key.utf8.count) + entry.value.encodedCount
            }
        }
    }

    /// The length of a byte string of `byteCount` bytes once encoded (`length:bytes`).
    static func encodedStringCount(_ byteCount: Int) -> Int {
        decimalDigits(byteCount) + 1 + byteCount
    }

    /// Characters of `value` in decimal, with its sign.
    private static func decimalDigits(_ value: Int) -> Int {
        var count = value < 0 ? 2 : 1
        var rest = value
        while rest <= -10 || rest >= 10 {
            rest /= 10
            count += 1
        }
        return count
    }

    /// Writes the encoded bytes; dictionary keys in bencode's order.
    func write(to output: inout BencodeWriter) {
        switch self {
        case .integer(let value):
            output.writeInteger(value)
        case .bytes(let bytes):
            bytes.withUnsafeBufferPointer { output.writeString($0) }
        case .list(let elements):
            output.write(UInt8(ascii: "l"))
            for element in elements { element.write(to: &output) }
            output.write(UInt8(ascii: "e"))
        case .dictionary(let entries):
            output.write(UInt8(ascii: "d"))
            for key in entries.keys.sorted(by: Self.keyPrecedes) {
                output.writeString(key)
                entries[key]!.write(to: &output)
            }
            output.write(UInt8(ascii: "e"))
        }
    }

    /// Bencode's key order: by the keys' UTF-8 bytes, compared through their contiguous storage
    /// (a generic `lexicographicallyPrecedes` over two UTF-8 views costs several times as much).
    static func keyPrecedes(_ first: String, _ second: String) -> Bool {
        var first = first, second = second
        return first.withUTF8 { left in
            second.withUTF8 { right in
                for index in 0..<min(left.count, right.count) where left[index] != right[index] {
                    return left[index] < right[index]
                }
                return left.count < right.count
            }
        }
    }

    // MARK: - Decoding

    /// Decodes exactly one value that fills `bytes`.
    ///
    /// The decoder is strict: it rejects leading zeros (`i03e`, `03:abc`), `i-0e`, integers outside
    /// 64 bits, truncated input, string lengths beyond the input, bytes after the value, nesting
    /// deeper than ``maximumDepth``, and dictionary keys that are not UTF-8 strings or repeat.
    /// - Throws: ``NGError`` naming the defect and its offset.
    public static func decode(_ bytes: RawSpan) throws(NGError) -> Bencode {
        var position = 0
        let value = try decodeValue(bytes, at: &position, depth: 0)
        guard position == bytes.byteCount else { throw NGError(code: .trailingBytes, offset: position) }
        return value
    }

    /// Decodes exactly one value that fills `bytes`; see ``decode(_:)-(RawSpan)``.
    public static func decode(_ bytes: [UInt8]) throws(NGError) -> Bencode {
        try decode(bytes.span.bytes)
    }

    /// Decodes exactly one value that fills `bytes`; offsets in errors count from the slice's start.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(NGError) -> Bencode {
        try decode(bytes.span.bytes)
    }

    /// Decodes exactly one value that fills `bytes` (copied once into an array).
    public static func decode(_ bytes: some Collection<UInt8>) throws(NGError) -> Bencode {
        try decode(Array(bytes))
    }

    private static func decodeValue(_ bytes: borrowing RawSpan, at position: inout Int, depth: Int) throws(NGError)
        -> Bencode
    {
        guard position < bytes.byteCount else { throw NGError(code: .truncated, offset: position) }
        switch bytes.byte(at: position) {
        case UInt8(ascii: "i"):
            position += 1
            return .integer(try decodeInteger(bytes, at: &position))
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .bytes(try decodeString(bytes, at: &position))
        case UInt8(ascii: "l"):
            guard depth < maximumDepth else { throw NGError(code: .tooDeep, offset: position) }
            position += 1
            var elements: [Bencode] = []
            while try !consumeEnd(bytes, at: &position) {
                elements.append(try decodeValue(bytes, at: &position, depth: depth + 1))
            }
            return .list(elements)
        case UInt8(ascii: "d"):
            guard depth < maximumDepth else { throw NGError(code: .tooDeep, offset: position) }
            position += 1
            var entries: [String: Bencode] = [:]
            while try !consumeEnd(bytes, at: &position) {
                let keyOffset = position
                guard isDigit(bytes.byte(at: position)) else { throw NGError(code: .invalidKey, offset: keyOffset) }
                guard let key = String(validating: try decodeString(bytes, at: &position), as: UTF8.self) else {
                    throw NGError(code: .invalidKey, offset: keyOffset)
                }
                let value = try decodeValue(bytes, at: &position, depth: depth + 1)
                guard entries.updateValue(value, forKey: key) == nil else {
                    throw NGError(code: .duplicateKey, offset: keyOffset)
                }
            }
            return .dictionary(entries)
        default:
            throw NGError(code: .unexpectedByte, offset: position)
        }
    }

    // MARK: - Validation in place

    /// Checks that `bytes` hold exactly one value, exactly as strictly as ``decode(_:)-(RawSpan)``
    /// and with the same errors, without building it: replies are read in place.
    ///
    /// `keys` is scratch space for the duplicate-key check; pass the same array every time and
    /// it stops allocating.
    static func validate(_ bytes: borrowing RawSpan, keys: inout [Range<Int>]) throws(NGError) {
        var position = 0
        keys.removeAll(keepingCapacity: true)
        try validateValue(bytes, at: &position, depth: 0, keys: &keys)
        guard position == bytes.byteCount else { throw NGError(code: .trailingBytes, offset: position) }
    }

    private static func validateValue(
        _ bytes: borrowing RawSpan, at position: inout Int, depth: Int, keys: inout [Range<Int>]
    ) throws(NGError) {
        guard position < bytes.byteCount else { throw NGError(code: .truncated, offset: position) }
        switch bytes.byte(at: position) {
        case UInt8(ascii: "i"):
            position += 1
            _ = try decodeInteger(bytes, at: &position)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = try stringRange(bytes, at: &position)
        case UInt8(ascii: "l"):
            guard depth < maximumDepth else { throw NGError(code: .tooDeep, offset: position) }
            position += 1
            while try !consumeEnd(bytes, at: &position) {
                try validateValue(bytes, at: &position, depth: depth + 1, keys: &keys)
            }
        case UInt8(ascii: "d"):
            guard depth < maximumDepth else { throw NGError(code: .tooDeep, offset: position) }
            position += 1
            let siblingsStart = keys.count
            while try !consumeEnd(bytes, at: &position) {
                let keyOffset = position
                guard isDigit(bytes.byte(at: position)) else { throw NGError(code: .invalidKey, offset: keyOffset) }
                let key = try stringRange(bytes, at: &position)
                guard isUTF8(bytes, key) else { throw NGError(code: .invalidKey, offset: keyOffset) }
                for sibling in keys[siblingsStart...] where equal(bytes, sibling, key) {
                    throw NGError(code: .duplicateKey, offset: keyOffset)
                }
                keys.append(key)
                try validateValue(bytes, at: &position, depth: depth + 1, keys: &keys)
            }
            keys.removeSubrange(siblingsStart...)
        default:
            throw NGError(code: .unexpectedByte, offset: position)
        }
    }

    /// Moves past one value already known to be well formed.
    static func skipValue(_ bytes: borrowing RawSpan, at position: inout Int) {
        switch bytes.byte(at: position) {
        case UInt8(ascii: "i"):
            while bytes.byte(at: position) != UInt8(ascii: "e") { position += 1 }
            position += 1
        case UInt8(ascii: "l"), UInt8(ascii: "d"):
            position += 1
            while bytes.byte(at: position) != UInt8(ascii: "e") { skipValue(bytes, at: &position) }
            position += 1
        default:
            position = skipString(bytes, at: position).upperBound
        }
    }

    /// Where the bytes of a well-formed string starting at `position` are.
    static func skipString(_ bytes: borrowing RawSpan, at position: Int) -> Range<Int> {
        var position = position
        var length = 0
        while bytes.byte(at: position) != UInt8(ascii: ":") {
            length = length * 10 + Int(bytes.byte(at: position) - UInt8(ascii: "0"))
            position += 1
        }
        return (position + 1)..<(position + 1 + length)
    }

    /// Whether two ranges of `bytes` hold the same bytes.
    static func equal(_ bytes: borrowing RawSpan, _ first: Range<Int>, _ second: Range<Int>) -> Bool {
        guard first.count == second.count else { return false }
        for index in 0..<first.count where bytes.byte(at: first.lowerBound + index) != bytes.byte(at: second.lowerBound + index) {
            return false
        }
        return true
    }

    /// Whether a range of `bytes` is valid UTF-8; checked without a copy when it is ASCII.
    private static func isUTF8(_ bytes: borrowing RawSpan, _ range: Range<Int>) -> Bool {
        for offset in range where bytes.byte(at: offset) >= 0x80 {
            return String(validating: bytes.copyBytes(range), as: UTF8.self) != nil
        }
        return true
    }

    /// Consumes the `e` that closes a list or dictionary; false when another element follows.
    private static func consumeEnd(_ bytes: borrowing RawSpan, at position: inout Int) throws(NGError) -> Bool {
        guard position < bytes.byteCount else { throw NGError(code: .truncated, offset: position) }
        guard bytes.byte(at: position) == UInt8(ascii: "e") else { return false }
        position += 1
        return true
    }

    /// Reads `-?digits` followed by `e`; `position` is just after the `i`.
    private static func decodeInteger(_ bytes: borrowing RawSpan, at position: inout Int) throws(NGError) -> Int {
        var isNegative = false
        if position < bytes.byteCount, bytes.byte(at: position) == UInt8(ascii: "-") {
            isNegative = true
            position += 1
        }
        let digitsStart = position
        // Accumulated on the negative side so that Int.min fits.
        let magnitude = try decodeDigits(bytes, at: &position, negated: true)
        guard position < bytes.byteCount else { throw NGError(code: .truncated, offset: position) }
        guard bytes.byte(at: position) == UInt8(ascii: "e") else {
            throw NGError(code: .unexpectedByte, offset: position)
        }
        position += 1
        if isNegative {
            guard magnitude != 0 else { throw NGError(code: .negativeZero, offset: digitsStart - 1) }
            return magnitude
        }
        guard magnitude != .min else { throw NGError(code: .integerOverflow, offset: digitsStart) }
        return -magnitude
    }

    /// Reads `length:bytes`; `position` is at the first digit of the length.
    private static func decodeString(_ bytes: borrowing RawSpan, at position: inout Int) throws(NGError) -> [UInt8] {
        bytes.copyBytes(try stringRange(bytes, at: &position))
    }

    /// Reads `length:bytes` and returns where the bytes are; `position` is at the first digit of
    /// the length.
    private static func stringRange(_ bytes: borrowing RawSpan, at position: inout Int) throws(NGError) -> Range<Int> {
        let lengthStart = position
        let length = try decodeDigits(bytes, at: &position, negated: false)
        guard position < bytes.byteCount else { throw NGError(code: .truncated, offset: position) }
        guard bytes.byte(at: position) == UInt8(ascii: ":") else {
            throw NGError(code: .unexpectedByte, offset: position)
        }
        position += 1
        guard length <= bytes.byteCount - position else {
            throw NGError(code: .lengthBeyondInput, offset: lengthStart)
        }
        let content = position..<(position + length)
        position += length
        return content
    }

    /// Reads one or more decimal digits without a leading zero (a lone `0` is fine). With
    /// `negated` the result is minus the number, so that the magnitude of Int.min fits.
    private static func decodeDigits(_ bytes: borrowing RawSpan, at position: inout Int, negated: Bool) throws(NGError)
        -> Int
    {
        let start = position
        var value = 0
        while position < bytes.byteCount, isDigit(bytes.byte(at: position)) {
            let digit = Int(bytes.byte(at: position) - UInt8(ascii: "0"))
            let (shifted, overflowShift) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowAdd) =
                negated ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflowShift, !overflowAdd else {
                throw NGError(code: negated ? .integerOverflow : .lengthBeyondInput, offset: start)
            }
            value = next
            position += 1
        }
        guard position > start else {
            if position == bytes.byteCount { throw NGError(code: .truncated, offset: position) }
            throw NGError(code: .unexpectedByte, offset: position)
        }
        if position - start > 1, bytes.byte(at: start) == UInt8(ascii: "0") {
            throw NGError(code: .leadingZero, offset: start)
        }
        return value
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}

// MARK: - Literals

extension Bencode: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int) { self = .integer(value) }
}

extension Bencode: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension Bencode: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: Bencode...) { self = .list(elements) }
}

extension Bencode: ExpressibleByDictionaryLiteral {
    /// A dictionary; a repeated key keeps its last value.
    public init(dictionaryLiteral elements: (String, Bencode)...) {
        self = .dictionary(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension Bencode: CustomStringConvertible {
    /// A JSON-like rendering for logs and test failures; byte strings that are not UTF-8 show
    /// their length only.
    public var description: String {
        switch self {
        case .integer(let value):
            return String(value)
        case .bytes(let bytes):
            guard let text = String(validating: bytes, as: UTF8.self) else { return "<\(bytes.count) bytes>" }
            return "\"" + text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
                .replacing("\r", with: "\\r").replacing("\n", with: "\\n") + "\""
        case .list(let elements):
            return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        case .dictionary(let entries):
            let sorted = entries.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            return "{" + sorted.map { "\(Bencode.string($0.key)): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }
}

/// Bencode written into a buffer measured beforehand; a write past its end stops the process
/// rather than corrupt memory.
struct BencodeWriter {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count = 0

    /// The bytes `body` writes, in one allocation of exactly `count` bytes.
    static func bytes(count: Int, _ body: (inout BencodeWriter) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var writer = BencodeWriter(buffer: buffer)
            body(&writer)
            precondition(writer.count == count, "bencode of \(writer.count) bytes, measured \(count)")
            initialized = writer.count
        }
    }

    private init(buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    mutating func write(_ byte: UInt8) {
        precondition(count < buffer.count, "bencode larger than measured")
        buffer[count] = byte
        count += 1
    }

    mutating func write(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        precondition(bytes.count <= buffer.count - count, "bencode larger than measured")
        (buffer.baseAddress! + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// `length:bytes`.
    mutating func writeString(_ bytes: UnsafeBufferPointer<UInt8>) {
        writeDecimal(UInt(bytes.count))
        write(UInt8(ascii: ":"))
        write(bytes)
    }

    /// `text` as a byte string, from its UTF-8 storage.
    mutating func writeString(_ text: String) {
        var text = text
        text.withUTF8 { writeString($0) }
    }

    /// `i<decimal>e`.
    mutating func writeInteger(_ value: Int) {
        write(UInt8(ascii: "i"))
        if value < 0 { write(UInt8(ascii: "-")) }
        writeDecimal(value.magnitude)
        write(UInt8(ascii: "e"))
    }

    /// The digits of `value`, most significant first.
    private mutating func writeDecimal(_ value: UInt) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        precondition(digits <= buffer.count - count, "bencode larger than measured")
        var remaining = value
        for position in (count..<(count + digits)).reversed() {
            buffer[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
            remaining /= 10
        }
        count += digits
    }
}
