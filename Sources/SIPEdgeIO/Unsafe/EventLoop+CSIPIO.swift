import Glibc

internal import CSIPIO

extension EventLoop {
    static func makeHandle(preciseTimers: Bool) throws(SIPIOError) -> OpaquePointer {
        var handle: OpaquePointer?
        let result = csip_io_loop_new(preciseTimers ? 1 : 0, &handle)
        guard result == 0, let handle else {
            throw SIPIOError(csipIOCode: result, operation: "create event loop")
        }
        return handle
    }

    /// Unretained: the loop frees its handle in deinit, so no wake can outlive it.
    func installWakeHandler() {
        csip_io_loop_set_wake_handler(
            handle,
            { context in Unmanaged<EventLoop>.fromOpaque(context!).takeUnretainedValue().runMailbox() },
            Unmanaged.passUnretained(self).toOpaque())
    }

    func runHandle() {
        let result = csip_io_loop_run(handle)
        precondition(result == 0, "event loop \(index) failed: \(String(cString: csip_io_strerror(result)))")
    }

    func stopHandle() { csip_io_loop_stop(handle) }
    func wakeHandle() { csip_io_loop_wake(handle) }
    func freeHandle() { csip_io_loop_free(handle) }

    static func monotonicMilliseconds() -> UInt64 { csip_io_monotonic_ms() }

    /// Looks up the A and AAAA records of `host` (the hosts file first, then the name servers of
    /// /etc/resolv.conf) and calls `completion` on the loop's thread with the addresses (port 0),
    /// each once. Names in /etc/hosts and numeric addresses complete before this returns.
    public func resolve(host: String, completion: @escaping (Result<[SocketAddress], SIPIOError>) -> Void) {
        let request = Unmanaged.passRetained(ResolveRequest(host: host, completion: completion))
        host.withCString { name in
            csip_io_resolve(handle, name, resolveCallback, request.toOpaque())
        }
    }
}

/// One pending lookup; C holds the retain until the callback takes it back.
private final class ResolveRequest {
    let host: String
    let completion: (Result<[SocketAddress], SIPIOError>) -> Void

    init(host: String, completion: @escaping (Result<[SocketAddress], SIPIOError>) -> Void) {
        self.host = host
        self.completion = completion
    }
}

private func resolveCallback(
    context: UnsafeMutableRawPointer?, error: Int32, addresses: UnsafePointer<sockaddr_storage>?, count: Int
) {
    let request = Unmanaged<ResolveRequest>.fromOpaque(context!).takeRetainedValue()
    guard error == 0, let addresses else {
        request.completion(.failure(SIPIOError(csipIOCode: error, operation: "resolve \(request.host)")))
        return
    }
    var found: [SocketAddress] = []
    for entry in UnsafeBufferPointer(start: addresses, count: count) {
        let address = withUnsafePointer(to: entry) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0) }
        }
        if let address, !found.contains(address) {
            found.append(address)
        }
    }
    request.completion(.success(found))
}

extension EventLoop {
    /// Makes malloc keep freed memory instead of trimming its heaps after every burst. Worker
    /// threads' arenas otherwise shrink and grow again (an mprotect each time) under steady load.
    /// Process-wide; call once at start-up.
    public static func keepFreedMemory(trimThresholdBytes: Int = 256 << 20, topPadBytes: Int = 16 << 20) {
        _ = csip_io_malloc_keep_freed(trimThresholdBytes, topPadBytes)
    }

    /// Schedules the calling thread for throughput (SCHED_BATCH): peers it wakes with its sends
    /// no longer preempt it halfway through a batch, which saves context switches under load.
    /// Call on the loop's own thread. Returns false when the kernel refused.
    @discardableResult
    public static func preferThroughputScheduling() -> Bool {
        csip_io_thread_prefer_throughput() == 0
    }

    /// Maps about `bytes` of heap for the calling thread up front (malloc keeps it, see
    /// `keepFreedMemory`), so a loop that holds many transactions does not grow its heap page by
    /// page (an mprotect each time) while traffic flows. Call on the loop's own thread.
    public static func reserveHeap(bytes: Int) {
        csip_io_malloc_reserve(bytes)
    }
}
