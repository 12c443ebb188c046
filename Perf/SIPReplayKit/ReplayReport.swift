// ReplayReport: what one sip-replay run measured, rendered as an aligned table for people and as
// JSON (stable key order, hand-written encoder) for scripts. With a recording server (the
// replay's ReplaySRS) the report also has what it saw during the run and the recording problems
// that make a run not clean.

/// Why a replayed call failed.
public enum FailureReason: String, Sendable, CaseIterable {
    case timeout
    case unexpectedResponse = "unexpected response"
    case outOfOrder = "out of order"
    /// The TCP connection the call was on closed or failed.
    case transportError = "transport"
}

/// One step of a rate ramp.
public struct RampStep: Sendable, Equatable {
    public enum Verdict: String, Sendable, CaseIterable {
        /// The proxy kept up at this rate.
        case pass
        /// Calls failed or latency passed the limit at this rate.
        case fail
    }

    /// Offered rate, calls per second.
    public var rate: Double
    public var completed: Int
    public var failed: Int
    public var verdict: Verdict
    /// The step's recording problems (a step with any fails).
    public var recordingProblems: [String]
    /// What the SRS saw during the step, when one ran.
    public var srs: SRSStatistics?

    public init(
        rate: Double, completed: Int, failed: Int, verdict: Verdict, recordingProblems: [String] = [],
        srs: SRSStatistics? = nil
    ) {
        self.rate = rate
        self.completed = completed
        self.failed = failed
        self.verdict = verdict
        self.recordingProblems = recordingProblems
        self.srs = srs
    }
}

/// The result of one replay run.
public struct ReplayReport: Sendable {
    /// The proxy replayed against (host:port or URI).
    public var target: String
    /// Calls per second offered.
    public var rateOffered: Double
    public var callsAttempted: Int
    public var callsCompleted: Int
    public var callsFailed: Int
    public var failures: [FailureReason: Int]
    /// The first few failures, each naming the Call-ID and what happened.
    public var failureExamples: [String]
    public var retransmissions: Int
    /// INVITE sent → 200 received, microseconds.
    public var inviteToOK: LatencyHistogram
    /// BYE sent → 200 received, microseconds.
    public var byeToOK: LatencyHistogram
    public var durationSeconds: Double
    public var proxyCPUSecondsPer1000Calls: Double?
    public var proxyPeakMemoryKilobytes: Int?
    /// sip-replay's own CPU (user + system, getrusage) per 1000 calls attempted.
    public var replayCPUSecondsPer1000Calls: Double?
    /// The most calls in progress at once.
    public var peakConcurrentCalls: Int
    public var ramp: [RampStep]?
    /// With a ramp: the highest rate at which a step had no failed call (nil when none passed).
    public var highestZeroFailureRate: Double?
    /// What the replay's SRS saw during the run (nil when none ran): counts of this run only,
    /// `activeSessions` as the run ended (after its drain), `peakActiveSessions` during the run.
    /// With a ramp: the steps' counts summed, the last step's active sessions, the highest peak.
    public var srs: SRSStatistics?
    /// The status the SRS was told to reject every recording INVITE with (`--srs-reject`).
    public var srsRejectStatus: Int?
    /// How long the run waited after its last call for the SRS's sessions to end (ramp: the longest).
    public var srsDrainSeconds: Double?
    /// Why the run is not clean as a recorded run ("recording: 3 sessions never ACKed"); a ramp
    /// lists each step's, prefixed with its rate. Any makes the exit status 1 (ramp: fails the step).
    public var recordingProblems: [String]

