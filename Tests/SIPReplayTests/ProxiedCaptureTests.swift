import Glibc
@testable import SIPReplayKit
import Testing

// Captures taken around a proxy: every message appears once per hop under the same Call-ID. The
// templates keep each message as its end sent it (CallTemplate.swift: droppingForwardedCopies).

/// One loopback UDP datagram between two ports, as a raw-IPv4 (link type 228) packet at `millisecond`.
private extension PcapWriter {
    static func rawIPv4() -> PcapWriter { PcapWriter(linkType: 228) }

    mutating func datagram(from source: UInt16, to destination: UInt16, _ text: String, millisecond: UInt32) {
        packet(ipv4(proto: 17, from: [127, 0, 0, 1], to: [127, 0, 0, 1], udp(source, destination, Array(text.utf8))),
               seconds: 100, micros: millisecond * 1000)
    }
}

/// A message with the given Vias (top first).
private func message(_ startLine: String, vias: [String], cseq: String, toTag: String? = nil) -> String {
    var text = startLine + "\r\n"
    for via in vias { text += "Via: SIP/2.0/UDP \(via)\r\n" }
    text += "From: <sip:a@127.0.0.1>;tag=a1\r\nTo: <sip:b@127.0.0.1>\(toTag.map { ";tag=\($0)" } ?? "")\r\n"
    text += "Call-ID: proxied-1\r\nCSeq: \(cseq)\r\nContent-Length: 0\r\n\r\n"
    return text
}

private let callerVia = "127.0.0.1:5061;branch=z9hG4bK-a"
private let proxyVia = "127.0.0.1:5060;branch=z9hG4bK-p"
private let (caller, proxy, callee): (UInt16, UInt16, UInt16) = (5061, 5060, 5062)

private func labels(_ template: CallTemplate) -> [String] {
    template.messages.map { "\($0.role.rawValue) \($0.label)" + ($0.isRetransmission ? " [r]" : "") }
}

