import Foundation
import Glibc
import SIPEdgeIO
import Synchronization
import Testing

/// A value that is only touched on one loop's thread; the wrapper lets it into `execute` closures.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
}

/// Values recorded on a loop's thread and read by the test.
final class Recorder<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])

    func append(_ value: Value) { storage.withLock { $0.append(value) } }
    var values: [Value] { storage.withLock { $0 } }
    var count: Int { storage.withLock { $0.count } }
}

/// An event loop served by its own thread for the duration of a test.
final class RunningLoop: Sendable {
    let loop: EventLoop
    private let finished = Recorder<Bool>()

    init(index: Int = 0) throws {
        let loop = try EventLoop(index: index)
        self.loop = loop
        let finished = self.finished
        Thread {
            loop.run()
            finished.append(true)
        }.start()
    }

    /// Runs `body` on the loop's thread and returns its result.
    func run<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            loop.execute { continuation.resume(with: Swift.Result { try body() }) }
        }
    }

    /// Stops the loop and waits (bounded) for its thread to leave `run()`.
    func shutdown() async {
        loop.stop()
        #expect(await eventually { self.finished.count == 1 }, "loop thread did not stop")
    }
}

/// Polls `condition` every 2 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// Copies the bytes of a received message out of the callback.
func copyBytes(_ message: borrowing ReceivedMessage) -> [UInt8] {
    message.bytes.withUnsafeBytes { Array($0) }
}

/// A SIP request with a body, framed by Content-Length.
func sipRequest(callID: String, body: String = "") -> [UInt8] {
    let text =
        "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n"
        + "Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-\(callID)\r\n"
        + "Max-Forwards: 70\r\n"
        + "To: <sip:edge@127.0.0.1>\r\n"
        + "From: <sip:tester@127.0.0.1>;tag=\(callID)\r\n"
        + "Call-ID: \(callID)@test\r\n"
        + "CSeq: 1 OPTIONS\r\n"
        + "Content-Length: \(body.utf8.count)\r\n"
        + "\r\n" + body
    return Array(text.utf8)
}

/// A blocking TCP client on a plain socket, so a test controls exactly how bytes are written.
/// Every read has a timeout.
final class RawTCPClient {
    private let descriptor: Int32

    init(connectingTo address: SocketAddress) throws {
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = address.port.bigEndian
        guard inet_pton(AF_INET, address.ipAddress, &raw.sin_addr) == 1 else { throw RawSocketError(errno: EINVAL) }
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw RawSocketError(errno: errno) }
        var on: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(descriptor)
            throw RawSocketError(errno: error)
        }
    }

    deinit {
        Glibc.close(descriptor)
    }

    func send(_ bytes: [UInt8]) {
        let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(sent == bytes.count)
    }

    /// Writes one byte per system call, pausing so each leaves as its own segment.
    func sendByteByByte(_ bytes: [UInt8]) {
        for byte in bytes {
            send([byte])
            usleep(200)
        }
    }

    /// Reads exactly `count` bytes, or fewer if the peer closes or 5 s pass.
    func receive(count: Int) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, min($0.count, count - received.count), 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return received
    }

    /// Whether the peer closed the connection (EOF or reset) within 5 s, skipping any bytes it sends.
    func waitForClose() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

struct RawSocketError: Error {
    let errno: Int32
}

/// An address where nothing listens, for refused connections and ICMP port unreachable: a port
/// just freed on 127.0.0.77, an address no test binds. (A port freed on 127.0.0.1 was once taken
/// at once by a test running in parallel, whose socket swallowed the datagram and the error the
/// test waited for.) On the loop's thread.
func unusedDestination(loop: EventLoop, transport: Transport) throws -> SocketAddress {
    let probeAddress = try SocketAddress(ipAddress: "127.0.0.77", port: 0)
    switch transport {
    case .udp:
        let probe = try UDPSocket(loop: loop, bindTo: probeAddress) { _ in }
        defer { probe.close() }
        return probe.localAddress
    case .tcp, .tls:
        let probe = try StreamListener(loop: loop, bindTo: probeAddress) { _ in }
        defer { probe.close() }
        return probe.localAddress
    }
}
