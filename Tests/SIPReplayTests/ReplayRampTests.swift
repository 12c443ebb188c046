@testable import SIPReplayKit
import Testing

@Suite struct ReplayRampTests {
    /// A fake step: calls fail above `capacity` calls per second.
    static func fakeStep(capacity: Double, log: Log) -> (Double, Int) -> ReplayReport {
        { rate, calls in
            log.steps.append((rate, calls))
            var report = ReplayReport(target: "udp:127.0.0.1:5060", rateOffered: rate, callsAttempted: calls)
            let failed = rate > capacity ? Swift.max(1, calls / 10) : 0
            report.callsCompleted = calls - failed
            for _ in 0..<failed { report.recordFailure(.timeout, example: "at \(rate)") }
            report.retransmissions = 1
            report.inviteToOK.record(1000)
            report.durationSeconds = 2
            report.proxyCPUSecondsPer1000Calls = rate > capacity ? 2 : 1
            report.proxyPeakMemoryKilobytes = Int(rate)
            report.replayCPUSecondsPer1000Calls = rate > capacity ? 0.2 : 0.1
            report.peakConcurrentCalls = Int(rate / 10)
            return report
        }
    }

    final class Log {
        var steps: [(rate: Double, calls: Int)] = []
        var settles = 0
    }

    @Test func allStepsPassUpToTheMaximum() {
        let log = Log()
        let options = RampOptions(startRate: 50, factor: 2, stepSeconds: 2, maxRate: 400)
        let report = runRamp(options, step: Self.fakeStep(capacity: 10_000, log: log), settle: { log.settles += 1 })
        #expect(log.steps.map(\.rate) == [50, 100, 200, 400])
        #expect(log.steps.map(\.calls) == [100, 200, 400, 800])
        #expect(log.settles == 3, "a pause between steps, none before the first")
        #expect(report.ramp?.map(\.verdict) == [.pass, .pass, .pass, .pass])
        #expect(report.highestZeroFailureRate == 400)
        #expect(report.callsAttempted == 1500 && report.callsCompleted == 1500 && report.callsFailed == 0)
        #expect(report.rateOffered == 400)
        #expect(report.inviteToOK.count == 4)
        #expect(report.retransmissions == 4)
        #expect(report.durationSeconds == 8)
        #expect(report.proxyPeakMemoryKilobytes == 400)
        #expect(report.exitStatus == 0)
    }

    @Test func aFailingStepStopsTheRampAndOneStepBisects() {
        let log = Log()
        let options = RampOptions(startRate: 100, factor: 2, stepSeconds: 1, maxRate: 5000)
        let report = runRamp(options, step: Self.fakeStep(capacity: 300, log: log), settle: { log.settles += 1 })
        // 100, 200 pass; 400 fails; the mean of 200 and 400 (300) passes.
        #expect(log.steps.map(\.rate) == [100, 200, 400, 300])
        #expect(report.ramp?.map(\.verdict) == [.pass, .pass, .fail, .pass])
        #expect(report.ramp?[2].failed == 40)
        #expect(report.highestZeroFailureRate == 300)
        #expect(report.callsFailed == 40)
        #expect(report.failures[.timeout] == 40)
        #expect(report.failureExamples.count == 10)
        // CPU weighted by calls: (100 + 200 + 300) × 1 + 400 × 2 over 1000 calls.
        #expect(abs((report.proxyCPUSecondsPer1000Calls ?? 0) - 1.4) < 1e-9)
        #expect(abs((report.replayCPUSecondsPer1000Calls ?? 0) - 0.14) < 1e-9, "sip-replay's own CPU weighted the same way")
        #expect(report.peakConcurrentCalls == 40, "the highest step's peak")
        #expect(report.exitStatus == 0, "a step passed")
    }

    @Test func aFailingBisectionStepKeepsTheLastPassingRate() {
        let log = Log()
        let options = RampOptions(startRate: 100, factor: 2, stepSeconds: 1, maxRate: 5000)
        let report = runRamp(options, step: Self.fakeStep(capacity: 250, log: log), settle: {})
        #expect(log.steps.map(\.rate) == [100, 200, 400, 300])
        #expect(report.ramp?.map(\.verdict) == [.pass, .pass, .fail, .fail])
        #expect(report.highestZeroFailureRate == 200)
        #expect(report.exitStatus == 0)
    }

    @Test func aFailingFirstStepEndsTheRampWithStatus1() {
        let log = Log()
        let report = runRamp(RampOptions(), step: Self.fakeStep(capacity: 10, log: log), settle: { log.settles += 1 })
        #expect(log.steps.map(\.rate) == [100])
        #expect(log.steps.map(\.calls) == [500], "defaults: 100 calls/s for 5 s")
        #expect(log.settles == 0)
        #expect(report.ramp?.map(\.verdict) == [.fail])
        #expect(report.highestZeroFailureRate == nil)
        #expect(report.exitStatus == 1)
    }

    @Test func noStepRunsAboveTheMaximum() {
        let log = Log()
        let options = RampOptions(startRate: 100, factor: 1.5, stepSeconds: 0.1, maxRate: 300)
        let report = runRamp(options, step: Self.fakeStep(capacity: 10_000, log: log), settle: {})
        #expect(log.steps.map(\.rate) == [100, 150, 225])
        #expect(log.steps.map(\.calls) == [10, 15, 23], "rate × seconds, rounded")
        #expect(report.highestZeroFailureRate == 225)
    }

    @Test func optionsAreChecked() {
        #expect(RampOptions().problem == nil)
        #expect(RampOptions(startRate: 0).problem != nil)
        #expect(RampOptions(factor: 1).problem != nil)
        #expect(RampOptions(stepSeconds: 0).problem != nil)
        #expect(RampOptions(startRate: 100, maxRate: 50).problem != nil)
        #expect(RampOptions(startRate: 0.5, stepSeconds: 0.1).calls(at: 0.5) == 1, "at least one call")
    }

    @Test func reportRendersTheHighestZeroFailureRate() throws {
        let report = ReplayReport(
            target: "x", rateOffered: 400, callsAttempted: 10, callsCompleted: 9, callsFailed: 1,
            ramp: [RampStep(rate: 200, completed: 4, failed: 0, verdict: .pass),
                   RampStep(rate: 400, completed: 5, failed: 1, verdict: .fail)],
            highestZeroFailureRate: 200)
        #expect(report.renderTable().contains("\nhighest zero-failure rate  200.0 calls/s\n"))
        let json = report.renderJSON()
        #expect(json.contains("\n  \"highestZeroFailureRate\": 200.0,\n  \"exitStatus\": 0\n}"))
        let parsed = try JSONChecker.parse(json)
        guard case .object(let top) = parsed else {
            Issue.record("not an object")
            return
        }
        #expect(top.map(\.key).suffix(3) == ["ramp", "highestZeroFailureRate", "exitStatus"])
        #expect(!ReplayReport(target: "x", rateOffered: 1).renderTable().contains("highest"))
        #expect(ReplayReport(target: "x", rateOffered: 1).renderJSON().contains("\"highestZeroFailureRate\": null,"))
    }
}
