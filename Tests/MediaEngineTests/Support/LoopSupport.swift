import Glibc
import MediaEngine
import SIPEdgeIO
import Synchronization
import Testing

/// A value only touched on one loop's thread; the wrapper lets it into `execute` closures.
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
    private let finished = Mutex(false)

    init(index: Int = 0) throws {
        loop = try EventLoop(index: index)
        startThread { [self] in
            loop.run()
            finished.withLock { $0 = true }
        }
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
        #expect(await eventually { self.finished.withLock { $0 } }, "loop thread did not stop")
    }
}

/// Starts a detached thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Polls `condition` every 2 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: @Sendable () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return await condition()
}

/// Copies the bytes of a received datagram out of the callback.
func copyBytes(_ message: borrowing ReceivedMessage) -> [UInt8] {
    message.bytes.withUnsafeBytes { Array($0) }
}

/// 127.0.0.1 (or ::1) with port 0.
func loopback(ipv6: Bool = false, port: UInt16 = 0) -> SocketAddress {
    try! SocketAddress(ipAddress: ipv6 ? "::1" : "127.0.0.1", port: port)
}
