import Glibc
import SIPEdgeIO
import Testing

/// One datagram as a test sees it.
struct Datagram: Sendable, Equatable {
    let bytes: [UInt8]
    let source: SocketAddress
    let local: SocketAddress
    let transport: Transport
    let hadConnection: Bool

    init(_ message: borrowing ReceivedMessage) {
        bytes = copyBytes(message)
        source = message.source
        local = message.local
        transport = message.transport
        hadConnection = message.connection != nil
    }
}

@Suite("UDPSocket")
struct UDPSocketTests {
    @Test("round trip", arguments: ["127.0.0.1", "::1"])
    func roundTrip(host: String) async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let any = try SocketAddress(ipAddress: host, port: 0)
        let atServer = Recorder<Datagram>()
        let atClient = Recorder<Datagram>()
        let sockets = try await running.run {
            // The server echoes every datagram back with a prefix.
            let server = LoopBound(value: Box<UDPSocket>())
            server.value.object = try UDPSocket(loop: loop, bindTo: any) { message in
                atServer.append(Datagram(message))
                server.value.object?.send(Array("echo:".utf8) + copyBytes(message), to: message.source)
            }
            let client = try UDPSocket(loop: loop, bindTo: any) { atClient.append(Datagram($0)) }
            client.send(Array("ping".utf8), to: server.value.object!.localAddress)
            return LoopBound(value: (server: server.value, client: client))
        }
        let serverAddress = sockets.value.server.object!.localAddress
        let clientAddress = sockets.value.client.localAddress
        #expect(serverAddress.ipAddress == host && serverAddress.port != 0)
        #expect(await eventually { atClient.count == 1 })
        #expect(
            atServer.values == [
                Datagram(bytes: Array("ping".utf8), source: clientAddress, local: serverAddress, transport: .udp)
            ])
        #expect(
            atClient.values == [
                Datagram(bytes: Array("echo:ping".utf8), source: serverAddress, local: clientAddress, transport: .udp)
            ])
        try await running.run {
            sockets.value.server.object?.close()
            sockets.value.server.object = nil  // the server's handler holds the box: break the cycle
            sockets.value.client.close()
        }
        await running.shutdown()
    }

    @Test("a burst of datagrams from another loop all arrive, each once")
    func burst() async throws {
        let receiving = try RunningLoop(index: 0)
        let sending = try RunningLoop(index: 1)
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let received = Recorder<Int>()
        let receiver = try await receiving.run {
            LoopBound(
                value: try UDPSocket(loop: receiving.loop, bindTo: any, receiveBufferBytes: 4 << 20) { message in
                    received.append(Int(String(decoding: copyBytes(message), as: UTF8.self).dropFirst(9))!)
                })
        }
        let destination = receiver.value.localAddress
        let total = 2000
        let sender = try await sending.run { LoopBound(value: try UDPSocket(loop: sending.loop, bindTo: any) { _ in }) }
        // 50 per loop iteration: each group leaves in sendmmsg batches.
        for group in stride(from: 0, to: total, by: 50) {
            try await sending.run {
                for index in group..<(group + 50) {
                    sender.value.send(Array("datagram \(index)".utf8), to: destination)
                }
            }
        }
        #expect(await eventually { received.count == total })
        #expect(received.values.sorted() == Array(0..<total))
        #expect(try await sending.run { sender.value.failedSends } == 0)
        await sending.shutdown()
        await receiving.shutdown()
    }

    @Test("coalescing: the first datagram is read at once, the next ones after the pause, and quiet resets it")
    func coalescing() async throws {
        let receiving = try RunningLoop(index: 0)
        let sending = try RunningLoop(index: 1)
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let start = ContinuousClock.now
        let arrivals = Recorder<(Int, Duration)>()
        let pause = 300_000  // µs: long against scheduling noise
        let receiver = try await receiving.run {
            LoopBound(
                value: try UDPSocket(loop: receiving.loop, bindTo: any, coalesceMicroseconds: pause) { message in
                    let number = Int(String(decoding: copyBytes(message), as: UTF8.self))!
                    arrivals.append((number, ContinuousClock.now - start))
                })
        }
        let destination = receiver.value.localAddress
        let sender = try await sending.run { LoopBound(value: try UDPSocket(loop: sending.loop, bindTo: any) { _ in }) }
        func send(_ number: Int) async throws -> Duration {
            try await sending.run { sender.value.send(Array("\(number)".utf8), to: destination) }
            return ContinuousClock.now - start
        }
        let sent1 = try await send(1)
        #expect(await eventually { arrivals.count == 1 })
        let sent2 = try await send(2)
        let sent3 = try await send(3)
        #expect(await eventually { arrivals.count == 3 })
        // The pause ends with one read that finds nothing; after it the socket waits for readiness again.
        try await Task.sleep(for: .microseconds(3 * pause))
        let sent4 = try await send(4)
        #expect(await eventually { arrivals.count == 4 })
        let values = arrivals.values
        #expect(values.map(\.0) == [1, 2, 3, 4])
        #expect(values[0].1 - sent1 < .milliseconds(150), "the first datagram waits for nothing")
        #expect(values[1].1 - sent2 > .milliseconds(100), "the second waits out the pause")
        #expect(values[1].1 == values[2].1 || values[2].1 - values[1].1 < .milliseconds(50), "2 and 3 arrive in one batch")
        #expect(values[3].1 - sent4 < .milliseconds(150), "after a quiet spell, read at once")
        _ = sent3
        await sending.shutdown()
        await receiving.shutdown()
    }

    @Test("datagrams larger than the slot are dropped and counted; one that fits exactly is delivered")
    func truncated() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let received = Recorder<[UInt8]>()
        let sockets = try await running.run {
            let receiver = try UDPSocket(loop: loop, bindTo: any, maxDatagramSize: 512) { received.append(copyBytes($0)) }
            let sender = try UDPSocket(loop: loop, bindTo: any) { _ in }
            sender.send([UInt8](repeating: 0x41, count: 513), to: receiver.localAddress)
            sender.send([UInt8](repeating: 0x42, count: 512), to: receiver.localAddress)
            sender.send([UInt8](repeating: 0x43, count: 4000), to: receiver.localAddress)
            sender.send(Array("small".utf8), to: receiver.localAddress)
            return LoopBound(value: (receiver, sender))
        }
        #expect(await eventually { received.count == 2 })
        #expect(received.values == [[UInt8](repeating: 0x42, count: 512), Array("small".utf8)])
        #expect(try await running.run { sockets.value.0.truncatedDatagrams } == 2)
        await running.shutdown()
    }

    @Test("two loops share one port with reusePort, and the port is refused without it")
    func reusePort() async throws {
        let first = try RunningLoop(index: 0)
        let second = try RunningLoop(index: 1)
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let atFirst = Recorder<Int>()
        let atSecond = Recorder<Int>()
        let a = try await first.run {
            LoopBound(value: try UDPSocket(loop: first.loop, bindTo: any, reusePort: true) { _ in atFirst.append(0) })
        }
        let shared = a.value.localAddress
        let b = try await second.run {
            LoopBound(value: try UDPSocket(loop: second.loop, bindTo: shared, reusePort: true) { _ in atSecond.append(1) })
        }
        #expect(b.value.localAddress == shared)
        let refused = try await second.run { () -> SIPIOError? in
            do throws(SIPIOError) {
                _ = try UDPSocket(loop: second.loop, bindTo: shared) { _ in }
                return nil
            } catch {
                return error
            }
        }
        #expect(refused?.code == .system)
        #expect(refused?.errno == EADDRINUSE)

        // Many source ports, so the kernel's hash spreads them over both sockets.
        let senders = 64
        let clients = try await first.run {
            LoopBound(value: try (0..<senders).map { _ in try UDPSocket(loop: first.loop, bindTo: any) { _ in } })
        }
        try await first.run {
            for client in clients.value { client.send(Array("hello".utf8), to: shared) }
        }
        #expect(await eventually { atFirst.count + atSecond.count == senders })
        #expect(atFirst.count > 0)
        #expect(atSecond.count > 0)
        await first.shutdown()
        await second.shutdown()
    }

    @Test("a socket closed and released inside its own callback delivers nothing more")
    func closeInsideCallback() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let received = Recorder<[UInt8]>()
        let (sender, target) = try await running.run { () -> (LoopBound<UDPSocket>, SocketAddress) in
            let holder = LoopBound(value: Box<UDPSocket>())
            holder.value.object = try UDPSocket(loop: loop, bindTo: any) { message in
                received.append(copyBytes(message))
                holder.value.object?.close()
                holder.value.object = nil  // the last reference goes while the batch is being delivered
            }
            return (LoopBound(value: try UDPSocket(loop: loop, bindTo: any) { _ in }), holder.value.object!.localAddress)
        }
        // Three datagrams in one sendmmsg batch, so they usually arrive in one recvmmsg batch.
        try await running.run {
            for text in ["first", "second", "third"] { sender.value.send(Array(text.utf8), to: target) }
        }
        #expect(await eventually { received.count == 1 })
        try await running.run { sender.value.send(Array("late".utf8), to: target) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(received.values == [Array("first".utf8)])
        await running.shutdown()
    }

    @Test("a datagram the unreachable callback sends leaves at once, also when a send batch met the error first")
    func sendFromUnreachableCallback() async throws {
        // A failover: the callback sends the request to the next destination. When the refused
        // datagram's error is met (and cleared) by a later datagram of the same sendmmsg batch, the
        // error queue alone wakes the socket; what the callback queues must still be flushed, not
        // wait for the next datagram to arrive.
        let running = try RunningLoop()
        let loop = running.loop
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let atPeer = Recorder<String>()
        let sockets = try await running.run {
            let closedAddress = try unusedDestination(loop: loop, transport: .udp)
            let peer = try UDPSocket(loop: loop, bindTo: any) { atPeer.append(String(decoding: copyBytes($0), as: UTF8.self)) }
            let tested = try UDPSocket(loop: loop, bindTo: any) { _ in }
            let peerAddress = peer.localAddress
            tested.onUnreachable = { [unowned tested] _, _ in tested.send(Array("failover".utf8), to: peerAddress) }
            return LoopBound(value: (closed: closedAddress, tested: tested, peer: peer))
        }
        try await running.run {
            sockets.value.tested.send(Array("lost".utf8), to: sockets.value.closed)
            sockets.value.tested.send(Array("behind".utf8), to: sockets.value.peer.localAddress)
        }
        #expect(await eventually(timeout: .seconds(2)) { atPeer.count == 2 })
        #expect(atPeer.values == ["behind", "failover"])
        try await running.run {
            sockets.value.tested.close()
            sockets.value.peer.close()
        }
        await running.shutdown()
    }

    @Test("an ICMP port unreachable is reported with its destination, met by a receive or by a send, and no datagram around it is lost")
    func portUnreachable() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
        let unreachable = Recorder<String>()
        let atTested = Recorder<String>()
        let atPeer = Recorder<String>()
        let sockets = try await running.run {
            let closedAddress = try unusedDestination(loop: loop, transport: .udp)
            let tested = try UDPSocket(loop: loop, bindTo: any) { atTested.append(String(decoding: copyBytes($0), as: UTF8.self)) }
            tested.onUnreachable = { address, error in unreachable.append("\(address.port) \(error)") }
            let peer = try UDPSocket(loop: loop, bindTo: any) { atPeer.append(String(decoding: copyBytes($0), as: UTF8.self)) }
            return LoopBound(value: (closed: closedAddress, tested: tested, peer: peer))
        }
        let closedPort = sockets.value.closed.port
        // The socket's pending error is met by its next receive, with 20 datagrams queued behind it.
        try await running.run {
            sockets.value.tested.send(Array("lost".utf8), to: sockets.value.closed)
            for index in 0..<20 { sockets.value.peer.send(Array("to tested \(index)".utf8), to: sockets.value.tested.localAddress) }
        }
        #expect(await eventually { unreachable.count == 1 && atTested.count == 20 })
        #expect(unreachable.values == ["\(closedPort) \(ECONNREFUSED)"])
        #expect(atTested.values == (0..<20).map { "to tested \($0)" })
        // Here the send right behind the refused one meets it, in the same sendmmsg batch.
        try await running.run {
            sockets.value.tested.send(Array("lost again".utf8), to: sockets.value.closed)
            sockets.value.tested.send(Array("to peer".utf8), to: sockets.value.peer.localAddress)
        }
        #expect(await eventually { unreachable.count == 2 && atPeer.count == 1 })
        #expect(unreachable.values == ["\(closedPort) \(ECONNREFUSED)", "\(closedPort) \(ECONNREFUSED)"])
        #expect(atPeer.values == ["to peer"])
        #expect(try await running.run { sockets.value.tested.failedSends } == 0)
        try await running.run {
            sockets.value.tested.close()
            sockets.value.peer.close()
        }
        await running.shutdown()
    }

    @Test("a send to the other address family is refused and counted")
    func wrongFamily() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let failed = try await running.run { () -> Int in
            let socket = try UDPSocket(loop: loop, bindTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0)) { _ in }
            socket.send([1, 2, 3], to: try SocketAddress(ipAddress: "::1", port: 5060))
            return socket.failedSends
        }
        #expect(failed == 1)
        await running.shutdown()
    }
}

/// A reference a callback can reach before the object it refers to exists.
final class Box<Object> {
    var object: Object?
}

extension Datagram {
    init(bytes: [UInt8], source: SocketAddress, local: SocketAddress, transport: Transport) {
        self.bytes = bytes
        self.source = source
        self.local = local
        self.transport = transport
        self.hadConnection = false
    }
}
