// sip-replay: reads a pcap/pcapng capture into call templates. `--summary FILE` lists what it
// found and how it would replay it, sending nothing. Exit status: 0 when every call completed,
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
        fail("sip-replay: replay is not implemented yet (use --summary FILE)")
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
