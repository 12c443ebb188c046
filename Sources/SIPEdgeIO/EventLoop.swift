import Glibc
import Synchronization

/// One libevent loop, run by one thread. Sockets, timers and lookups created on a loop are served
/// by that thread; other threads hand it work through `execute`.
public final class EventLoop: @unchecked Sendable {
    /// The loop's position among the proxy's workers.
    public let index: Int
    let handle: OpaquePointer
    /// Tasks from any thread, run in order on the loop's thread.
    private let mailbox = Mutex<[@Sendable () -> Void]>([])
    /// The tasks being run; swapped with the mailbox so neither array reallocates in steady state.
    private var draining: [@Sendable () -> Void] = []
    /// The thread inside `run()`, or 0.
    private let runningThread = Atomic<UInt>(0)

    /// Creates a loop; call `run()` on the thread that should serve it.
    /// - Parameter preciseTimers: timers shorter than a kernel tick (4 ms at HZ=250) fire when due,
    ///   at one extra syscall per loop iteration; without it every timer may run up to a tick late.
    public init(index: Int, preciseTimers: Bool = false) throws(SIPIOError) {
        self.index = index
        handle = try Self.makeHandle(preciseTimers: preciseTimers)
        installWakeHandler()
    }

    deinit {
        freeHandle()
    }

    /// Serves the loop on the calling thread until `stop()`.
    public func run() {
        runningThread.store(pthread_self(), ordering: .releasing)
        defer { runningThread.store(0, ordering: .releasing) }
        runHandle()
    }

    /// Makes `run()` return once the current callback finishes; from any thread, also before `run()`.
    public func stop() {
        stopHandle()
    }

    /// Runs `task` on the loop's thread after the tasks submitted before it; from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        mailbox.withLock { $0.append(task) }
        wakeHandle()
    }

    /// Whether the caller is the thread running this loop.
    public var isCurrent: Bool {
        let thread = runningThread.load(ordering: .acquiring)
        return thread != 0 && pthread_equal(thread, pthread_self()) != 0
    }

    /// Milliseconds on the monotonic clock.
    public var nowMilliseconds: UInt64 {
        Self.monotonicMilliseconds()
    }

    /// Runs `body` once on the loop's thread after `afterMilliseconds` (negative counts as 0).
    @discardableResult
    public func scheduleOnce(afterMilliseconds: Int, _ body: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, repeating: false, body: body)
        timer.arm(milliseconds: max(afterMilliseconds, 0))
        return timer
    }

    /// A one-shot timer that runs `body` on the loop's thread each time it is armed with
    /// `schedule(afterMilliseconds:)` and comes due. Not armed yet; keep it, or it is freed.
    public func makeTimer(_ body: @escaping () -> Void) -> LoopTimer {
        LoopTimer(loop: self, repeating: false, body: body)
    }

    /// Runs `body` on the loop's thread every `everyMilliseconds` (at least 1) until cancelled.
    @discardableResult
    public func scheduleRepeating(everyMilliseconds: Int, _ body: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, repeating: true, body: body)
        timer.arm(milliseconds: max(everyMilliseconds, 1))
        return timer
    }

    /// Runs the tasks in the mailbox; called on the loop's thread after a wake.
    func runMailbox() {
        mailbox.withLock { swap(&$0, &draining) }
        for task in draining {
            task()
        }
        draining.removeAll(keepingCapacity: true)
    }
}
