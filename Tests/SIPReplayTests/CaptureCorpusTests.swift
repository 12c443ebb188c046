import Glibc
import SIPReplayKit
import Testing

/// The shared corpus of real captures, next to the repository.
let corpusDirectory: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(4)  // CaptureCorpusTests.swift, SIPReplayTests, Tests, main
    return parts.joined(separator: "/") + "/shared/corpus/pcaps"
}()

struct CorpusExpectation: Sendable, CustomTestStringConvertible {
    var file: String
    var sip: Int
    var udp: Int
    var tcp: Int
    var sctp: Int = 0
    var calls: Int
    var complete: Int
    var testDescription: String { file }
}

// SIP counts are tshark's (INDEX.md) except where noted: private-test-sip's 3 missing messages are
// the ones quoted inside ICMP errors, websocket's 11 missing ones travel over WebSocket.
let corpus: [CorpusExpectation] = [
    .init(file: "goffinet_RTP-Protocol.pcap", sip: 9, udp: 9, tcp: 0, calls: 1, complete: 1),
    .init(file: "goffinet_SIP-Call-with-Proxy-Server.pcap", sip: 11, udp: 11, tcp: 0, calls: 1, complete: 1),
    .init(file: "goffinet_SIP-SDP-Example.pcap", sip: 7, udp: 7, tcp: 0, calls: 1, complete: 1),
    .init(file: "goffinet_private-test-sip.pcapng", sip: 276, udp: 276, tcp: 0, calls: 65, complete: 64),
    .init(file: "goffinet_sip-2phones-B2BUA-Asterisk.pcapng", sip: 60, udp: 60, tcp: 0, calls: 12, complete: 12),
    .init(file: "goffinet_sip-488-Not-Acceptable-Here-codec-null.pcapng", sip: 13, udp: 13, tcp: 0, calls: 4, complete: 4),
    .init(file: "goffinet_sip-cme-zoiper-register.pcapng", sip: 9, udp: 9, tcp: 0, calls: 1, complete: 1),
    .init(file: "goffinet_sip-direct.pcapng", sip: 7, udp: 7, tcp: 0, calls: 1, complete: 1),
    .init(file: "goffinet_sip-register-publish-subscribe-489-401.pcapng", sip: 60, udp: 60, tcp: 0, calls: 19, complete: 19),
    .init(file: "goffinet_sip-register-wrong_password-401-403-401-403.pcapng", sip: 8, udp: 8, tcp: 0, calls: 2, complete: 2),
    .init(file: "goffinet_sip-register-wrong_user-401-403-404.pcapng", sip: 6, udp: 6, tcp: 0, calls: 2, complete: 2),
    .init(file: "goffinet_sip-routing-error-wireshark.pcapng", sip: 58, udp: 58, tcp: 0, calls: 18, complete: 18),
    .init(file: "goffinet_uac-uas-scenario-sipp.pcapng", sip: 4618, udp: 4618, tcp: 0, calls: 771, complete: 768),
    .init(file: "goffinet_voip-extension.pcap", sip: 29, udp: 29, tcp: 0, calls: 2, complete: 2),
    .init(file: "goffinet_voip-extension2downata.pcap", sip: 28, udp: 28, tcp: 0, calls: 3, complete: 2),
    .init(file: "goffinet_voip1b.pcapng", sip: 37, udp: 37, tcp: 0, calls: 4, complete: 4),
    .init(file: "heplify_erspan_sip_ipv4_udp.pcapng", sip: 140, udp: 140, tcp: 0, calls: 7, complete: 7),
    .init(file: "heplify_ipip0.pcap", sip: 8, udp: 8, tcp: 0, calls: 3, complete: 1),
    .init(file: "heplify_rtp_rtcp_sip_ipv4_udp.pcap", sip: 14, udp: 14, tcp: 0, calls: 4, complete: 2),
    .init(file: "heplify_sip_ipv4_tcp.pcap", sip: 7, udp: 0, tcp: 7, calls: 1, complete: 1),
    .init(file: "heplify_sip_ipv4_tcp_fragmented.pcap", sip: 406, udp: 0, tcp: 406, calls: 70, complete: 45),
    .init(file: "heplify_sip_ipv4_tcp_retrans.pcap", sip: 8, udp: 4, tcp: 4, calls: 1, complete: 1),
    .init(file: "heplify_sip_ipv6_udp.pcap", sip: 6, udp: 6, tcp: 0, calls: 1, complete: 1),
    .init(file: "heplify_sip_sctp.pcap", sip: 4, udp: 0, tcp: 0, sctp: 4, calls: 1, complete: 1),
    .init(file: "heplify_sip_tcp_websocket.pcap", sip: 28, udp: 28, tcp: 0, calls: 3, complete: 3),
]

