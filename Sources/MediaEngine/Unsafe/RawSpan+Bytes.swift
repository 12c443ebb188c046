// The one place this module reads raw bytes: single bytes and copies of ranges, both bounds checked
// by RawSpan itself. Loading a UInt8 is valid for every bit pattern, so `unsafeLoad` is safe here.

extension RawSpan {
    /// The byte at `offset` (which must be in bounds).
    func byte(at offset: Int) -> UInt8 {
        unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    /// A copy of the bytes in `range` (which must be in bounds).
    func copyBytes(_ range: Range<Int>) -> [UInt8] {
        extracting(range).withUnsafeBytes { Array($0) }
    }
}
