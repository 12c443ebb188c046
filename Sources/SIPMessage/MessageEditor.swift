internal import Glibc

/// Builds an outgoing message as edits of a received one (Kamailio's "lumps"): the original bytes
/// are copied once, around the inserted, replaced and removed ranges, never re-serialised.
///
/// Inserted bytes are written straight into one scratch buffer, and an editor can be reused for the
/// next message with `reset(for:)`, which keeps its capacity: in steady state the only allocation
/// per message is the rendered output.
public struct MessageEditor {
    private struct Edit {
        var range: ByteRange  // the original bytes replaced; empty for an insertion
        var replacement: Range<Int>  // in `scratch`
        var sequence: Int
    }

    private var message: SIPMessage?
    private var edits: [Edit] = []
    /// The bytes of every insertion and replacement, back to back.
    private var scratch: [UInt8] = []

    public init() {
        edits.reserveCapacity(16)
        scratch.reserveCapacity(512)
    }

    public init(_ message: SIPMessage) {
        self.init()
        self.message = message
    }

    /// Starts over for another message, keeping the buffers' capacity.
    public mutating func reset(for message: SIPMessage) {
        self.message = message
        edits.removeAll(keepingCapacity: true)
        scratch.removeAll(keepingCapacity: true)
    }

    /// Inserts `bytes` before the byte at `offset`. Insertions at one offset keep their order.
    public mutating func insert(_ bytes: [UInt8], at offset: Int) {
        replace(ByteRange(offset: offset, count: 0), with: bytes)
    }

    /// Replaces the bytes of `range`. Ranges of different edits should not overlap; where they do,
    /// the overlap is removed once.
    public mutating func replace(_ range: ByteRange, with bytes: [UInt8]) {
        replace(range) { $0.append(contentsOf: bytes) }
    }

    /// Replaces the bytes of `range` with what `write` appends to the buffer it is given, without
    /// building an intermediate array.
    public mutating func replace(_ range: ByteRange, writing write: (inout [UInt8]) -> Void) {
        let start = scratch.count
        write(&scratch)
        edits.append(Edit(range: range, replacement: start..<scratch.count, sequence: edits.count))
    }

    /// Inserts what `write` appends before the byte at `offset`.
    public mutating func insert(at offset: Int, writing write: (inout [UInt8]) -> Void) {
        replace(ByteRange(offset: offset, count: 0), writing: write)
    }

    /// Removes the bytes of `range`.
    public mutating func remove(_ range: ByteRange) {
        edits.append(Edit(range: range, replacement: scratch.count..<scratch.count, sequence: edits.count))
    }

    /// Removes a whole header line, line ending included.
    public mutating func remove(_ header: SIPHeader) {
        remove(header.lineRange)
    }

    /// The edited message, in one exactly sized buffer.
    public mutating func render() -> [UInt8] {
        guard let message else { return [] }
        // Insertion sort: a handful of edits, mostly in order already, and no allocation.
        var index = 1
        while index < edits.count {
            var position = index
            while position > 0, Self.precedes(edits[position], edits[position - 1]) {
                edits.swapAt(position, position - 1)
                position -= 1
            }
            index += 1
        }
        // Exact size first (overlaps shrink it), then one allocation filled by plain copies.
        var size = 0
        var position = 0
        for edit in edits {
            size += max(edit.range.offset - position, 0) + edit.replacement.count
            position = max(edit.range.end, position)
        }
        size += max(message.byteCount - position, 0)
        let scratch = self.scratch
        let edits = self.edits
        return message.withAllBytes { raw in
            [UInt8](unsafeUninitializedCapacity: size) { output, count in
                var position = 0
                func copy(_ bytes: UnsafeRawBufferPointer) {
                    guard let source = bytes.baseAddress, bytes.count > 0 else { return }
                    UnsafeMutableRawPointer(output.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
                    count += bytes.count
                }
                for edit in edits {
                    // Overlapping edits are a caller's bug; rather than trap on a peer's odd
                    // message, the overlap is treated as already removed.
                    let start = max(edit.range.offset, position)
                    copy(UnsafeRawBufferPointer(rebasing: raw[position..<start]))
                    scratch[edit.replacement].withUnsafeBytes { copy($0) }
                    position = max(edit.range.end, position)
                }
                copy(UnsafeRawBufferPointer(rebasing: raw[position..<raw.count]))
            }
        }
    }

    private static func precedes(_ first: Edit, _ second: Edit) -> Bool {
        first.range.offset != second.range.offset
            ? first.range.offset < second.range.offset : first.sequence < second.sequence
    }
}

extension String {
    /// Whether the text's UTF-8 holds `byte`, found by memchr in its contiguous storage (a
    /// generic `utf8.contains` looks at one byte per iteration).
    public func containsUTF8Byte(_ byte: UInt8) -> Bool {
        var text = self
        return text.withUTF8 { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
            return memchr(base, Int32(byte), bytes.count) != nil
        }
    }
}

/// Appends SIP text to a byte buffer without going through String formatting.
extension Array where Element == UInt8 {
    public mutating func append(ascii text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    public mutating func append(text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }

    public mutating func append(decimal value: Int) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            append(decimal: -value)
            return
        }
        if value >= 10 { append(decimal: value / 10) }
        append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    /// Appends `value` as `digits` lowercase hexadecimal characters.
    public mutating func append(hex value: UInt64, digits: Int = 16) {
        let alphabet: StaticString = "0123456789abcdef"
        var shift = (digits - 1) * 4
        while shift >= 0 {
            append(alphabet.utf8Start[Int((value >> UInt64(shift)) & 0xF)])
            shift -= 4
        }
    }
}

extension SIPMessage {
    /// Appends the bytes of `range` to `output`.
    public func append(_ range: ByteRange, to output: inout [UInt8]) {
        withBytes(range) { output.append(contentsOf: $0) }
    }

    /// Builds a response to this request from its Via, From, To, Call-ID and CSeq (RFC 3261
    /// §8.2.6.2). A To tag is added when the To header has none and the code is above 100.
    ///
    /// - Parameters:
    ///   - extraHeaders: complete header lines, each ending in CRLF (with the Content-Type of `body`).
    ///   - body: the response's body, if any.
    public func makeResponse(
        statusCode: Int, reasonPhrase: String, toTag: String? = nil, extraHeaders: [UInt8] = [], body: [UInt8] = []
    ) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(512)
        output.append(ascii: "SIP/2.0 ")
        output.append(decimal: statusCode)
        output.append(UInt8(ascii: " "))
        output.append(text: reasonPhrase)
        output.append(ascii: "\r\n")
        for index in 0..<headerCount {
            let header = header(at: index)
            switch header.name {
            case .via, .from, .callID, .cseq:
                append(ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset), to: &output)
                output.append(ascii: "\r\n")
            case .to:
                append(ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset), to: &output)
                if statusCode > 100, let toTag, nameAddress(header.valueRange)?.tagRange == nil {
                    output.append(ascii: ";tag=")
                    output.append(text: toTag)
                }
                output.append(ascii: "\r\n")
            default:
                if header.name == .other, equalsIgnoringCase(header.nameRange, "Timestamp"), statusCode == 100 {
                    append(ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset), to: &output)
                    output.append(ascii: "\r\n")
                }
            }
        }
        output.append(contentsOf: extraHeaders)
        output.append(ascii: "Content-Length: ")
        output.append(decimal: body.count)
        output.append(ascii: "\r\n\r\n")
        output.append(contentsOf: body)
        return output
    }
}
