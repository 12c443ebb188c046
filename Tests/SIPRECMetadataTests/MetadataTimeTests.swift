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
