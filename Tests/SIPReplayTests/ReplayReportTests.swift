import Testing

@testable import SIPReplayKit

@Suite struct ReplayReportTests {
    static func fixedReport() -> ReplayReport {
        var invite = LatencyHistogram()
        for v in 1...1000 { invite.record(v * 10) }  // 10 µs … 10 ms
        var bye = LatencyHistogram()
        bye.record(250)
        bye.record(1500)
        bye.record(4_000_000)
        var report = ReplayReport(
            target: "127.0.0.1:5060", rateOffered: 100, callsAttempted: 1000, callsCompleted: 997,
            retransmissions: 12, inviteToOK: invite, byeToOK: bye, durationSeconds: 10.5,
            proxyCPUSecondsPer1000Calls: 0.2345, proxyPeakMemoryKilobytes: 51200,
            ramp: [
                RampStep(rate: 50, completed: 500, failed: 0, verdict: .pass),
                RampStep(rate: 1000, completed: 497, failed: 3, verdict: .fail),
            ], replayCPUSecondsPer1000Calls: 0.0712, peakConcurrentCalls: 42)
        report.recordFailure(.timeout, example: "a84b4c76e66710@pc33: no 200 to INVITE within 32 s")
        report.recordFailure(.unexpectedResponse, example: "b7@host: INVITE answered 503 \"Service Unavailable\"")
        report.recordFailure(.timeout)
        return report
    }

    @Test func tableText() {
        let expected = """
            target                 127.0.0.1:5060
            offered rate           100.0 calls/s
            duration               10.50 s
            calls attempted        1000
            calls completed        997
            calls failed           3
              timeout              2
              unexpected response  1
            retransmissions        12
            achieved rate          95.0 calls/s
            peak concurrent calls  42
            proxy CPU              0.235 s per 1000 calls
            proxy peak memory      51200 KiB
            sip-replay CPU         0.071 s per 1000 calls

            latency (ms)  count    p50       p90       p99     p99.9       max
            INVITE->200    1000  5.003     9.007     9.903     9.991    10.000
            BYE->200          3  1.500  4000.000  4000.000  4000.000  4000.000

            ramp (calls/s)  completed  failed  verdict
                      50.0        500       0     pass
                    1000.0        497       3     fail

            failure examples
              a84b4c76e66710@pc33: no 200 to INVITE within 32 s
              b7@host: INVITE answered 503 "Service Unavailable"

            """
        #expect(Self.fixedReport().renderTable() == expected)
    }

    @Test func tableOfAnEmptyRunLeavesUnknownsOut() {
        let expected = """
            target           x
            offered rate     1.0 calls/s
            duration         0.00 s
            calls attempted  0
            calls completed  0
            calls failed     0
            retransmissions  0
            achieved rate    0.0 calls/s

            latency (ms)  count  p50  p90  p99  p99.9  max
            INVITE->200       0    -    -    -      -    -
            BYE->200          0    -    -    -      -    -

            """
        #expect(ReplayReport(target: "x", rateOffered: 1).renderTable() == expected)
    }

    @Test func tableShowsControlCharactersAsEscapes() {
        var report = ReplayReport(target: "t", rateOffered: 1)
        report.recordFailure(.transportError, example: "c1@h: line\r\nbreak\tand \u{1}")
        #expect(report.renderTable().contains("\n  c1@h: line\\r\\nbreak\\tand \\x01\n"))
        #expect(report.renderTable().contains("\n  transport      1\n"))
    }

