// ReplayEngine: replays the complete INVITE calls of a capture over UDP through a proxy. One
// event loop (run on the calling thread) serves two sockets: the caller side, which sends the
// caller's requests to the target, and the callee side, where the proxy delivers them (the proxy's
// upstream). Each call walks its template in order: a message is sent by its side once every
// earlier message was exchanged, after the template's delay (capped at 2 s).
import Glibc
import SIPEdgeIO
import SIPMessage

/// What to replay and where.
public struct ReplayOptions: Sendable {
    public var targetHost: String
    public var targetPort: UInt16
    public var rate: Double
    public var calls: Int
    /// The callee side's port on 127.0.0.1 (0: any free port).
    public var calleePort: UInt16
    public var timeoutMilliseconds: Int
    public var proxyPID: Int32?

    public init(
        targetHost: String, targetPort: UInt16, rate: Double, calls: Int, calleePort: UInt16 = 0,
        timeoutMilliseconds: Int = 5000, proxyPID: Int32? = nil
    ) {
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.rate = rate
        self.calls = calls
        self.calleePort = calleePort
        self.timeoutMilliseconds = timeoutMilliseconds
        self.proxyPID = proxyPID
    }
}

/// The templates v1 replays: complete calls whose first request is INVITE.
public func replayableTemplates(_ templates: [CallTemplate]) -> [CallTemplate] {
    templates.filter { $0.isCompleteCall && $0.messages.first(where: { $0.isRequest })?.method == "INVITE" }
}

/// One step of a replayed call: a template message without its retransmissions.
struct ReplayStep {
    var role: Role
    var isRequest: Bool
    var method: String
    var statusCode: Int?
    var cseq: UInt32
    var delayMilliseconds: Int
    var body: [UInt8]
    /// Whether the far side may never see it (provisional responses absorbed by the proxy, ACK of a
    /// non-2xx final answered hop by hop).
    var optionalReceipt: Bool
}

/// The steps of a template: retransmissions dropped (their delay added to the next message).
func replaySteps(_ template: CallTemplate) -> [ReplayStep] {
    var steps: [ReplayStep] = []
    var carried = 0
    var inviteFinalIs2xx = true
    for message in template.messages {
        if message.isRetransmission {
            carried += message.delayMilliseconds
            continue
        }
        var body: [UInt8] = []
        if let parsed = try? SIPMessage(parsing: message.bytes), parsed.bodyRange.count > 0 {
            body = Array(message.bytes[parsed.bodyRange.offset..<parsed.bodyRange.end])
        }
        let status = message.statusCode
        if let status, message.method == "INVITE", status >= 200 { inviteFinalIs2xx = status < 300 }
        let optional = (status.map { $0 < 200 } ?? false) || (message.isRequest && message.method == "ACK" && !inviteFinalIs2xx)
        steps.append(
            ReplayStep(
                role: message.role, isRequest: message.isRequest, method: message.method, statusCode: status,
                cseq: message.cseq, delayMilliseconds: min(2000, message.delayMilliseconds + carried), body: body,
                optionalReceipt: optional))
        carried = 0
    }
    return steps
}

/// A request sent and resent (T1 = 500 ms) until a response arrives.
struct ClientTransaction {
    var method: String
    var cseq: UInt32
    var bytes: [UInt8]
    var role: Role
    var nextMilliseconds: UInt64
    var intervalMilliseconds: UInt64
}

/// One side's view of the dialog.
struct DialogSide {
    var localTag: String
    var remoteTag: String?
    var localURI: String
    var remoteURI: String
    var remoteTarget: String
    var routeSet: [String] = []
    var lastRequest: SIPMessage?
    var lastRequestSource: SocketAddress?
}

final class ReplayCall {
    let id: Int
    let callID: String
    let steps: [ReplayStep]
    var sent: [Bool]
    var received: [Bool]
    var scheduled = false
    var lastProgress: UInt64
    var caller: DialogSide
    var callee: DialogSide
    var transactions: [ClientTransaction] = []
    var inviteSentAt: UInt64?
    var byeSentAt: UInt64?
    var inviteBranch = ""
    var finished = false

    init(id: Int, callID: String, steps: [ReplayStep], caller: DialogSide, callee: DialogSide, now: UInt64) {
        self.id = id
        self.callID = callID
        self.steps = steps
        sent = Array(repeating: false, count: steps.count)
        received = Array(repeating: false, count: steps.count)
        self.caller = caller
        self.callee = callee
        lastProgress = now
    }

