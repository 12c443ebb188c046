import Glibc
import SIPEdgeIO
import SIPEdgeTLS
import TLSTestSupport
import Testing

/// What one side of a TLS connection saw, with the handshake's outcome as seen at each message.
enum TLSEvent: Sendable, Equatable {
    case message([UInt8], transport: Transport, tls: TLSView)
    case malformed(reason: String)
    case closed(SIPIOError?)
}

/// The TLS properties of a connection, read on its loop.
struct TLSView: Sendable, Equatable {
    let isTLS: Bool
    let version: String?
    let cipher: String?
    let peerSubject: String?
    let sessionReused: Bool

    init(_ connection: StreamConnection) {
        isTLS = connection.isTLS
        version = connection.tlsProtocol
        cipher = connection.tlsCipher
        peerSubject = connection.peerCertificateSubject
        sessionReused = connection.sessionReused
    }
}

/// Records a connection's messages and close; `reply` answers each message.
@discardableResult
func record(
    _ connection: StreamConnection, into events: Recorder<TLSEvent>, reply: (@Sendable ([UInt8]) -> [UInt8]?)? = nil
) -> StreamConnection {
    connection.onMessage = { message in
        let bytes = copyBytes(message)
        events.append(.message(bytes, transport: message.transport, tls: TLSView(message.connection!)))
        if let answer = reply?(bytes) { message.connection?.send(answer) }
    }
    connection.onMalformed = { _, reason in events.append(.malformed(reason: reason)) }
    connection.onClose = { events.append(.closed($0)) }
    return connection
}

/// A TLS listener on 127.0.0.1 recording each accepted connection's events (by accept order).
final class TLSServer: Sendable {
    let running: RunningLoop
    let address: SocketAddress
    private let listener: LoopBound<StreamListener>
    private let connections = LoopBound(value: Box<[StreamConnection]>())
    private let recorders = Recorder<Recorder<TLSEvent>>()

    init(
        running: RunningLoop, context: TLSContext, greeting: [UInt8]? = nil,
        reply: (@Sendable ([UInt8]) -> [UInt8]?)? = nil
    ) async throws {
        signal(SIGPIPE, SIG_IGN)  // as siprec-edge does: a peer's reset must not kill the tests
        self.running = running
        let connections = self.connections
        let recorders = self.recorders
        listener = try await running.run {
            LoopBound(
                value: try StreamListener(
                    loop: running.loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0), tls: context
                ) { connection in
                    #expect(connection.isTLS)
                    connections.value.object = (connections.value.object ?? []) + [connection]
                    let events = Recorder<TLSEvent>()
                    recorders.append(events)
                    record(connection, into: events, reply: reply)
                    // Sent before the handshake: it must leave encrypted, after it.
                    if let greeting { connection.send(greeting) }
                })
        }
        address = listener.value.localAddress
    }

    /// The events of the connection accepted `index`-th (empty until it is accepted).
    func events(of index: Int) -> [TLSEvent] {
        let all = recorders.values
        return index < all.count ? all[index].values : []
    }

    var acceptedCount: Int { recorders.count }

    /// Closes the listener and what is still open, then stops the loop.
    func shutdown() async {
        let connections = self.connections
        let listener = self.listener
        try? await running.run {
            listener.value.close()
            for connection in connections.value.object ?? [] { connection.close() }
            connections.value.object = nil
        }
        #expect(await eventually { self.recorders.values.allSatisfy { $0.values.contains { $0.isClose } } })
        await running.shutdown()
    }
}

extension TLSEvent {
    var isClose: Bool {
        if case .closed = self { return true }
        return false
    }

    var closeError: SIPIOError? {
        if case .closed(let error) = self { return error }
        return nil
    }

    var bytes: [UInt8]? {
        if case .message(let bytes, _, _) = self { return bytes }
        return nil
    }

    /// Short enough for a failure message: sizes instead of bytes.
    var summary: String {
        switch self {
        case .message(let bytes, _, _): "message of \(bytes.count) bytes"
        case .malformed(let reason): "malformed: \(reason)"
        case .closed(let error): "closed: \(error.map { "\($0)" } ?? "orderly")"
        }
    }
}

