// ReplayEngine: replays the calls of a capture through a proxy, playing both ends on one event loop
// (run on the calling thread): the caller side sends the caller's requests to the target over UDP,
// or over a small pool of TCP connections; the callee side, where the proxy delivers them (its
// upstream), listens on UDP and TCP on one port and answers on the path a request came on. Each
// call walks its steps in order: a message is sent by its side once every earlier one was
// exchanged, after the template's delay. Every wait is a value in one timer queue; one loop timer
// wakes the engine when the earliest of them, or the next call's start, is due, so a wake-up costs
// the timers due, never the number of calls, and an idle replay (calls on hold) sleeps.
// With an SRS (ReplaySRS on the same loop, for the whole engine's life) a run ends only once the
// recording sessions its calls opened have ended too, or a bounded drain passed; what the SRS saw
// during the run, and any recording problem, go into the run's report.
import Glibc
internal import CLibPcap  // owns struct timeval's members here (MemberImportVisibility)
import SIPEdgeIO
import SIPMessage

/// How the caller side reaches the target.
public enum ReplayTransport: String, Sendable {
    case udp, tcp
}

/// The replay's own Session Recording Server, where the proxy records the replayed calls.
public struct ReplaySRSOptions: Sendable, Equatable {
    /// UDP and TCP port on 127.0.0.1 (the proxy's `--srs sip:srs@127.0.0.1:PORT`).
    public var port: UInt16
    /// Answer every acceptable recording INVITE with this failure status instead of 200
    /// (rejections with it are then expected, not a problem).
    public var rejectStatus: Int?
    /// Send 100 and wait this long before answering a recording INVITE.
    public var answerDelayMilliseconds: Int
    /// After a run's last call, wait at most this long for the SRS's sessions to end.
    public var drainLimitMilliseconds: Int
    /// ... and until the SRS has seen nothing new for this long (a recording INVITE may still be
    /// on its way when the call it records has ended).
    public var quietMilliseconds: Int

    public init(
        port: UInt16, rejectStatus: Int? = nil, answerDelayMilliseconds: Int = 0, drainLimitMilliseconds: Int = 5000,
        quietMilliseconds: Int = 250
    ) {
        self.port = port
        self.rejectStatus = rejectStatus
        self.answerDelayMilliseconds = answerDelayMilliseconds
        self.drainLimitMilliseconds = drainLimitMilliseconds
        self.quietMilliseconds = quietMilliseconds
    }
}

/// What to replay and where.
public struct ReplayOptions: Sendable {
    public var targetHost: String
    public var targetPort: UInt16
    public var rate: Double
    public var calls: Int
    /// The callee side's port on 127.0.0.1, UDP and TCP (0: 5080, 5081, 5082 or any free port).
    public var calleePort: UInt16
    public var timeoutMilliseconds: Int
    public var proxyPID: Int32?
    public var transport: ReplayTransport
    /// TCP: connections the caller side opens to the target; calls take them in turn.
    public var tcpConnections: Int
    /// Replaces the delay before the first request after the 2xx's ACK (the BYE, usually), so calls
    /// stay up this long and many are up at once.
    public var holdMilliseconds: Int?
    /// Run an SRS on the engine's loop, and report what it saw.
    public var srs: ReplaySRSOptions?

    public init(
        targetHost: String, targetPort: UInt16, rate: Double, calls: Int, calleePort: UInt16 = 0,
        timeoutMilliseconds: Int = 5000, proxyPID: Int32? = nil, transport: ReplayTransport = .udp,
        tcpConnections: Int = 1, holdMilliseconds: Int? = nil, srs: ReplaySRSOptions? = nil
    ) {
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.rate = rate
        self.calls = calls
        self.calleePort = calleePort
        self.timeoutMilliseconds = timeoutMilliseconds
        self.proxyPID = proxyPID
        self.transport = transport
        self.tcpConnections = tcpConnections
        self.holdMilliseconds = holdMilliseconds
        self.srs = srs
    }
}

/// Where a side answers a request it received.
enum ReplyPath {
    case datagram(SocketAddress)
    case stream(StreamConnection)

    var isStream: Bool {
        if case .stream = self { return true }
        return false
    }
}