@Suite struct ProxiedCaptureTests {
    @Test func callThroughAProxyKeepsWhatTheEndsSent() throws {
        // Caller 10.33.6.101 -> proxy 10.33.6.102:5080 -> callee 10.33.6.100; ACK and BYE direct.
        let summary = try loadTemplates(path: corpusDirectory + "/goffinet_SIP-Call-with-Proxy-Server.pcap")
        let call = try #require(summary.templates.first)
        #expect(summary.templates.count == 1)
        #expect(labels(call) == [
            "caller INVITE", "callee 100 (INVITE)", "callee 180 (INVITE)", "callee 200 (INVITE)", "caller ACK",
            "callee BYE", "caller 200 (BYE)",
        ])
        #expect(call.forwardedCopies == 4, "the proxy's INVITE toward the callee, its 100, and its copies of the 180 and 200")
        #expect(call.summaryLine.contains("4 copies on other hops left out"))
        #expect(call.isCompleteCall)
        #expect(replayProblem(call) == nil)
        // The responses kept are the callee's (two Vias), not the proxy's copies (one).
        let ok = try #require(call.messages.first { $0.statusCode == 200 && $0.method == "INVITE" })
        #expect(String(decoding: ok.bytes, as: UTF8.self).contains("branch=z9hG4bKac49822475"))
        // The delay before the 200 runs from the 180 kept, over the copies left out.
        #expect(call.messages[3].delayMilliseconds == 612)
    }

    @Test func cancelledCallThroughAProxyDropsTheProxysOwnHopRequests() throws {
        var pcap = PcapWriter.rawIPv4()
        let flow: [(UInt16, UInt16, String)] = [
            (caller, proxy, message("INVITE sip:b@127.0.0.1 SIP/2.0", vias: [callerVia], cseq: "1 INVITE")),
            (proxy, caller, message("SIP/2.0 100 Trying", vias: [callerVia], cseq: "1 INVITE")),
            (proxy, callee, message("INVITE sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia, callerVia], cseq: "1 INVITE")),
            (callee, proxy, message("SIP/2.0 180 Ringing", vias: [proxyVia, callerVia], cseq: "1 INVITE", toTag: "b1")),
            (proxy, caller, message("SIP/2.0 180 Ringing", vias: [callerVia], cseq: "1 INVITE", toTag: "b1")),
            (caller, proxy, message("CANCEL sip:b@127.0.0.1 SIP/2.0", vias: [callerVia], cseq: "1 CANCEL")),
            (proxy, caller, message("SIP/2.0 200 OK", vias: [callerVia], cseq: "1 CANCEL", toTag: "p1")),
            (proxy, callee, message("CANCEL sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia], cseq: "1 CANCEL")),
            (callee, proxy, message("SIP/2.0 200 OK", vias: [proxyVia], cseq: "1 CANCEL", toTag: "b1")),
            (callee, proxy, message("SIP/2.0 487 Request Terminated", vias: [proxyVia, callerVia], cseq: "1 INVITE", toTag: "b1")),
            (proxy, callee, message("ACK sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia], cseq: "1 ACK", toTag: "b1")),
            (proxy, caller, message("SIP/2.0 487 Request Terminated", vias: [callerVia], cseq: "1 INVITE", toTag: "b1")),
            (caller, proxy, message("ACK sip:b@127.0.0.1 SIP/2.0", vias: [callerVia], cseq: "1 ACK", toTag: "b1")),
        ]
        for (index, (source, destination, text)) in flow.enumerated() {
            pcap.datagram(from: source, to: destination, text, millisecond: UInt32(index * 10))
        }
        let path = pcap.write("cancel.pcap")
        defer { unlink(path) }
        let summary = try loadTemplates(path: path)
        let call = try #require(summary.templates.first)
        #expect(labels(call) == [
            "caller INVITE", "callee 100 (INVITE)", "callee 180 (INVITE)", "caller CANCEL", "callee 200 (CANCEL)",
            "callee 487 (INVITE)", "caller ACK",
        ])
        #expect(call.forwardedCopies == 6)
        #expect(call.isCompleteCall)
        #expect(replayProblem(call) == nil)
        // The caller's own ACK (its branch), not the proxy's hop-by-hop one.
        #expect(String(decoding: call.messages[6].bytes, as: UTF8.self).contains("branch=z9hG4bK-a"))
    }

    @Test func aCaptureOfOneHopKeepsEverything() throws {
        // Only the proxy-callee hop: the proxy's CANCEL and ACK are the only copies there are.
        var pcap = PcapWriter.rawIPv4()
        let flow: [(UInt16, UInt16, String)] = [
            (proxy, callee, message("INVITE sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia, callerVia], cseq: "1 INVITE")),
            (proxy, callee, message("INVITE sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia, callerVia], cseq: "1 INVITE")),
            (callee, proxy, message("SIP/2.0 180 Ringing", vias: [proxyVia, callerVia], cseq: "1 INVITE", toTag: "b1")),
            (proxy, callee, message("CANCEL sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia], cseq: "1 CANCEL")),
            (callee, proxy, message("SIP/2.0 200 OK", vias: [proxyVia], cseq: "1 CANCEL", toTag: "b1")),
            (callee, proxy, message("SIP/2.0 487 Request Terminated", vias: [proxyVia, callerVia], cseq: "1 INVITE", toTag: "b1")),
            (proxy, callee, message("ACK sip:b@127.0.0.1:5062 SIP/2.0", vias: [proxyVia], cseq: "1 ACK", toTag: "b1")),
        ]
        for (index, (source, destination, text)) in flow.enumerated() {
            pcap.datagram(from: source, to: destination, text, millisecond: UInt32(index * 10))
        }
        let path = pcap.write("onehop.pcap")
        defer { unlink(path) }
        let call = try #require(try loadTemplates(path: path).templates.first)
        #expect(labels(call) == [
            "caller INVITE", "caller INVITE [r]", "callee 180 (INVITE)", "caller CANCEL", "callee 200 (CANCEL)",
            "callee 487 (INVITE)", "caller ACK",
        ])
        #expect(call.forwardedCopies == 0)
    }

    @Test func secondsPast2Pow31AreNotNegative() throws {
        // heplify_sip_ipv6_udp.pcap has corrupt clocks that grow from 1328589362 to 3867576602 s:
        // libpcap hands the unsigned field over signed, which put the BYE (past 2^31) first.
        let summary = try loadTemplates(path: corpusDirectory + "/heplify_sip_ipv6_udp.pcap")
        let call = try #require(summary.templates.first)
        #expect(call.messages.map(\.label) == ["INVITE", "100 (INVITE)", "200 (INVITE)", "ACK", "BYE", "200 (BYE)"])
        #expect(abs(call.firstTime - 1_328_589_362.251758) < 0.001)
        #expect(replayProblem(call) == nil)
    }
}
