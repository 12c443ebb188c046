import Glibc
import SIPEdgeIO
import SIPMessage
@testable import SIPReplayKit
import Testing

// A replay with its SRS: the calls go through the test relay, and a fake recording client (SRC)
// on the engine's loop does what the proxy does for each of them: on the call's 200 (INVITE) it
// opens a recording session at the engine's SRS, and after the call's 200 (BYE) it ends it with a
// BYE; or, as told, misbehaves (no ACK, no BYE, no Require: siprec).

/// What the fake SRC does (the proxy's part by default) and leaves out.
struct SRCBehaviour {
    var ack = true
    var bye = true
    var requireSiprec = true

    static let complete = SRCBehaviour()
}

final class FakeSRC {
    let loop: EventLoop
    let relay: Relay
    let srs: SocketAddress
    let behaviour: SRCBehaviour
    /// The BYE goes this long after the call's 200 (BYE).
    let byeDelayMilliseconds: Int
    var socket: UDPSocket!
    var poll: LoopTimer?
    var scanned = 0
    var sessions = 0
    /// The SRS's To tag by recording Call-ID.
    var toTags: [String: String] = [:]
    var byes: [LoopTimer] = []

    init(loop: EventLoop, relay: Relay, srs: SocketAddress, behaviour: SRCBehaviour, byeDelayMilliseconds: Int = 0) throws {
        self.loop = loop
        self.relay = relay
        self.srs = srs
        self.behaviour = behaviour
        self.byeDelayMilliseconds = byeDelayMilliseconds
        socket = try UDPSocket(loop: loop, bindTo: SocketAddress(ipAddress: "127.0.0.1", port: 0)) { [unowned self] received in
            guard let message = try? SIPMessage(parsing: received.bytes), !message.isRequest else { return }
            self.response(message)
        }
        poll = loop.scheduleRepeating(everyMilliseconds: 2) { [unowned self] in self.scan() }
    }

    func close() {
        poll?.cancel()
        for timer in byes { timer.cancel() }
        socket.close()
    }

    /// The calls' messages relayed since the last look: a 200 (INVITE) opens a recording, a 200
    /// (BYE) ends it.
    func scan() {
        while scanned < relay.relayed.count {
            let item = relay.relayed[scanned]
            scanned += 1
            guard !item.towardCallee, item.message.statusCode == 200, let callID = item.header(.callID) else { continue }
            let recordingID = "rec-" + callID
            switch item.label {
            case "200 (INVITE)":
                sessions += 1
                send("INVITE", recordingID, cseq: 1, branch: "z9hG4bK-\(recordingID)-1")
            case "200 (BYE)":
                guard behaviour.bye else { continue }
                byes.append(
                    loop.scheduleOnce(afterMilliseconds: max(1, byeDelayMilliseconds)) { [unowned self] in
                        // Like the proxy: only an answered session gets a BYE.
                        guard self.toTags[recordingID] != nil else { return }
                        self.send("BYE", recordingID, cseq: 2, branch: "z9hG4bK-\(recordingID)-2")
                    })
            default: break
            }
        }
    }

    func response(_ message: SIPMessage) {
        guard message.statusCode == 200, let cseq = message.cseq, message.text(cseq.methodRange) == "INVITE",
            let callID = message.headerValue(.callID), let tag = message.toTag
        else { return }
        toTags[callID] = message.text(tag)
        if behaviour.ack { send("ACK", callID, cseq: 1, branch: "z9hG4bK-\(callID)-ack") }
    }

    func send(_ method: String, _ callID: String, cseq: Int, branch: String) {
        let target = "sip:srs@\(srs)"
        var text = "\(method) \(target) SIP/2.0\r\n"
        text += "Via: SIP/2.0/UDP 127.0.0.1:\(socket.localAddress.port);branch=\(branch);rport\r\n"
        text += "Max-Forwards: 70\r\nFrom: <\(target)>;tag=src-\(callID)\r\n"
        text += "To: <\(target)>" + (method == "INVITE" ? "" : ";tag=\(toTags[callID] ?? "none")") + "\r\n"
        text += "Call-ID: \(callID)\r\nCSeq: \(cseq) \(method)\r\n"
        var body = ""
        if method == "INVITE" {
            text += "Contact: <sip:127.0.0.1:\(socket.localAddress.port)>;+sip.src\r\n"
            if behaviour.requireSiprec { text += "Require: siprec\r\n" }
            text += "Content-Type: multipart/mixed;boundary=rec\r\n"
            body = "--rec\r\nContent-Type: application/sdp\r\n\r\n"
                + "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                + "m=audio 30000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
                + "--rec\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
                + "<?xml version=\"1.0\"?><recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">"
                + "<datamode>complete</datamode></recording>\r\n--rec--\r\n"
        }
        text += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        socket.send(Array(text.utf8), to: srs)
    }
}

