import Glibc
import SIPEdgeIO
import Testing

/// What a server-side connection saw.
enum StreamEvent: Sendable, Equatable {
    case accepted(remote: SocketAddress)
    case message([UInt8], source: SocketAddress, local: SocketAddress, transport: Transport)
    case malformed([UInt8], reason: String)
    case closed(SIPIOError?)
}

/// A listener on 127.0.0.1 that records every connection's events, numbered by accept order.
final class RecordingServer: Sendable {
    let running: RunningLoop
    let events = Recorder<(connection: Int, event: StreamEvent)>()
    private let listener: LoopBound<StreamListener>
    private let accepted = LoopBound(value: Box<[StreamConnection]>())
    let address: SocketAddress

    init(running: RunningLoop, maxMessageSize: Int = 65535, reply: [UInt8]? = nil) async throws {
        self.running = running
        let events = self.events
        let accepted = self.accepted
        listener = try await running.run {
            LoopBound(
                value: try StreamListener(loop: running.loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0)) {
                    connection in
                    let number = accepted.value.object?.count ?? 0
                    accepted.value.object = (accepted.value.object ?? []) + [connection]
                    connection.maxMessageSize = maxMessageSize
                    events.append((number, .accepted(remote: connection.remoteAddress)))
                    connection.onMessage = { message in
                        events.append(
                            (number, .message(copyBytes(message), source: message.source, local: message.local, transport: message.transport)))
                        #expect(message.connection == connection)
                        if let reply { message.connection?.send(reply) }
                    }
                    connection.onMalformed = { message, reason in
                        events.append((number, .malformed(copyBytes(message), reason: reason)))
                    }
                    connection.onClose = { error in events.append((number, .closed(error))) }
                })
        }
        address = listener.value.localAddress
    }

    /// Closes the listener and every connection, waits for their closes, then stops the loop.
    func shutdown() async {
        let accepted = self.accepted
        let listener = self.listener
        let count = try? await running.run { () -> Int in
            listener.value.close()
            let connections = accepted.value.object ?? []
            accepted.value.object = nil
            for connection in connections { connection.close() }
            return connections.count
        }
        #expect(
            await eventually {
                self.events.values.filter { if case .closed = $0.event { true } else { false } }.count == count
            })
        await running.shutdown()
    }

    func events(of connection: Int) -> [StreamEvent] {
        events.values.filter { $0.connection == connection }.map(\.event)
    }

    func messages(of connection: Int) -> [[UInt8]] {
        events(of: connection).compactMap {
            if case .message(let bytes, _, _, _) = $0 { return bytes }
            return nil
        }
    }
}

@Suite("StreamConnection")
struct StreamTests {
    @Test("messages written one byte per segment arrive whole, with addresses")
    func byteByByte() async throws {
        let running = try RunningLoop()
        let server = try await RecordingServer(running: running)
        let client = try RawTCPClient(connectingTo: server.address)
        let first = sipRequest(callID: "one", body: "v=0\r\n")
        let second = sipRequest(callID: "two")
        client.sendByteByByte(first + second)
        #expect(await eventually { server.messages(of: 0).count == 2 })
        #expect(server.messages(of: 0) == [first, second])
        guard case .accepted(let remote) = server.events(of: 0).first,
            case .message(_, let source, let local, let transport) = server.events(of: 0)[1]
        else {
            Issue.record("unexpected events \(server.events(of: 0))")
            return
        }
        #expect(source == remote && remote.ipAddress == "127.0.0.1")
        #expect(local == server.address)
        #expect(transport == .tcp)
        await server.shutdown()
    }

    @Test("several messages coalesced in one write are split exactly")
    func coalesced() async throws {
        let running = try RunningLoop()
        let server = try await RecordingServer(running: running)
        let client = try RawTCPClient(connectingTo: server.address)
        let messages = (0..<20).map { sipRequest(callID: "c\($0)", body: String(repeating: "x", count: $0 * 37)) }
        client.send(messages.flatMap { $0 })
        #expect(await eventually { server.messages(of: 0).count == messages.count })
        #expect(server.messages(of: 0) == messages)
        await server.shutdown()
    }

