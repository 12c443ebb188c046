import Glibc
@testable import SIPReplayKit
import Testing

@Suite struct ReplayEngineTests {
    @Test func stepsOfTheSDPExampleKeepOrderRolesAndBodies() throws {
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_SIP-SDP-Example.pcap")
        let templates = replayableTemplates(capture.templates)
        #expect(templates.count == 1)
        let steps = replaySteps(try #require(templates.first))
        let labels = steps.map { ($0.statusCode.map { "\($0) " } ?? "") + $0.method }
        #expect(labels == ["INVITE", "100 INVITE", "180 INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"])
        #expect(steps.map(\.role) == [.caller, .callee, .callee, .callee, .caller, .callee, .caller])
        #expect(!steps[0].body.isEmpty, "the INVITE's SDP is replayed")
        #expect(!steps[3].body.isEmpty, "the 200's SDP is replayed")
        #expect(steps[1].optionalReceipt && steps[2].optionalReceipt && !steps[3].optionalReceipt)
        #expect(steps.allSatisfy { $0.delayMilliseconds <= 2000 }, "delays are capped at 2 s")
    }

    @Test func onlyCompleteINVITECallsAreReplayed() throws {
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_uac-uas-scenario-sipp.pcapng")
        let templates = replayableTemplates(capture.templates)
        #expect(templates.count == capture.completeCalls)
        #expect(templates.count < capture.calls, "the capture's cut-off calls are left out")
    }

    @Test func replayWithNothingAtTheTargetFailsByTimeout() throws {
        // Nothing listens on 127.0.0.1:9 (discard): every call waits in vain for its INVITE.
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_uac-uas-scenario-sipp.pcapng")
        let options = ReplayOptions(
            targetHost: "127.0.0.1", targetPort: 9, rate: 50, calls: 2, calleePort: 0, timeoutMilliseconds: 300)
        let engine = try ReplayEngine(templates: capture.templates, options: options)
        let report = engine.run()
        #expect(report.callsAttempted == 2)
        #expect(report.callsCompleted == 0)
        #expect(report.failures[.timeout] == 2)
        #expect(report.exitStatus == 1)
        #expect(report.durationSeconds < 3)
    }

    @Test func resetRunsAgainOnTheSameSocketsWithAFreshReport() throws {
        let capture = try loadTemplates(path: corpusDirectory + "/goffinet_uac-uas-scenario-sipp.pcapng")
        let options = ReplayOptions(
            targetHost: "127.0.0.1", targetPort: 9, rate: 50, calls: 1, calleePort: 0, timeoutMilliseconds: 200)
        let engine = try ReplayEngine(templates: capture.templates, options: options)
        let callee = engine.calleeAddress
        #expect(engine.run().failures[.timeout] == 1)
        engine.settle(milliseconds: 50)
        engine.reset(rate: 100, calls: 2)
        let second = engine.run()
        #expect(engine.calleeAddress == callee)
        #expect(second.rateOffered == 100)
        #expect(second.callsAttempted == 2)
        #expect(second.failures[.timeout] == 2)
    }
}
