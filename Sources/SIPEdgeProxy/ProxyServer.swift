import Glibc
import Logging
import Synchronization
import SIPEdgeConfig
import SIPEdgeIO

/// The running proxy: N worker loops, each on its own thread, each with its own sockets on every
/// listen address.
public final class ProxyServer: @unchecked Sendable {
    public let configuration: ProxyConfiguration
    private let logger: Logger
    private let context: ProxyContext
    private var workers: [Worker] = []
    private var threads: [LoopThread] = []

    /// Prepares the proxy; nothing is bound yet.
    /// - Throws: `SIPIOError` when a listen address is not usable.
    public init(configuration: ProxyConfiguration, logger: Logger, dialogObserver: DialogObserver? = nil)
        throws(SIPIOError)
    {
        self.configuration = configuration
        self.logger = logger
        self.context = try ProxyContext(configuration: configuration, dialogObserver: dialogObserver)
    }

    /// The number of worker loops: the configured count, or one per online core.
    public var workerCount: Int {
        configuration.workers ?? max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Binds every listen address on every worker and starts the worker threads.
    public func start() throws(SIPIOError) {
        EventLoop.keepFreedMemory()
        var created: [Worker] = []
        for index in 0..<workerCount {
            let loop = try EventLoop(index: index)
            created.append(Worker(index: index, loop: loop, context: context, logger: logger))
        }
        context.attach(created)
        workers = created
        for worker in workers { try worker.openSockets() }
        for worker in workers {
            let loop = worker.loop
            threads.append(LoopThread { loop.run() })
        }
        logger.info(
            "listening",
            metadata: [
                "listen": "\(configuration.listen.map(\.description).joined(separator: ","))",
                "upstream": "\(configuration.upstream?.description ?? "by Request-URI")",
                "workers": "\(workers.count)",
            ])
    }

    /// Stops every loop and waits for the threads.
    public func stop() {
        for worker in workers {
            let handover = Handover(value: worker)
            worker.loop.execute { handover.value.closeSockets() }
            worker.loop.stop()
        }
        for thread in threads { thread.join() }
        threads.removeAll()
    }

    /// Counters summed over all workers (read after `stop()`, or as a snapshot while running).
    public func countersSnapshot() -> [(String, Int)] {
        let sum = workers.reduce(ProxyCounters()) { total, worker in
            let box = Mutex(ProxyCounters())
            if threads.isEmpty {
                box.withLock { $0 = worker.counters }
            } else {
                let done = Mutex(false)
                let handover = Handover(value: worker)
                worker.loop.execute {
                    let counters = handover.value.counters
                    box.withLock { $0 = counters }
                    done.withLock { $0 = true }
                }
                for _ in 0..<200 where !done.withLock({ $0 }) { usleep(5000) }
            }
            return total + box.withLock { $0 }
        }
        var fields = sum.fields
        fields.append(("active_server_transactions", activeCount(\.serverTransactions.count)))
        fields.append(("active_client_transactions", activeCount(\.clientTransactions.count)))
        fields.append(("active_dialogs", activeCount(\.dialogs.count)))
        return fields
    }

    private func activeCount(_ path: KeyPath<Worker, Int>) -> Int {
        threads.isEmpty ? workers.reduce(0) { $0 + $1[keyPath: path] } : -1
    }
}
