import MediaEngine
import SIPEdgeIO
import Synchronization
import Testing

/// One request as a fake engine received it.
struct FakeRequest: Sendable {
    /// The whole datagram.
    let datagram: [UInt8]
    let cookie: String
    /// The bytes after `<cookie><space>`.
    let body: [UInt8]
    /// The decoded body.
    let message: Bencode
    /// How many datagrams with this cookie arrived, this one included.
    let attempt: Int
    /// The loop's clock when it arrived.
    let receivedAt: UInt64
    /// The requester.
    let source: SocketAddress

    var command: String? { message["command"]?.string }
    var callID: String? { message["call-id"]?.string }
}

/// A UDP socket playing rtpengine: it records every request and answers with whatever `respond`
/// returns (raw datagrams, sent back to the requester). Lives on one loop's thread; the test reads
/// `requests` from any thread.
final class FakeEngine: @unchecked Sendable {
    let requests = Recorder<FakeRequest>()
    /// Datagrams that were not NG requests.
    let undecodable = Recorder<[UInt8]>()
    private let loop: EventLoop
    private var socket: UDPSocket!
    private var attempts: [String: Int] = [:]
    private let respond: (FakeRequest) -> [[UInt8]]

    /// Binds on loopback; call on the loop's thread.
    init(loop: EventLoop, ipv6: Bool = false, respond: @escaping (FakeRequest) -> [[UInt8]]) throws {
        self.loop = loop
        self.respond = respond
        socket = try UDPSocket(loop: loop, bindTo: loopback(ipv6: ipv6)) { [unowned self] message in
            self.handle(message)
        }
    }

    /// The fake's address (fixed at bind time; readable from any thread).
    var address: SocketAddress { socket.localAddress }

    /// Sends a datagram from the fake's socket; on the loop's thread.
    func send(_ datagram: [UInt8], to destination: SocketAddress) {
        socket.send(datagram, to: destination)
    }

    func close() { socket.close() }

    private func handle(_ message: borrowing ReceivedMessage) {
        let datagram = copyBytes(message)
        guard let decoded = try? NGDatagram.decode(datagram) else {
            undecodable.append(datagram)
            return
        }
        let (cookie, body) = decoded
        let space = datagram.firstIndex(of: UInt8(ascii: " "))!
        attempts[cookie, default: 0] += 1
        let request = FakeRequest(
            datagram: datagram, cookie: cookie, body: Array(datagram[(space + 1)...]), message: body,
            attempt: attempts[cookie]!, receivedAt: loop.nowMilliseconds, source: message.source)
        requests.append(request)
        for reply in respond(request) {
            socket.send(reply, to: message.source)
        }
    }

    // MARK: - Canned replies

    /// `<cookie> <encoded reply>`.
    static func reply(_ cookie: String, _ reply: Bencode) -> [UInt8] {
        NGDatagram.encode(cookie: cookie, message: reply)
    }

    /// What a healthy engine answers: "pong" to ping, an SDP naming `name` to offer and answer, a
    /// fixed subscription to subscribe request, "ok" otherwise.
    static func healthyReply(_ request: FakeRequest, name: String = "fake") -> [[UInt8]] {
        switch request.command {
        case "ping":
            return [reply(request.cookie, ["result": "pong"])]
        case "offer", "answer":
            return [reply(request.cookie, ["result": "ok", "sdp": .string("v=0 \(request.command!) from \(name)")])]
        case "subscribe request":
            return [reply(request.cookie, subscriptionReply)]
        case "list":
            return [reply(request.cookie, ["result": "ok", "calls": []])]
        default:
            return [reply(request.cookie, ["result": "ok"])]
        }
    }

    /// A subscribe-request reply shaped like rtpengine 10.5's: the caller's stream is labelled "1"
    /// and comes first, the callee's is labelled "0".
    static let subscriptionSDP =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n"
        + "m=audio 30026 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=label:1\r\na=sendonly\r\n"
        + "m=audio 30036 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=label:0\r\na=sendonly\r\n"

