import Glibc
import SIPReplayKit
import Testing

/// Writes a classic little-endian pcap file (microsecond timestamps) built by the tests.
struct PcapWriter {
    var bytes: [UInt8] = []

    init(linkType: UInt32) {
        le32(0xA1B2_C3D4)
        le16(2)
        le16(4)
        le32(0)
        le32(0)
        le32(65535)
        le32(linkType)
    }

    mutating func le16(_ value: UInt16) { bytes += [UInt8(value & 0xFF), UInt8(value >> 8)] }
    mutating func le32(_ value: UInt32) { for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((value >> UInt32(shift)) & 0xFF)) } }

    mutating func packet(_ data: [UInt8], seconds: UInt32, micros: UInt32 = 0) {
        le32(seconds)
        le32(micros)
        le32(UInt32(data.count))
        le32(UInt32(data.count))
        bytes += data
    }

    func write(_ name: String) -> String {
        let path = "/tmp/sipreplay-test-\(getpid())-\(name)"
        let file = fopen(path, "wb")!
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        return path
    }
}

func be(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }

/// An IPv4 packet (no checksum: the reader does not check it).
func ipv4(proto: UInt8, from source: [UInt8], to destination: [UInt8], _ payload: [UInt8]) -> [UInt8] {
    [0x45, 0] + be(UInt16(20 + payload.count)) + [0, 1, 0, 0, 64, proto, 0, 0] + source + destination + payload
}

func udp(_ sourcePort: UInt16, _ destinationPort: UInt16, _ payload: [UInt8]) -> [UInt8] {
    be(sourcePort) + be(destinationPort) + be(UInt16(8 + payload.count)) + [0, 0] + payload
}

func tcp(_ sourcePort: UInt16, _ destinationPort: UInt16, seq: UInt32, flags: UInt8, _ payload: [UInt8]) -> [UInt8] {
    be(sourcePort) + be(destinationPort) + be32(seq) + be32(0) + [0x50, flags] + be(65535) + [0, 0, 0, 0] + payload
}

/// DLT_NULL's 4-byte family in host (little-endian) order.
let loopbackIPv4: [UInt8] = [2, 0, 0, 0]
let alice: [UInt8] = [127, 0, 0, 1]
let bob: [UInt8] = [127, 0, 0, 2]

func sip(_ startLine: String, cseq: String, branch: String = "z9hG4bK1", toTag: String = "", body: String = "") -> [UInt8] {
    let text =
        "\(startLine)\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=\(branch)\r\nFrom: <sip:a@x>;tag=a1\r\n"
        + "To: <sip:b@y>\(toTag.isEmpty ? "" : ";tag=" + toTag)\r\nCall-ID: synthetic-1\r\nCSeq: \(cseq)\r\n"
        + "Max-Forwards: 70\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    return Array(text.utf8)
}

@Suite struct SyntheticCaptureTests {
    @Test func loopbackUDPCall() throws {
        var writer = PcapWriter(linkType: 0)
        let flow = [
            (alice, bob, sip("OPTIONS sip:b@y SIP/2.0", cseq: "1 OPTIONS"), UInt32(0)),
            (alice, bob, sip("OPTIONS sip:b@y SIP/2.0", cseq: "1 OPTIONS"), UInt32(500_000)),  // retransmission
            (bob, alice, sip("SIP/2.0 200 OK", cseq: "1 OPTIONS", toTag: "b1"), UInt32(750_000)),
        ]
        for (source, destination, message, micros) in flow {
            writer.packet(loopbackIPv4 + ipv4(proto: 17, from: source, to: destination, udp(5060, 5070, message)), seconds: 10, micros: micros)
        }
        writer.packet(loopbackIPv4 + ipv4(proto: 17, from: alice, to: bob, udp(5060, 5070, Array("\r\n\r\n".utf8))), seconds: 11)
        writer.packet(loopbackIPv4 + ipv4(proto: 1, from: alice, to: bob, [3, 3, 0, 0]), seconds: 11)
        let path = writer.write("loopback.pcap")
        defer { unlink(path) }
        let summary = try loadTemplates(path: path)
        #expect(summary.packets == 5)
        #expect(summary.sipMessages == 3)
        #expect(summary.keepAlives == 1)
        #expect(summary.unsupportedTransportPackets == 1)
        let call = try #require(summary.templates.first)
        #expect(call.callID == "synthetic-1")
        #expect(call.caller == "127.0.0.1:5060")
        #expect(call.callee == "127.0.0.2:5070")
        #expect(call.messages.map(\.isRetransmission) == [false, true, false])
        #expect(call.messages.map(\.role) == [.caller, .caller, .callee])
        #expect(call.messages.map(\.delayMilliseconds) == [0, 500, 250])
        #expect(call.messages[2].statusCode == 200 && call.messages[2].method == "OPTIONS")
        #expect(call.isCompleteCall)
    }