func load(_ file: String) throws -> CaptureSummary {
    try loadTemplates(path: corpusDirectory + "/" + file)
}

@Suite struct CaptureCorpusTests {
    @Test(arguments: corpus)
    func countsMatchTheCorpus(_ expected: CorpusExpectation) throws {
        let summary = try load(expected.file)
        #expect(summary.sipMessages == expected.sip)
        #expect(summary.udpSIPMessages == expected.udp)
        #expect(summary.tcpSIPMessages == expected.tcp)
        #expect(summary.sctpSIPMessages == expected.sctp)
        #expect(summary.calls == expected.calls)
        #expect(summary.completeCalls == expected.complete)
        // Every SIP message is in a template, or left out as a copy of another hop (proxied captures).
        #expect(summary.templates.reduce(0) { $0 + $1.messages.count + $1.forwardedCopies } == expected.sip)
        #expect(summary.warnings.isEmpty)
    }

    @Test func sippRunHas771InviteCalls() throws {
        let summary = try load("goffinet_uac-uas-scenario-sipp.pcapng")
        #expect(summary.templates.count { $0.messages.first?.method == "INVITE" } == 771)
        #expect(summary.linkType == "EN10MB")
    }

    @Test func basicCallRolesAndOrder() throws {
        let summary = try load("goffinet_SIP-SDP-Example.pcap")
        let call = try #require(summary.templates.first)
        #expect(call.caller == "10.33.6.101:5060")
        #expect(call.callee == "10.33.6.100:5060")
        #expect(call.isCompleteCall)
        let steps = call.messages.map { "\($0.role.rawValue) \($0.label)" }
        #expect(
            steps == [
                "caller INVITE", "callee 100 (INVITE)", "callee 180 (INVITE)", "callee 200 (INVITE)",
                "caller ACK", "callee BYE", "caller 200 (BYE)",
            ])
        #expect(call.messages[0].delayMilliseconds == 0)
        #expect(call.messages[3].delayMilliseconds == 1901)
        #expect(call.messages.allSatisfy { !$0.isRetransmission && $0.transport == "UDP" && $0.cseq == 1 })
        #expect(call.messages[0].bytes.starts(with: Array("INVITE ".utf8)))
    }

    @Test func retransmissionsAreMarkedAndKept() throws {
        let summary = try load("goffinet_voip-extension2downata.pcap")
        let marked = summary.templates.flatMap(\.messages).filter(\.isRetransmission)
        // A CANCEL resent with timer back-off (seven copies). The unanswered INVITEs the forking
        // proxy resends toward L1-a…L1-d are the proxy's copies of the caller's INVITE: left out.
        #expect(marked.count == 6)
        #expect(marked.allSatisfy { $0.method == "CANCEL" && $0.isRequest })
        #expect(summary.templates.flatMap(\.messages).count == 16)
        #expect(summary.templates.reduce(0) { $0 + $1.forwardedCopies } == 12)
    }

    @Test func tcpFramingAcrossAndWithinSegments() throws {
        let summary = try load("heplify_sip_ipv4_tcp_fragmented.pcap")
        let messages = summary.templates.flatMap(\.messages)
        #expect(messages.allSatisfy { $0.transport == "TCP" })
        #expect(messages.count { $0.isRequest && $0.method == "UPDATE" } == 63)
        #expect(messages.count { $0.isRequest && $0.method == "INVITE" } == 37)
        #expect(messages.count { $0.statusCode == 200 } == 142)
    }

    @Test func otherLinkLayersAndIPv6() throws {
        let ipv6 = try load("heplify_sip_ipv6_udp.pcap")
        #expect(ipv6.templates.first?.caller.hasPrefix("[") == true)
        #expect(try load("heplify_ipip0.pcap").linkType == "RAW")
        #expect(try load("heplify_sip_ipv4_tcp_retrans.pcap").linkType == "LINUX_SLL")
        #expect(try load("heplify_sip_tcp_websocket.pcap").webSocketFlows > 0)
        // ERSPAN over GRE, and an INVITE split over two SCTP DATA chunks.
        #expect(try load("heplify_erspan_sip_ipv4_udp.pcapng").unsupportedTransportPackets == 0)
        let sctp = try load("heplify_sip_sctp.pcap")
        #expect(sctp.templates.first?.messages.first.map { $0.method == "INVITE" && $0.transport == "SCTP" } == true)
    }
}
