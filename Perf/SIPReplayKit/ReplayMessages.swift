// The messages a replayed call sends, written straight into byte arrays (one allocation each):
// fresh Call-ID, tags and branches, the dialog state each side learnt, the capture's bodies.
import SIPEdgeIO
import SIPMessage

/// Requests that create a dialog (their 1xx/2xx carry Record-Route and set the route set).
let dialogCreatingMethods: Set<String> = ["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"]
/// Requests that carry our Contact.
private let contactCarryingMethods: Set<String> = ["INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER", "REGISTER"]

extension ReplayEngine {
    /// The Request-URI of a request outside a dialog: the service at the target (REGISTER: its domain).
    func initialRequestURI(_ method: String, stream: Bool) -> String {
        let uri = method == "REGISTER" ? domainURI : serviceURI
        return stream ? uri + ";transport=tcp" : uri
    }

    /// The port a side's Via and Contact name: the callee side shares one for UDP and TCP, the
    /// caller side's TCP listener may have its own.
    func localPort(_ role: Role, stream: Bool) -> UInt16 {
        if role == .callee { return calleeSocket.localAddress.port }
        if stream, let callerListener { return callerListener.localAddress.port }
        return callerSocket.localAddress.port
    }

    func buildRequest(_ step: ReplayStep, of call: ReplayCall, stream: Bool) -> [UInt8] {
        let isCaller = step.role == .caller
        var side = isCaller ? call.caller : call.callee
        let method = step.method
        // CANCEL (RFC 3261 §9.1) and the ACK of a non-2xx final (§17.1.1.3) repeat their INVITE's
        // branch, Request-URI, CSeq number and Route.
        let repeatsInvite = method == "CANCEL" || step.acknowledgesNon2xx
        let invite = repeatsInvite ? side.invite : nil
        let branch: Int
        if let invite {
            branch = invite.branch
        } else {
            lastBranch += 1
            branch = lastBranch
        }
        let inDialog = invite?.inDialog ?? step.inDialog
        let cseq = invite?.cseq ?? step.cseq
        if method == "INVITE" {
            side.invite = SentInvite(branch: branch, cseq: cseq, inDialog: inDialog)
            if isCaller { call.caller = side } else { call.callee = side }
        }
        let port = localPort(step.role, stream: stream)

        var out: [UInt8] = []
        out.reserveCapacity(700 + step.body.count)
        out.append(text: method)
        out.append(UInt8(ascii: " "))
        out.append(text: inDialog ? side.remoteTarget ?? initialRequestURI(method, stream: stream) : initialRequestURI(method, stream: stream))
        out.append(ascii: " SIP/2.0\r\nVia: SIP/2.0/")
        out.append(ascii: stream ? "TCP" : "UDP")
        out.append(ascii: " 127.0.0.1:")
        out.append(decimal: Int(port))
        out.append(ascii: ";branch=z9hG4bK-")
        out.append(text: token)
        out.append(UInt8(ascii: "-"))
        out.append(decimal: branch)
        if !stream { out.append(ascii: ";rport") }
        out.append(ascii: "\r\nMax-Forwards: 70\r\n")
        if inDialog {
            for route in side.routeSet {
                out.append(ascii: "Route: ")
                out.append(text: route)
                out.append(ascii: "\r\n")
            }
        }
        out.append(ascii: "From: <")
        out.append(text: side.localURI)
        out.append(ascii: ">;tag=")
        out.append(text: side.localTag)
        out.append(ascii: "\r\nTo: <")
        out.append(text: side.remoteURI)
        out.append(UInt8(ascii: ">"))
        // The ACK of a non-2xx carries the To tag of the response it acknowledges.
        if (inDialog && method != "CANCEL") || step.acknowledgesNon2xx, let tag = side.remoteTag {
            out.append(ascii: ";tag=")
            out.append(text: tag)
        }
        out.append(ascii: "\r\nCall-ID: ")
        out.append(contentsOf: callIDPrefix)
        out.append(decimal: call.number)
        out.append(ascii: "@127.0.0.1\r\nCSeq: ")
        out.append(decimal: Int(cseq))
        out.append(UInt8(ascii: " "))
        out.append(text: method)
        out.append(ascii: "\r\n")
        if contactCarryingMethods.contains(method) {
            appendContact(to: &out, user: isCaller ? "caller" : "callee", port: port, stream: stream)
        }
        appendHeadersAndBody(of: step, to: &out)
        return out
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): its Via, From, Call-ID and CSeq, its To with our
    /// tag, its Record-Route in the 1xx and 2xx of a dialog-creating request, with our Contact.
    func buildResponse(_ step: ReplayStep, to request: SIPMessage, localTag: String, stream: Bool) -> [UInt8] {
        let status = step.statusCode ?? 200
        let dialogCreating = dialogCreatingMethods.contains(step.method) && status > 100 && status < 300
        var out: [UInt8] = []
        out.reserveCapacity(request.byteCount + 200 + step.body.count)
        out.append(ascii: "SIP/2.0 ")
        out.append(decimal: status)
        out.append(UInt8(ascii: " "))
        out.append(text: reasonPhrase(status))
        out.append(ascii: "\r\n")
        for index in 0..<request.headerCount {
            let header = request.header(at: index)
            let line = ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset)
            switch header.name {
            case .via, .from, .callID, .cseq:
                request.append(line, to: &out)
            case .recordRoute where dialogCreating:
                request.append(line, to: &out)
            case .to:
                request.append(line, to: &out)
                if status > 100, request.nameAddress(header.valueRange)?.tagRange == nil {
                    out.append(ascii: ";tag=")
                    out.append(text: localTag)
                }
            default:
                continue
            }
            out.append(ascii: "\r\n")
        }
        if dialogCreating, step.method != "NOTIFY" {
            appendContact(
                to: &out, user: step.role == .caller ? "caller" : "callee", port: localPort(step.role, stream: stream),
                stream: stream)
        }
        appendHeadersAndBody(of: step, to: &out)
        return out
    }

    /// The capture's own headers, Content-Length and the body: the end of every message we build.
    private func appendHeadersAndBody(of step: ReplayStep, to out: inout [UInt8]) {
        out.append(contentsOf: step.copiedHeaders)
        out.append(ascii: "Content-Length: ")
        out.append(decimal: step.body.count)
        out.append(ascii: "\r\n\r\n")
        out.append(contentsOf: step.body)
    }

    private func appendContact(to out: inout [UInt8], user: StaticString, port: UInt16, stream: Bool) {
        out.append(ascii: "Contact: <sip:")
        out.append(ascii: user)
        out.append(ascii: "@127.0.0.1:")
        out.append(decimal: Int(port))
        if stream { out.append(ascii: ";transport=tcp") }
        out.append(ascii: ">\r\n")
    }
}