    @Test func tcpOutOfOrderRetransmittedAndCoalesced() throws {
        var writer = PcapWriter(linkType: 0)
        let first = sip("OPTIONS sip:b@y SIP/2.0", cseq: "1 OPTIONS", body: "hello")
        let second = sip("OPTIONS sip:b@y SIP/2.0", cseq: "2 OPTIONS", branch: "z9hG4bK2")
        let stream = first + Array("\r\n\r\n".utf8) + second
        let isn: UInt32 = 0xFFFF_FF00  // the sequence numbers wrap inside the stream
        func segment(_ range: Range<Int>, flags: UInt8 = 0x18) -> [UInt8] {
            loopbackIPv4
                + ipv4(proto: 6, from: alice, to: bob, tcp(40000, 6060, seq: isn &+ 1 &+ UInt32(range.lowerBound), flags: flags, Array(stream[range])))
        }
        writer.packet(loopbackIPv4 + ipv4(proto: 6, from: alice, to: bob, tcp(40000, 6060, seq: isn, flags: 0x02, [])), seconds: 1)
        let cut1 = 100
        let cut2 = first.count + 10
        writer.packet(segment(cut1..<cut2), seconds: 2)  // ahead of its turn
        writer.packet(segment(0..<cut1), seconds: 3)
        writer.packet(segment(0..<cut1), seconds: 3)  // retransmitted
        writer.packet(segment((cut2 - 20)..<stream.count), seconds: 4)  // overlaps what came before
        let path = writer.write("tcp.pcap")
        defer { unlink(path) }
        let summary = try loadTemplates(path: path)
        #expect(summary.tcpSIPMessages == 2)
        #expect(summary.tcpRetransmittedSegments == 1)
        #expect(summary.tcpUnparsableBytes == 0)
        let messages = try #require(summary.templates.first).messages
        #expect(messages.map(\.cseq) == [1, 2])
        #expect(messages[0].bytes == first)
        #expect(messages[1].bytes == second)
        #expect(messages.allSatisfy { $0.transport == "TCP" && !$0.isRetransmission })
    }

    @Test func unknownLinkTypeIsNamed() throws {
        var writer = PcapWriter(linkType: 147)
        writer.packet([1, 2, 3], seconds: 1)
        let path = writer.write("dlt147.pcap")
        defer { unlink(path) }
        do {
            _ = try loadTemplates(path: path)
            Issue.record("link type 147 was accepted")
        } catch {
            guard case .unsupportedLinkType(_, let linkType, _) = error else { Issue.record("unexpected \(error)"); return }
            #expect(linkType == 147)
            #expect(error.description.contains("unsupported link type 147"))
        }
    }

    @Test func truncatedFileKeepsWhatWasRead() throws {
        var writer = PcapWriter(linkType: 0)
        let message = sip("OPTIONS sip:b@y SIP/2.0", cseq: "1 OPTIONS")
        writer.packet(loopbackIPv4 + ipv4(proto: 17, from: alice, to: bob, udp(5060, 5060, message)), seconds: 1)
        writer.packet(loopbackIPv4 + ipv4(proto: 17, from: bob, to: alice, udp(5060, 5060, message)), seconds: 2)
        writer.bytes.removeLast(50)
        let path = writer.write("truncated.pcap")
        defer { unlink(path) }
        let summary = try loadTemplates(path: path)
        #expect(summary.sipMessages == 1)
        #expect(summary.warnings.count == 1)
        #expect(summary.warnings.first?.contains("truncated") == true)
    }

    @Test func truncatedBeforeAnyPacketIsAnError() throws {
        var writer = PcapWriter(linkType: 0)
        writer.packet([UInt8](repeating: 0, count: 100), seconds: 1)
        writer.bytes.removeLast(60)
        let path = writer.write("truncated0.pcap")
        defer { unlink(path) }
        #expect(throws: CaptureError.self) { try loadTemplates(path: path) }
    }

    @Test func garbageMissingAndSIPless() throws {
        var garbage = PcapWriter(linkType: 0)
        garbage.bytes = Array("this is not a capture at all, just some text".utf8)
        let garbagePath = garbage.write("garbage.pcap")
        defer { unlink(garbagePath) }
        do {
            _ = try loadTemplates(path: garbagePath)
            Issue.record("garbage was accepted")
        } catch {
            guard case .cannotOpen = error else { Issue.record("unexpected \(error)"); return }
        }
        #expect(throws: CaptureError.self) { try loadTemplates(path: "/nonexistent/capture.pcap") }
        var empty = PcapWriter(linkType: 0)
        empty.packet(loopbackIPv4 + ipv4(proto: 17, from: alice, to: bob, udp(1000, 2000, [0x80, 0, 1, 2])), seconds: 1)
        let emptyPath = empty.write("nosip.pcap")
        defer { unlink(emptyPath) }
        #expect(throws: CaptureError.noSIP(path: emptyPath)) { try loadTemplates(path: emptyPath) }
        #expect(CaptureError.noSIP(path: "x.pcap").description == "no SIP messages in x.pcap")
    }

    @Test func inviteCompletenessRule() throws {
        var writer = PcapWriter(linkType: 0)
        let steps: [([UInt8], [UInt8], [UInt8])] = [
            (alice, bob, sip("INVITE sip:b@y SIP/2.0", cseq: "1 INVITE")),
            (bob, alice, sip("SIP/2.0 486 Busy Here", cseq: "1 INVITE", toTag: "b1")),
        ]
        for (index, (source, destination, message)) in steps.enumerated() {
            writer.packet(loopbackIPv4 + ipv4(proto: 17, from: source, to: destination, udp(5060, 5060, message)), seconds: UInt32(index))
        }
        let path = writer.write("busy.pcap")
        defer { unlink(path) }
        // A final non-2xx without its ACK is not a complete call.
        #expect(try loadTemplates(path: path).completeCalls == 0)
    }
}