    public init(
        target: String, rateOffered: Double, callsAttempted: Int = 0, callsCompleted: Int = 0,
        callsFailed: Int = 0, failures: [FailureReason: Int] = [:], failureExamples: [String] = [],
        retransmissions: Int = 0, inviteToOK: LatencyHistogram = LatencyHistogram(),
        byeToOK: LatencyHistogram = LatencyHistogram(), durationSeconds: Double = 0,
        proxyCPUSecondsPer1000Calls: Double? = nil, proxyPeakMemoryKilobytes: Int? = nil,
        ramp: [RampStep]? = nil, highestZeroFailureRate: Double? = nil,
        replayCPUSecondsPer1000Calls: Double? = nil, peakConcurrentCalls: Int = 0, srs: SRSStatistics? = nil,
        srsRejectStatus: Int? = nil, srsDrainSeconds: Double? = nil, recordingProblems: [String] = []
    ) {
        self.target = target
        self.rateOffered = rateOffered
        self.callsAttempted = callsAttempted
        self.callsCompleted = callsCompleted
        self.callsFailed = callsFailed
        self.failures = failures
        self.failureExamples = failureExamples
        self.retransmissions = retransmissions
        self.inviteToOK = inviteToOK
        self.byeToOK = byeToOK
        self.durationSeconds = durationSeconds
        self.proxyCPUSecondsPer1000Calls = proxyCPUSecondsPer1000Calls
        self.proxyPeakMemoryKilobytes = proxyPeakMemoryKilobytes
        self.ramp = ramp
        self.highestZeroFailureRate = highestZeroFailureRate
        self.replayCPUSecondsPer1000Calls = replayCPUSecondsPer1000Calls
        self.peakConcurrentCalls = peakConcurrentCalls
        self.srs = srs
        self.srsRejectStatus = srsRejectStatus
        self.srsDrainSeconds = srsDrainSeconds
        self.recordingProblems = recordingProblems
    }

    /// Completed calls per second of run time (0 for a run of no duration).
    public var callsPerSecond: Double {
        durationSeconds > 0 ? Double(callsCompleted) / durationSeconds : 0
    }

    /// The tool's exit status: 0 when no call failed and there was no recording problem or
    /// (ramping) some step passed, 1 otherwise.
    public var exitStatus: Int32 {
        (callsFailed == 0 && recordingProblems.isEmpty) || highestZeroFailureRate != nil ? 0 : 1
    }

    /// The recording problems of one run, as reason lines:
    /// - requests the SRS rejected, other than the initial INVITEs rejected with
    ///   `expectedRejectStatus` (`--srs-reject`);
    /// - sessions never ACKed: given up after 64·T1 (`sessionsWithoutACK`) or still waiting for
    ///   the ACK of their 2xx when the run ended (`sessionsAwaitingACK`);
    /// - sessions still active when the run ended, after waiting `drainSeconds` for them to end
    ///   (`sessionsLeftActive`, not counting those waiting for their ACK);
    /// - recording INVITEs the SRS had not answered yet when the run ended (`sessionsLeftPending`).
    public static func recordingProblems(
        _ statistics: SRSStatistics, expectedRejectStatus: Int? = nil, sessionsAwaitingACK: Int = 0,
        sessionsLeftActive: Int = 0, sessionsLeftPending: Int = 0, drainSeconds: Double? = nil
    ) -> [String] {
        var problems: [String] = []
        let expectedPrefix = expectedRejectStatus.map { "\($0) " }
        let unexpected = statistics.sortedRejections.filter { rejection in
            expectedPrefix.map { !rejection.reason.hasPrefix($0) } ?? true
        }
        let rejected = unexpected.reduce(0) { $0 + $1.count }
        if rejected > 0 {
            let reasons = unexpected.map { "\($0.reason): \($0.count)" }.joined(separator: ", ")
            problems.append("recording: \(counted(rejected, "request")) rejected by the SRS (\(reasons))")
        }
        let neverACKed = statistics.sessionsWithoutACK + sessionsAwaitingACK
        if neverACKed > 0 { problems.append("recording: \(counted(neverACKed, "session")) never ACKed") }
        let after = drainSeconds.map { " " + reportFixed($0, 1) + " s after the last call ended" } ?? " when the run ended"
        let stillActive = Swift.max(0, sessionsLeftActive - sessionsAwaitingACK)
        if stillActive > 0 { problems.append("recording: \(counted(stillActive, "session")) still active\(after)") }
        if sessionsLeftPending > 0 {
            problems.append("recording: \(counted(sessionsLeftPending, "recording INVITE")) still unanswered\(after)")
        }
        return problems
    }

    /// Counts one failure of a call.
    public mutating func recordFailure(_ reason: FailureReason, example: String? = nil, keepingExamples limit: Int = 10) {
        callsFailed += 1
        failures[reason, default: 0] += 1
        if let example, failureExamples.count < limit { failureExamples.append(example) }
    }

