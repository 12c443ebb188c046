internal import Glibc
internal import CSIPScan

/// A byte range inside a message: offset from its first byte, and length.
public struct ByteRange: Hashable, Sendable {
    public var offset: Int
    public var count: Int
    public init(offset: Int, count: Int) {
        self.offset = offset
        self.count = count
    }
    public var end: Int { offset + count }
    public var isEmpty: Bool { count == 0 }
}

/// One header line as the scanner found it.
public struct SIPHeader: Sendable {
    public var name: SIPHeaderName
    public var nameRange: ByteRange
    public var valueRange: ByteRange
    /// The value spans continuation lines; read it through `SIPMessage.text(_:)`, which unfolds.
    public var isFolded: Bool
    /// The whole line including its line ending, for edits that remove or replace the header.
    public var lineRange: ByteRange
}

/// A received SIP message: one owned copy of its bytes plus the scanner's index of the start line
/// and every header. Headers are parsed lazily, on access, straight from the bytes.
// Unchecked: the storage is never mutated after creation, so sharing it across loops is safe.
public struct SIPMessage: @unchecked Sendable {
    let storage: MessageStorage

    init(storage: MessageStorage) {
        self.storage = storage
    }

    private var summary: csip_message { storage.summary }

    /// True for requests, false for responses.
    public var isRequest: Bool { summary.is_request == 1 }
    /// The request method (`.other` for an extension method: read `methodRange`).
    public var method: SIPMethod { SIPMethod(rawValue: summary.method) }
    public var methodRange: ByteRange { ByteRange(offset: Int(summary.method_off), count: Int(summary.method_len)) }
    public var requestURIRange: ByteRange { ByteRange(offset: Int(summary.uri_off), count: Int(summary.uri_len)) }
    /// The status code of a response (0 for requests).
    public var statusCode: Int { Int(summary.status_code) }
    public var reasonRange: ByteRange { ByteRange(offset: Int(summary.reason_off), count: Int(summary.reason_len)) }
    /// Where the first header line begins.
    public var headersOffset: Int { Int(summary.headers_off) }
    /// Where the empty line that ends the headers begins (the byte after the last header line).
    public var headerSectionEnd: Int {
        headerCount > 0 ? header(at: headerCount - 1).lineRange.end : headersOffset
    }
    public var bodyRange: ByteRange { ByteRange(offset: Int(summary.body_off), count: Int(summary.body_len)) }
    /// The Content-Length value, nil when the header is absent.
    public var contentLength: Int? { summary.content_length < 0 ? nil : Int(summary.content_length) }
    public var byteCount: Int { storage.byteCount }
    public var headerCount: Int { storage.headerCount }

    public func header(at index: Int) -> SIPHeader {
        let raw = storage.scannedHeader(at: index)
        let lineEnd: Int
        if index + 1 < headerCount {
            lineEnd = Int(storage.scannedHeader(at: index + 1).name_off)
        } else {
            lineEnd = lineEndAfter(Int(raw.value_off) + Int(raw.value_len))
        }
        return SIPHeader(
            name: SIPHeaderName(rawKind: raw.kind),
            nameRange: ByteRange(offset: Int(raw.name_off), count: Int(raw.name_len)),
            valueRange: ByteRange(offset: Int(raw.value_off), count: Int(raw.value_len)),
            isFolded: raw.is_folded != 0,
            lineRange: ByteRange(offset: Int(raw.name_off), count: lineEnd - Int(raw.name_off)))
    }

    /// The offset just past the line ending that follows `position`.
    private func lineEndAfter(_ position: Int) -> Int {
        storage.withBytes { raw in
            var index = position
            while index < raw.count, raw[index] != UInt8(ascii: "\n") { index += 1 }
            return min(index + 1, raw.count)
        }
    }

    /// The first header of a kind.
    public func firstHeader(_ name: SIPHeaderName) -> SIPHeader? {
        for index in storage.firstIndex(ofKind: name.rawKind)..<headerCount
        where storage.scannedHeader(at: index).kind == name.rawKind {
            return header(at: index)
        }
        return nil
    }

    /// Every header of a kind, in message order; return false from `body` to stop.
    public func forEachHeader(_ name: SIPHeaderName, _ body: (SIPHeader) -> Bool) {
        for index in storage.firstIndex(ofKind: name.rawKind)..<headerCount
        where storage.scannedHeader(at: index).kind == name.rawKind {
            if !body(header(at: index)) { return }
        }
    }

    /// Every header with an extension name (kind `.other`) whose name equals `name`, any case.
    public func firstHeader(named name: String) -> SIPHeader? {
        let kind = SIPHeaderName(classifying: name)
        if kind != .other { return firstHeader(kind) }
        for index in 0..<headerCount {
            let candidate = header(at: index)
            if candidate.name == .other, equalsIgnoringCase(candidate.nameRange, name) { return candidate }
        }
        return nil
    }

    /// Every element of every header of a kind, split at top-level commas.
    public func forEachValue(_ name: SIPHeaderName, _ body: (ByteRange) -> Bool) {
        var keepGoing = true
        forEachHeader(name) { header in
            _ = splitValues(header.valueRange) { element in
                keepGoing = body(element)
                return keepGoing
            }
            return keepGoing
        }
    }

    // MARK: Bytes

    /// The byte at `offset` (no copy; traps outside the message).
    public func byte(at offset: Int) -> UInt8 {
        storage.withBytes { $0[offset] }
    }

    /// A copy of all the bytes of the message.
    public var bytes: [UInt8] { storage.withBytes { Array($0) } }

