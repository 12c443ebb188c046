import Glibc
import SIPEdgeIO
import SIPMessage
@testable import SIPReplayKit

/// A port free for UDP and TCP on 127.0.0.1 when asked (bound to port 0 and released).
func freePort() -> UInt16 {
    for _ in 0..<50 {
        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(tcp, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(tcp, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        close(tcp)
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(udp)
        if bound == 0 { return port }
    }
    fatalError("no free port on 127.0.0.1")
}

/// One message the relay passed on.
struct RelayedMessage {
    /// true: from the caller side toward the callee side.
    var towardCallee: Bool
    var message: SIPMessage
    /// When the relay got it (the loop's monotonic clock).
    var milliseconds: UInt64

    /// "INVITE" or "180 (INVITE)".
    var label: String {
        if message.isRequest { return message.text(message.methodRange) }
        return "\(message.statusCode) (\(message.cseq.map { message.text($0.methodRange) } ?? "?"))"
    }

    /// "→ INVITE" toward the callee, "← 180 (INVITE)" toward the caller.
    var arrowed: String { (towardCallee ? "→ " : "← ") + label }

    func header(_ name: SIPHeaderName) -> String? { message.headerValue(name) }
    var branch: String? { message.topVia?.branchRange.map { message.text($0) } }
}

/// A stateless relay standing in for the proxy, on the engine's own loop: what the caller side
/// sends goes to the callee side and back, unchanged and recorded. Over UDP it relays by address;
/// over TCP each accepted connection gets its own connection to the callee side.
final class Relay {
    let loop: EventLoop
    let port: UInt16
    let calleePort: UInt16
    var relayed: [RelayedMessage] = []
    var socket: UDPSocket?
    var listener: StreamListener?
    var acceptedConnections = 0
    /// Set: accepted connections are closed at once instead of relayed.
    var refuseStreams = false
    private var callerAddress: SocketAddress?
    private var streams: [StreamConnection] = []

    init(loop: EventLoop, port: UInt16, calleePort: UInt16, transport: ReplayTransport) throws {
        self.loop = loop
        self.port = port
        self.calleePort = calleePort
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let callee = try SocketAddress(ipAddress: "127.0.0.1", port: calleePort)
        switch transport {
        case .udp:
            socket = try UDPSocket(loop: loop, bindTo: address) { [unowned self] received in
                guard let message = try? SIPMessage(parsing: received.bytes) else { return }
                let fromCallee = received.source == callee
                if !fromCallee { callerAddress = received.source }
                relayed.append(RelayedMessage(towardCallee: !fromCallee, message: message, milliseconds: loop.nowMilliseconds))
                if let destination = fromCallee ? callerAddress : callee {
                    socket?.send(received.bytes, to: destination)
                }
            }
        case .tcp:
            listener = try StreamListener(loop: loop, bindTo: address) { [unowned self] caller in
                acceptedConnections += 1
                if refuseStreams {
                    caller.close()
                    return
                }
                let upstream = StreamConnection.connect(loop: loop, to: callee)
                streams += [caller, upstream]
                caller.onMessage = { [unowned self, unowned upstream] received in
                    guard let message = try? SIPMessage(parsing: received.bytes, framing: .stream) else { return }
                    relayed.append(RelayedMessage(towardCallee: true, message: message, milliseconds: loop.nowMilliseconds))
                    upstream.send(received.bytes)
                }
                upstream.onMessage = { [unowned self, unowned caller] received in
                    guard let message = try? SIPMessage(parsing: received.bytes, framing: .stream) else { return }
                    relayed.append(RelayedMessage(towardCallee: false, message: message, milliseconds: loop.nowMilliseconds))
                    caller.send(received.bytes)
                }
            }
        }
    }

    /// The messages of one call (by Call-ID), in the order relayed.
    func call(_ index: Int) -> [RelayedMessage] {
        var order: [String] = []
        for item in relayed {
            let id = item.header(.callID) ?? ""
            if !order.contains(id) { order.append(id) }
        }
        guard index < order.count else { return [] }
        return relayed.filter { $0.header(.callID) == order[index] }
    }

    func close() {
        for stream in streams {
            stream.onMessage = nil
            stream.close()
        }
        streams.removeAll()
    }
}

/// A capture written by the tests: UDP messages between 10.0.0.1 (caller) and 10.0.0.2 (callee).
struct SyntheticCall {
    var writer = PcapWriter(linkType: 0)
    var micros: UInt32 = 0

    mutating func add(_ fromCaller: Bool, _ message: [UInt8], afterMilliseconds delay: UInt32 = 5) {
        micros += delay * 1000
        let caller: [UInt8] = [10, 0, 0, 1]
        let callee: [UInt8] = [10, 0, 0, 2]
        writer.packet(
            loopbackIPv4 + ipv4(proto: 17, from: fromCaller ? caller : callee, to: fromCaller ? callee : caller, udp(5060, 5060, message)),
            seconds: 100 + micros / 1_000_000, micros: micros % 1_000_000)
    }

    func templates(_ name: String) throws -> [CallTemplate] {
        let path = writer.write(name)
        defer { unlink(path) }
        return try loadTemplates(path: path).templates
    }
}

/// A SIP message of a synthetic call; `contact` and `extra` are header lines without CRLF.
func callMessage(
    _ startLine: String, cseq: String, callID: String = "synthetic-call", branch: String = "z9hG4bK1", toTag: String = "",
    contact: Bool = true, extra: [String] = [], body: String = ""
) -> [UInt8] {
    var text = "\(startLine)\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=\(branch)\r\nFrom: <sip:a@x>;tag=a1\r\n"
    text += "To: <sip:b@y>\(toTag.isEmpty ? "" : ";tag=" + toTag)\r\nCall-ID: \(callID)\r\nCSeq: \(cseq)\r\n"
    if contact { text += "Contact: <sip:a@10.0.0.1:5060>\r\n" }
    for line in extra { text += line + "\r\n" }
    if !body.isEmpty { text += "Content-Type: application/sdp\r\n" }
    text += "Max-Forwards: 70\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    return Array(text.utf8)
}

let sampleSDP = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

/// INVITE / 100 / 180 / 200 / ACK / BYE / 200.
func answeredCall(byeDelay: UInt32 = 5) -> SyntheticCall {
    var call = SyntheticCall()
    call.add(true, callMessage("INVITE sip:b@y SIP/2.0", cseq: "1 INVITE", body: sampleSDP))
    call.add(false, callMessage("SIP/2.0 100 Trying", cseq: "1 INVITE", contact: false))
    call.add(false, callMessage("SIP/2.0 180 Ringing", cseq: "1 INVITE", toTag: "b1"))
    call.add(false, callMessage("SIP/2.0 200 OK", cseq: "1 INVITE", toTag: "b1", body: sampleSDP))
    call.add(true, callMessage("ACK sip:b@10.0.0.2 SIP/2.0", cseq: "1 ACK", branch: "z9hG4bK2", toTag: "b1", contact: false))
    call.add(true, callMessage("BYE sip:b@10.0.0.2 SIP/2.0", cseq: "2 BYE", branch: "z9hG4bK3", toTag: "b1", contact: false), afterMilliseconds: byeDelay)
    call.add(false, callMessage("SIP/2.0 200 OK", cseq: "2 BYE", branch: "z9hG4bK3", toTag: "b1", contact: false))
    return call
}

/// INVITE / 100 / 180 / CANCEL / 200 (CANCEL) / 487 / ACK.
func cancelledCall() -> SyntheticCall {
    var call = SyntheticCall()
    call.add(true, callMessage("INVITE sip:b@y SIP/2.0", cseq: "1 INVITE", body: sampleSDP))
    call.add(false, callMessage("SIP/2.0 100 Trying", cseq: "1 INVITE", contact: false))
    call.add(false, callMessage("SIP/2.0 180 Ringing", cseq: "1 INVITE", toTag: "b1"))
    call.add(true, callMessage("CANCEL sip:b@y SIP/2.0", cseq: "1 CANCEL", contact: false), afterMilliseconds: 20)
    call.add(false, callMessage("SIP/2.0 200 OK", cseq: "1 CANCEL", toTag: "b1", contact: false))
    call.add(false, callMessage("SIP/2.0 487 Request Terminated", cseq: "1 INVITE", toTag: "b1", contact: false))
    call.add(true, callMessage("ACK sip:b@y SIP/2.0", cseq: "1 ACK", toTag: "b1", contact: false))
    return call
}