    /// Percentiles shown for each latency, with their labels.
    static let percentiles: [(label: String, value: Double)] = [
        ("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9),
    ]

    // MARK: - Table

    /// An aligned table for the terminal: counts, failure reasons, retransmissions, achieved rate,
    /// latencies in milliseconds, proxy CPU and memory when known, ramp steps when present and the
    /// failure examples.
    public func renderTable() -> String {
        var rows: [(String, String)] = []
        rows.append(("target", displayable(target)))
        rows.append(("offered rate", reportFixed(rateOffered, 1) + " calls/s"))
        rows.append(("duration", reportFixed(durationSeconds, 2) + " s"))
        rows.append(("calls attempted", "\(callsAttempted)"))
        rows.append(("calls completed", "\(callsCompleted)"))
        rows.append(("calls failed", "\(callsFailed)"))
        for reason in FailureReason.allCases {
            if let n = failures[reason], n != 0 { rows.append(("  " + reason.rawValue, "\(n)")) }
        }
        rows.append(("retransmissions", "\(retransmissions)"))
        rows.append(("achieved rate", reportFixed(callsPerSecond, 1) + " calls/s"))
        if peakConcurrentCalls > 0 { rows.append(("peak concurrent calls", "\(peakConcurrentCalls)")) }
        if let highest = highestZeroFailureRate {
            rows.append(("highest zero-failure rate", reportFixed(highest, 1) + " calls/s"))
        }
        if let cpu = proxyCPUSecondsPer1000Calls {
            rows.append(("proxy CPU", reportFixed(cpu, 3) + " s per 1000 calls"))
        }
        if let memory = proxyPeakMemoryKilobytes {
            rows.append(("proxy peak memory", "\(memory) KiB"))
        }
        if let cpu = replayCPUSecondsPer1000Calls {
            rows.append(("sip-replay CPU", reportFixed(cpu, 3) + " s per 1000 calls"))
        }
        if let drain = srsDrainSeconds {
            rows.append(("SRS drain", reportFixed(drain, 2) + " s after the last call"))
        }
        let labelWidth = rows.map { $0.0.count }.max() ?? 0
        var out = ""
        for (label, value) in rows {
            out += pad(label, labelWidth) + "  " + value + "\n"
        }

        out += "\n"
        let header = ["latency (ms)", "count"] + Self.percentiles.map(\.label) + ["max"]
        var table: [[String]] = [header]
        for (name, histogram) in [("INVITE->200", inviteToOK), ("BYE->200", byeToOK)] {
            var row = [name, "\(histogram.count)"]
            for p in Self.percentiles {
                row.append(histogram.count == 0 ? "-" : milliseconds(histogram.percentile(p.value)))
            }
            row.append(histogram.count == 0 ? "-" : milliseconds(histogram.max))
            table.append(row)
        }
        out += columns(table)

        if let ramp, !ramp.isEmpty {
            out += "\n"
            let recorded = ramp.contains { $0.srs != nil }
            var steps: [[String]] = [["ramp (calls/s)", "completed", "failed", "verdict"] + (recorded ? ["recording"] : [])]
            for step in ramp {
                var row = [reportFixed(step.rate, 1), "\(step.completed)", "\(step.failed)", step.verdict.rawValue]
                if recorded {
                    row.append(step.srs == nil ? "-" : step.recordingProblems.isEmpty ? "ok" : counted(step.recordingProblems.count, "problem"))
                }
                steps.append(row)
            }
            out += columns(steps, firstLeft: false)
        }

        if let srs {
            out += "\nSRS" + (srsRejectStatus.map { " (rejecting every recording INVITE with \($0))" } ?? "") + "\n"
            for line in srs.tableLines() { out += "  " + displayable(line) + "\n" }
        }

        if !recordingProblems.isEmpty {
            out += "\nrecording problems\n"
            for problem in recordingProblems { out += "  " + displayable(problem) + "\n" }
        }

        if !failureExamples.isEmpty {
            out += "\nfailure examples\n"
            for example in failureExamples { out += "  " + displayable(example) + "\n" }
        }
        return out
    }

    // MARK: - JSON

    /// The report as JSON: keys in a fixed order, latencies in microseconds, absent values null.
    public func renderJSON() -> String {
        var out = "{\n"
        var first = true
        func field(_ key: String, _ value: String) {
            if !first { out += ",\n" }
            first = false
            out += "  " + reportJSONString(key) + ": " + value
        }
        field("target", reportJSONString(target))
        field("rateOffered", reportJSONNumber(rateOffered))
        field("durationSeconds", reportJSONNumber(durationSeconds))
        field("callsAttempted", "\(callsAttempted)")
        field("callsCompleted", "\(callsCompleted)")
        field("callsFailed", "\(callsFailed)")
        let reasons = FailureReason.allCases.map { reportJSONString($0.rawValue) + ": \(failures[$0] ?? 0)" }
        field("failures", "{" + reasons.joined(separator: ", ") + "}")
        if failureExamples.isEmpty {
            field("failureExamples", "[]")
        } else {
            field("failureExamples", "[\n" + failureExamples.map { "    " + reportJSONString($0) }.joined(separator: ",\n") + "\n  ]")
        }
        field("retransmissions", "\(retransmissions)")
        field("callsPerSecond", reportJSONNumber(callsPerSecond))
        field(
            "latencyMicroseconds",
            "{\n    \"inviteToOK\": " + jsonHistogram(inviteToOK) + ",\n    \"byeToOK\": " + jsonHistogram(byeToOK) + "\n  }")
        field("proxyCPUSecondsPer1000Calls", proxyCPUSecondsPer1000Calls.map(reportJSONNumber) ?? "null")
        field("proxyPeakMemoryKilobytes", proxyPeakMemoryKilobytes.map { "\($0)" } ?? "null")
        field("replayCPUSecondsPer1000Calls", replayCPUSecondsPer1000Calls.map(reportJSONNumber) ?? "null")
        field("peakConcurrentCalls", "\(peakConcurrentCalls)")
        if let srs {
            field("srs", srs.renderJSON(indent: "  "))
            field("srsRejectStatus", srsRejectStatus.map { "\($0)" } ?? "null")
            field("srsDrainSeconds", srsDrainSeconds.map(reportJSONNumber) ?? "null")
            field("recordingProblems", jsonStrings(recordingProblems, indent: "  "))
        }
        if let ramp {
            if ramp.isEmpty {
                field("ramp", "[]")
            } else {
                let steps = ramp.map {
                    var step = "    {\"rate\": \(reportJSONNumber($0.rate)), \"completed\": \($0.completed), \"failed\": \($0.failed), \"verdict\": \(reportJSONString($0.verdict.rawValue))"
                    if let srs = $0.srs {
                        step += ", \"recordingProblems\": " + jsonStrings($0.recordingProblems, indent: "    ")
                        step += ", \"srs\": " + srs.renderJSON(indent: "    ")
                    }
                    return step + "}"
                }
                field("ramp", "[\n" + steps.joined(separator: ",\n") + "\n  ]")
            }
        } else {
            field("ramp", "null")
        }
        field("highestZeroFailureRate", highestZeroFailureRate.map(reportJSONNumber) ?? "null")
        field("exitStatus", "\(exitStatus)")
        out += "\n}\n"
        return out
    }

    /// A JSON array of strings: [] when empty, else one string a line under `indent`.
    private func jsonStrings(_ strings: [String], indent: String) -> String {
        if strings.isEmpty { return "[]" }
        return "[\n" + strings.map { indent + "  " + reportJSONString($0) }.joined(separator: ",\n") + "\n" + indent + "]"
    }

    private func jsonHistogram(_ h: LatencyHistogram) -> String {
        var parts = ["\"count\": \(h.count)", "\"clamped\": \(h.clamped)"]
        let empty = h.count == 0
        parts.append("\"min\": " + (empty ? "null" : "\(h.min)"))
        parts.append("\"mean\": " + (empty ? "null" : reportJSONNumber((h.mean * 10).rounded() / 10)))
        for p in Self.percentiles {
            parts.append(reportJSONString(p.label) + ": " + (empty ? "null" : "\(h.percentile(p.value))"))
        }
        parts.append("\"max\": " + (empty ? "null" : "\(h.max)"))
        return "{" + parts.joined(separator: ", ") + "}"
    }
}

// MARK: - SRS statistics of a run

extension SRSStatistics {
    /// The counts (every field but the two session gauges), for subtracting and adding.
    static var countFields: [WritableKeyPath<SRSStatistics, Int>] {
        [
            \.sessionsOffered, \.sessionsAnswered, \.sessionsEndedByBye, \.sessionsCancelled, \.sessionsWithoutACK,
            \.reInvitesAnswered, \.updatesAnswered, \.requestsRejected, \.metadataPartsSeen, \.metadataPartsMissing,
            \.responseRetransmissions, \.requestRetransmissions, \.unreadableMessages,
        ]
    }

