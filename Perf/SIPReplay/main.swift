// sip-replay: reads a pcap/pcapng capture into call templates. `--summary FILE` lists what it
// found and how it would replay it, sending nothing; `--target udp|tcp:IP:PORT` replays its
// replayable calls (INVITE calls, CANCELled ones, OPTIONS, REGISTER, SUBSCRIBE ...) through a proxy,
// playing both the caller and the callee (the proxy's upstream); `--ramp` raises the rate step by
// step to find the highest rate without a failed call; `--srs-port P` also plays the SRS the
// proxy records the calls to, and counts recording problems against the run. Exit status:
// 0 when every call completed without a recording problem (ramping: when some step did), 1
// otherwise, 2 for unusable input or arguments.
import Glibc
import ArgumentParser
import SIPReplayKit

struct SIPReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sip-replay",
        abstract: "Replay the SIP calls of a pcap or pcapng capture against a proxy.",
        discussion: """
            sip-replay plays both the caller (toward --target) and the callee (on --callee-port, UDP and TCP): \
            start the proxy with --upstream pointing at the callee side (printed at start). \
            With --srs-port P it also answers the proxy's recording sessions (start the proxy with \
            --srs sip:srs@127.0.0.1:P and --rtpengine); after the last call it waits up to 5 s for them to end. \
            Exit status: 0 when every call completed and, with --srs-port, the SRS saw no recording problem \
            (a rejection not asked for with --srs-reject, a session never ACKed, one still active at the end); \
            with --ramp: when at least one step passed. 1 otherwise, 2 for unusable input or arguments.
            """)

    @Flag(help: "List the calls and messages found and how they would be replayed; send nothing.")
    var summary = false

    @Option(help: "Where to send the calls: udp:IP:PORT or tcp:IP:PORT.")
    var target: String?

    @Option(help: "New calls per second (default 10).")
    var rate: Double?

    @Option(help: "Number of calls to place (default 1).")
    var calls: Int?

    @Option(help: "Place calls for this many seconds instead of --calls (calls: rate × seconds).")
    var duration: Double?

    @Option(help: "Hold each call this many milliseconds: replaces the delay before the first request after the 2xx's ACK (the BYE, from either side), so many calls are up at once.")
    var holdMs: Int?

    @Option(help: "With a tcp: target, the TCP connections the caller side opens to it; calls take them in turn.")
    var tcpConnections: Int = 1

    @Flag(help: "Ramp the rate: fixed-rate steps until one has a failed call, then one step between the last passing and the first failing rate.")
    var ramp = false

    @Option(help: "The ramp's first rate, calls per second.")
    var rampStart: Double = 100

    @Option(help: "Each ramp step's rate over the one before.")
    var rampFactor: Double = 1.5

    @Option(help: "Seconds each ramp step lasts (its calls: rate × seconds).")
    var rampStepSeconds: Double = 5

    @Option(help: "No ramp step runs above this rate, calls per second.")
    var rampMax: Double = 5000

    @Option(help: "The callee side's port on 127.0.0.1, UDP and TCP (the proxy's upstream); default 5080 or a free port.")
    var calleePort: UInt16?

    @Option(help: "Fail a call when an expected message does not come within this many milliseconds.")
    var timeoutMs: Int = 5000

    @Option(help: "Sample the CPU and memory of this process and its descendants (a proxy's forked workers) before and after the run; the peak memory is the sum of each process's own peak.")
    var proxyPid: Int32?

    @Option(help: ArgumentHelp("Answer the proxy's SIPREC recording sessions on 127.0.0.1:P, UDP and TCP, for the whole run (start the proxy with --srs sip:srs@127.0.0.1:P); the report gains the SRS's counts and recording problems.", valueName: "P"))
    var srsPort: Int?

    @Option(help: ArgumentHelp("With --srs-port, answer every recording INVITE with this failure status (400-699), to test the proxy's failover; these rejections are then not a problem.", valueName: "CODE"))
    var srsReject: Int?

    @Option(help: ArgumentHelp("With --srs-port, send 100 and wait this many milliseconds before answering each recording INVITE.", valueName: "MS"))
    var srsAnswerDelayMs: Int?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Argument(help: "The capture (pcap or pcapng).")
    var file: String

    func run() throws {
        let capture: CaptureSummary
        do {
            capture = try loadTemplates(path: file)
        } catch {
            fail("sip-replay: \(error)")
        }
        for warning in capture.warnings { printError("sip-replay: warning: \(warning)") }
        if summary {
            print(render(capture), terminator: "")
            return
        }
        guard let target else { fail("sip-replay: --target udp:IP:PORT or tcp:IP:PORT is required (or --summary)") }
        let parts = target.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let port = UInt16(parts[2]), port != 0 else {
            fail("sip-replay: --target must be udp:IP:PORT or tcp:IP:PORT, not \(target)")
        }
        guard let transport = ReplayTransport(rawValue: String(parts[0])) else {
            fail("sip-replay: unknown transport '\(parts[0])' in --target \(target): use udp:IP:PORT or tcp:IP:PORT")
        }
        guard tcpConnections >= 1 else { fail("sip-replay: --tcp-connections must be at least 1") }
        if tcpConnections != 1, transport != .tcp { fail("sip-replay: --tcp-connections needs a tcp: target") }
        if let holdMs, holdMs < 0 { fail("sip-replay: --hold-ms must not be negative") }
        if duration != nil, self.calls != nil { fail("sip-replay: give --calls or --duration, not both") }
        if let duration, !(duration > 0 && duration.isFinite) { fail("sip-replay: --duration must be positive") }
        let rampOptions = RampOptions(
            startRate: rampStart, factor: rampFactor, stepSeconds: rampStepSeconds, maxRate: rampMax)
        if ramp {
            if self.rate != nil || self.calls != nil || duration != nil {
                fail("sip-replay: --ramp sets the rates and calls itself; drop --rate, --calls and --duration")
            }
            if let problem = rampOptions.problem { fail("sip-replay: \(problem)") }
        }
        let rate = ramp ? rampStart : self.rate ?? 10
        let calls =
            ramp ? rampOptions.calls(at: rampStart) : duration.map { max(1, Int(($0 * rate).rounded())) } ?? self.calls ?? 1
        guard rate > 0, rate.isFinite, calls > 0, timeoutMs > 0 else {
            fail("sip-replay: --rate, --calls and --timeout-ms must be positive")
        }
        var srsOptions: ReplaySRSOptions?
        if let srsPort {
            guard let port = UInt16(exactly: srsPort), port != 0 else {
                fail("sip-replay: --srs-port must be a port from 1 to 65535, not \(srsPort)")
            }
            if let srsReject, !(400...699).contains(srsReject) {
                fail("sip-replay: --srs-reject must be a failure status from 400 to 699, not \(srsReject)")
            }
            if let srsAnswerDelayMs {
                guard srsAnswerDelayMs >= 0 else { fail("sip-replay: --srs-answer-delay-ms must not be negative") }
                if srsReject != nil {
                    fail("sip-replay: --srs-answer-delay-ms delays the 200; with --srs-reject there is none to delay")
                }
            }
            if let calleePort, calleePort == port { fail("sip-replay: --srs-port and --callee-port must differ") }
            srsOptions = ReplaySRSOptions(
                port: port, rejectStatus: srsReject, answerDelayMilliseconds: srsAnswerDelayMs ?? 0)
        } else if srsReject != nil || srsAnswerDelayMs != nil {
            fail("sip-replay: --srs-reject and --srs-answer-delay-ms need --srs-port")
        }
        let templates = replayableTemplates(capture.templates)
        guard !templates.isEmpty else {
            fail("sip-replay: \(file) has no call to replay (see --summary for why each is left out)")
        }
        let options = ReplayOptions(
            targetHost: String(parts[1]), targetPort: port, rate: rate, calls: calls, calleePort: calleePort ?? 0,
            timeoutMilliseconds: timeoutMs, proxyPID: proxyPid, transport: transport, tcpConnections: tcpConnections,
            holdMilliseconds: holdMs, srs: srsOptions)
        let engine: ReplayEngine
        do {
            engine = try ReplayEngine(templates: capture.templates, options: options)
        } catch {
            fail("sip-replay: \(error)")
        }
        let upstream = "sip:\(engine.calleeAddress)" + (transport == .tcp ? ";transport=tcp" : "")
        printError(
            "sip-replay: \(templates.count) of \(capture.templates.count) calls replayable; callee side on "
                + "\(engine.calleeAddress) UDP and TCP (start the proxy with --upstream \(upstream))")
        if let srs = engine.srs {
            printError(
                "sip-replay: SRS on \(srs.localAddress) UDP and TCP (start the proxy with --srs \(srs.uri()))"
                    + (srsReject.map { ", rejecting every recording INVITE with \($0)" } ?? ""))
        }
        let report: ReplayReport
        if ramp {
            report = runRamp(
                rampOptions,
                step: { rate, calls in
                    engine.reset(rate: rate, calls: calls)
                    printError("sip-replay: ramp step: \(calls) calls at \(rate) calls/s")
                    return engine.run()
                },
                settle: { engine.settle(milliseconds: rampOptions.settleMilliseconds) })
        } else {
            report = engine.run()
        }
        engine.close()
        print(json ? report.renderJSON() : report.renderTable(), terminator: "")
        for problem in report.recordingProblems { printError("sip-replay: \(problem)") }
        Glibc.exit(report.exitStatus)
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ text: String) -> Never {
    printError(text)
    exit(2)
}