/// A request a side received, kept to answer it (and to answer its retransmissions again).
struct ReceivedRequest {
    var method: String
    var cseq: UInt32
    var message: SIPMessage
    var path: ReplyPath
    var lastResponse: [UInt8]?
}

/// The last INVITE a side sent: its CANCEL and the ACK of its non-2xx final reuse its branch.
struct SentInvite {
    var branch: Int
    var cseq: UInt32
    var inDialog: Bool
}

/// One side's view of the call.
struct SideState {
    var localTag: String
    var localURI: String
    var remoteURI: String
    var remoteTag: String?
    var remoteTarget: String?
    var routeSet: [String] = []
    /// The latest request of each method received.
    var requests: [ReceivedRequest] = []
    /// Where this side's own in-dialog requests go when it has no connection of its own (the
    /// proxy's address or connection, from the last request it sent us).
    var proxyPath: ReplyPath?
    var invite: SentInvite?
}

/// A message resent over UDP until answered (requests: timers A and E) or ACKed (INVITE final
/// responses: timer G).
struct Retransmission {
    var bytes: [UInt8]
    var path: ReplyPath
    var role: Role
    var method: String
    var cseq: UInt32
    var isResponse: Bool
    var intervalMilliseconds: UInt64
    var active = true
}

final class ReplayCall {
    let number: Int
    let steps: [ReplayStep]
    var sent: [Bool]
    var received: [Bool]
    /// Every step before it is done.
    var nextStep = 0
    /// A step waits for its delay.
    var stepPending = false
    var lastProgress: UInt64
    var caller: SideState
    var callee: SideState
    /// TCP: the caller side's connection.
    var connection: StreamConnection?
    var retransmissions: [Retransmission] = []
    var inviteSentAt: UInt64?
    var byeSentAt: UInt64?
    /// The ACK of the 2xx, sent again when the 2xx is.
    var ackOf2xx: (bytes: [UInt8], path: ReplyPath)?
    var finished = false

    init(number: Int, steps: [ReplayStep], caller: SideState, callee: SideState, now: UInt64) {
        self.number = number
        self.steps = steps
        sent = Array(repeating: false, count: steps.count)
        received = Array(repeating: false, count: steps.count)
        self.caller = caller
        self.callee = callee
        lastProgress = now
    }

    func done(_ j: Int) -> Bool { sent[j] && (received[j] || steps[j].optionalReceipt) }
}

/// Replays calls and returns the report.
public final class ReplayEngine {
    var options: ReplayOptions
    let plans: [[ReplayStep]]
    let loop: EventLoop
    let target: SocketAddress
    var callerSocket: UDPSocket!
    /// TCP: where the proxy reaches the caller side's Contact.
    var callerListener: StreamListener?
    var calleeSocket: UDPSocket!
    var calleeListener: StreamListener!
    /// TCP: the caller side's connections to the target.
    var pool: [StreamConnection?]
    var calls: [Int: ReplayCall] = [:]
    var timers = TimerQueue()
    /// The one loop timer, armed for `wakeDeadline` while the loop is served.
    var wakeTimer: LoopTimer?
    var wakeDeadline = UInt64.max
    var serving = false
    /// Calls are being started and the run ends when they all finished.
    var running = false
    var started = 0
    var finishedCount = 0
    var activeCalls = 0
    var peakActiveCalls = 0
    var startTime: UInt64 = 0
    var report: ReplayReport
    /// Numbers calls and branches across runs, so a ramp step never mistakes an earlier one's.
    var lastCallNumber = 0
    var lastBranch = 0
    /// This run's token in Call-IDs, tags and branches.
    let token: String
    /// "r<token>-": Call-IDs are this, the call's number, "@127.0.0.1".
    let callIDPrefix: [UInt8]
    let serviceURI: String
    /// The target without a user part: a REGISTER's Request-URI.
    let domainURI: String
    var callerURI = ""
    /// The recording server, for the engine's whole life (every run and ramp step).
    public private(set) var srs: ReplaySRS?
    /// The SRS's statistics when the run started, and its active sessions then.
    var srsBefore = SRSStatistics()
    /// After the last call: waiting for the SRS's sessions to end (since `drainStart`).
    var draining = false
    var drainStart: UInt64 = 0
    /// The SRS's activity (its counters summed, sessions awaiting an ACK) and when it last changed.
    var srsActivity = 0
    var srsActivityAt: UInt64 = 0