    @Test("a double-CRLF ping gets one CRLF pong; lone CRLFs are skipped")
    func keepAlive() async throws {
        let running = try RunningLoop()
        let server = try await RecordingServer(running: running)
        let client = try RawTCPClient(connectingTo: server.address)
        client.send(Array("\r\n\r\n".utf8))
        #expect(client.receive(count: 2) == Array("\r\n".utf8))
        // A ping split across two segments, then a lone CRLF before a message.
        client.send(Array("\r\n".utf8))
        usleep(20_000)
        client.send(Array("\r\n".utf8))
        #expect(client.receive(count: 2) == Array("\r\n".utf8))
        let message = sipRequest(callID: "after-keepalive")
        client.send(Array("\r\n".utf8) + message)
        #expect(await eventually { server.messages(of: 0).count == 1 })
        #expect(server.messages(of: 0) == [message])
        #expect(server.events(of: 0).count == 2)  // accepted, message: keep-alives are not messages
        await server.shutdown()
    }

    @Test("garbage closes its connection with a framing error while another connection keeps working")
    func garbage() async throws {
        let running = try RunningLoop()
        let reply = Array("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".utf8)
        let server = try await RecordingServer(running: running, reply: reply)
        let bad = try RawTCPClient(connectingTo: server.address)
        #expect(await eventually { server.events(of: 0).count == 1 })
        let good = try RawTCPClient(connectingTo: server.address)
        #expect(await eventually { server.events(of: 1).count == 1 })

        bad.send(Array("HELLO WORLD\r\n\r\n".utf8))
        #expect(bad.waitForClose())
        #expect(await eventually { server.events(of: 0).count == 3 })
        let events = server.events(of: 0)
        guard case .malformed(let scanned, let reason) = events[1], case .closed(let error) = events[2] else {
            Issue.record("unexpected events \(events)")
            return
        }
        #expect(Array("HELLO WORLD\r\n\r\n".utf8).starts(with: scanned) && !scanned.isEmpty)
        #expect(!reason.isEmpty)
        #expect(error?.code == .framing)

        let message = sipRequest(callID: "still-fine")
        good.send(message)
        #expect(good.receive(count: reply.count) == reply)
        #expect(server.messages(of: 1) == [message])
        await server.shutdown()
    }

