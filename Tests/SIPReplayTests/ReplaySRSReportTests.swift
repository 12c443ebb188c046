import Foundation
@testable import SIPReplayKit
import Testing

// The report of a recorded replay: the SRS section of the table, the "srs" object and the
// recording problems in the JSON, the exit status, and the ramp failing a step on them.

private func statistics(offered: Int, answered: Int, ended: Int, active: Int = 0, peak: Int = 1) -> SRSStatistics {
    var s = SRSStatistics()
    s.sessionsOffered = offered
    s.sessionsAnswered = answered
    s.sessionsEndedByBye = ended
    s.reInvitesAnswered = ended
    s.metadataPartsSeen = offered + ended
    s.activeSessions = active
    s.peakActiveSessions = peak
    return s
}

/// The value at `key` of a parsed object.
private func member(_ value: JSONValue?, _ key: String) -> JSONValue? {
    guard case .object(let members)? = value else { return nil }
    return members.first { $0.key == key }?.value
}

@Suite struct ReplaySRSReportTests {
    static func recordedReport() -> ReplayReport {
        var srs = statistics(offered: 5, answered: 4, ended: 3, active: 1, peak: 3)
        srs.requestsRejected = 1
        srs.rejections = ["488 No m= line in SDP offer": 1]
        let problems = ReplayReport.recordingProblems(
            srs, sessionsAwaitingACK: 0, sessionsLeftActive: 1, drainSeconds: 5.01)
        return ReplayReport(
            target: "udp:127.0.0.1:5060", rateOffered: 20, callsAttempted: 5, callsCompleted: 5, durationSeconds: 5.3,
            srs: srs, srsDrainSeconds: 5.01, recordingProblems: problems)
    }