    /// The callee side's address (the proxy's upstream), UDP and TCP.
    public var calleeAddress: SocketAddress { calleeSocket.localAddress }

    public init(templates: [CallTemplate], options: ReplayOptions) throws(SIPIOError) {
        self.options = options
        plans = replayableTemplates(templates).map { replaySteps($0, holdMilliseconds: options.holdMilliseconds) }
        loop = try EventLoop(index: 0, preciseTimers: true)  // pacing at 1 ms, not at 4 ms ticks
        target = try SocketAddress(ipAddress: options.targetHost, port: options.targetPort)
        report = ReplayReport(
            target: "\(options.transport.rawValue):\(options.targetHost):\(options.targetPort)", rateOffered: options.rate)
        let seed = UInt32(truncatingIfNeeded: getpid()) &* 2_654_435_761 &+ UInt32(truncatingIfNeeded: loop.nowMilliseconds)
        token = String(seed, radix: 16)
        callIDPrefix = Array("r\(token)-".utf8)
        pool = Array(repeating: nil, count: options.transport == .tcp ? max(1, options.tcpConnections) : 0)
        let host = options.targetHost.contains(":") ? "[\(options.targetHost)]" : options.targetHost
        serviceURI = "sip:service@\(host):\(options.targetPort)"
        domainURI = "sip:\(host):\(options.targetPort)"
        let local = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        if let srsOptions = options.srs {
            // Before the callee side, which takes the next free port when its default is this one.
            srs = try ReplaySRS(
                loop: loop, host: "127.0.0.1", port: srsOptions.port, tcp: true, rejectStatus: srsOptions.rejectStatus,
                answerDelayMilliseconds: srsOptions.answerDelayMilliseconds)
        }
        callerSocket = try UDPSocket(loop: loop, bindTo: local) { [unowned self] message in
            self.receiveDatagram(message, at: .caller)
        }
        callerURI = "sip:caller@127.0.0.1:\(callerSocket.localAddress.port)"
        if options.transport == .tcp {
            // The same port number as the UDP socket when it is free for TCP too.
            let onAccept: (StreamConnection) -> Void = { [unowned self] connection in self.accept(connection, at: .caller) }
            do {
                callerListener = try StreamListener(loop: loop, bindTo: callerSocket.localAddress, onAccept: onAccept)
            } catch {
                callerListener = try StreamListener(loop: loop, bindTo: local, onAccept: onAccept)
            }
        }
        var ports: [UInt16] = options.calleePort != 0 ? [options.calleePort] : [5080, 5081, 5082, 0]
        while calleeSocket == nil, !ports.isEmpty {
            let port = ports.removeFirst()
            do {
                let socket = try UDPSocket(loop: loop, bindTo: local.withPort(port)) { [unowned self] message in
                    self.receiveDatagram(message, at: .callee)
                }
                calleeListener = try StreamListener(loop: loop, bindTo: socket.localAddress) { [unowned self] connection in
                    self.accept(connection, at: .callee)
                }
                calleeSocket = socket
            } catch {
                if ports.isEmpty { throw error }
            }
        }
    }

    /// Closes the caller side's TCP connections and the SRS.
    public func close() {
        srs?.close()
        for connection in pool.compactMap({ $0 }) {
            connection.onClose = nil
            connection.onMessage = nil
            connection.close()
        }
        pool = pool.map { _ in nil }
    }