/// Connects a TLS client on `running`, sends `messages` at once (before the handshake), and records.
func connectTLSClient(
    on running: RunningLoop, to address: SocketAddress, context: TLSContext, serverName: String,
    sending messages: [[UInt8]] = [], events: Recorder<TLSEvent>
) async throws -> LoopBound<StreamConnection> {
    try await running.run {
        let connection = StreamConnection.connect(
            loop: running.loop, to: address, tls: TLSClientOptions(context: context, serverName: serverName))
        #expect(connection.isTLS && connection.tlsProtocol == nil)
        for message in messages { connection.send(message) }
        record(connection, into: events)
        return LoopBound(value: connection)
    }
}

/// Closes a client and waits for its onClose, so that no connection outlives its loop.
func closeClient(_ client: LoopBound<StreamConnection>, on running: RunningLoop, events: Recorder<TLSEvent>)
    async throws
{
    try await running.run { client.value.close() }
    #expect(await eventually { events.values.last?.isClose == true })
}

/// A reply for every request: a response carrying the request's Call-ID as its body.
@Sendable func echoReply(_ request: [UInt8]) -> [UInt8]? {
    let text = String(decoding: request, as: UTF8.self)
    let callID = text.split(separator: "\r\n").first { $0.hasPrefix("Call-ID:") }.map(String.init) ?? "none"
    return Array("SIP/2.0 200 OK\r\nContent-Length: \(callID.utf8.count)\r\n\r\n\(callID)".utf8)
}

@Suite("TLS streams")
struct TLSStreamTests {
    let files: TestCertificates

    init() throws {
        files = try TestCertificates.shared()
    }

    func serverContext(
        _ identity: TestCertificates.Identity, verifyClients: Bool = false, maximumVersion: TLSVersion = .tls13
    ) throws -> TLSContext {
        try TLSContext.server(
            TLSSettings(
                caFile: verifyClients ? files.caCertificate : nil, certificateFile: identity.certificate,
                privateKeyFile: identity.privateKey, verifyPeer: verifyClients, maximumVersion: maximumVersion))
    }

    func clientContext(trusting: Bool = true, identity: TestCertificates.Identity? = nil) throws -> TLSContext {
        try TLSContext.client(
            TLSSettings(
                caFile: trusting ? files.caCertificate : nil, certificateFile: identity?.certificate,
                privateKeyFile: identity?.privateKey))
    }

