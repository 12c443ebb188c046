import Dispatch
import Glibc
import Logging
import MediaEngine
import Synchronization
import SIPEdgeConfig
import SIPEdgeIO
import SIPEdgeTLS
import SIPTransaction

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
    /// - Parameter tls: the TLS contexts the configuration needs, built beforehand (see
    ///   `TLSContexts`), so that certificate problems are reported as configuration errors.
    public init(configuration: ProxyConfiguration, logger: Logger, tls: TLSContexts = .none, dialogObserver: DialogObserver? = nil)
        throws(SIPIOError)
    {
        self.configuration = configuration
        self.logger = logger
        self.context = try ProxyContext(configuration: configuration, tls: tls, dialogObserver: dialogObserver)
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
            // Precise timers only pay off when a sub-tick coalescing pause must end on time.
            let loop = try EventLoop(index: index, preciseTimers: configuration.udpCoalesceMicroseconds > 0)
            created.append(Worker(index: index, loop: loop, context: context, logger: logger))
        }
        context.attach(created)
        workers = created
        try ensureAddressesAreFree(using: created[0].loop)
        for worker in workers { try worker.openSockets() }
        try openMediaEngines()
        let heapReserve = configuration.heapReserveMegabytes << 20
        for worker in workers {
            let loop = worker.loop
            threads.append(
                LoopThread {
                    EventLoop.preferThroughputScheduling()
                    EventLoop.reserveHeap(bytes: heapReserve)
                    loop.run()
                })
        }
        logger.info(
            "listening",
            metadata: [
                "listen": "\(configuration.listen.map(\.description).joined(separator: ","))",
                "upstream": "\(configuration.upstream?.description ?? "by Request-URI")",
                "workers": "\(workers.count)",
            ])
    }

    /// One media-engine client per worker, on the worker's loop, when calls are recorded.
    private func openMediaEngines() throws(SIPIOError) {
        let recording = configuration.recording
        guard recording.isEnabled else { return }
        var engines: [SocketAddress] = []
        for engine in recording.mediaEngines {
            engines.append(try SocketAddress(ipAddress: engine.host, port: engine.port))
        }
        for worker in workers {
            do {
                worker.mediaEngine = try RTPEngineClient(
                    loop: worker.loop, configuration: RTPEngineClient.Configuration(engines: engines, timeoutMilliseconds: 250), logger: logger)
            } catch {
                throw SIPIOError(code: .system, operation: "open the media engine control socket", reason: "\(error)")
            }
        }
        logger.info(
            "recording calls",
            metadata: [
                "rules": "\(recording.rules.map(\.name).joined(separator: ","))",
                "rtpengine": "\(recording.mediaEngines.map(\.description).joined(separator: ","))",
            ])
    }

    /// The workers share each address through SO_REUSEPORT, which would also let a second
    /// siprec-edge started by mistake share it silently. A plain bind first proves the address is
    /// ours alone.
    private func ensureAddressesAreFree(using loop: EventLoop) throws(SIPIOError) {
        for interface in context.interfaces.all {
            switch interface.transport {
            case .udp:
                try UDPSocket(loop: loop, bindTo: interface.address, reusePort: false) { _ in }.close()
            case .tcp, .tls:
                try StreamListener(loop: loop, bindTo: interface.address, reusePort: false) { _ in }.close()
            }
        }
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

    /// Counters summed over all workers, with the live transaction and dialog counts. While the
    /// loops run, each worker reports from its own thread (bounded wait); after `stop()` they are
    /// read directly.
    public func countersSnapshot() -> [(String, Int)] {
        let reports = Mutex<[WorkerReport]>([])
        if threads.isEmpty {
            reports.withLock { $0 = workers.map(WorkerReport.init) }
        } else {
            let done = DispatchSemaphore(value: 0)
            for worker in workers {
                let handover = Handover(value: worker)
                worker.loop.execute {
                    let report = WorkerReport(handover.value)
                    reports.withLock { $0.append(report) }
                    done.signal()
                }
            }
            for _ in workers { _ = done.wait(timeout: .now() + .seconds(2)) }
        }
        let collected = reports.withLock { $0 }
        var fields = collected.reduce(ProxyCounters()) { $0 + $1.counters }.fields
        fields.append(("active_server_transactions", collected.reduce(0) { $0 + $1.serverTransactions }))
        fields.append(("active_client_transactions", collected.reduce(0) { $0 + $1.clientTransactions }))
        fields.append(("active_dialogs", collected.reduce(0) { $0 + $1.dialogs }))
        fields.append(("pending_timers", collected.reduce(0) { $0 + $1.timers }))
        fields.append(("workers_reporting", collected.count))
        return fields
    }
}

/// One worker's figures, taken on its own loop.
private struct WorkerReport: Sendable {
    let counters: ProxyCounters
    let serverTransactions: Int
    let clientTransactions: Int
    let dialogs: Int
    let timers: Int

    init(_ worker: Worker) {
        var counters = worker.counters
        for socket in worker.udpSockets.values {
            counters[.oversizedDropped] += socket.truncatedDatagrams
            counters[.sendFailures] += socket.failedSends
        }
        self.counters = counters
        serverTransactions = worker.serverTransactions.count
        clientTransactions = worker.clientTransactions.count
        dialogs = worker.dialogs.count
        timers = worker.wheel.count
    }
}