    /// A copy of the bytes in `range`, exactly as received (a body, say: `text` would unfold its
    /// line breaks).
    public func bytes(_ range: ByteRange) -> [UInt8] {
        storage.withBytes { Array(UnsafeRawBufferPointer(rebasing: $0[range.offset..<range.end])) }
    }

    /// Whether the bytes in `range` start with `literal`, ignoring ASCII case.
    public func hasPrefixIgnoringCase(_ range: ByteRange, _ literal: String) -> Bool {
        let count = literal.utf8.count
        return range.count >= count && equalsIgnoringCase(ByteRange(offset: range.offset, count: count), literal)
    }

    /// The text in `range`, with folded continuation lines turned into single spaces.
    public func text(_ range: ByteRange) -> String {
        storage.withBytes { raw in
            let slice = UnsafeRawBufferPointer(rebasing: raw[range.offset..<range.end])
            // memchr: a generic `contains` looks at one byte per iteration.
            if slice.isEmpty || memchr(slice.baseAddress!, Int32(UInt8(ascii: "\n")), slice.count) == nil {
                return String(decoding: slice, as: UTF8.self)
            }
            var unfolded: [UInt8] = []
            unfolded.reserveCapacity(slice.count)
            var index = 0
            while index < slice.count {
                let byte = slice[index]
                // A line ending followed by SP/HT is a fold (RFC 3261 §7.3.1): it reads as one SP.
                var next = index
                if byte == UInt8(ascii: "\r"), next + 1 < slice.count, slice[next + 1] == UInt8(ascii: "\n") { next += 1 }
                if slice[next] == UInt8(ascii: "\n"), next + 1 < slice.count,
                    slice[next + 1] == UInt8(ascii: " ") || slice[next + 1] == UInt8(ascii: "\t")
                {
                    index = next + 1
                    while index < slice.count, slice[index] == UInt8(ascii: " ") || slice[index] == UInt8(ascii: "\t") {
                        index += 1
                    }
                    if unfolded.last != UInt8(ascii: " ") { unfolded.append(UInt8(ascii: " ")) }
                    continue
                }
                unfolded.append(byte)
                index += 1
            }
            return String(decoding: unfolded, as: UTF8.self)
        }
    }

    /// The value of the first header of a kind, as text.
    public func headerValue(_ name: SIPHeaderName) -> String? {
        firstHeader(name).map { text($0.valueRange) }
    }

    /// Reads the bytes of `range` without copying. Do not let the pointer escape `body`.
    func withBytes<R>(_ range: ByteRange, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[range.offset..<range.end])) }
    }

    /// Reads all the bytes of the message without copying. Do not let the pointer escape `body`.
    func withAllBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withBytes(body)
    }

    /// Byte-exact comparison of two ranges, possibly in different messages.
    public func equals(_ range: ByteRange, _ other: SIPMessage, _ otherRange: ByteRange) -> Bool {
        guard range.count == otherRange.count else { return false }
        return withBytes(range) { mine in other.withBytes(otherRange) { theirs in bytesEqual(mine, theirs) } }
    }

    /// Byte-exact comparison with bytes held elsewhere.
    public func equals(_ range: ByteRange, _ other: ArraySlice<UInt8>) -> Bool {
        guard range.count == other.count else { return false }
        return withBytes(range) { mine in other.withUnsafeBytes { bytesEqual(mine, $0) } }
    }

    /// Byte-exact comparison with a literal.
    public func equals(_ range: ByteRange, _ literal: String) -> Bool {
        var literal = literal
        return literal.withUTF8 { utf8 in
            withBytes(range) { mine in bytesEqual(mine, UnsafeRawBufferPointer(utf8)) }
        }
    }

    /// ASCII case-insensitive comparison with a literal.
    public func equalsIgnoringCase(_ range: ByteRange, _ literal: String) -> Bool {
        var literal = literal
        return literal.withUTF8 { utf8 in
            guard utf8.count == range.count else { return false }
            return withBytes(range) { mine in
                for index in 0..<utf8.count where asciiLower(mine[index]) != asciiLower(utf8[index]) {
                    return false
                }
                return true
            }
        }
    }

    /// The same hash over bytes outside any message (identifiers the proxy makes itself).
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        bytes.withUnsafeBytes { fnv1a($0, seed: seed) }
    }

    /// A 64-bit FNV-1a hash of the bytes in `range`, for hash tables keyed by message text.
    public func hash(_ range: ByteRange, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        withBytes(range) { bytes in fnv1a(bytes, seed: seed) }
    }
}

/// Byte-exact comparison: one memcmp, where `elementsEqual` walks an iterator byte by byte.
@inline(__always) func bytesEqual(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
    guard first.count == second.count else { return false }
    guard let firstBase = first.baseAddress, let secondBase = second.baseAddress else { return true }  // both empty
    return memcmp(firstBase, secondBase, first.count) == 0
}

@inline(__always) func asciiLower(_ byte: UInt8) -> UInt8 {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
}

@inline(__always) func isLinearWhitespace(_ byte: UInt8) -> Bool {
    byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
        || byte == UInt8(ascii: "\n")
}

@inline(__always) func fnv1a(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
    var hash = seed
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    return hash
}

extension SIPMessage {
    /// Every element of one header line, split at top-level commas; return false to stop.
    public func forEachHeaderValue(_ header: SIPHeader, _ body: (ByteRange) -> Bool) {
        _ = splitValues(header.valueRange, into: body)
    }
}