    /// Runs every call to its end on the calling thread and returns the report.
    public func run() -> ReplayReport {
        guard !plans.isEmpty, options.calls > 0 else { return report }
        // A proxy may be several processes (Kamailio forks its workers): its whole process tree counts.
        let sampler = options.proxyPID.map { ProcessSampler(pid: $0, includeDescendants: true) }
        let before = sampler?.sample()
        let cpuBefore = ownCPUSeconds()
        startTime = loop.nowMilliseconds
        peakActiveCalls = activeCalls
        if let srs {
            srs.resetPeakActiveSessions()
            srsBefore = srs.statistics
        }
        running = true
        serve()
        // Up to the last call's end: the SRS's drain is reported on its own.
        let end = srs != nil ? drainStart : loop.nowMilliseconds
        report.durationSeconds = Double(end > startTime ? end - startTime : 0) / 1000
        if let srs, let srsOptions = options.srs {
            let now = srs.statistics
            report.srs = now.since(srsBefore)
            report.srsRejectStatus = srsOptions.rejectStatus
            let drained = Double(loop.nowMilliseconds - drainStart) / 1000
            report.srsDrainSeconds = drained
            report.recordingProblems = ReplayReport.recordingProblems(
                now.since(srsBefore), expectedRejectStatus: srsOptions.rejectStatus,
                sessionsAwaitingACK: srs.sessionsAwaitingACK,
                sessionsLeftActive: max(0, now.activeSessions - srsBefore.activeSessions),
                sessionsLeftPending: srs.pendingSessions, drainSeconds: drained)
        }
        report.replayCPUSecondsPer1000Calls = (ownCPUSeconds() - cpuBefore) * 1000 / Double(max(1, report.callsAttempted))
        report.peakConcurrentCalls = peakActiveCalls
        if let sampler, let before, let after = sampler.sample() {
            report.proxyCPUSecondsPer1000Calls = ProcessSampler.cpuSecondsPer1000Calls(
                from: before, to: after, calls: report.callsAttempted)
            report.proxyPeakMemoryKilobytes = after.peakRssKilobytes
        }
        return report
    }

    /// Prepares another run on the same sockets (a ramp step): a fresh report at `rate` for `calls`
    /// calls. Calls of earlier runs stay known until their forget timers so their late messages are ignored.
    public func reset(rate: Double, calls: Int) {
        options.rate = rate
        options.calls = calls
        report = ReplayReport(target: report.target, rateOffered: rate)
        started = 0
        finishedCount = 0
    }

    /// Serves the sockets and timers for `milliseconds` without starting calls (a pause between ramp steps).
    public func settle(milliseconds: Int) {
        loop.scheduleOnce(afterMilliseconds: max(1, milliseconds)) { [unowned self] in self.loop.stop() }
        serve()
    }

    /// Runs the loop, timers and call starts included, until `stop()`.
    private func serve() {
        serving = true
        wake(at: loop.nowMilliseconds)
        loop.run()
        serving = false
        wakeTimer?.cancel()
        wakeTimer = nil
        wakeDeadline = .max
    }

    /// Arms the loop timer for `deadline` unless it is armed for earlier already.
    func wake(at deadline: UInt64) {
        guard serving, deadline < wakeDeadline else { return }
        wakeTimer?.cancel()
        wakeDeadline = deadline
        let now = loop.nowMilliseconds
        wakeTimer = loop.scheduleOnce(afterMilliseconds: deadline > now ? Int(deadline - now) : 0) { [unowned self] in
            self.tick()
        }
    }

    func schedule(at deadline: UInt64, call: Int, _ kind: ReplayTimerKind, index: Int = 0) {
        timers.schedule(at: deadline, call: call, kind, index: index)
        wake(at: deadline)
    }

