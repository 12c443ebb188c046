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
        let (days, secondOfDay) = seconds.floorDividedBy(86_400)
        let date = CivilDate(daysSince1970: days)
        // At most 11 characters of year (a sign and 10 digits), then 20 more.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { buffer in
            var text = DecimalText(buffer)
            text.append(Int(date.year), width: 4)
            text.append("-")
            text.append(Int(date.month), width: 2)
            text.append("-")
            text.append(Int(date.day), width: 2)
            text.append("T")
            text.append(Int(secondOfDay / 3600), width: 2)
            text.append(":")
            text.append(Int(secondOfDay / 60 % 60), width: 2)
            text.append(":")
            text.append(Int(secondOfDay % 60), width: 2)
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

/// A day of the proleptic Gregorian calendar (year 0 is 1 BC, as gmtime_r counts), computed
/// without gmtime_r, which takes glibc's time zone lock on every call and handles far more than a
/// UTC date needs. Howard Hinnant's `civil_from_days`: days are counted in 400-year eras of 146 097
/// days from 0000-03-01, so that February, with its leap day, ends each year.
struct CivilDate {
    var year: Int64
    var month: Int64
    var day: Int64

    init(daysSince1970: Int64) {
        let shifted = daysSince1970 + 719_468  // days from 0000-03-01 to 1970-01-01
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097  // 0...146 096
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365  // 0...399
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0...365, from March 1
        let shiftedMonth = (5 * dayOfYear + 2) / 153  // 0 is March, 11 is February
        day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
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
