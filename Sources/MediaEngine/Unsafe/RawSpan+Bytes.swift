// The one place this module reads raw bytes: single bytes and copies of ranges, both bounds checked
// by RawSpan itself. Loading a UInt8 is valid for every bit pattern, so `unsafeLoad` is safe here.

extension RawSpan {
    /// The byte at `offset` (which must be in bounds).
    @inline(__always)
    func byte(at offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset < byteCount, "byte offset out of bounds")
        return unsafeLoad(fromUncheckedByteOffset: offset, as: UInt8.self)
    }

    /// Whether the bytes in `range` (which must be in bounds) are exactly `text`'s UTF-8.
    func bytes(_ range: Range<Int>, equal text: String) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
            guard utf8.count == range.count else { return false }
            return extracting(range).withUnsafeBytes { $0.elementsEqual(UnsafeRawBufferPointer(utf8)) }
        }
    }

    /// Whether the bytes in `range` (which must be in bounds) are exactly `literal`.
    func bytes(_ range: Range<Int>, equal literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        return extracting(range).withUnsafeBytes { bytes in
            literal.withUTF8Buffer { bytes.elementsEqual(UnsafeRawBufferPointer($0)) }
        }
    }

    /// A copy of the bytes in `range` (which must be in bounds).
    func copyBytes(_ range: Range<Int>) -> [UInt8] {
        extracting(range).withUnsafeBytes { Array($0) }
    }
}