    func done(_ j: Int) -> Bool { sent[j] && (received[j] || steps[j].optionalReceipt) }
    var nextIndex: Int? { steps.indices.first { !done($0) } }
}

/// Replays calls and returns the report.
public final class ReplayEngine {
    var options: ReplayOptions
    let templates: [[ReplayStep]]
    let loop: EventLoop
    var callerSocket: UDPSocket!
    var calleeSocket: UDPSocket!
    let target: SocketAddress
    var calls: [String: ReplayCall] = [:]
    var started = 0
    var finishedCount = 0
    var startTime: UInt64 = 0
    var report: ReplayReport
    var counter: UInt64 = 0
    let runID: UInt32
    var tickTimer: LoopTimer?

    /// The callee side's bound address (the proxy's upstream).
    public var calleeAddress: SocketAddress { calleeSocket.localAddress }

    public init(templates: [CallTemplate], options: ReplayOptions) throws(SIPIOError) {
        self.options = options
        self.templates = replayableTemplates(templates).map(replaySteps)
        loop = try EventLoop(index: 0)
        target = try SocketAddress(ipAddress: options.targetHost, port: options.targetPort)
        report = ReplayReport(target: "udp:\(options.targetHost):\(options.targetPort)", rateOffered: options.rate)
        runID = UInt32(truncatingIfNeeded: getpid()) &* 2_654_435_761 &+ UInt32(truncatingIfNeeded: loop.nowMilliseconds)
        let local = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        callerSocket = try UDPSocket(loop: loop, bindTo: local) { [unowned self] message in
            guard let parsed = try? SIPMessage(parsing: message.bytes) else { return }
            self.receive(parsed, at: .caller, from: message.source)
        }
        var calleeSocket: UDPSocket?
        var ports: [UInt16] = options.calleePort != 0 ? [options.calleePort] : [5080, 5081, 5082, 0]
        while calleeSocket == nil, !ports.isEmpty {
            let port = ports.removeFirst()
            do {
                calleeSocket = try UDPSocket(loop: loop, bindTo: local.withPort(port)) { [unowned self] message in
                    guard let parsed = try? SIPMessage(parsing: message.bytes) else { return }
                    self.receive(parsed, at: .callee, from: message.source)
                }
            } catch {
                if ports.isEmpty { throw error }
            }
        }
        self.calleeSocket = calleeSocket
    }

    /// Runs every call to its end on the calling thread and returns the report.
    public func run() -> ReplayReport {
        guard !templates.isEmpty, options.calls > 0 else { return report }
        let sampler = options.proxyPID.map { ProcessSampler(pid: $0) }
        let before = sampler?.sample()
        startTime = loop.nowMilliseconds
        tickTimer = loop.scheduleRepeating(everyMilliseconds: 5) { [unowned self] in self.tick() }
        loop.run()
        report.durationSeconds = Double(loop.nowMilliseconds - startTime) / 1000
        if let sampler, let before, let after = sampler.sample() {
            report.proxyCPUSecondsPer1000Calls = ProcessSampler.cpuSecondsPer1000Calls(
                from: before, to: after, calls: report.callsAttempted)
            report.proxyPeakMemoryKilobytes = after.peakRssKilobytes
        }
        return report
    }

    /// Prepares another run on the same sockets (a ramp step): a fresh report at `rate` for `calls`
    /// calls. Calls of earlier runs stay known until their drop timers so their late messages are ignored.
    public func reset(rate: Double, calls: Int) {
        options.rate = rate
        options.calls = calls
        report = ReplayReport(target: report.target, rateOffered: rate)
        started = 0
        finishedCount = 0
    }

    /// Serves the sockets for `milliseconds` without starting calls (a pause between ramp steps).
    public func settle(milliseconds: Int) {
        loop.scheduleOnce(afterMilliseconds: max(1, milliseconds)) { [unowned self] in self.loop.stop() }
        loop.run()
    }

    // MARK: - Scheduling