    /// Runs a client against a server expected to refuse the handshake; returns both sides' errors.
    func failingHandshake(
        server serverContext: TLSContext, client clientContext: TLSContext, serverName: String
    ) async throws -> (client: SIPIOError?, server: SIPIOError?) {
        let running = try RunningLoop()
        let server = try await TLSServer(running: running, context: serverContext, reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        _ = try await connectTLSClient(
            on: running, to: server.address, context: clientContext, serverName: serverName,
            sending: [sipRequest(callID: "never-delivered")], events: atClient)
        #expect(await eventually { atClient.count == 1 && server.events(of: 0).contains { $0.isClose } })
        #expect(atClient.values.count == 1, "the client got \(atClient.values)")
        let clientError = atClient.values.first?.closeError
        let serverEvents = server.events(of: 0)
        #expect(!serverEvents.contains { $0.bytes != nil }, "a message crossed a failed handshake: \(serverEvents)")
        let serverError = serverEvents.last?.closeError
        await server.shutdown()
        return (clientError, serverError)
    }

    @Test("two messages each way over TLS 1.3, queued before the handshake, framed exactly")
    func exchange() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(
            running: running, context: try serverContext(files.serverForIP), reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        let requests = [sipRequest(callID: "first", body: "v=0\r\n"), sipRequest(callID: "second")]
        let client = try await connectTLSClient(
            on: running, to: server.address, context: try clientContext(), serverName: "127.0.0.1",
            sending: requests, events: atClient)
        #expect(await eventually { atClient.count == 2 })
        #expect(atClient.values.compactMap(\.bytes) == requests.map { echoReply($0)! })
        #expect(server.events(of: 0).compactMap(\.bytes) == requests)

        guard case .message(_, let transport, let view) = atClient.values[0],
            case .message(_, let serverTransport, let serverView) = server.events(of: 0)[0]
        else {
            Issue.record("unexpected events \(atClient.values) \(server.events(of: 0))")
            return
        }
        #expect(transport == .tls && serverTransport == .tls)
        #expect(view.isTLS && view.version == "TLSv1.3" && view.cipher?.hasPrefix("TLS_") == true)
        #expect(view.peerSubject == "CN=server for 127.0.0.1,O=SIPREC Edge Tests")
        #expect(!view.sessionReused)
        #expect(serverView.version == "TLSv1.3" && serverView.cipher == view.cipher && serverView.peerSubject == nil)

        // An orderly close from the client: close_notify, then an orderly close on both sides.
        try await running.run { client.value.close() }
        #expect(await eventually { atClient.count == 3 && server.events(of: 0).count == 3 })
        #expect(atClient.values.last == .closed(nil))
        #expect(server.events(of: 0).last == .closed(nil))
        #expect(try await running.run { client.value.tlsProtocol } == "TLSv1.3")  // kept after the close
        await server.shutdown()
    }

    @Test("a message sent while accepting leaves after the server handshake")
    func sendWhileAccepting() async throws {
        let running = try RunningLoop()
        let greeting = sipRequest(callID: "greeting", body: "hello")
        let server = try await TLSServer(
            running: running, context: try serverContext(files.serverForIP), greeting: greeting, reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        let request = sipRequest(callID: "after-greeting")
        let client = try await connectTLSClient(
            on: running, to: server.address, context: try clientContext(), serverName: "127.0.0.1", sending: [request],
            events: atClient)
        #expect(await eventually { atClient.count == 2 })
        #expect(
            atClient.values.compactMap(\.bytes) == [greeting, echoReply(request)!],
            "client saw \(atClient.values.map(\.summary)), server saw \(server.events(of: 0).map(\.summary))")
        try await closeClient(client, on: running, events: atClient)
        await server.shutdown()
    }

    @Test("a server capped at TLS 1.2 negotiates TLS 1.2")
    func tls12() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(
            running: running, context: try serverContext(files.serverForIP, maximumVersion: .tls12), reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        let request = sipRequest(callID: "tls12")
        let client = try await connectTLSClient(
            on: running, to: server.address, context: try clientContext(), serverName: "127.0.0.1", sending: [request],
            events: atClient)
        #expect(await eventually { atClient.count == 1 })
        guard case .message(let bytes, _, let view) = atClient.values.first,
            case .message(_, _, let serverView) = server.events(of: 0).first
        else {
            Issue.record("unexpected events \(atClient.values)")
            return
        }
        #expect(bytes == echoReply(request))
        #expect(view.version == "TLSv1.2" && serverView.version == "TLSv1.2")
        #expect(view.cipher?.hasPrefix("TLS_") == false)
        try await closeClient(client, on: running, events: atClient)
        await server.shutdown()
    }

    @Test("a certificate for a DNS name is accepted for that name, with SNI")
    func dnsName() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(
            running: running, context: try serverContext(files.serverForLocalhost), reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        let request = sipRequest(callID: "by-name")
        let client = try await connectTLSClient(
            on: running, to: server.address, context: try clientContext(), serverName: "localhost", sending: [request],
            events: atClient)
        #expect(await eventually { atClient.count == 1 })
        #expect(atClient.values.first?.bytes == echoReply(request))
        try await closeClient(client, on: running, events: atClient)
        await server.shutdown()
    }

    @Test("a certificate for another host fails the handshake: hostname mismatch")
    func wrongHost() async throws {
        let (client, server) = try await failingHandshake(
            server: try serverContext(files.serverForWrongHost), client: try clientContext(), serverName: "localhost")
        #expect(client?.code == .tls)
        #expect(client?.reason == "TLS handshake: certificate verify failed: hostname mismatch")
        #expect(server?.code == .tls)
    }

    @Test("an IP certificate does not vouch for another IP, nor for a name")
    func wrongAddress() async throws {
        let (byIP, _) = try await failingHandshake(
            server: try serverContext(files.serverForIP), client: try clientContext(), serverName: "127.0.0.2")
        #expect(
            byIP?.reason.contains("hostname mismatch") == true || byIP?.reason.contains("IP address mismatch") == true)
        let (byName, _) = try await failingHandshake(
            server: try serverContext(files.serverForIP), client: try clientContext(), serverName: "localhost")
        #expect(byName?.code == .tls && byName?.reason.contains("mismatch") == true)
    }