    /// What happened since `before` (counts and rejections subtracted); the gauges as they are now.
    public func since(_ before: SRSStatistics) -> SRSStatistics {
        var result = self
        for field in Self.countFields { result[keyPath: field] -= before[keyPath: field] }
        for (reason, count) in before.rejections {
            let left = (result.rejections[reason] ?? 0) - count
            result.rejections[reason] = left > 0 ? left : nil
        }
        return result
    }

    /// Consecutive runs' statistics as one: counts and rejections added, the last run's active
    /// sessions, the highest peak. Nil for none.
    static func merged(_ runs: [SRSStatistics]) -> SRSStatistics? {
        guard var result = runs.first else { return nil }
        for run in runs.dropFirst() {
            for field in countFields { result[keyPath: field] += run[keyPath: field] }
            for (reason, count) in run.rejections { result.rejections[reason, default: 0] += count }
            result.activeSessions = run.activeSessions
            result.peakActiveSessions = Swift.max(result.peakActiveSessions, run.peakActiveSessions)
        }
        return result
    }
}

// MARK: - Formatting helpers

/// "1 session", "3 sessions".
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)" + (n == 1 ? "" : "s") }

/// A JSON string literal: quotes, backslashes and control characters escaped (RFC 8259 §7).
func reportJSONString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\u{2028}" || scalar == "\u{2029}" {
                out += "\\u" + hex4(scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

private func hex4(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: false)
    return String(repeating: "0", count: Swift.max(0, 4 - digits.count)) + digits
}

