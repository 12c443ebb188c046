// ReplayRamp: finds the highest rate a proxy takes without a failed call. Fixed-rate steps of a
// few seconds each, the rate multiplied by a factor after every passing step, until a step has a
// failed call (or, recording to the replay's SRS, a recording problem) or the next rate would pass
// the maximum; then one more step at the mean of the last passing and the first failing rate.

/// How to ramp.
public struct RampOptions: Sendable, Equatable {
    /// The first step's rate, calls per second.
    public var startRate: Double
    /// Each step's rate over the one before.
    public var factor: Double
    public var stepSeconds: Double
    /// No step runs above this rate.
    public var maxRate: Double
    /// The pause between steps, for late messages to drain.
    public var settleMilliseconds: Int

    public init(
        startRate: Double = 100, factor: Double = 1.5, stepSeconds: Double = 5, maxRate: Double = 5000,
        settleMilliseconds: Int = 1000
    ) {
        self.startRate = startRate
        self.factor = factor
        self.stepSeconds = stepSeconds
        self.maxRate = maxRate
        self.settleMilliseconds = settleMilliseconds
    }

    /// Why these options cannot ramp, or nil when they can.
    public var problem: String? {
        guard startRate > 0, startRate.isFinite else { return "--ramp-start must be positive" }
        guard factor > 1, factor.isFinite else { return "--ramp-factor must be above 1" }
        guard stepSeconds > 0, stepSeconds.isFinite else { return "--ramp-step-seconds must be positive" }
        guard maxRate >= startRate, maxRate.isFinite else { return "--ramp-max must be at least --ramp-start" }
        guard settleMilliseconds >= 0 else { return "the settle pause must not be negative" }
        return nil
    }

    /// The calls of a step at `rate`: rate × step seconds, at least one.
    public func calls(at rate: Double) -> Int {
        Swift.max(1, Int((rate * stepSeconds).rounded()))
    }
}

/// Runs a ramp: `step(rate, calls)` replays one fixed-rate step and returns its report, `settle()`
/// pauses between steps. Returns the steps merged into one report with `ramp` and
/// `highestZeroFailureRate` set (its `rateOffered` the highest rate offered).
public func runRamp(
    _ options: RampOptions, step: (_ rate: Double, _ calls: Int) -> ReplayReport, settle: () -> Void
) -> ReplayReport {
    var reports: [ReplayReport] = []
    var steps: [RampStep] = []
    func run(_ rate: Double) -> RampStep {
        if !reports.isEmpty { settle() }
        let report = step(rate, options.calls(at: rate))
        reports.append(report)
        let passed = report.callsFailed == 0 && report.callsCompleted > 0 && report.recordingProblems.isEmpty
        let result = RampStep(
            rate: rate, completed: report.callsCompleted, failed: report.callsFailed, verdict: passed ? .pass : .fail,
            recordingProblems: report.recordingProblems, srs: report.srs)
        steps.append(result)
        return result
    }

    var rate = options.startRate
    var lastPass: Double?
    var firstFail: Double?
    while rate <= options.maxRate {
        if run(rate).verdict == .pass {
            lastPass = rate
            rate *= options.factor
        } else {
            firstFail = rate
            break
        }
    }
    if let lastPass, let firstFail {
        _ = run((lastPass + firstFail) / 2)
    }
    return mergedRampReport(reports, steps: steps)
}

/// The ramp's steps as one report: counts, failures, retransmissions and latencies summed, the
/// proxy's and sip-replay's CPU per 1000 calls weighted by each step's calls, the proxy's peak
/// memory and the concurrent calls the highest; the SRS's statistics merged (counts summed, the
/// last step's active sessions, the highest peak), the longest drain, and each step's recording
/// problems prefixed with its rate.
func mergedRampReport(_ reports: [ReplayReport], steps: [RampStep]) -> ReplayReport {
    var merged = ReplayReport(
        target: reports.first?.target ?? "", rateOffered: steps.map(\.rate).max() ?? 0, ramp: steps)
    var cpuWeighted = 0.0
    var cpuCalls = 0
    var replayCPUWeighted = 0.0
    var replayCPUCalls = 0
    for report in reports {
        merged.callsAttempted += report.callsAttempted
        merged.callsCompleted += report.callsCompleted
        merged.callsFailed += report.callsFailed
        for (reason, n) in report.failures { merged.failures[reason, default: 0] += n }
        for example in report.failureExamples where merged.failureExamples.count < 10 {
            merged.failureExamples.append(example)
        }
        merged.retransmissions += report.retransmissions
        merged.inviteToOK.merge(report.inviteToOK)
        merged.byeToOK.merge(report.byeToOK)
        merged.durationSeconds += report.durationSeconds
        if let cpu = report.proxyCPUSecondsPer1000Calls, cpu.isFinite {
            cpuWeighted += cpu * Double(report.callsAttempted)
            cpuCalls += report.callsAttempted
        }
        if let cpu = report.replayCPUSecondsPer1000Calls, cpu.isFinite {
            replayCPUWeighted += cpu * Double(report.callsAttempted)
            replayCPUCalls += report.callsAttempted
        }
        merged.peakConcurrentCalls = Swift.max(merged.peakConcurrentCalls, report.peakConcurrentCalls)
        if let memory = report.proxyPeakMemoryKilobytes {
            merged.proxyPeakMemoryKilobytes = Swift.max(merged.proxyPeakMemoryKilobytes ?? 0, memory)
        }
        if let drain = report.srsDrainSeconds {
            merged.srsDrainSeconds = Swift.max(merged.srsDrainSeconds ?? 0, drain)
        }
        merged.srsRejectStatus = merged.srsRejectStatus ?? report.srsRejectStatus
        merged.recordingProblems += report.recordingProblems.map { "at \(reportFixed(report.rateOffered, 1)) calls/s: \($0)" }
    }
    merged.srs = SRSStatistics.merged(reports.compactMap(\.srs))
    if cpuCalls > 0 { merged.proxyCPUSecondsPer1000Calls = cpuWeighted / Double(cpuCalls) }
    if replayCPUCalls > 0 { merged.replayCPUSecondsPer1000Calls = replayCPUWeighted / Double(replayCPUCalls) }
    merged.highestZeroFailureRate = steps.filter { $0.verdict == .pass }.map(\.rate).max()
    return merged
}
