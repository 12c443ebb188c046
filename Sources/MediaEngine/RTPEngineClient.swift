import Logging
import SIPEdgeIO

/// What an ``RTPEngineClient`` has counted since it was created.
public struct RTPEngineCounters: Sendable, Equatable {
    /// Requests sent (first attempts only).
    public var requests = 0
    /// Repeated sends of a request that had no reply yet.
    public var retransmissions = 0
    /// Replies matched to a waiting request.
    public var replies = 0
    /// Requests that got no reply after the last attempt.
    public var timeouts = 0
    /// Replies with a result other than "ok" / "pong" (usually "error" with an error-reason).
    public var engineErrors = 0
    /// Replies whose cookie matched but whose body was not what the command expects.
    public var malformedReplies = 0
    /// Well-framed datagrams nobody waits for: late or duplicate replies, unknown cookies, or
    /// replies from an address the request did not go to. Ignored.
    public var strayReplies = 0
    /// Datagrams without NG framing (no cookie). Ignored.
    public var garbage = 0

    public init() {}
}

/// A client of rtpengine's NG control protocol over UDP, bound to one event loop.
///
/// Use one client per proxy worker. Every method, and every completion, runs on the loop's thread;
/// completions always run later, never inside the call that started them.
///
/// **Requests.** Each request is one datagram `<cookie> <bencoded dictionary>` to one engine.
/// Without a reply it is sent again with the same cookie (rtpengine answers a repeated cookie from
/// its reply cache instead of running the command twice), after ``Configuration/timeoutMilliseconds``,
/// then twice that, and so on, for ``Configuration/attempts`` sends in all; after the last one the
/// request fails with a `timeout` ``MediaEngineError``.
///
/// **Engines.** With several engines, a new call (a call-id the client has not seen) goes to the
/// next engine in round-robin order, skipping engines whose last request timed out less than
/// ``Configuration/failureHoldMilliseconds`` ago (if all of them did, the next one is used anyway).
/// Every later command for that call-id goes to the same engine, until `delete` completes. If the
/// command that chose the engine times out before the engine ever answered for the call, the choice
/// is forgotten, so a retry can go elsewhere.
public final class RTPEngineClient {
    /// Where the engines are and how patient the client is.
    public struct Configuration: Sendable {
        /// The engines' NG addresses (`--listen-ng`); at least one, all of one address family.
        public var engines: [SocketAddress]
        /// The wait for a reply to the first send; each later send waits twice as long as the one
        /// before.
        public var timeoutMilliseconds: Int
        /// Sends per request, the first included (at least 1).
        public var attempts: Int
        /// How long an engine whose request timed out is skipped when new calls choose an engine.
        public var failureHoldMilliseconds: Int
        /// The client's own address; by default 127.0.0.1 / ::1 port 0 when every engine is on
        /// loopback, otherwise 0.0.0.0 / :: port 0.
        public var localAddress: SocketAddress?

        public init(
            engines: [SocketAddress], timeoutMilliseconds: Int = 500, attempts: Int = 3,
            failureHoldMilliseconds: Int = 10_000, localAddress: SocketAddress? = nil
        ) {
            self.engines = engines
            self.timeoutMilliseconds = timeoutMilliseconds
            self.attempts = attempts
            self.failureHoldMilliseconds = failureHoldMilliseconds
            self.localAddress = localAddress
        }
    }

    /// The loop whose thread runs the client.
    public let loop: EventLoop
    public let configuration: Configuration
    /// What has happened so far.
    public private(set) var counters = RTPEngineCounters()
    private let logger: Logger
    private var socket: UDPSocket!
    private var isClosed = false

    private struct Engine {
        let address: SocketAddress
        /// When its last request timed out; nil once it answers again.
        var failedAt: UInt64?
    }

    private var engines: [Engine]
    /// The engine the next new call tries first.
    private var nextEngine = 0

    /// The engine a call is pinned to.
    private struct CallPin {
        let engine: Int
        /// Whether the engine has answered any request for the call.
        var isConfirmed: Bool
    }

    private var pins: [String: CallPin] = [:]

    private struct PendingRequest {
        let command: String
        let datagram: [UInt8]
        let engine: Int
        /// The call whose pin this request may confirm or drop.
        let callID: String?
        var attemptsMade: Int
        var waitMilliseconds: Int
        /// When the current attempt is given up on (loop milliseconds).
        var deadline: UInt64
        let completion: (Result<Reply, MediaEngineError>) -> Void
    }

    /// A successful reply and the engine that sent it.
    struct Reply {
        let body: NGReply
        let engine: SocketAddress

        var message: Bencode { body.message }
    }