    @Test("close inside onMessage stops delivery and flushes a large reply before the FIN")
    func closeAfterReply() async throws {
        let running = try RunningLoop()
        let reply = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let delivered = Recorder<[UInt8]>()
        let closes = Recorder<SIPIOError?>()
        let listener = try await running.run {
            LoopBound(
                value: try StreamListener(loop: running.loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0)) {
                    connection in
                    connection.onMessage = { message in
                        delivered.append(copyBytes(message))
                        message.connection?.send(reply)
                        message.connection?.close()
                        #expect(message.connection?.isOpen == false)
                    }
                    connection.onClose = { closes.append($0) }
                })
        }
        let client = try RawTCPClient(connectingTo: listener.value.localAddress)
        let messages = (0..<3).map { sipRequest(callID: "m\($0)") }
        client.send(messages.flatMap { $0 })
        #expect(client.receive(count: reply.count) == reply)
        #expect(client.waitForClose())
        #expect(await eventually { closes.count == 1 })
        #expect(delivered.values == [messages[0]])
        #expect(closes.values.count == 1 && closes.values[0] == nil)
        try await running.run { listener.value.close() }
        await running.shutdown()
    }

    @Test("a stream message without Content-Length is a framing error")
    func missingContentLength() async throws {
        let running = try RunningLoop()
        let server = try await RecordingServer(running: running)
        let client = try RawTCPClient(connectingTo: server.address)
        let message = Array("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n".utf8)
        client.send(message)
        #expect(client.waitForClose())
        #expect(await eventually { server.events(of: 0).count == 3 })
        guard case .malformed(let scanned, let reason) = server.events(of: 0)[1] else {
            Issue.record("unexpected events \(server.events(of: 0))")
            return
        }
        #expect(scanned == message)
        #expect(reason.lowercased().contains("content-length"))
        #expect(server.events(of: 0)[2] == .closed(server.framingError(of: 0)))
        await server.shutdown()
    }

    @Test("a message larger than maxMessageSize is a framing error, even before it is complete")
    func tooLarge() async throws {
        let running = try RunningLoop()
        let server = try await RecordingServer(running: running, maxMessageSize: 1000)
        let client = try RawTCPClient(connectingTo: server.address)
        let fits = sipRequest(callID: "fits", body: String(repeating: "a", count: 600))
        #expect(fits.count <= 1000)
        let large = sipRequest(callID: "large", body: String(repeating: "b", count: 5000))
        client.send(fits + Array(large.prefix(2000)))
        #expect(client.waitForClose())
        #expect(await eventually { server.events(of: 0).count == 4 })
        let events = server.events(of: 0)
        #expect(server.messages(of: 0) == [fits])
        guard case .malformed(let scanned, _) = events[2], case .closed(let error) = events[3] else {
            Issue.record("unexpected events \(events)")
            return
        }
        #expect(large.starts(with: scanned))
        #expect(scanned.count <= 1001)
        #expect(error?.code == .framing)
        await server.shutdown()
    }

    @Test("connect, send while connecting, exchange replies, close in order")
    func swiftClient() async throws {
        let running = try RunningLoop()
        let reply = sipRequest(callID: "reply", body: "pong")
        let server = try await RecordingServer(running: running, reply: reply)
        let atClient = Recorder<StreamEvent>()
        let request = sipRequest(callID: "request", body: "ping")
        let client = try await running.run { () -> LoopBound<StreamConnection> in
            let connection = StreamConnection.connect(loop: running.loop, to: server.address)
            connection.send(request)
            connection.onMessage = { message in
                atClient.append(.message(copyBytes(message), source: message.source, local: message.local, transport: message.transport))
                message.connection?.close()
            }
            connection.onClose = { atClient.append(.closed($0)) }
            return LoopBound(value: connection)
        }
        #expect(await eventually { atClient.count == 2 })
        let local = try await running.run { client.value.localAddress }
        #expect(atClient.values == [.message(reply, source: server.address, local: local!, transport: .tcp), .closed(nil)])
        #expect(try await running.run { client.value.isOpen } == false)
        #expect(await eventually { server.events(of: 0).count == 3 })
        #expect(server.events(of: 0) == [.accepted(remote: local!), .message(request, source: local!, local: server.address, transport: .tcp), .closed(nil)])
        await server.shutdown()
    }

    @Test("connection refused arrives through onClose")
    func refused() async throws {
        let running = try RunningLoop()
        let target = try await running.run { try unusedDestination(loop: running.loop, transport: .tcp) }
        let closes = Recorder<SIPIOError?>()
        let openAfterConnect = try await running.run { () -> Bool in
            let connection = StreamConnection.connect(loop: running.loop, to: target)
            connection.onClose = { closes.append($0) }
            connection.send(Array("lost".utf8))
            return connection.isOpen
        }
        #expect(openAfterConnect)
        #expect(await eventually { closes.count == 1 })
        #expect(closes.values[0]?.code == .system)
        #expect(closes.values[0]?.errno == ECONNREFUSED)
        await running.shutdown()
    }
}

extension RecordingServer {
    /// The error a framing close reports, taken from the recorded close.
    func framingError(of connection: Int) -> SIPIOError? {
        for case .closed(let error) in events(of: connection) where error?.code == .framing { return error }
        return nil
    }
}