    @Test("an expired certificate fails the handshake: certificate has expired")
    func expired() async throws {
        let (client, _) = try await failingHandshake(
            server: try serverContext(files.expiredServer), client: try clientContext(), serverName: "127.0.0.1")
        #expect(client?.code == .tls)
        #expect(client?.reason == "TLS handshake: certificate verify failed: certificate has expired")
    }

    @Test("a server signed by an unknown CA fails the handshake; the server learns why from the alert")
    func untrusted() async throws {
        let (client, server) = try await failingHandshake(
            server: try serverContext(files.serverForIP), client: try clientContext(trusting: false),
            serverName: "127.0.0.1")
        #expect(client?.code == .tls)
        #expect(client?.reason == "TLS handshake: certificate verify failed: unable to get local issuer certificate")
        #expect(server?.code == .tls)
        #expect(server?.reason.contains("unknown ca") == true, "server saw \(String(describing: server))")
    }

    @Test("a server requiring client certificates refuses a client without one, accepts one with it")
    func mutualTLS() async throws {
        // TLS 1.3: the client's handshake is over when the server refuses; its alert ends the connection.
        let (refused, refusing) = try await failingHandshake(
            server: try serverContext(files.serverForIP, verifyClients: true), client: try clientContext(),
            serverName: "127.0.0.1")
        #expect(refused?.code == .tls, "client saw \(String(describing: refused))")
        #expect(refused?.reason == "TLS: tlsv13 alert certificate required")
        #expect(refusing?.code == .tls)
        #expect(refusing?.reason == "TLS handshake: peer did not return a certificate")

        let running = try RunningLoop()
        let strict = try await TLSServer(
            running: running, context: try serverContext(files.serverForIP, verifyClients: true), reply: echoReply)
        let atClient = Recorder<TLSEvent>()
        let request = sipRequest(callID: "mutual")
        let client = try await connectTLSClient(
            on: running, to: strict.address, context: try clientContext(identity: files.client),
            serverName: "127.0.0.1", sending: [request], events: atClient)
        #expect(await eventually { atClient.count == 1 })
        #expect(atClient.values.first?.bytes == echoReply(request))
        guard case .message(_, _, let serverView) = strict.events(of: 0).first else {
            Issue.record("unexpected events \(strict.events(of: 0))")
            return
        }
        #expect(serverView.peerSubject == "CN=test client,O=SIPREC Edge Tests")
        try await closeClient(client, on: running, events: atClient)
        await strict.shutdown()
    }