/// A JSON number; null for NaN and infinities, which JSON cannot express.
func reportJSONNumber(_ value: Double) -> String {
    guard value.isFinite else { return "null" }
    if value == value.rounded(), abs(value) < 1e15 { return "\(Int(value)).0" }
    return "\(value)"
}

/// `value` with exactly `decimals` digits after the point, rounded half away from zero.
func reportFixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9e18 else { return "\(value)" }
    let units = Int(scaled)
    let divisor = Int(scale)
    let whole = units / divisor
    let fraction = units % divisor
    var text = (value < 0 && units != 0 ? "-" : "") + "\(whole)"
    if decimals > 0 {
        let digits = "\(fraction)"
        text += "." + String(repeating: "0", count: decimals - digits.count) + digits
    }
    return text
}

/// Microseconds as milliseconds with three decimals, exactly.
private func milliseconds(_ microseconds: Int) -> String {
    let sign = microseconds < 0 ? "-" : ""
    let magnitude = abs(microseconds)
    let fraction = "\(magnitude % 1000)"
    return sign + "\(magnitude / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

/// Text safe to print on one line: control characters shown as escapes.
private func displayable(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "\\x" + String(repeating: "0", count: scalar.value < 16 ? 1 : 0) + String(scalar.value, radix: 16)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}

private func pad(_ text: String, _ width: Int) -> String {
    text + String(repeating: " ", count: Swift.max(0, width - text.count))
}

private func padLeft(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: Swift.max(0, width - text.count)) + text
}

/// Rows as columns: the first column left-aligned (unless told), the others right-aligned, two spaces apart.
private func columns(_ rows: [[String]], firstLeft: Bool = true) -> String {
    let count = rows.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: count)
    for row in rows {
        for (i, cell) in row.enumerated() { widths[i] = Swift.max(widths[i], cell.count) }
    }
    var out = ""
    for row in rows {
        var line = ""
        for (i, cell) in row.enumerated() {
            if i == 0 {
                line += firstLeft ? pad(cell, widths[i]) : padLeft(cell, widths[i])
            } else {
                line += "  " + padLeft(cell, widths[i])
            }
        }
        while line.hasSuffix(" ") { line.removeLast() }
        out += line + "\n"
    }
    return out
}
