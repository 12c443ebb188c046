import Glibc
import SIPRECMetadata
import Testing

@Suite("MetadataTime")
struct MetadataTimeTests {
    @Test(
        "xs:dateTime of known instants",
        arguments: [
            (Int64(0), "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (946_684_799_999, "1999-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),  // leap day of a year divisible by 400
            (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (1_795_735_805_123, "2026-11-26T23:30:05.123Z"),
            (2_147_483_648_000, "2038-01-19T03:14:08.000Z"),  // past 32-bit time_t
            (4_107_542_400_001, "2100-03-01T00:00:00.001Z"),  // 2100 is not a leap year
        ])
    func knownInstants(milliseconds: Int64, expected: String) {
        #expect(MetadataTime(millisecondsSinceEpoch: milliseconds).xsDateTime == expected)
    }

    @Test("the first and last years of four digits, and a year of five")
    func yearWidths() {
        #expect(MetadataTime(millisecondsSinceEpoch: -62_135_596_800_000).xsDateTime == "0001-01-01T00:00:00.000Z")
        #expect(MetadataTime(millisecondsSinceEpoch: 253_402_300_799_999).xsDateTime == "9999-12-31T23:59:59.999Z")
        #expect(MetadataTime(millisecondsSinceEpoch: 253_402_300_800_000).xsDateTime == "10000-01-01T00:00:00.000Z")
    }

    @Test("every date agrees with gmtime_r's, from year -2000 to 12000, around every century's January 1 and March 1")
    func agreesWithGmtime() {
        func padded(_ value: Int, _ width: Int) -> String {
            let digits = String(value.magnitude)
            let sign = value < 0 ? "-" : ""
            return String(repeating: "0", count: max(0, width - digits.count - sign.count)) + sign + digits
        }
        func reference(_ milliseconds: Int64) -> String {
            var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
            var broken = tm()
            _ = gmtime_r(&seconds, &broken)
            let fraction = Int(milliseconds - Int64(seconds) * 1000)
            return "\(padded(Int(broken.tm_year) + 1900, 4))-\(padded(Int(broken.tm_mon) + 1, 2))-\(padded(Int(broken.tm_mday), 2))"
                + "T\(padded(Int(broken.tm_hour), 2)):\(padded(Int(broken.tm_min), 2)):\(padded(Int(broken.tm_sec), 2))"
                + ".\(padded(fraction, 3))Z"
        }
        let day: Int64 = 86_400_000
        func daysSince1970(year: Int64, month: Int64, day: Int64) -> Int64 {  // of the proleptic Gregorian calendar
            var broken = tm()
            broken.tm_year = Int32(year - 1900)
            broken.tm_mon = Int32(month - 1)
            broken.tm_mday = Int32(day)
            return Int64(timegm(&broken)) / 86_400
        }
        var instants: [Int64] = []
        // Around January 1 and March 1 of every century year: leap days, 400-year eras, year 0.
        for year in stride(from: Int64(-2000), through: 12_000, by: 100) {
            for month: Int64 in [1, 3] {
                let start = daysSince1970(year: year, month: month, day: 1)
                for offset in -3...3 { instants += [(start + Int64(offset)) * day, (start + Int64(offset)) * day - 1] }
            }
        }
        // Every 97 days and a bit over two hours from year -2000 to 12000, at a random time of day too.
        var generator = SystemRandomNumberGenerator()
        var instant = daysSince1970(year: -2000, month: 1, day: 1) * day
        let last = daysSince1970(year: 12_000, month: 12, day: 31) * day
        while instant < last {
            instants += [instant, instant - instant % day + Int64.random(in: 0..<day, using: &generator)]
            instant += 97 * day + 7_777_777
        }
        for milliseconds in instants {
            let expected = reference(milliseconds)
            let rendered = MetadataTime(millisecondsSinceEpoch: milliseconds).xsDateTime
            guard rendered == expected else {
                Issue.record("\(milliseconds) ms: \(rendered), gmtime_r says \(expected)")
                return
            }
        }
    }

    @Test("now() is the wall clock")
    func now() {
        // Not time(): glibc reads it from the coarse clock, which can still show the last second
        // for a few milliseconds after CLOCK_REALTIME has moved on (a flaky bound).
        func realtimeMilliseconds() -> Int64 {
            var clock = timespec()
            clock_gettime(CLOCK_REALTIME, &clock)
            return Int64(clock.tv_sec) * 1000 + Int64(clock.tv_nsec) / 1_000_000
        }
        let before = realtimeMilliseconds()
        let now = MetadataTime.now().millisecondsSinceEpoch
        let after = realtimeMilliseconds()
        #expect(before <= now && now <= after)
    }

    @Test("ordering follows the instant")
    func ordering() {
        #expect(MetadataTime(millisecondsSinceEpoch: 1) < MetadataTime(millisecondsSinceEpoch: 2))
    }
}