    @Test("a second connection to the same server resumes the session")
    func resumption() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(
            running: running, context: try serverContext(files.serverForIP), reply: echoReply)
        let context = try clientContext()
        var reused: [(client: Bool, server: Bool)] = []
        for round in 0..<3 {
            let atClient = Recorder<TLSEvent>()
            let client = try await connectTLSClient(
                on: running, to: server.address, context: context, serverName: "127.0.0.1",
                sending: [sipRequest(callID: "round-\(round)")], events: atClient)
            // The reply comes after the TLS 1.3 tickets, so the session is known once it arrived.
            #expect(await eventually { atClient.count == 1 })
            try await running.run { client.value.close() }
            #expect(await eventually { atClient.count == 2 && server.events(of: round).count == 2 })
            guard case .message(_, _, let view) = atClient.values[0],
                case .message(_, _, let serverView) = server.events(of: round)[0]
            else {
                Issue.record("unexpected events \(atClient.values)")
                return
            }
            reused.append((view.sessionReused, serverView.sessionReused))
        }
        #expect(reused.map(\.client) == [false, true, true])
        #expect(reused.map(\.server) == [false, true, true])
        await server.shutdown()
    }

    @Test("plaintext to a TLS listener fails its handshake and delivers nothing")
    func plaintextClient() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(running: running, context: try serverContext(files.serverForIP))
        let client = try RawTCPClient(connectingTo: server.address)
        client.send(sipRequest(callID: "plain"))
        #expect(client.waitForClose())
        #expect(await eventually { server.events(of: 0).count == 1 })
        #expect(server.events(of: 0).first?.closeError?.code == .tls)

        // A client that leaves before the handshake completes.
        let leaving = try RawTCPClient(connectingTo: server.address)
        #expect(await eventually { server.acceptedCount == 2 })
        _ = consume leaving
        #expect(await eventually { server.events(of: 1).count == 1 })
        #expect(
            server.events(of: 1).first?.closeError
                == SIPIOError(
                    code: .tls, operation: server.events(of: 1).first?.closeError?.operation ?? "",
                    reason: "connection closed by the peer during the TLS handshake"))
        await server.shutdown()
    }

    @Test("garbage over TLS is a framing error; the close still flushes and sends close_notify")
    func framingOverTLS() async throws {
        let running = try RunningLoop()
        let server = try await TLSServer(running: running, context: try serverContext(files.serverForIP))
        let atClient = Recorder<TLSEvent>()
        _ = try await connectTLSClient(
            on: running, to: server.address, context: try clientContext(), serverName: "127.0.0.1",
            sending: [Array("HELLO WORLD\r\n\r\n".utf8)], events: atClient)
        #expect(await eventually { server.events(of: 0).count == 2 && atClient.count == 1 })
        guard case .malformed = server.events(of: 0).first else {
            Issue.record("unexpected events \(server.events(of: 0))")
            return
        }
        #expect(server.events(of: 0).last?.closeError?.code == .framing)
        #expect(atClient.values == [.closed(nil)])  // close_notify: an orderly close
        await server.shutdown()
    }

    @Test("a large reply then close inside onMessage: everything arrives before the close")
    func largeReplyThenClose() async throws {
        let running = try RunningLoop()
        let body = String((0..<300_000).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
        let reply = Array("SIP/2.0 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let serverEvents = Recorder<TLSEvent>()
        let context = try serverContext(files.serverForIP)
        let listener = try await running.run {
            LoopBound(
                value: try StreamListener(
                    loop: running.loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0), tls: context
                ) { connection in
                    record(connection, into: serverEvents)
                    connection.onMessage = { message in
                        message.connection?.send(reply)
                        message.connection?.close()
                    }
                })
        }
        let atClient = Recorder<TLSEvent>()
        let client = try await connectTLSClient(
            on: running, to: listener.value.localAddress, context: try clientContext(), serverName: "127.0.0.1",
            events: atClient)
        try await running.run {
            client.value.maxMessageSize = 400_000
            client.value.send(sipRequest(callID: "large"))
        }
        #expect(await eventually { atClient.count == 2 && serverEvents.count == 1 })
        let received = atClient.values.first?.bytes
        #expect(received?.count == reply.count)
        let complete = received == reply  // not in #expect: 300 KB would be printed
        #expect(complete)
        #expect(atClient.values.last == .closed(nil), "client saw \(atClient.values.map(\.summary))")
        #expect(serverEvents.values == [.closed(nil)])
        try await running.run { listener.value.close() }
        await running.shutdown()
    }

    @Test("a refused TLS connect reports the system error, as TCP does")
    func refused() async throws {
        let running = try RunningLoop()
        let target = try await running.run { try unusedDestination(loop: running.loop, transport: .tcp) }
        let atClient = Recorder<TLSEvent>()
        _ = try await connectTLSClient(
            on: running, to: target, context: try clientContext(),
            serverName: "127.0.0.1", sending: [Array("lost".utf8)], events: atClient)
        #expect(await eventually { atClient.count == 1 })
        #expect(atClient.values.first?.closeError?.code == .system)
        #expect(atClient.values.first?.closeError?.errno == ECONNREFUSED)
        await running.shutdown()
    }

    @Test("a client context cannot listen; a TLS setup failure still closes through onClose")
    func misuse() async throws {
        let running = try RunningLoop()
        let client = try clientContext()
        let listenError = try await running.run { () -> SIPIOError? in
            do {
                _ = try StreamListener(
                    loop: running.loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0), tls: client
                ) { _ in }
                return nil
            } catch {
                return error as? SIPIOError
            }
        }
        #expect(listenError?.code == .tls)

        let atClient = Recorder<TLSEvent>()
        _ = try await connectTLSClient(
            on: running, to: try SocketAddress(ipAddress: "127.0.0.1", port: 9),
            context: try serverContext(files.serverForIP),
            serverName: "127.0.0.1", events: atClient)
        #expect(await eventually { atClient.count == 1 })
        #expect(atClient.values.first?.closeError?.code == .tls)
        #expect(atClient.values.first?.closeError?.reason.contains("a server TLS context cannot connect") == true)
        await running.shutdown()
    }
}
