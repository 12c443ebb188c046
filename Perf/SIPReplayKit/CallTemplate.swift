// Captures to call templates: the SIP messages grouped by Call-ID, each marked with the side that
// sent it, its delay after the previous message of the call and whether it is a retransmission.
import SIPMessage

/// The side of a call that sent a message.
public enum Role: String, Sendable {
    /// The endpoint that sent the call's first request.
    case caller
    /// Every other endpoint (a proxy or B2BUA in the middle shows as the far side).
    case callee
}

/// One message of a call, as it is to be replayed.
public struct TemplateMessage: Sendable {
    public var role: Role
    public var isRequest: Bool
    /// The request method, or the CSeq method of a response.
    public var method: String
    /// The status code of a response; nil for a request.
    public var statusCode: Int?
    /// The CSeq number.
    public var cseq: UInt32
    /// Milliseconds since the previous message of the call (0 for the first).
    public var delayMilliseconds: Int
    /// A request with the method, CSeq and branch of one the same side already sent, or a response
    /// with the status, CSeq and To-tag of one the same side already sent.
    public var isRetransmission: Bool
    /// The message as captured.
    public var bytes: [UInt8]
    /// "UDP", "TCP" or "SCTP".
    public var transport: String

    /// "INVITE" for a request, "200 (INVITE)" for a response.
    public var label: String { statusCode.map { "\($0) (\(method))" } ?? method }
}

/// One call of a capture, ready to be replayed.
public struct CallTemplate: Sendable {
    public var callID: String
    /// Every message in capture order, retransmissions marked and kept.
    public var messages: [TemplateMessage]
    /// "ip:port" of the side that sent the first request ("[ip]:port" for IPv6).
    public var caller: String
    /// "ip:port" of the side that first received from the caller.
    public var callee: String
    /// Capture time of the call's first message, in seconds since the epoch.
    public var firstTime: Double
    /// An INVITE answered 2xx, ACKed and ended by BYE and its 200; an INVITE with a final non-2xx
    /// response and its ACK; or a non-INVITE request with a final response.
    public var isCompleteCall: Bool
    /// One line: kind, message count, retransmissions, sides and completeness.
    public var summaryLine: String
    /// Copies of the call's messages on other hops that were left out: a capture taken around a
    /// proxy holds each message once per hop under the same Call-ID (see `droppingForwardedCopies`).
    public var forwardedCopies: Int = 0
}

/// What a capture held and the calls made of it.
public struct CaptureSummary: Sendable {
    /// libpcap's name of the link type.
    public var linkType: String = ""
    /// Packets read from the file.
    public var packets = 0
    /// SIP messages found (UDP, TCP and SCTP).
    public var sipMessages = 0
    public var udpSIPMessages = 0
    public var tcpSIPMessages = 0
    public var sctpSIPMessages = 0
    /// Calls (distinct Call-IDs).
    public var calls = 0
    /// Calls that `isCompleteCall` says would be replayed.
    public var completeCalls = 0
    /// UDP datagrams that were not SIP (RTP and the rest).
    public var nonSIPDatagrams = 0
    /// Packets that are neither IPv4 nor IPv6 (ARP ...).
    public var nonIPPackets = 0
    /// Packets shorter than their headers say (snap length).
    public var truncatedPackets = 0
    /// Packets of transports not read (ICMP, ESP ...).
    public var unsupportedTransportPackets = 0
    /// IPv4 datagrams put back together from fragments.
    public var fragmentsReassembled = 0
    /// Fragments skipped (IPv6 fragments, IPv4 fragments whose datagram never completed).
    public var fragmentsSkipped = 0
    /// CRLF keep-alives seen over UDP or TCP.
    public var keepAlives = 0
    /// TCP segments that carried nothing new.
    public var tcpRetransmittedSegments = 0
    /// TCP bytes that could not be framed as SIP (lost segments, a capture started mid-message).
    public var tcpUnparsableBytes = 0
    /// TCP connections carrying WebSocket (not supported yet).
    public var webSocketFlows = 0
    /// Problems that ended or shortened reading (a truncated file).
    public var warnings: [String] = []
    /// The calls, by the time of their first message.
    public var templates: [CallTemplate] = []
}