    func tick() {
        let now = loop.nowMilliseconds
        let due = min(options.calls, Int(Double(now > startTime ? now - startTime : 0) * options.rate / 1000) + 1)
        while started < due { startCall(now: now) }
        for call in Array(calls.values) where !call.finished {
            for k in call.transactions.indices where call.transactions[k].nextMilliseconds <= now {
                let t = call.transactions[k]
                send(t.bytes, from: t.role, call: call)
                report.retransmissions += 1
                let interval = t.method == "INVITE" ? t.intervalMilliseconds * 2 : min(t.intervalMilliseconds * 2, 4000)
                call.transactions[k].intervalMilliseconds = interval
                call.transactions[k].nextMilliseconds = now + interval
            }
            if !call.scheduled, now > call.lastProgress + UInt64(options.timeoutMilliseconds) {
                let waiting = call.nextIndex.map { call.steps[$0] }
                let what = waiting.map { ($0.statusCode.map { "\($0) (\(waiting!.method))" } ?? $0.method) } ?? "?"
                fail(call, .timeout, "no \(what) within \(options.timeoutMilliseconds) ms")
            }
        }
        if started == options.calls, finishedCount == started {
            tickTimer?.cancel()
            loop.stop()
        }
    }

    func startCall(now: UInt64) {
        let steps = templates[started % templates.count]
        started += 1
        report.callsAttempted += 1
        counter += 1
        let token = "\(String(runID, radix: 16))-\(counter)"
        let callerPort = callerSocket.localAddress.port
        let service = "sip:service@\(options.targetHost):\(options.targetPort)"
        let caller = DialogSide(
            localTag: "c\(token)", localURI: "sip:caller@127.0.0.1:\(callerPort)", remoteURI: service,
            remoteTarget: service)
        let callee = DialogSide(
            localTag: "s\(token)", localURI: service, remoteURI: "sip:caller@127.0.0.1:\(callerPort)",
            remoteTarget: "sip:caller@127.0.0.1:\(callerPort)")
        let call = ReplayCall(
            id: started, callID: "replay-\(token)@127.0.0.1", steps: steps, caller: caller, callee: callee, now: now)
        calls[call.callID] = call
        advance(call)
    }

    /// Sends (after its delay) the next message when every earlier one was exchanged.
    func advance(_ call: ReplayCall) {
        guard !call.finished, !call.scheduled else { return }
        guard let j = call.nextIndex else {
            complete(call)
            return
        }
        guard !call.sent[j] else { return }
        let send = { [unowned self] in
            call.scheduled = false
            guard !call.finished else { return }
            self.sendStep(j, of: call)
            call.sent[j] = true
            call.lastProgress = self.loop.nowMilliseconds
            self.advance(call)
        }
        let delay = call.steps[j].delayMilliseconds
        if delay > 0 {
            call.scheduled = true
            loop.scheduleOnce(afterMilliseconds: delay, send)
        } else {
            send()
        }
    }

    func complete(_ call: ReplayCall) {
        call.finished = true
        report.callsCompleted += 1
        finish(call)
    }

    func fail(_ call: ReplayCall, _ reason: FailureReason, _ what: String) {
        guard !call.finished else { return }
        call.finished = true
        report.recordFailure(reason, example: "call \(call.id) \(call.callID): \(what)")
        finish(call)
    }

    func finish(_ call: ReplayCall) {
        call.transactions.removeAll()
        finishedCount += 1
        // Keep the call a while so late retransmissions are not counted as strays, then drop it.
        loop.scheduleOnce(afterMilliseconds: 2000) { [unowned self] in self.calls[call.callID] = nil }
    }

    func send(_ bytes: [UInt8], from role: Role, call: ReplayCall) {
        if role == .caller {
            callerSocket.send(bytes, to: target)
        } else if let destination = call.callee.lastRequestSource {
            calleeSocket.send(bytes, to: destination)
        }
    }

    // MARK: - Building messages

    func branch() -> String {
        counter += 1
        return "z9hG4bK-r\(String(runID, radix: 16))-\(counter)"
    }

    func sendStep(_ j: Int, of call: ReplayCall) {
        let step = call.steps[j]
        let now = loop.nowMilliseconds
        if step.isRequest {
            let bytes = buildRequest(step, call: call)
            send(bytes, from: step.role, call: call)
            if step.method == "INVITE", call.inviteSentAt == nil { call.inviteSentAt = now }
            if step.method == "BYE" { call.byeSentAt = now }
            if step.method != "ACK" {
                call.transactions.append(
                    ClientTransaction(
                        method: step.method, cseq: step.cseq, bytes: bytes, role: step.role,
                        nextMilliseconds: now + 500, intervalMilliseconds: 500))
            }
        } else {
            let side = step.role == .caller ? call.caller : call.callee
            guard let request = side.lastRequest else { return }
            let bytes = buildResponse(step, to: request, side: side, role: step.role)
            if step.role == .caller {
                callerSocket.send(bytes, to: call.caller.lastRequestSource ?? target)
            } else {
                send(bytes, from: .callee, call: call)
            }
        }
    }