    @Test func recordingProblemsAreReasonLines() {
        let clean = statistics(offered: 3, answered: 3, ended: 3)
        #expect(ReplayReport.recordingProblems(clean) == [])
        var s = clean
        s.sessionsWithoutACK = 1
        s.requestsRejected = 4
        s.rejections = ["503 Service Unavailable": 3, "400 Missing rs-metadata part": 1]
        #expect(
            ReplayReport.recordingProblems(
                s, expectedRejectStatus: nil, sessionsAwaitingACK: 2, sessionsLeftActive: 3, sessionsLeftPending: 1,
                drainSeconds: 5.04) == [
                    "recording: 4 requests rejected by the SRS (503 Service Unavailable: 3, 400 Missing rs-metadata part: 1)",
                    "recording: 3 sessions never ACKed",
                    "recording: 1 session still active 5.0 s after the last call ended",
                    "recording: 1 recording INVITE still unanswered 5.0 s after the last call ended",
                ])
        // --srs-reject 503: those are expected, the 400 is not.
        #expect(
            ReplayReport.recordingProblems(s, expectedRejectStatus: 503) == [
                "recording: 1 request rejected by the SRS (400 Missing rs-metadata part: 1)",
                "recording: 1 session never ACKed",
            ])
        s.rejections = ["503 Service Unavailable": 3]
        s.sessionsWithoutACK = 0
        #expect(ReplayReport.recordingProblems(s, expectedRejectStatus: 503) == [])
        #expect(ReplayReport.recordingProblems(s, expectedRejectStatus: 500) != [], "503 is not 500")
    }

    @Test func statisticsOfARunAndOfSeveralRuns() {
        var before = statistics(offered: 2, answered: 2, ended: 1, active: 1, peak: 2)
        before.rejections = ["503 Service Unavailable": 1, "421 Extension Required": 1]
        var after = statistics(offered: 7, answered: 6, ended: 6, active: 0, peak: 4)
        after.rejections = ["503 Service Unavailable": 1, "421 Extension Required": 3]
        let run = after.since(before)
        #expect(run.sessionsOffered == 5 && run.sessionsAnswered == 4 && run.sessionsEndedByBye == 5)
        #expect(run.activeSessions == 0 && run.peakActiveSessions == 4, "gauges as they are at the end")
        #expect(run.rejections == ["421 Extension Required": 2], "unchanged reasons dropped")

        let merged = SRSStatistics.merged([before, run])
        #expect(merged?.sessionsOffered == 7 && merged?.sessionsEndedByBye == 6)
        #expect(merged?.rejections == ["503 Service Unavailable": 1, "421 Extension Required": 3])
        #expect(merged?.activeSessions == 0, "the last run's")
        #expect(merged?.peakActiveSessions == 4, "the highest")
        #expect(SRSStatistics.merged([]) == nil)
    }

    @Test func tableHasTheSRSSectionAndTheProblems() {
        let table = Self.recordedReport().renderTable()
        #expect(table.contains("\nSRS drain        5.01 s after the last call\n"))
        #expect(table.contains("\nSRS\n  sessions offered "))
        #expect(table.contains("\n  active sessions                         1\n"))
        #expect(table.contains("\n    rejected 488 No m= line in SDP offer  1\n"))
        #expect(
            table.hasSuffix(
                "\nrecording problems\n"
                    + "  recording: 1 request rejected by the SRS (488 No m= line in SDP offer: 1)\n"
                    + "  recording: 1 session still active 5.0 s after the last call ended\n"))
        #expect(!ReplayReport(target: "x", rateOffered: 1).renderTable().contains("SRS"))
    }

    @Test func jsonHasTheSRSObjectAndTheProblems() throws {
        let report = Self.recordedReport()
        #expect(report.exitStatus == 1, "every call completed, but the recording had problems")
        let json = report.renderJSON()
        let parsed = try JSONChecker.parse(json)
        guard case .object(let top) = parsed else {
            Issue.record("not an object")
            return
        }
        let keys = top.map(\.key)
        let at = try #require(keys.firstIndex(of: "peakConcurrentCalls"))
        #expect(Array(keys[at...]) == [
            "peakConcurrentCalls", "srs", "srsRejectStatus", "srsDrainSeconds", "recordingProblems", "ramp",
            "highestZeroFailureRate", "exitStatus",
        ])
        let srs = member(parsed, "srs")
        #expect(member(srs, "sessionsOffered") == .number("5"))
        #expect(member(srs, "activeSessions") == .number("1"))
        #expect(member(srs, "rejections") == .object([(key: "488 No m= line in SDP offer", value: .number("1"))]))
        #expect(member(parsed, "srsRejectStatus") == .null)
        #expect(member(parsed, "srsDrainSeconds") == .number("5.01"))
        #expect(member(parsed, "recordingProblems") == .array(report.recordingProblems.map { .string($0) }))
        #expect(member(parsed, "exitStatus") == .number("1"))
        // Foundation reads it too.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect((object["srs"] as? [String: Any])?["sessionsAnswered"] as? Int == 4)
        // A clean recorded run: exit 0, an empty list.
        var clean = report
        clean.recordingProblems = []
        #expect(clean.exitStatus == 0)
        #expect(clean.renderJSON().contains("\n  \"recordingProblems\": [],\n"))
    }

    /// A ramp step with an SRS: calls never fail, but above `capacity` sessions stay active.
    static func recordedStep(capacity: Double) -> (Double, Int) -> ReplayReport {
        { rate, calls in
            let leftActive = rate > capacity ? 2 : 0
            let srs = statistics(offered: calls, answered: calls, ended: calls - leftActive, active: leftActive)
            return ReplayReport(
                target: "udp:127.0.0.1:5060", rateOffered: rate, callsAttempted: calls, callsCompleted: calls,
                durationSeconds: 1, srs: srs, srsDrainSeconds: rate > capacity ? 5 : 0.3,
                recordingProblems: ReplayReport.recordingProblems(srs, sessionsLeftActive: leftActive, drainSeconds: 5))
        }
    }

    @Test func theRampFailsAStepWithRecordingProblems() throws {
        let options = RampOptions(startRate: 100, factor: 2, stepSeconds: 1, maxRate: 5000)
        let report = runRamp(options, step: Self.recordedStep(capacity: 300), settle: {})
        // 100, 200 pass; 400 leaves sessions active; 300 passes.
        let ramp = try #require(report.ramp)
        #expect(ramp.map(\.rate) == [100, 200, 400, 300])
        #expect(ramp.map(\.verdict) == [.pass, .pass, .fail, .pass])
        #expect(ramp.map(\.failed) == [0, 0, 0, 0], "no call failed: the recording failed the step")
        #expect(ramp[2].recordingProblems == ["recording: 2 sessions still active 5.0 s after the last call ended"])
        #expect(ramp.map { $0.srs?.sessionsOffered } == [100, 200, 400, 300])
        #expect(report.highestZeroFailureRate == 300)
        #expect(report.recordingProblems == ["at 400.0 calls/s: recording: 2 sessions still active 5.0 s after the last call ended"])
        #expect(report.srs?.sessionsOffered == 1000)
        #expect(report.srs?.sessionsEndedByBye == 998)
        #expect(report.srs?.activeSessions == 0, "the last step's")
        #expect(report.srsDrainSeconds == 5, "the longest drain")
        #expect(report.exitStatus == 0, "a step passed")
        let table = report.renderTable()
        #expect(table.contains("ramp (calls/s)  completed  failed  verdict  recording\n"))
        #expect(table.contains("400.0        400       0     fail  1 problem\n         300.0        300       0     pass         ok\n"))
        let parsed = try JSONChecker.parse(report.renderJSON())
        guard case .array(let steps)? = member(parsed, "ramp") else {
            Issue.record("no ramp array")
            return
        }
        #expect(steps.count == 4)
        #expect(member(steps[2], "verdict") == .string("fail"))
        #expect(member(steps[2], "recordingProblems") == .array([.string(ramp[2].recordingProblems[0])]))
        #expect(member(member(steps[2], "srs"), "activeSessions") == .number("2"))
        #expect(member(member(steps[0], "srs"), "sessionsOffered") == .number("100"))
    }

    @Test func aRampWhoseEveryStepHasRecordingProblemsExitsWith1() {
        let report = runRamp(RampOptions(startRate: 100, stepSeconds: 1), step: Self.recordedStep(capacity: 10), settle: {})
        #expect(report.ramp?.map(\.verdict) == [.fail])
        #expect(report.callsFailed == 0)
        #expect(report.highestZeroFailureRate == nil)
        #expect(report.exitStatus == 1)
    }
}
