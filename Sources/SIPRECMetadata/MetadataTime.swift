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
        // Floor division: an instant before 1970 still has a non-negative millisecond part.
        let (seconds, milliseconds) = millisecondsSinceEpoch.floorDividedBy(1000)
        var time = time_t(seconds)
        var broken = tm()
        guard gmtime_r(&time, &broken) != nil else {
            preconditionFailure("\(millisecondsSinceEpoch) ms is outside the years gmtime_r can express")
        }
        return padded(Int(broken.tm_year) + 1900, 4) + "-" + padded(Int(broken.tm_mon) + 1, 2) + "-"
            + padded(Int(broken.tm_mday), 2) + "T" + padded(Int(broken.tm_hour), 2) + ":"
            + padded(Int(broken.tm_min), 2) + ":" + padded(Int(broken.tm_sec), 2) + "."
            + padded(Int(milliseconds), 3) + "Z"
    }

    public var description: String { xsDateTime }

    public static func < (lhs: MetadataTime, rhs: MetadataTime) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    private func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

extension Int64 {
    fileprivate func floorDividedBy(_ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = self % divisor
        return remainder < 0 ? (self / divisor - 1, remainder + divisor) : (self / divisor, remainder)
    }
}