/// Reads a pcap or pcapng capture and turns its SIP messages into call templates.
///
/// - Throws: `CaptureError` for a file libpcap cannot open, an unsupported link type, or a capture
///   with no SIP message. A file truncated mid-packet is not an error: reading stops there and a
///   warning is recorded.
public func loadTemplates(path: String) throws(CaptureError) -> CaptureSummary {
    let reader = try CaptureReader(path: path)
    var decoder = PacketDecoder(linkLayer: reader.linkLayer)
    var extractor = SIPExtractor()
    var summary = CaptureSummary()
    summary.linkType = reader.linkTypeName
    while let packet = reader.next() {
        summary.packets += 1
        switch decoder.decode(packet.bytes) {
        case .udp(let source, let destination, let payload):
            extractor.udp(payload, from: source, to: destination, time: packet.time)
        case .tcp(let source, let destination, let sequence, let flags, let payload):
            extractor.tcp(payload, sequence: sequence, flags: flags, from: source, to: destination, time: packet.time)
        case .sctp(let source, let destination, let chunks):
            for chunk in chunks {
                extractor.udp(chunk, from: source, to: destination, time: packet.time, transport: "SCTP")
            }
        case .fragmentHeld: break
        case .skipped(.truncated): summary.truncatedPackets += 1
        case .skipped(.notIP): summary.nonIPPackets += 1
        case .skipped(.unsupportedTransport): summary.unsupportedTransportPackets += 1
        case .skipped(.fragment): summary.fragmentsSkipped += 1
        }
    }
    if case .truncated(let reason) = reader.end {
        if summary.packets == 0 { throw .readFailed(path: path, reason: reason) }
        summary.warnings.append("capture truncated after \(summary.packets) packets (\(reason)); kept what was read")
    }
    extractor.finish()
    let counters = extractor.counters
    summary.fragmentsReassembled = decoder.fragmentsReassembled
    summary.fragmentsSkipped += decoder.fragmentsIncomplete
    summary.nonSIPDatagrams = counters.nonSIPDatagrams
    summary.keepAlives = counters.keepAlives
    summary.tcpRetransmittedSegments = counters.tcpRetransmittedSegments
    summary.tcpUnparsableBytes = counters.tcpUnparsableBytes
    summary.webSocketFlows = counters.webSocketFlows
    let messages = extractor.messages
    summary.sipMessages = messages.count
    summary.udpSIPMessages = messages.count { $0.transport == "UDP" }
    summary.tcpSIPMessages = messages.count { $0.transport == "TCP" }
    summary.sctpSIPMessages = messages.count { $0.transport == "SCTP" }
    guard !messages.isEmpty else { throw .noSIP(path: path) }
    summary.templates = buildTemplates(messages)
    summary.calls = summary.templates.count
    summary.completeCalls = summary.templates.count { $0.isCompleteCall }
    return summary
}

/// Groups messages by Call-ID (in order of first appearance) and builds one template per call.
func buildTemplates(_ messages: [CapturedMessage]) -> [CallTemplate] {
    var order: [String] = []
    var byCall: [String: [CapturedMessage]] = [:]
    // Messages of different TCP flows were appended as they were framed: put them in time order.
    let sorted = messages.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }
    for (_, captured) in sorted {
        let callID = captured.message.callID.map { captured.message.text($0) } ?? ""
        if byCall[callID] == nil { order.append(callID) }
        byCall[callID, default: []].append(captured)
    }
    return order.map { makeTemplate(callID: $0, byCall[$0]!) }
}

private func makeTemplate(callID: String, _ all: [CapturedMessage]) -> CallTemplate {
    let captured = droppingForwardedCopies(all)
    let firstRequest = captured.first { $0.message.isRequest }
    let callerEnd = firstRequest?.source ?? captured[0].destination
    let calleeEnd = firstRequest?.destination ?? captured[0].source
    var seenRequests = Set<String>()
    var seenResponses = Set<String>()
    var messages: [TemplateMessage] = []
    var previousTime = captured[0].time
    for item in captured {
        let message = item.message
        let fromCaller =
            item.source == callerEnd
            || (item.source.address == callerEnd.address && calleeEnd.address != callerEnd.address)
        let role: Role = fromCaller ? .caller : .callee
        let cseq = message.cseq
        let method = message.isRequest ? message.text(message.methodRange) : cseq.map { message.text($0.methodRange) } ?? "?"
        let number = cseq?.number ?? 0
        var retransmission = false
        if message.isRequest {
            let branch = message.topVia?.branchRange.map { message.text($0) } ?? ""
            retransmission = !seenRequests.insert("\(role) \(method) \(number) \(branch)").inserted
        } else {
            let tag = message.toTag.map { message.text($0) } ?? ""
            retransmission = !seenResponses.insert("\(role) \(message.statusCode) \(number) \(method) \(tag)").inserted
        }
        let delay = Int(((item.time - previousTime) * 1000).rounded())
        previousTime = item.time
        messages.append(
            TemplateMessage(
                role: role, isRequest: message.isRequest, method: method,
                statusCode: message.isRequest ? nil : message.statusCode, cseq: number,
                delayMilliseconds: max(0, delay), isRetransmission: retransmission, bytes: message.bytes,
                transport: item.transport))
    }
    let complete = isComplete(messages)
    let kind = messages.first { $0.isRequest }?.method ?? "responses-only"
    let retransmissions = messages.count { $0.isRetransmission }
    let forwarded = all.count - captured.count
    let line =
        "\(kind) \(callerEnd) -> \(calleeEnd): \(messages.count) messages, \(retransmissions) retransmissions, "
        + (forwarded > 0 ? "\(forwarded) copies on other hops left out, " : "")
        + (complete ? "complete" : "incomplete")
    return CallTemplate(
        callID: callID, messages: messages, caller: callerEnd.description, callee: calleeEnd.description,
        firstTime: captured[0].time, isCompleteCall: complete, summaryLine: line, forwardedCopies: forwarded)
}