    @Test func jsonText() {
        let expected = #"""
            {
              "target": "127.0.0.1:5060",
              "rateOffered": 100.0,
              "durationSeconds": 10.5,
              "callsAttempted": 1000,
              "callsCompleted": 997,
              "callsFailed": 3,
              "failures": {"timeout": 2, "unexpected response": 1, "out of order": 0, "transport": 0},
              "failureExamples": [
                "a84b4c76e66710@pc33: no 200 to INVITE within 32 s",
                "b7@host: INVITE answered 503 \"Service Unavailable\""
              ],
              "retransmissions": 12,
              "callsPerSecond": 94.95238095238095,
              "latencyMicroseconds": {
                "inviteToOK": {"count": 1000, "clamped": 0, "min": 10, "mean": 5005.0, "p50": 5003, "p90": 9007, "p99": 9903, "p99.9": 9991, "max": 10000},
                "byeToOK": {"count": 3, "clamped": 0, "min": 250, "mean": 1333916.7, "p50": 1500, "p90": 4000000, "p99": 4000000, "p99.9": 4000000, "max": 4000000}
              },
              "proxyCPUSecondsPer1000Calls": 0.2345,
              "proxyPeakMemoryKilobytes": 51200,
              "replayCPUSecondsPer1000Calls": 0.0712,
              "peakConcurrentCalls": 42,
              "ramp": [
                {"rate": 50.0, "completed": 500, "failed": 0, "verdict": "pass"},
                {"rate": 1000.0, "completed": 497, "failed": 3, "verdict": "fail"}
              ],
              "highestZeroFailureRate": null,
              "exitStatus": 1
            }

            """#
        let json = Self.fixedReport().renderJSON()
        #expect(json == expected)
        let parsed = try? JSONChecker.parse(json)
        #expect(parsed != nil)
        guard case .object(let top)? = parsed else { return }
        #expect(top.map(\.key) == [
            "target", "rateOffered", "durationSeconds", "callsAttempted", "callsCompleted", "callsFailed",
            "failures", "failureExamples", "retransmissions", "callsPerSecond", "latencyMicroseconds",
            "proxyCPUSecondsPer1000Calls", "proxyPeakMemoryKilobytes", "replayCPUSecondsPer1000Calls",
            "peakConcurrentCalls", "ramp", "highestZeroFailureRate", "exitStatus",
        ])
    }

    @Test func jsonOfAnEmptyRunIsValidWithNulls() throws {
        let json = ReplayReport(target: "x", rateOffered: 1).renderJSON()
        let parsed = try JSONChecker.parse(json)
        guard case .object(let top) = parsed else {
            Issue.record("not an object")
            return
        }
        let values = Dictionary(uniqueKeysWithValues: top.map { ($0.key, $0.value) })
        #expect(values["ramp"] == .null)
        #expect(values["proxyCPUSecondsPer1000Calls"] == .null)
        #expect(values["failureExamples"] == .array([]))
        #expect(values["exitStatus"] == .number("0"))
        #expect(json.contains(#""inviteToOK": {"count": 0, "clamped": 0, "min": null, "mean": null, "p50": null"#))
    }

    @Test func jsonEscapesQuotesBackslashesAndControlCharacters() throws {
        let nasty = "id\"1\"@h\\x: got \r\n\t\u{0}\u{1F}\u{7F}\u{8}\u{C} é 😀 \u{2028}"
        var report = ReplayReport(target: "sip:\"proxy\"@[::1]:5060", rateOffered: 0.5, callsAttempted: 1)
        report.recordFailure(.outOfOrder, example: nasty)
        report.proxyCPUSecondsPer1000Calls = .nan
        let json = report.renderJSON()
        #expect(json.contains(#""id\"1\"@h\\x: got \r\n\t\u0000\u001f\u007f\b\f é 😀 \u2028""#))
        #expect(json.contains(#""target": "sip:\"proxy\"@[::1]:5060""#))
        #expect(json.contains(#""proxyCPUSecondsPer1000Calls": null"#))
        let parsed = try JSONChecker.parse(json)
        guard case .object(let top) = parsed else {
            Issue.record("not an object")
            return
        }
        let values = Dictionary(uniqueKeysWithValues: top.map { ($0.key, $0.value) })
        #expect(values["failureExamples"] == .array([.string(nasty)]))
        #expect(values["target"] == .string("sip:\"proxy\"@[::1]:5060"))
        #expect(values["rateOffered"] == .number("0.5"))
    }

    @Test func exitStatus() {
        var report = ReplayReport(target: "t", rateOffered: 10, callsAttempted: 5, callsCompleted: 5)
        #expect(report.exitStatus == 0)
        report.recordFailure(.timeout)
        #expect(report.exitStatus == 1)
        #expect(report.callsFailed == 1)
        #expect(report.failures == [.timeout: 1])
        #expect(ReplayReport(target: "t", rateOffered: 1, callsFailed: 2).exitStatus == 1)
    }

    @Test func examplesAreCappedAndRateIsCompletedPerSecond() {
        var report = ReplayReport(target: "t", rateOffered: 10, callsCompleted: 30, durationSeconds: 4)
        for i in 0..<15 { report.recordFailure(.timeout, example: "call \(i)") }
        #expect(report.failureExamples.count == 10)
        #expect(report.failureExamples.first == "call 0")
        #expect(report.failures[.timeout] == 15)
        #expect(report.callsPerSecond == 7.5)
    }

    @Test func numberFormatting() {
        #expect(reportFixed(0.2345, 3) == "0.235")  // 0.2345 is stored a little above
        #expect(reportFixed(1.5, 0) == "2")
        #expect(reportFixed(-0.04, 1) == "0.0")
        #expect(reportFixed(-12.345, 2) == "-12.35")
        #expect(reportFixed(3, 2) == "3.00")
        #expect(reportFixed(.infinity, 2) == "-")
        #expect(reportJSONNumber(3) == "3.0")
        #expect(reportJSONNumber(0.1) == "0.1")
        #expect(reportJSONNumber(.infinity) == "null")
        #expect((try? JSONChecker.parse(reportJSONNumber(1e-7))) != nil)
        #expect((try? JSONChecker.parse(reportJSONNumber(1e300))) != nil)
    }
}

/// A strict little JSON parser (RFC 8259) to check the rendered reports; numbers are kept as text.
enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

struct JSONChecker {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let bytes: [UInt8]
    private var at = 0

    static func parse(_ text: String) throws -> JSONValue {
        var checker = JSONChecker(bytes: Array(text.utf8))
        let value = try checker.value()
        checker.skipSpace()
        guard checker.at == checker.bytes.count else { throw Failure(description: "trailing bytes at \(checker.at)") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private mutating func skipSpace() {
        while at < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[at]) { at += 1 }
    }

    private func fail(_ what: String) -> Failure { Failure(description: "\(what) at byte \(at)") }

    private mutating func expect(_ literal: String) throws {
        for byte in literal.utf8 {
            guard at < bytes.count, bytes[at] == byte else { throw fail("expected \(literal)") }
            at += 1
        }
    }

    private mutating func value() throws -> JSONValue {
        skipSpace()
        guard at < bytes.count else { throw fail("unexpected end") }
        switch bytes[at] {
        case UInt8(ascii: "{"):
            at += 1
            var members: [(key: String, value: JSONValue)] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "}") {
                at += 1
                return .object(members)
            }
            while true {
                skipSpace()
                let key = try string()
                skipSpace()
                try expect(":")
                members.append((key, try value()))
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                try expect("}")
                return .object(members)
            }
        case UInt8(ascii: "["):
            at += 1
            var items: [JSONValue] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "]") {
                at += 1
                return .array(items)
            }
            while true {
                items.append(try value())
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                try expect("]")
                return .array(items)
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        default: return .number(try number())
        }
    }

    private mutating func digits() throws {
        let start = at
        while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 { at += 1 }
        guard at > start else { throw fail("expected a digit") }
    }

    private mutating func number() throws -> String {
        let start = at
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        guard at < bytes.count else { throw fail("bad number") }
        if bytes[at] == UInt8(ascii: "0") {
            at += 1
        } else {
            try digits()
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            at += 1
            try digits()
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            try digits()
        }
        return String(decoding: bytes[start..<at], as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard at + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[at]
            let digit: UInt8
            switch c {
            case 0x30...0x39: digit = c - 0x30
            case 0x61...0x66: digit = c - 0x61 + 10
            case 0x41...0x46: digit = c - 0x41 + 10
            default: throw fail("bad hex digit")
            }
            value = value * 16 + UInt32(digit)
            at += 1
        }
        return value
    }

    private mutating func string() throws -> String {
        try expect("\"")
        var out: [UInt8] = []
        while true {
            guard at < bytes.count else { throw fail("unterminated string") }
            let c = bytes[at]
            at += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard at < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[at]
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        try expect("\\u")
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("lone surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("bad scalar") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("bad escape")
                }
            default:
                guard c >= 0x20 else { throw fail("raw control character in string") }
                out.append(c)
            }
        }
    }
}
