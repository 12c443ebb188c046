// sip-replay: reads a pcap/pcapng capture into call templates. `--summary FILE` lists what it
// found and how it would replay it, sending nothing; `--target udp:IP:PORT` replays its complete
// INVITE calls through a proxy, playing both the caller and the callee (the proxy's upstream). Exit status: 0 when every call completed,
// 1 when some failed, 2 for unusable input or arguments.
import Glibc
import ArgumentParser
import SIPReplayKit

struct SIPReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sip-replay",
        abstract: "Replay the SIP calls of a pcap or pcapng capture against a proxy.",
        discussion: "Exit status: 0 when every call completed, 1 when some failed, 2 for unusable input or arguments.")

    @Flag(help: "List the calls and messages found and how they would be replayed; send nothing.")
    var summary = false

    @Option(help: "Where to send the calls: udp:IP:PORT or tcp:IP:PORT.")
    var target: String?

    @Option(help: "New calls per second.")
    var rate: Double?

    @Option(help: "Number of calls to place.")
    var calls: Int?

    @Option(help: "Step the rate: START:STEP:MAX calls per second.")
    var ramp: String?

    @Option(help: "The callee side's UDP port on 127.0.0.1 (the proxy's upstream); default 5080 or a free port.")
    var calleePort: UInt16?

    @Option(help: "Fail a call when an expected message does not come within this many milliseconds.")
    var timeoutMs: Int = 5000

    @Option(help: "Sample this process's CPU and memory before and after the run.")
    var proxyPid: Int32?

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
        if ramp != nil { fail("sip-replay: --ramp is not implemented yet") }
        guard let target else { fail("sip-replay: --target udp:IP:PORT is required (or --summary)") }
        let parts = target.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let port = UInt16(parts[2]), port != 0 else {
            fail("sip-replay: --target must be udp:IP:PORT, not \(target)")
        }
        guard parts[0] == "udp" else { fail("sip-replay: only udp targets are implemented yet (\(target))") }
        let rate = self.rate ?? 10
        let calls = self.calls ?? 1
        guard rate > 0, rate.isFinite, calls > 0, timeoutMs > 0 else {
            fail("sip-replay: --rate, --calls and --timeout-ms must be positive")
        }
        let templates = replayableTemplates(capture.templates)
        guard !templates.isEmpty else {
            fail("sip-replay: \(file) has no complete INVITE call to replay (see --summary)")
        }
        let options = ReplayOptions(
            targetHost: String(parts[1]), targetPort: port, rate: rate, calls: calls, calleePort: calleePort ?? 0,
            timeoutMilliseconds: timeoutMs, proxyPID: proxyPid)
        let engine: ReplayEngine
        do {
            engine = try ReplayEngine(templates: capture.templates, options: options)
        } catch {
            fail("sip-replay: \(error)")
        }
        printError("sip-replay: callee side on \(engine.calleeAddress) (start the proxy with --upstream sip:\(engine.calleeAddress))")
        let report = engine.run()
        print(json ? report.renderJSON() : report.renderTable(), terminator: "")
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
    out += "\(s.calls) calls, \(s.completeCalls) complete\n"
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
        out += "  \(call.summaryLine); " + (call.isCompleteCall ? "would be replayed" : "would not be replayed") + "\n"
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