    /// Waiting requests by the sequence number in their cookie.
    private var pending: [UInt64: PendingRequest] = [:]
    /// "<random hex>-<loop index>-", so cookies differ between workers and between runs; a
    /// cookie is this prefix and the request's sequence number in decimal.
    private let cookiePrefix: String
    private var sequence: UInt64 = 0
    /// Scratch space for validating replies (see `Bencode.validate`), kept between replies.
    private var replyKeys: [Range<Int>] = []
    /// Every attempt's deadline, earliest first. An answered request's entry stays until it comes
    /// up and is then skipped: one re-armed timer instead of a timer made and freed per request.
    private var deadlines = DeadlineHeap()
    private var deadlineTimer: LoopTimer?
    /// The deadline `deadlineTimer` is armed for.
    private var armedDeadline: UInt64?

    /// Opens the control socket on `loop`; may be called from any thread, everything else on the
    /// loop's thread.
    /// - Parameter logger: used at debug level only, when an engine stops or resumes answering.
    /// - Throws: `socketError` when the engines are missing or of mixed families, or the socket
    ///   cannot be bound.
    public init(
        loop: EventLoop, configuration: Configuration,
        logger: Logger = Logger(label: "MediaEngine", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(MediaEngineError) {
        self.loop = loop
        self.configuration = configuration
        self.logger = logger
        self.engines = configuration.engines.map { Engine(address: $0, failedAt: nil) }
        var random = SystemRandomNumberGenerator()
        let prefix = String(random.next() as UInt32, radix: 16)
        cookiePrefix = String(repeating: "0", count: 8 - prefix.count) + prefix + "-\(loop.index)-"

        guard let first = configuration.engines.first else {
            throw MediaEngineError(code: .socketError, command: "open", engine: nil, reason: "no engine configured")
        }
        guard configuration.engines.allSatisfy({ $0.isIPv6 == first.isIPv6 }) else {
            throw MediaEngineError(
                code: .socketError, command: "open", engine: nil, reason: "engines of both address families")
        }
        let local: SocketAddress
        do throws(SIPIOError) {
            if let configured = configuration.localAddress {
                local = configured
            } else {
                local = try Self.defaultLocalAddress(for: configuration.engines)
            }
            socket = try UDPSocket(loop: loop, bindTo: local) { [weak self] message in
                self?.receive(message)
            }
        } catch {
            throw MediaEngineError(code: .socketError, command: "open", engine: nil, reason: error.description)
        }
    }

    private static func defaultLocalAddress(for engines: [SocketAddress]) throws(SIPIOError) -> SocketAddress {
        let isIPv6 = engines[0].isIPv6
        let allLoopback = engines.allSatisfy { $0.ipAddress == "::1" || $0.ipAddress.hasPrefix("127.") }
        switch (isIPv6, allLoopback) {
        case (false, true): return try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        case (false, false): return try SocketAddress(ipAddress: "0.0.0.0", port: 0)
        case (true, true): return try SocketAddress(ipAddress: "::1", port: 0)
        case (true, false): return try SocketAddress(ipAddress: "::", port: 0)
        }
    }

    /// The control socket's bound address.
    public var localAddress: SocketAddress { socket.localAddress }

    /// The engines, in configuration order.
    public var engineAddresses: [SocketAddress] { engines.map(\.address) }

    /// Datagrams the socket could not send (see `UDPSocket.failedSends`).
    public var failedSends: Int { socket.failedSends }

    /// The calls currently pinned to an engine (sent at least one command, not deleted yet).
    public var pinnedCallCount: Int { pins.count }

    /// The engine (index into ``engineAddresses``) `callID` is pinned to, if any.
    public func engineIndex(forCall callID: String) -> Int? { pins[callID]?.engine }

    /// Fails every waiting request with `socketError` and closes the socket; later requests fail
    /// the same way.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        let waiting = pending
        pending.removeAll()
        for (_, request) in waiting {
            request.completion(.failure(closedError(request.command, engine: engines[request.engine].address)))
        }
        deadlineTimer?.cancel()
        socket.close()
    }

    // MARK: - Requests

    /// Where a request goes.
    enum Route {
        /// To the engine `callID` is pinned to, pinning it to the next engine if it is new.
        case call(String)
        /// To the call's engine if it is pinned, otherwise to the next engine without pinning.
        case callIfPinned(String)
        /// To one engine, by index.
        case engine(Int)
    }

    /// Sends any NG command and hands back the whole reply dictionary.
    ///
    /// A message with a `call-id` goes to that call's engine (chosen now if the call is new);
    /// others go to engine `engine`. The reply is a success when its `result` is "ok" or "pong".
    public func request(
        _ message: [String: Bencode], engine: Int = 0, completion: @escaping (Result<Bencode, MediaEngineError>) -> Void
    ) {
        let command = NGCommand(message)
        let route: Route = command.callID.map(Route.call) ?? .engine(engine)
        send(command, route: route) { completion($0.map(\.message)) }
    }

    /// Sends `message` by `route`; the completion gets the reply dictionary when its result is
    /// "ok" or "pong".
    func send(
        _ message: NGCommand, route: Route, completion: @escaping (Result<Reply, MediaEngineError>) -> Void
    ) {
        assert(loop.isCurrent, "RTPEngineClient used off its loop's thread")
        let command = message.name
        guard !isClosed else {
            let error = closedError(command, engine: nil)
            loop.scheduleOnce(afterMilliseconds: 0) { completion(.failure(error)) }
            return
        }
        let (engine, callID) = resolve(route)
        sequence += 1
        let cookie = cookiePrefix + String(sequence)
        let datagram = message.datagram(cookie: cookie)
        var request = PendingRequest(
            command: command, datagram: datagram, engine: engine, callID: callID, attemptsMade: 1,
            waitMilliseconds: max(configuration.timeoutMilliseconds, 1), deadline: 0, completion: completion)
        request.deadline = startDeadline(sequence: sequence, milliseconds: request.waitMilliseconds)
        pending[sequence] = request
        counters.requests += 1
        socket.send(datagram, to: engines[engine].address)
    }

    private func resolve(_ route: Route) -> (engine: Int, callID: String?) {
        switch route {
        case .engine(let index):
            precondition(engines.indices.contains(index), "no engine \(index)")
            return (index, nil)
        case .callIfPinned(let callID):
            return (pins[callID]?.engine ?? chooseEngine(), nil)
        case .call(let callID):
            if let pin = pins[callID] { return (pin.engine, callID) }
            let engine = chooseEngine()
            pins[callID] = CallPin(engine: engine, isConfirmed: false)
            return (engine, callID)
        }
    }

    /// Round robin over the engines that have not failed recently.
    private func chooseEngine() -> Int {
        let now = loop.nowMilliseconds
        let hold = UInt64(max(configuration.failureHoldMilliseconds, 0))
        for step in 0..<engines.count {
            let index = (nextEngine + step) % engines.count
            if let failedAt = engines[index].failedAt, now &- failedAt < hold { continue }
            nextEngine = (index + 1) % engines.count
            return index
        }
        let index = nextEngine
        nextEngine = (index + 1) % engines.count
        return index
    }

    /// Deadlines fall on a 10 ms grid, rounded up (never early), so that the timer fires at most
    /// 100 times a second however many requests are waiting.
    private static let deadlineGrid: UInt64 = 10

    /// Queues the deadline of an attempt `milliseconds` from now and returns it.
    private func startDeadline(sequence: UInt64, milliseconds: Int) -> UInt64 {
        let due = loop.nowMilliseconds + UInt64(milliseconds)
        let deadline = (due + Self.deadlineGrid - 1) / Self.deadlineGrid * Self.deadlineGrid
        deadlines.push(deadline, sequence)
        if armedDeadline.map({ deadline < $0 }) ?? true { armDeadlineTimer(for: deadline) }
        return deadline
    }

    private func armDeadlineTimer(for deadline: UInt64) {
        if deadlineTimer == nil {
            deadlineTimer = loop.makeTimer { [weak self] in self?.deadlinesDue() }
        }
        armedDeadline = deadline
        let now = loop.nowMilliseconds
        deadlineTimer?.schedule(afterMilliseconds: deadline > now ? Int(deadline - now) : 0)
    }

    /// Runs every deadline that has come, then waits for the next one.
    private func deadlinesDue() {
        armedDeadline = nil
        let now = loop.nowMilliseconds
        while let (deadline, sequence) = deadlines.first, deadline <= now {
            deadlines.removeFirst()
            if let request = pending[sequence], request.deadline == deadline { timerFired(sequence: sequence) }
        }
        if let (deadline, _) = deadlines.first, !isClosed { armDeadlineTimer(for: deadline) }
    }

    private func timerFired(sequence: UInt64) {
        guard var request = pending[sequence] else { return }
        if request.attemptsMade < configuration.attempts {
            request.attemptsMade += 1
            request.waitMilliseconds = min(request.waitMilliseconds, Int.max / 2) * 2
            request.deadline = startDeadline(sequence: sequence, milliseconds: request.waitMilliseconds)
            pending[sequence] = request
            counters.retransmissions += 1
            socket.send(request.datagram, to: engines[request.engine].address)
            return
        }
        pending[sequence] = nil
        counters.timeouts += 1
        let address = engines[request.engine].address
        if engines[request.engine].failedAt == nil {
            logger.debug("rtpengine not answering", metadata: ["rtpengine.address": "\(address)"])
        }
        engines[request.engine].failedAt = loop.nowMilliseconds
        if let callID = request.callID, let pin = pins[callID], !pin.isConfirmed { pins[callID] = nil }
        request.completion(
            .failure(
                MediaEngineError(
                    code: .timeout, command: request.command, engine: address,
                    reason: "no reply after \(request.attemptsMade) attempts")))
    }

    // MARK: - Replies

    private func receive(_ message: borrowing ReceivedMessage) {
        let cookieLength: Int
        do throws(NGError) {
            cookieLength = try NGDatagram.cookieLength(message.bytes)
        } catch {
            counters.garbage += 1
            return
        }
        guard let sequence = sequence(inCookieOf: message.bytes, length: cookieLength), let request = pending[sequence],
            engines[request.engine].address == message.source
        else {
            counters.strayReplies += 1
            return
        }
        pending[sequence] = nil
        counters.replies += 1
        let engine = engines[request.engine].address
        if engines[request.engine].failedAt != nil {
            engines[request.engine].failedAt = nil
            logger.debug("rtpengine answering again", metadata: ["rtpengine.address": "\(engine)"])
        }
        // Read, then written back only when it changes: `pins[callID]?.isConfirmed = true` runs a
        // dictionary modify coroutine that allocates its frame on every reply.
        if let callID = request.callID, var pin = pins[callID], !pin.isConfirmed {
            pin.isConfirmed = true
            pins[callID] = pin
        }

        let reply: NGReply
        do throws(NGError) {
            reply = try NGReply(validating: message.bytes.extracting((cookieLength + 1)...), keys: &replyKeys)
        } catch {
            counters.malformedReplies += 1
            request.completion(.failure(malformed(request.command, engine, "\(error)")))
            return
        }
        guard let result = reply.string("result") else {
            counters.malformedReplies += 1
            request.completion(.failure(malformed(request.command, engine, "no result in the reply")))
            return
        }
        guard result == "ok" || result == "pong" else {
            counters.engineErrors += 1
            let reason = reply.string("error-reason") ?? result
            let error = MediaEngineError(code: .engineError, command: request.command, engine: engine, reason: reason)
            request.completion(.failure(error))
            return
        }
        request.completion(.success(Reply(body: reply, engine: engine)))
    }

    /// The sequence number of a cookie this client made (`cookiePrefix` then decimal digits), read
    /// in place; nil for any other cookie.
    private func sequence(inCookieOf datagram: borrowing RawSpan, length: Int) -> UInt64? {
        let prefix = cookiePrefix.utf8
        guard length > prefix.count, length <= prefix.count + 20 else { return nil }
        var position = 0
        for byte in prefix {
            guard datagram.byte(at: position) == byte else { return nil }
            position += 1
        }
        guard datagram.byte(at: position) != UInt8(ascii: "0") || position + 1 == length else { return nil }
        var value: UInt64 = 0
        while position < length {
            let byte = datagram.byte(at: position)
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflowShift) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowAdd) = shifted.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflowShift, !overflowAdd else { return nil }
            value = next
            position += 1
        }
        return value
    }

    /// Counts and builds a `malformedReply` error for a reply that decoded but lacks what the
    /// command needs.
    func malformedReply(_ command: String, engine: SocketAddress?, _ reason: String) -> MediaEngineError {
        counters.malformedReplies += 1
        return malformed(command, engine, reason)
    }

    private func malformed(_ command: String, _ engine: SocketAddress?, _ reason: String) -> MediaEngineError {
        MediaEngineError(code: .malformedReply, command: command, engine: engine, reason: reason)
    }

    private func closedError(_ command: String, engine: SocketAddress?) -> MediaEngineError {
        MediaEngineError(code: .socketError, command: command, engine: engine, reason: "client closed")
    }

    /// Forgets the engine of `callID` (after its delete).
    func unpin(_ callID: String) {
        pins[callID] = nil
    }
}

/// A binary min-heap of (deadline, request sequence) pairs.
private struct DeadlineHeap {
    private var entries: [(deadline: UInt64, sequence: UInt64)] = []

    var first: (UInt64, UInt64)? { entries.first.map { ($0.deadline, $0.sequence) } }

    mutating func push(_ deadline: UInt64, _ sequence: UInt64) {
        entries.append((deadline, sequence))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() {
        let last = entries.removeLast()
        guard !entries.isEmpty else { return }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < entries.count else { break }
            let right = left + 1
            let smaller = right < entries.count && entries[right].deadline < entries[left].deadline ? right : left
            guard entries[smaller].deadline < entries[parent].deadline else { break }
            entries.swapAt(smaller, parent)
            parent = smaller
        }
    }
}