/// Replays `calls` answered calls through the relay with the engine's SRS and the fake SRC.
func recordedReplay(
    calls: Int, behaviour: SRCBehaviour = .complete, byeDelay: Int = 0, rejectStatus: Int? = nil,
    drainLimit: Int = 5000, runs: Int = 1
) throws -> (reports: [ReplayReport], src: FakeSRC) {
    let port = freePort()
    let srsOptions = ReplaySRSOptions(
        port: freePort(), rejectStatus: rejectStatus, drainLimitMilliseconds: drainLimit, quietMilliseconds: 100)
    let options = ReplayOptions(
        targetHost: "127.0.0.1", targetPort: port, rate: 100, calls: calls, calleePort: freePort(),
        timeoutMilliseconds: 2000, srs: srsOptions)
    let engine = try ReplayEngine(templates: try answeredCall().templates("recorded.pcap"), options: options)
    let relay = try Relay(loop: engine.loop, port: port, calleePort: engine.calleeAddress.port, transport: .udp)
    let srs = try #require(engine.srs)
    #expect(srs.localAddress.port == srsOptions.port && srs.listensOnTCP)
    let src = try FakeSRC(
        loop: engine.loop, relay: relay, srs: srs.localAddress, behaviour: behaviour, byeDelayMilliseconds: byeDelay)
    var reports: [ReplayReport] = []
    for run in 0..<runs {
        if run > 0 {
            engine.settle(milliseconds: 20)
            engine.reset(rate: 100, calls: calls)
        }
        reports.append(engine.run())
    }
    src.close()
    engine.close()
    relay.close()
    return (reports, src)
}

@Suite(.serialized) struct ReplaySRSRunTests {
    @Test func aRecordedRunWaitsForTheSessionsToEndAndReportsThem() throws {
        // The SRC's BYEs go 300 ms after the calls' 200 (BYE): the run waits for them.
        let (reports, src) = try recordedReplay(calls: 3, byeDelay: 300)
        let report = try #require(reports.first)
        #expect(report.callsCompleted == 3 && report.callsFailed == 0, "\(report.failureExamples)")
        #expect(src.sessions == 3)
        let srs = try #require(report.srs)
        #expect(srs.sessionsOffered == 3 && srs.sessionsAnswered == 3 && srs.sessionsEndedByBye == 3, "\(srs)")
        #expect(srs.metadataPartsSeen == 3 && srs.activeSessions == 0 && srs.peakActiveSessions >= 1, "\(srs)")
        #expect(srs.rejections.isEmpty)
        #expect(report.recordingProblems == [])
        #expect(report.exitStatus == 0)
        let drain = try #require(report.srsDrainSeconds)
        #expect(drain >= 0.3 && drain < 2, "waited for the BYEs, then the quiet time: \(drain) s")
        let json = report.renderJSON()
        guard case .object(let top) = try JSONChecker.parse(json) else {
            Issue.record("not an object")
            return
        }
        #expect(top.map(\.key).contains("srs"))
        #expect(report.renderTable().contains("\nSRS\n  sessions offered "))
    }

    @Test func eachRunReportsItsOwnSessionsOnTheSameSRS() throws {
        let (reports, src) = try recordedReplay(calls: 2, runs: 2)
        #expect(src.sessions == 4)
        #expect(reports.map { $0.srs?.sessionsOffered } == [2, 2], "counts of each run only")
        #expect(reports.map { $0.srs?.sessionsEndedByBye } == [2, 2])
        #expect(reports.allSatisfy { $0.recordingProblems.isEmpty && $0.exitStatus == 0 })
    }

    @Test func sessionsNeverEndedMakeTheRunFailAfterTheBoundedDrain() throws {
        let (reports, _) = try recordedReplay(calls: 2, behaviour: SRCBehaviour(bye: false), drainLimit: 400)
        let report = try #require(reports.first)
        #expect(report.callsCompleted == 2 && report.callsFailed == 0)
        #expect(report.srs?.activeSessions == 2)
        let drain = try #require(report.srsDrainSeconds)
        #expect(drain >= 0.4 && drain < 1.5, "bounded by the drain limit: \(drain) s")
        #expect(report.recordingProblems.count == 1)
        #expect(report.recordingProblems.first?.hasPrefix("recording: 2 sessions still active 0.") == true, "\(report.recordingProblems)")
        #expect(report.exitStatus == 1)
        #expect(report.renderTable().contains("\nrecording problems\n  recording: 2 sessions still active"))
    }

    @Test func sessionsNeverACKedMakeTheRunFail() throws {
        // The SRS still resends its 200s when the drain gives up: never ACKed (and not counted
        // again as still active).
        let (reports, _) = try recordedReplay(calls: 2, behaviour: SRCBehaviour(ack: false, bye: false), drainLimit: 400)
        let report = try #require(reports.first)
        #expect(report.callsCompleted == 2 && report.callsFailed == 0)
        #expect(report.srs?.sessionsAnswered == 2 && report.srs?.activeSessions == 2)
        #expect(report.recordingProblems == ["recording: 2 sessions never ACKed"])
        #expect(report.exitStatus == 1)
    }

    @Test func rejectionsNotAskedForFailTheRunAndAskedOnesDoNot() throws {
        let (unasked, _) = try recordedReplay(calls: 2, behaviour: SRCBehaviour(requireSiprec: false))
        let report = try #require(unasked.first)
        #expect(report.callsCompleted == 2)
        #expect(report.srs?.rejections == ["421 Extension Required": 2])
        #expect(report.recordingProblems == ["recording: 2 requests rejected by the SRS (421 Extension Required: 2)"])
        #expect(report.exitStatus == 1)

        let (asked, _) = try recordedReplay(calls: 2, rejectStatus: 503)
        let rejected = try #require(asked.first)
        #expect(rejected.srs?.rejections == ["503 Service Unavailable": 2])
        #expect(rejected.srs?.sessionsAnswered == 0)
        #expect(rejected.srsRejectStatus == 503)
        #expect(rejected.recordingProblems == [])
        #expect(rejected.exitStatus == 0)
        #expect(rejected.renderTable().contains("\nSRS (rejecting every recording INVITE with 503)\n"))
    }
}