    func buildRequest(_ step: ReplayStep, call: ReplayCall) -> [UInt8] {
        let isCaller = step.role == .caller
        let side = isCaller ? call.caller : call.callee
        let port = isCaller ? callerSocket.localAddress.port : calleeSocket.localAddress.port
        let initial = step.method == "INVITE" && side.remoteTag == nil
        let non2xxACK = step.method == "ACK" && isCaller && !call.steps.contains {
            !$0.isRequest && $0.method == "INVITE" && ($0.statusCode ?? 0) >= 200 && ($0.statusCode ?? 0) < 300
        }
        var branchValue = branch()
        if initial { call.inviteBranch = branchValue }
        if non2xxACK { branchValue = call.inviteBranch }
        var routes: [String] = []
        var uri = side.remoteTarget
        if initial || non2xxACK {
            uri = "sip:service@\(options.targetHost):\(options.targetPort)"
        } else {
            routes = side.routeSet
        }
        var text = "\(step.method) \(uri) SIP/2.0\r\n"
        text += "Via: SIP/2.0/UDP 127.0.0.1:\(port);branch=\(branchValue);rport\r\n"
        text += "Max-Forwards: 70\r\n"
        for route in routes { text += "Route: \(route)\r\n" }
        text += "From: <\(side.localURI)>;tag=\(side.localTag)\r\n"
        text += "To: <\(side.remoteURI)>" + (side.remoteTag.map { ";tag=\($0)" } ?? "") + "\r\n"
        text += "Call-ID: \(call.callID)\r\n"
        text += "CSeq: \(step.cseq) \(step.method)\r\n"
        let contactUser = isCaller ? "caller" : "callee"
        if step.method == "INVITE" || step.method == "UPDATE" {
            text += "Contact: <sip:\(contactUser)@127.0.0.1:\(port)>\r\n"
        }
        if !step.body.isEmpty { text += "Content-Type: application/sdp\r\n" }
        text += "Content-Length: \(step.body.count)\r\n\r\n"
        return Array(text.utf8) + step.body
    }

    func buildResponse(_ step: ReplayStep, to request: SIPMessage, side: DialogSide, role: Role) -> [UInt8] {
        let status = step.statusCode ?? 200
        let port = role == .caller ? callerSocket.localAddress.port : calleeSocket.localAddress.port
        var text = "SIP/2.0 \(status) \(reasonPhrase(status))\r\n"
        func copy(_ name: SIPHeaderName, _ label: String) {
            request.forEachHeader(name) { header in
                text += "\(label): \(request.text(header.valueRange))\r\n"
                return true
            }
        }
        copy(.via, "Via")
        if step.method == "INVITE" || status < 300 { copy(.recordRoute, "Record-Route") }
        copy(.from, "From")
        if let to = request.firstHeader(.to) {
            let value = request.text(to.valueRange)
            text += "To: " + (request.toTag == nil && status > 100 ? value + ";tag=\(side.localTag)" : value) + "\r\n"
        }
        copy(.callID, "Call-ID")
        copy(.cseq, "CSeq")
        if step.method == "INVITE" && status > 100 && status < 300 {
            text += "Contact: <sip:\(role == .caller ? "caller" : "callee")@127.0.0.1:\(port)>\r\n"
        }
        if !step.body.isEmpty { text += "Content-Type: application/sdp\r\n" }
        text += "Content-Length: \(step.body.count)\r\n\r\n"
        return Array(text.utf8) + step.body
    }

    // MARK: - Receiving

