// ReplayPlan: which call templates can be replayed (and why not), and the steps a replayed call
// walks: the template's messages without retransmissions, each marked with what the proxy between
// the two sides does to it (absorbs it, answers it hop by hop).
import SIPMessage

/// Template delays above this are shortened to it (a capture's long pauses would only slow the run).
let maximumStepDelayMilliseconds = 2000

/// One step of a replayed call: a template message without its retransmissions.
struct ReplayStep {
    var role: Role
    var isRequest: Bool
    var method: String
    var statusCode: Int?
    var cseq: UInt32
    var delayMilliseconds: Int
    var body: [UInt8]
    /// Header lines copied from the capture ("Content-Type: ...\r\n", Event, Subscription-State,
    /// Expires), each ending in CRLF.
    var copiedHeaders: [UInt8]
    /// The far side may never see it: provisional responses (a stateful proxy absorbs 100 Trying),
    /// the ACK of a non-2xx final (answered hop by hop).
    var optionalReceipt: Bool
    /// The far side gets the proxy's own copy, possibly before this side sent it (a 200 to CANCEL,
    /// the ACK of a non-2xx final).
    var hopByHop: Bool
    /// A request that was inside a dialog in the capture (its To had a tag).
    var inDialog: Bool
    /// An ACK for a non-2xx final response: the INVITE's branch and Request-URI, hop by hop.
    var acknowledgesNon2xx: Bool

    var isProvisional: Bool { (statusCode ?? 200) < 200 }
}

/// Header lines a replayed message keeps from its captured original (besides the body).
private let copiedHeaderNames: [SIPHeaderName] = [.contentType, .event, .expires]

/// The steps of a template: retransmissions dropped (their delay added to the next message), delays
/// capped at 2 s, and with `holdMilliseconds` the delay before the first request after the ACK of
/// the 2xx (the BYE, or a re-INVITE, from either side) replaced by it.
func replaySteps(_ template: CallTemplate, holdMilliseconds: Int? = nil) -> [ReplayStep] {
    var steps: [ReplayStep] = []
    var carried = 0
    // The CSeq numbers of INVITEs whose final response was not 2xx.
    var non2xxInvites = Set<UInt32>()
    for message in template.messages {
        if message.isRetransmission {
            carried += message.delayMilliseconds
            continue
        }
        let parsed = try? SIPMessage(parsing: message.bytes)
        var body: [UInt8] = []
        var copied: [UInt8] = []
        var inDialog = false
        var hasContentType = false
        if let parsed {
            if parsed.bodyRange.count > 0 { body = Array(message.bytes[parsed.bodyRange.offset..<parsed.bodyRange.end]) }
            for index in 0..<parsed.headerCount {
                let header = parsed.header(at: index)
                let keep =
                    copiedHeaderNames.contains(header.name)
                    || (header.name == .other && parsed.equalsIgnoringCase(header.nameRange, "Subscription-State"))
                guard keep, header.name != .contentType || !body.isEmpty else { continue }
                if header.name == .contentType { hasContentType = true }
                parsed.append(header.nameRange, to: &copied)
                copied.append(ascii: ": ")
                parsed.append(header.valueRange, to: &copied)
                copied.append(ascii: "\r\n")
            }
            inDialog = parsed.isRequest && parsed.toTag != nil
        }
        if !body.isEmpty, !hasContentType {
            copied.append(ascii: "Content-Type: application/sdp\r\n")
        }
        let status = message.statusCode
        if let status, message.method == "INVITE", status >= 200 {
            if status >= 300 { non2xxInvites.insert(message.cseq) } else { non2xxInvites.remove(message.cseq) }
        }
        let isACK = message.isRequest && message.method == "ACK"
        let acknowledgesNon2xx = isACK && non2xxInvites.contains(message.cseq)
        steps.append(
            ReplayStep(
                role: message.role, isRequest: message.isRequest, method: message.method, statusCode: status,
                cseq: message.cseq,
                delayMilliseconds: min(maximumStepDelayMilliseconds, message.delayMilliseconds + carried),
                body: body, copiedHeaders: copied,
                optionalReceipt: (status.map { $0 < 200 } ?? false) || acknowledgesNon2xx,
                hopByHop: (!message.isRequest && message.method == "CANCEL") || acknowledgesNon2xx, inDialog: inDialog,
                acknowledgesNon2xx: acknowledgesNon2xx))
        carried = 0
    }
    if let holdMilliseconds,
        let ack = steps.firstIndex(where: { $0.isRequest && $0.method == "ACK" && !$0.acknowledgesNon2xx }),
        let held = steps[(ack + 1)...].firstIndex(where: { $0.isRequest && $0.method != "ACK" })
    {
        steps[held].delayMilliseconds = holdMilliseconds
    }
    return steps
}

/// Why a template cannot be replayed, or nil when it can.
///
/// Replayable: an INVITE answered 2xx, ACKed and ended by BYE and its 2xx; an INVITE with a non-2xx
/// final response (after a CANCEL or not) and its ACK; a first request of another method
/// (OPTIONS, MESSAGE, REGISTER, SUBSCRIBE ...) with a final response, with whatever else the
/// capture holds under the same Call-ID (a NOTIFY, a REGISTER repeated after a 401). Every
/// response must answer a request of the other side that came before it.
public func replayProblem(_ template: CallTemplate) -> String? {
    let messages = template.messages.filter { !$0.isRetransmission }
    guard let first = messages.first(where: { $0.isRequest }) else { return "no request, only responses" }
    if let firstIndex = messages.firstIndex(where: { $0.isRequest }), firstIndex > 0 {
        return "starts with a \(messages[0].label) before any request (the capture began mid-call)"
    }
    if ["ACK", "BYE", "CANCEL", "PRACK", "UPDATE", "INFO"].contains(first.method) {
        return "starts with \(first.method) (the capture began mid-call)"
    }
    if let parsed = try? SIPMessage(parsing: first.bytes), parsed.toTag != nil {
        return "the first request (\(first.method)) is inside a dialog (its To has a tag): the capture began mid-call"
    }
    for (index, message) in messages.enumerated() where !message.isRequest {
        let answered = messages[..<index].contains {
            $0.isRequest && $0.role != message.role && $0.method == message.method && $0.cseq == message.cseq
        }
        if !answered { return "\(message.label) cseq \(message.cseq) answers a request the capture does not hold" }
    }
    let responses = messages.filter { !$0.isRequest }
    func has(_ method: String) -> Bool { messages.contains { $0.isRequest && $0.method == method } }
    if first.method == "INVITE" {
        let finals = responses.filter { $0.method == "INVITE" && ($0.statusCode ?? 0) >= 200 }
        guard !finals.isEmpty else { return "the INVITE has no final response (the capture ends mid-call)" }
        guard has("ACK") else { return "the final response to the INVITE is never ACKed" }
        if finals.contains(where: { (200..<300).contains($0.statusCode ?? 0) }) {
            guard has("BYE") else { return "the call is answered but never ended by BYE" }
            guard responses.contains(where: { $0.method == "BYE" && ($0.statusCode ?? 0) >= 200 }) else {
                return "the BYE has no final response"
            }
        }
        return nil
    }
    guard responses.contains(where: { $0.method == first.method && $0.cseq == first.cseq && ($0.statusCode ?? 0) >= 200 })
    else { return "the \(first.method) has no final response" }
    return nil
}

/// The templates that can be replayed (see `replayProblem`).
public func replayableTemplates(_ templates: [CallTemplate]) -> [CallTemplate] {
    templates.filter { replayProblem($0) == nil }
}