/// The `--summary` text.
func render(_ s: CaptureSummary) -> String {
    var out = ""
    out += "capture: \(s.packets) packets, link type \(s.linkType)\n"
    out += "sip: \(s.sipMessages) messages (\(s.udpSIPMessages) UDP, \(s.tcpSIPMessages) TCP, \(s.sctpSIPMessages) SCTP), "
    out += "\(s.calls) calls, \(s.completeCalls) complete, \(s.templates.count { replayProblem($0) == nil }) replayable\n"
    out += "skipped: \(s.nonSIPDatagrams) non-SIP datagrams, \(s.nonIPPackets) non-IP packets, "
    out += "\(s.truncatedPackets) truncated packets, \(s.unsupportedTransportPackets) other transports (ICMP ...), "
    out += "\(s.fragmentsSkipped) fragments; \(s.fragmentsReassembled) IPv4 datagrams reassembled, "
    out += "\(s.keepAlives) keep-alives, \(s.tcpRetransmittedSegments) TCP retransmitted segments, "
    out += "\(s.tcpUnparsableBytes) TCP bytes not SIP, \(s.webSocketFlows) WebSocket flows (unsupported)\n"
    for warning in s.warnings { out += "warning: \(warning)\n" }
    for (index, call) in s.templates.enumerated() {
        out += "\ncall \(index + 1): \(call.callID)\n"
        out += "  caller \(call.caller) -> callee \(call.callee)\n"
        var previous: TemplateMessage? = nil
        for message in call.messages {
            let arrow = message.role == .caller ? "caller -> callee" : "caller <- callee"
            let delay = String(message.delayMilliseconds)
            let pad = String(repeating: " ", count: max(0, 7 - delay.count))
            var line = "  +\(pad)\(delay) ms  \(arrow)  \(message.label)  cseq \(message.cseq)  \(message.transport)"
            if message.isRetransmission { line += "  [retransmission]" }
            out += line + "\n"
            var plan = "      would replay: \(message.role) sends \(message.label)"
            if let previous {
                plan += " after \(previous.role)'s \(previous.label)"
            } else {
                plan += " first"
            }
            if message.delayMilliseconds > 0 { plan += ", \(message.delayMilliseconds) ms later" }
            if message.isRetransmission { plan += " (retransmission)" }
            out += plan + "\n"
            previous = message
        }
        out += "  \(call.summaryLine); " + (replayProblem(call).map { "would not be replayed: \($0)" } ?? "would be replayed") + "\n"
    }
    return out
}

do {
    var command = try SIPReplay.parseAsRoot()
    try command.run()
} catch {
    if SIPReplay.exitCode(for: error) == .success { SIPReplay.exit(withError: error) }
    printError(SIPReplay.fullMessage(for: error))
    exit(2)
}
