import Glibc

/// An instant with millisecond precision, rendered in UTC as an xs:dateTime (RFC 3339 with an
/// upper-case T and Z, RFC 7865 §6.9), for example `2026-11-26T23:30:05.123Z`.
public struct MetadataTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    /// The wall-clock time now.
    public static func now() -> MetadataTime {
        var clock = timespec()
        clock_gettime(CLOCK_REALTIME, &clock)
        return MetadataTime(millisecondsSinceEpoch: Int64(clock.tv_sec) * 1000 + Int64(clock.tv_nsec) / 1_000_000)
    }

    /// Always with three fractional digits, so every time in a document has the same shape.
    public var xsDateTime: String {
        withXSDateTime { String(decoding: $0, as: UTF8.self) }
    }

    /// Lends `xsDateTime`'s UTF-8 to `body` from the stack, without making a String.
    func withXSDateTime<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        // Floor division: an instant before 1970 still has a non-negative millisecond part.
        let (seconds, milliseconds) = millisecondsSinceEpoch.floorDividedBy(1000)
        var time = time_t(seconds)
        var broken = tm()
        guard gmtime_r(&time, &broken) != nil else {
            preconditionFailure("\(millisecondsSinceEpoch) ms is outside the years gmtime_r can express")
        }
        // At most 11 characters of year (a sign and 10 digits), then 20 more.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { buffer in
            var text = DecimalText(buffer)
            text.append(Int(broken.tm_year) + 1900, width: 4)
            text.append("-")
            text.append(Int(broken.tm_mon) + 1, width: 2)
            text.append("-")
            text.append(Int(broken.tm_mday), width: 2)
            text.append("T")
            text.append(Int(broken.tm_hour), width: 2)
            text.append(":")
            text.append(Int(broken.tm_min), width: 2)
            text.append(":")
            text.append(Int(broken.tm_sec), width: 2)
            text.append(".")
            text.append(Int(milliseconds), width: 3)
            text.append("Z")
            return body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[..<text.count]))
        }
    }

    public var description: String { xsDateTime }

    public static func < (lhs: MetadataTime, rhs: MetadataTime) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }
}

extension Int64 {
    fileprivate func floorDividedBy(_ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = self % divisor
        return remainder < 0 ? (self / divisor - 1, remainder + divisor) : (self / divisor, remainder)
    }
}

/// Numbers and separators written into a caller's buffer.
private struct DecimalText {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count = 0

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    mutating func append(_ character: Unicode.Scalar) {
        buffer[count] = UInt8(ascii: character)
        count += 1
    }

    /// `value` in decimal, `-` first when negative, with zeros in front up to `width` characters
    /// in all (so -5 at width 4 is `00-5`, as padding `String(-5)` gives).
    mutating func append(_ value: Int, width: Int) {
        var digits = 1
        var rest = value.magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let length = digits + (value < 0 ? 1 : 0)
        for _ in 0..<max(0, width - length) { append("0") }
        if value < 0 { append("-") }
        var magnitude = value.magnitude
        for position in (0..<digits).reversed() {
            buffer[count + position] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
        }
        count += digits
    }
}