    func receive(_ message: SIPMessage, at side: Role, from source: SocketAddress) {
        guard let callIDRange = message.callID, let call = calls[message.text(callIDRange)], !call.finished else { return }
        let now = loop.nowMilliseconds
        let sender: Role = side == .caller ? .callee : .caller
        let method = message.isRequest ? message.text(message.methodRange) : message.cseq.map { message.text($0.methodRange) } ?? ""
        let cseq = message.cseq?.number ?? 0
        if !message.isRequest {
            // Any response ends the retransmission of its request.
            call.transactions.removeAll { $0.method == method && $0.cseq == cseq && $0.role == side }
        }
        let match = call.steps.indices.first { j in
            let step = call.steps[j]
            guard step.role == sender, !call.received[j], step.isRequest == message.isRequest, step.method == method else {
                return false
            }
            return message.isRequest || step.statusCode == message.statusCode
        }
        guard let j = match else {
            if !message.isRequest && message.statusCode < 200 { return }  // the proxy's own 100, or one not in the template
            if method == "ACK" { return }  // hop-by-hop ACK of a non-2xx final
            if message.isRequest ? alreadyReceivedRequest(call, method) : alreadyReceivedResponse(call, message) {
                return  // a retransmission
            }
            let what = message.isRequest ? "\(method) request" : "\(message.statusCode) (\(method))"
            fail(call, message.isRequest ? .outOfOrder : .unexpectedResponse, "\(what) not expected at this point")
            return
        }
        if !call.sent[j] {
            if !message.isRequest && message.statusCode < 200 { return }  // the proxy's own provisional
            // The far side cannot have sent what this side has not sent yet.
            fail(call, .outOfOrder, "\(method) arrived at the \(side) side before its turn (step \(j + 1))")
            return
        }
        call.received[j] = true
        call.lastProgress = now
        learn(message, at: side, from: source, call: call)
        if !message.isRequest, message.statusCode >= 200, message.statusCode < 300 {
            if method == "INVITE", let sentAt = call.inviteSentAt, side == .caller {
                report.inviteToOK.record(Int(now >= sentAt ? now - sentAt : 0) * 1000)
                call.inviteSentAt = nil
            } else if method == "BYE", let sentAt = call.byeSentAt {
                report.byeToOK.record(Int(now >= sentAt ? now - sentAt : 0) * 1000)
                call.byeSentAt = nil
            }
        }
        advance(call)
    }

    func alreadyReceivedRequest(_ call: ReplayCall, _ method: String) -> Bool {
        call.steps.indices.contains { call.received[$0] && call.steps[$0].isRequest && call.steps[$0].method == method }
    }

    func alreadyReceivedResponse(_ call: ReplayCall, _ message: SIPMessage) -> Bool {
        call.steps.indices.contains {
            call.received[$0] && !call.steps[$0].isRequest && call.steps[$0].statusCode == message.statusCode
        }
    }

    /// Dialog state from a received message: tags, remote target and route set.
    func learn(_ message: SIPMessage, at side: Role, from source: SocketAddress, call: ReplayCall) {
        var dialog = side == .caller ? call.caller : call.callee
        if message.isRequest {
            dialog.lastRequest = message
            dialog.lastRequestSource = source
            if dialog.remoteTag == nil, let tag = message.fromTag { dialog.remoteTag = message.text(tag) }
            if let contact = contactURI(message) { dialog.remoteTarget = contact }
            if side == .callee, message.text(message.methodRange) == "INVITE", message.toTag == nil {
                var routes: [String] = []
                message.forEachValue(.recordRoute) { routes.append(message.text($0)); return true }
                dialog.routeSet = routes
            }
        } else if message.statusCode > 100 {
            if let tag = message.toTag { dialog.remoteTag = message.text(tag) }
            if let contact = contactURI(message) { dialog.remoteTarget = contact }
            if message.statusCode < 300, side == .caller, dialog.routeSet.isEmpty {
                var routes: [String] = []
                message.forEachValue(.recordRoute) { routes.append(message.text($0)); return true }
                dialog.routeSet = routes.reversed()
            }
        }
        if side == .caller { call.caller = dialog } else { call.callee = dialog }
    }

    func contactURI(_ message: SIPMessage) -> String? {
        var result: String?
        message.forEachValue(.contact) { range in
            if let address = message.nameAddress(range) { result = message.text(address.uriRange) }
            return false
        }
        return result
    }
}

func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Trying"
    case 180: return "Ringing"
    case 183: return "Session Progress"
    case 200: return "OK"
    case 486: return "Busy Here"
    case 487: return "Request Terminated"
    case 488: return "Not Acceptable Here"
    default: return status < 200 ? "Progress" : status < 300 ? "OK" : status < 400 ? "Redirect" : "Failure"
    }
}