    private func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1_000_000
    }

    // MARK: - Scheduling

    func tick() {
        wakeTimer = nil
        wakeDeadline = .max
        let now = loop.nowMilliseconds
        if running {
            // Starts are paced by the clock: a late wake-up starts every call now due.
            let elapsed = Double(now > startTime ? now - startTime : 0)
            let due = min(options.calls, Int(elapsed * options.rate / 1000) + 1)
            while started < due { startCall(now: now) }
        }
        while let timer = timers.popDue(now: now) { fire(timer, now: now) }
        stopWhenDone()
        if draining { checkDrain(now: now) }
        if running, started < options.calls {
            wake(at: startTime + UInt64((Double(started) * 1000 / options.rate).rounded(.up)))
        }
        if let earliest = timers.earliestDeadline { wake(at: earliest) }
    }

    func stopWhenDone() {
        if running, started == options.calls, finishedCount == started {
            running = false
            if srs != nil {
                // The proxy ends a recording after the call it records: wait for that.
                draining = true
                drainStart = loop.nowMilliseconds
                srsActivity = currentSRSActivity()
                srsActivityAt = drainStart
                wake(at: drainStart)
            } else {
                loop.stop()
            }
        }
    }

    /// Ends the drain once the SRS has no session left from this run (none active beyond those
    /// active when the run started, none unanswered, none waiting for its ACK) and has seen nothing
    /// new for the quiet time, or once the drain limit passed; else looks again in 10 ms.
    func checkDrain(now: UInt64) {
        guard draining, let srs, let srsOptions = options.srs else { return }
        let activity = currentSRSActivity()
        if activity != srsActivity {
            srsActivity = activity
            srsActivityAt = now
        }
        let settled =
            srs.statistics.activeSessions <= srsBefore.activeSessions && srs.pendingSessions == 0
            && srs.sessionsAwaitingACK == 0 && now >= srsActivityAt + UInt64(max(0, srsOptions.quietMilliseconds))
        if settled || now >= drainStart + UInt64(max(0, srsOptions.drainLimitMilliseconds)) {
            draining = false
            loop.stop()
        } else {
            wake(at: now + 10)
        }
    }

    /// A number that changes whenever the SRS receives a request or an ACK.
    func currentSRSActivity() -> Int {
        guard let srs else { return 0 }
        let s = srs.statistics
        return SRSStatistics.countFields.reduce(0) { $0 + s[keyPath: $1] } + srs.sessionsAwaitingACK
    }

    func startCall(now: UInt64) {
        let steps = plans[started % plans.count]
        started += 1
        report.callsAttempted += 1
        activeCalls += 1
        peakActiveCalls = max(peakActiveCalls, activeCalls)
        lastCallNumber += 1
        let number = lastCallNumber
        let caller = SideState(localTag: "c\(token)-\(number)", localURI: callerURI, remoteURI: serviceURI)
        let callee = SideState(localTag: "s\(token)-\(number)", localURI: serviceURI, remoteURI: callerURI)
        let call = ReplayCall(number: number, steps: steps, caller: caller, callee: callee, now: now)
        if !pool.isEmpty { call.connection = poolConnection(number % pool.count) }
        calls[number] = call
        schedule(at: now + UInt64(options.timeoutMilliseconds), call: number, .timeout)
        advance(call, now: now)
    }

    func fire(_ timer: ReplayTimer, now: UInt64) {
        guard let call = calls[timer.call] else { return }
        switch timer.kind {
        case .forget:
            calls[timer.call] = nil
        case .timeout:
            guard !call.finished else { return }
            let deadline = call.lastProgress + UInt64(options.timeoutMilliseconds)
            if call.stepPending {
                schedule(at: now + UInt64(options.timeoutMilliseconds), call: call.number, .timeout)
            } else if deadline > now {
                schedule(at: deadline, call: call.number, .timeout)
            } else {
                let what = call.nextStep < call.steps.count ? call.steps[call.nextStep].label : "?"
                fail(call, .timeout, "no \(what) within \(options.timeoutMilliseconds) ms")
            }
        case .sendStep:
            guard !call.finished, call.stepPending, call.nextStep == timer.index else { return }
            call.stepPending = false
            sendStep(timer.index, of: call, now: now)
            advance(call, now: now)
        case .retransmit:
            guard !call.finished, timer.index < call.retransmissions.count, call.retransmissions[timer.index].active
            else { return }
            let entry = call.retransmissions[timer.index]
            guard send(entry.bytes, on: entry.path, from: entry.role, call: call) else { return }
            report.retransmissions += 1
            let interval =
                entry.method == "INVITE" && !entry.isResponse
                ? entry.intervalMilliseconds * 2 : min(entry.intervalMilliseconds * 2, 4000)
            call.retransmissions[timer.index].intervalMilliseconds = interval
            schedule(at: now + interval, call: call.number, .retransmit, index: timer.index)
        }
    }

    /// Sends the next steps whose turn has come (after their delay), and completes the call after
    /// its last.
    func advance(_ call: ReplayCall, now: UInt64) {
        while !call.finished {
            while call.nextStep < call.steps.count, call.done(call.nextStep) { call.nextStep += 1 }
            guard call.nextStep < call.steps.count else {
                complete(call)
                return
            }
            let j = call.nextStep
            if call.sent[j] || call.stepPending { return }
            let delay = call.steps[j].delayMilliseconds
            if delay > 0 {
                call.stepPending = true
                schedule(at: now + UInt64(delay), call: call.number, .sendStep, index: j)
                return
            }
            sendStep(j, of: call, now: now)
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
        report.recordFailure(reason, example: "call \(call.number) \(callID(call.number)): \(what)")
        finish(call)
    }

    func finish(_ call: ReplayCall) {
        call.retransmissions.removeAll()
        finishedCount += 1
        activeCalls -= 1
        // Kept a while so late retransmissions are answered or ignored, then dropped.
        schedule(at: loop.nowMilliseconds + 2000, call: call.number, .forget)
        stopWhenDone()
    }

    func callID(_ number: Int) -> String {
        String(decoding: callIDPrefix, as: UTF8.self) + "\(number)@127.0.0.1"
    }

    // MARK: - Sending

    func sendStep(_ j: Int, of call: ReplayCall, now: UInt64) {
        let step = call.steps[j]
        call.sent[j] = true
        call.lastProgress = now
        if step.isRequest {
            sendRequest(step, of: call, now: now)
        } else {
            sendResponse(step, of: call, now: now)
        }
    }

    func sendRequest(_ step: ReplayStep, of call: ReplayCall, now: UInt64) {
        let path: ReplyPath
        if step.role == .caller {
            if let connection = call.connection {
                path = .stream(connection)
            } else {
                path = .datagram(target)
            }
        } else {
            guard let proxy = call.callee.proxyPath else {
                fail(call, .outOfOrder, "the callee side has no path to the proxy for its \(step.method)")
                return
            }
            path = proxy
        }
        let bytes = buildRequest(step, of: call, stream: path.isStream)
        guard send(bytes, on: path, from: step.role, call: call) else { return }
        switch step.method {
        case "INVITE": if call.inviteSentAt == nil { call.inviteSentAt = now }
        case "BYE": call.byeSentAt = now
        case "ACK":
            if !step.acknowledgesNon2xx { call.ackOf2xx = (bytes, path) }
            return
        default: break
        }
        // RFC 3261 §17.1.1.2 / §17.1.2.2: no retransmissions over reliable transports.
        if !path.isStream {
            retransmit(
                Retransmission(
                    bytes: bytes, path: path, role: step.role, method: step.method, cseq: step.cseq, isResponse: false,
                    intervalMilliseconds: 500),
                call: call, now: now)
        }
    }

    func sendResponse(_ step: ReplayStep, of call: ReplayCall, now: UInt64) {
        var side = step.role == .caller ? call.caller : call.callee
        let index =
            side.requests.lastIndex { $0.method == step.method && $0.cseq == step.cseq }
            ?? side.requests.lastIndex { $0.method == step.method }
        guard let index else {
            fail(call, .outOfOrder, "the \(step.role) side has no \(step.method) to answer with \(step.label)")
            return
        }
        let request = side.requests[index]
        let bytes = buildResponse(step, to: request.message, localTag: side.localTag, stream: request.path.isStream)
        side.requests[index].lastResponse = bytes
        if step.role == .caller { call.caller = side } else { call.callee = side }
        guard send(bytes, on: request.path, from: step.role, call: call) else { return }
        // RFC 3261 §17.2.1 and §13.3.1.4: an INVITE's final response is resent over UDP until the ACK.
        if step.method == "INVITE", !step.isProvisional, !request.path.isStream {
            retransmit(
                Retransmission(
                    bytes: bytes, path: request.path, role: step.role, method: "INVITE", cseq: request.cseq,
                    isResponse: true, intervalMilliseconds: 500),
                call: call, now: now)
        }
    }

    func retransmit(_ entry: Retransmission, call: ReplayCall, now: UInt64) {
        call.retransmissions.append(entry)
        schedule(
            at: now + entry.intervalMilliseconds, call: call.number, .retransmit, index: call.retransmissions.count - 1)
    }

    /// Sends on a path; a closed connection fails the call (reason transport) and returns false.
    @discardableResult
    func send(_ bytes: [UInt8], on path: ReplyPath, from role: Role, call: ReplayCall) -> Bool {
        switch path {
        case .datagram(let address):
            (role == .caller ? callerSocket : calleeSocket).send(bytes, to: address)
        case .stream(let connection):
            guard connection.isOpen else {
                fail(call, .transportError, "the TCP connection with \(connection.remoteAddress) is closed")
                return false
            }
            connection.send(bytes)
        }
        return true
    }

    /// The pool's connection in `slot`, connecting a new one when there is none or it closed.
    func poolConnection(_ slot: Int) -> StreamConnection {
        if let connection = pool[slot], connection.isOpen { return connection }
        let connection = StreamConnection.connect(loop: loop, to: target)
        connection.onMessage = { [unowned self] message in self.receiveStream(message, at: .caller) }
        connection.onClose = { [unowned self, unowned connection] error in
            self.connectionClosed(connection, slot: slot, error: error)
        }
        pool[slot] = connection
        return connection
    }

    /// Every call still running on a caller-side connection that closed fails (reason transport).
    func connectionClosed(_ connection: StreamConnection, slot: Int, error: SIPIOError?) {
        if pool[slot] === connection { pool[slot] = nil }
        let why = error.map { "\($0)" } ?? "closed by the peer"
        for call in Array(calls.values) where !call.finished && call.connection === connection {
            fail(call, .transportError, "TCP connection to \(connection.remoteAddress): \(why)")
        }
    }

    // MARK: - Receiving

    func accept(_ connection: StreamConnection, at side: Role) {
        connection.onMessage = { [unowned self] message in self.receiveStream(message, at: side) }
    }

    func receiveDatagram(_ message: borrowing ReceivedMessage, at side: Role) {
        guard let parsed = try? SIPMessage(parsing: message.bytes) else { return }
        receive(parsed, at: side, path: .datagram(message.source))
    }

    func receiveStream(_ message: borrowing ReceivedMessage, at side: Role) {
        guard let connection = message.connection, let parsed = try? SIPMessage(parsing: message.bytes, framing: .stream)
        else { return }
        receive(parsed, at: side, path: .stream(connection))
    }

    /// The call number in a Call-ID of this run's making ("r<token>-<number>@..."), without
    /// building a String.
    func callNumber(_ message: SIPMessage) -> Int? {
        guard let range = message.callID, range.count > callIDPrefix.count else { return nil }
        for (i, byte) in callIDPrefix.enumerated() where message.byte(at: range.offset + i) != byte { return nil }
        var number = 0
        var index = range.offset + callIDPrefix.count
        while index < range.end {
            let byte = message.byte(at: index)
            if byte == UInt8(ascii: "@") { break }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), number < Int.max / 10 else { return nil }
            number = number * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        return number
    }

    func receive(_ message: SIPMessage, at side: Role, path: ReplyPath) {
        guard let number = callNumber(message), let call = calls[number] else { return }
        let now = loop.nowMilliseconds
        let isRequest = message.isRequest
        let method = isRequest ? message.text(message.methodRange) : message.cseq.map { message.text($0.methodRange) } ?? ""
        let cseq = message.cseq?.number ?? 0
        let status = message.statusCode
        let sideState = side == .caller ? call.caller : call.callee
        if isRequest {
            if method == "ACK" {
                stopRetransmission(of: call, role: side, isResponse: true, method: "INVITE", cseq: cseq)
            } else if let earlier = sideState.requests.last(where: { $0.method == method && $0.cseq == cseq }) {
                // A retransmission: our response was lost, or has not been sent yet.
                if let response = earlier.lastResponse { send(response, on: path, from: side, call: call) }
                return
            }
        } else if method == "INVITE" || status >= 200 {
            stopRetransmission(of: call, role: side, isResponse: false, method: method, cseq: cseq)
        }
        guard !call.finished else { return }

        let sender: Role = side == .caller ? .callee : .caller
        let match = call.steps.indices.first { j in
            let step = call.steps[j]
            guard step.role == sender, !call.received[j], step.isRequest == isRequest, step.method == method else {
                return false
            }
            // A CANCEL carries its INVITE's number whatever the capture's said.
            guard method == "CANCEL" || step.cseq == cseq else { return false }
            return isRequest || step.statusCode == status
        }
        guard let j = match else {
            if !isRequest && status < 200 { return }  // the proxy's own 100, or one not in the template
            if method == "ACK" { return }  // the proxy's hop-by-hop ACK of a non-2xx final
            if !isRequest, alreadyReceived(call, status: status, method: method, cseq: cseq) {
                // A 2xx resent because our ACK was lost: the ACK goes again.
                if method == "INVITE", status < 300, side == .caller, let ack = call.ackOf2xx {
                    send(ack.bytes, on: ack.path, from: .caller, call: call)
                }
                return
            }
            let what = isRequest ? "\(method) request" : "\(status) (\(method))"
            fail(call, isRequest ? .outOfOrder : .unexpectedResponse, "\(what) not expected at this point")
            return
        }
        if !call.sent[j] {
            if call.steps[j].hopByHop {
                // The proxy answered this hop itself, before our far side's answer.
                call.received[j] = true
                return
            }
            if !isRequest && status < 200 { return }  // the proxy's own provisional
            // The far side cannot have sent what this side has not sent yet.
            fail(call, .outOfOrder, "\(call.steps[j].label) arrived at the \(side) side before its turn (step \(j + 1))")
            return
        }
        call.received[j] = true
        call.lastProgress = now
        learn(message, method: method, at: side, path: path, call: call)
        if !isRequest, status >= 200, status < 300 {
            if method == "INVITE", side == .caller, let sentAt = call.inviteSentAt {
                report.inviteToOK.record(Int(now >= sentAt ? now - sentAt : 0) * 1000)
                call.inviteSentAt = nil
            } else if method == "BYE", let sentAt = call.byeSentAt {
                report.byeToOK.record(Int(now >= sentAt ? now - sentAt : 0) * 1000)
                call.byeSentAt = nil
            }
        }
        advance(call, now: now)
    }

    func stopRetransmission(of call: ReplayCall, role: Role, isResponse: Bool, method: String, cseq: UInt32) {
        for k in call.retransmissions.indices {
            let entry = call.retransmissions[k]
            if entry.active, entry.role == role, entry.isResponse == isResponse, entry.method == method, entry.cseq == cseq {
                call.retransmissions[k].active = false
            }
        }
    }

    func alreadyReceived(_ call: ReplayCall, status: Int, method: String, cseq: UInt32) -> Bool {
        call.steps.indices.contains {
            call.received[$0] && !call.steps[$0].isRequest && call.steps[$0].statusCode == status
                && call.steps[$0].method == method && call.steps[$0].cseq == cseq
        }
    }

    /// Dialog state from a received message: tags, remote target, route set, requests to answer.
    func learn(_ message: SIPMessage, method: String, at side: Role, path: ReplyPath, call: ReplayCall) {
        var state = side == .caller ? call.caller : call.callee
        let dialogCreating = dialogCreatingMethods.contains(method)
        if message.isRequest {
            state.proxyPath = path
            if method != "ACK" {
                state.requests.removeAll { $0.method == method }
                state.requests.append(
                    ReceivedRequest(method: method, cseq: message.cseq?.number ?? 0, message: message, path: path))
            }
            if let tag = message.fromTag { state.remoteTag = message.text(tag) }
            if let contact = contactURI(message) { state.remoteTarget = contact }
            if message.toTag == nil, dialogCreating {
                var routes: [String] = []
                message.forEachValue(.recordRoute) { routes.append(message.text($0)); return true }
                state.routeSet = routes
            }
        } else if message.statusCode > 100 {
            if let tag = message.toTag { state.remoteTag = message.text(tag) }
            if dialogCreating, message.statusCode < 300 {
                if let contact = contactURI(message) { state.remoteTarget = contact }
                if state.routeSet.isEmpty {
                    var routes: [String] = []
                    message.forEachValue(.recordRoute) { routes.append(message.text($0)); return true }
                    state.routeSet = routes.reversed()
                }
            }
        }
        if side == .caller { call.caller = state } else { call.callee = state }
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

extension ReplayStep {
    /// "INVITE" for a request, "200 (INVITE)" for a response.
    var label: String { statusCode.map { "\($0) (\(method))" } ?? method }
}

func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Trying"
    case 180: return "Ringing"
    case 181: return "Call Is Being Forwarded"
    case 183: return "Session Progress"
    case 200: return "OK"
    case 202: return "Accepted"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 407: return "Proxy Authentication Required"
    case 486: return "Busy Here"
    case 487: return "Request Terminated"
    case 488: return "Not Acceptable Here"
    case 489: return "Bad Event"
    default: return status < 200 ? "Progress" : status < 300 ? "OK" : status < 400 ? "Redirect" : "Failure"
    }
}