    static let subscriptionReply: Bencode = [
        "result": "ok",
        "to-tag": "srs-1",
        "from-tags": ["caller", "callee"],
        "tag-medias": [
            ["tag": "caller", "medias": [["index": 1, "type": "audio", "label": "1", "mode": "sendrecv"]]],
            ["tag": "callee", "medias": [["index": 1, "type": "audio", "label": "0", "mode": "sendrecv"]]],
        ],
        "media-labels": [
            "1": ["tag": "caller", "index": 1, "type": "audio", "mode": "sendrecv"],
            "0": ["tag": "callee", "index": 1, "type": "audio", "mode": "sendrecv"],
        ],
        "sdp": .string(subscriptionSDP),
    ]
}

/// A client on its own loop with fake engines, and a way to await its completions.
final class ClientHarness: Sendable {
    let running: RunningLoop
    let engines: [FakeEngine]
    private let boundClient: LoopBound<RTPEngineClient>
    /// Every completion the client called, by request, so a double call shows up.
    let completions = Recorder<String>()

    /// - Parameters:
    ///   - timeoutMilliseconds: generous by default, so a loaded machine does not cause
    ///     retransmissions in tests that do not expect them.
    ///   - responders: one per fake engine.
    init(
        timeoutMilliseconds: Int = 1000, attempts: Int = 3, failureHoldMilliseconds: Int = 10_000, ipv6: Bool = false,
        responders: [@Sendable (FakeRequest) -> [[UInt8]]]
    ) async throws {
        let running = try RunningLoop()
        self.running = running
        let (engines, client) = try await running.run {
            let engines = try responders.map { try FakeEngine(loop: running.loop, ipv6: ipv6, respond: $0) }
            let configuration = RTPEngineClient.Configuration(
                engines: engines.map(\.address), timeoutMilliseconds: timeoutMilliseconds, attempts: attempts,
                failureHoldMilliseconds: failureHoldMilliseconds)
            return LoopBound(value: (engines, try RTPEngineClient(loop: running.loop, configuration: configuration)))
        }.value
        self.engines = engines
        self.boundClient = LoopBound(value: client)
    }

    /// A client of real engines (no fakes).
    init(realEngines: [SocketAddress], timeoutMilliseconds: Int, attempts: Int) async throws {
        let running = try RunningLoop()
        self.running = running
        self.engines = []
        self.boundClient = try await running.run {
            let configuration = RTPEngineClient.Configuration(
                engines: realEngines, timeoutMilliseconds: timeoutMilliseconds, attempts: attempts)
            return LoopBound(value: try RTPEngineClient(loop: running.loop, configuration: configuration))
        }
    }

    /// Starts a request on the loop's thread and waits for its completion.
    func call<Value: Sendable>(
        _ name: String = #function, _ start: @escaping (RTPEngineClient, @escaping (Value) -> Void) -> Void
    ) async -> Value {
        let client = boundClient
        let completions = completions
        let start = LoopBound(value: start)
        return await withCheckedContinuation { continuation in
            running.loop.execute {
                var isFirst = true
                start.value(client.value) { value in
                    completions.append(name)
                    guard isFirst else { return }
                    isFirst = false
                    continuation.resume(returning: value)
                }
            }
        }
    }

    /// Reads something off the client on the loop's thread.
    func read<Value: Sendable>(_ body: @escaping (RTPEngineClient) -> Value) async -> Value {
        let client = boundClient
        let body = LoopBound(value: body)
        return try! await running.run { body.value(client.value) }
    }

    var counters: RTPEngineCounters {
        get async { await read(\.counters) }
    }

    func shutdown() async {
        let client = boundClient
        let engines = engines
        _ = try? await running.run {
            client.value.close()
            for engine in engines { engine.close() }
        }
        await running.shutdown()
    }
}

/// A responder that never answers.
let silent: @Sendable (FakeRequest) -> [[UInt8]] = { _ in [] }

/// A responder that answers like a healthy engine.
let healthy: @Sendable (FakeRequest) -> [[UInt8]] = { FakeEngine.healthyReply($0) }

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }

    var success: Success? {
        if case .success(let value) = self { return value }
        return nil
    }
}