/// The messages of one call as its two ends sent them, without the copies of other hops.
///
/// A capture taken around a proxy (on its host, or on loopback) holds every message once per hop,
/// all under the same Call-ID: the caller's INVITE and the proxy's forwarded copy (one Via more),
/// the callee's responses and the proxy's copies toward the caller (one Via fewer), and requests
/// the proxy makes itself for one hop (the CANCEL and the ACK of a non-2xx toward the callee,
/// whose only Via is the proxy's branch of the forwarded INVITE). Replayed as they are, the
/// forwarded INVITE would be a request of the callee and the relayed responses retransmissions.
///
/// Copies of one message share the originator's branch, the bottom Via (a hop's own branch is
/// mapped to it through the forwarded INVITE whose top Via it is), the CSeq and the status. Of
/// each such group this keeps a request's copies with the fewest Vias (sent by the originator)
/// and a response's with the most (sent by the answering end), and drops what a proxy generated
/// for one hop when the group also holds the end's own copy. A capture of one hop keeps
/// everything: its copies all have the same Vias.
func droppingForwardedCopies(_ captured: [CapturedMessage]) -> [CapturedMessage] {
    struct Vias {
        var count = 0
        var top = ""
        var bottom = ""
    }
    let vias: [Vias] = captured.map { item in
        var result = Vias()
        item.message.forEachVia { via in
            let branch = via.branchRange.map { item.message.text($0) } ?? ""
            if result.count == 0 { result.top = branch }
            result.bottom = branch
            result.count += 1
            return true
        }
        return result
    }
    // A proxy's branch on the next hop, to the branch of the request it forwarded.
    var originOf: [String: String] = [:]
    for (item, via) in zip(captured, vias) where item.message.isRequest && via.count >= 2 && !via.top.isEmpty {
        if via.top != via.bottom { originOf[via.top] = via.bottom }
    }
    func origin(_ branch: String) -> String {
        var current = branch
        for _ in 0..<8 {  // a chain of proxies; bounded against cycles
            guard let next = originOf[current] else { break }
            current = next
        }
        return current
    }
    struct Copy: Hashable {
        var isRequest: Bool
        var branch: String
        var cseq: UInt32
        var method: String
        var status: Int
    }
    let keys: [Copy] = zip(captured, vias).map { item, via in
        let message = item.message
        let method = message.cseq.map { message.text($0.methodRange) } ?? ""
        return Copy(
            isRequest: message.isRequest, branch: origin(via.bottom), cseq: message.cseq?.number ?? 0, method: method,
            status: message.isRequest ? 0 : message.statusCode)
    }
    let hopGenerated = vias.map { !$0.bottom.isEmpty && originOf[$0.bottom] != nil }
    var hasEndCopy = Set<Copy>()
    for (key, generated) in zip(keys, hopGenerated) where !generated { hasEndCopy.insert(key) }
    let candidate = captured.indices.map { !hopGenerated[$0] || !hasEndCopy.contains(keys[$0]) }
    var best: [Copy: Int] = [:]
    for index in captured.indices where candidate[index] {
        let count = vias[index].count
        if let current = best[keys[index]] {
            best[keys[index]] = keys[index].isRequest ? min(current, count) : max(current, count)
        } else {
            best[keys[index]] = count
        }
    }
    return captured.indices.filter { candidate[$0] && vias[$0].count == best[keys[$0]] }.map { captured[$0] }
}

/// The completeness rule of `CallTemplate.isCompleteCall`.
func isComplete(_ messages: [TemplateMessage]) -> Bool {
    guard let first = messages.first(where: { $0.isRequest }) else { return false }
    let responses = messages.filter { !$0.isRequest }
    func has(_ method: String) -> Bool { messages.contains { $0.isRequest && $0.method == method } }
    if first.method == "INVITE" {
        let inviteFinals = responses.filter { $0.method == "INVITE" && ($0.statusCode ?? 0) >= 200 }
        if inviteFinals.contains(where: { (200..<300).contains($0.statusCode ?? 0) }) {
            return has("ACK") && has("BYE")
                && responses.contains { $0.method == "BYE" && (200..<300).contains($0.statusCode ?? 0) }
        }
        return !inviteFinals.isEmpty && has("ACK")
    }
    return responses.contains { $0.method == first.method && ($0.statusCode ?? 0) >= 200 }
}
