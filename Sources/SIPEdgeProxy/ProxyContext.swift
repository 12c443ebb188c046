import Glibc
import Synchronization
import SIPDialog
import SIPEdgeConfig
import SIPEdgeIO
import SIPMessage
import SIPTransaction

/// What every worker shares: settings fixed at start-up, the list of workers, and the pool of
/// stream connections (looked up by remote address, so a reply can reuse the caller's connection).
final class ProxyContext: @unchecked Sendable {
    let configuration: ProxyConfiguration
    let interfaces: LocalInterfaces
    let upstream: NextHopTarget?
    let timerSettings: TimerSettings
    let scanLimits: ScanLimits
    let dialogSettings: DialogSettings
    let dialogObserver: DialogObserver?
    /// Seeds the hashes that key transactions and pick workers; random per process so that nobody
    /// outside can aim collisions at the tables.
    let hashSeed: UInt64
    let tagSeed: UInt64
    let connections = ConnectionRegistry()
    /// Set once, before any loop runs; read-only afterwards.
    private(set) var workers: [Worker] = []

    init(configuration: ProxyConfiguration, dialogObserver: DialogObserver?) throws(SIPIOError) {
        self.configuration = configuration
        self.dialogObserver = dialogObserver
        self.dialogSettings = DialogSettings(
            t1Milliseconds: configuration.t1Milliseconds,
            earlyLifetimeMilliseconds: (configuration.inviteTimeoutSeconds + 64 * configuration.t1Milliseconds / 1000 + 1) * 1000,
            lifetimeMilliseconds: configuration.dialogLifetimeSeconds * 1000)
        var interfaces: [LocalInterface] = []
        for (index, listen) in configuration.listen.enumerated() {
            interfaces.append(try LocalInterface(index: index, listen: listen))
        }
        self.interfaces = LocalInterfaces(all: interfaces)
        self.upstream = configuration.upstream.map(NextHopTarget.init(upstream:))
        self.timerSettings = TimerSettings(
            t1Milliseconds: configuration.t1Milliseconds, t2Milliseconds: configuration.t2Milliseconds,
            t4Milliseconds: configuration.t4Milliseconds,
            // Timer D covers the far end's response retransmissions, 64·T1 (32 s at the default T1).
            timerDMilliseconds: 64 * configuration.t1Milliseconds,
            timerCMilliseconds: configuration.inviteTimeoutSeconds * 1000)
        self.scanLimits = ScanLimits(maxMessageSize: configuration.maxMessageSize)
        self.hashSeed = UInt64.random(in: .min ... .max) | 1
        self.tagSeed = UInt64.random(in: .min ... .max)
    }

    func attach(_ workers: [Worker]) {
        precondition(self.workers.isEmpty, "workers are attached once")
        self.workers = workers
    }

    /// The worker that owns a message's call: Call-ID hash modulo the worker count.
    func ownerIndex(of message: SIPMessage, callID: ByteRange) -> Int {
        guard workers.count > 1 else { return 0 }
        return Int(message.hash(callID, seed: hashSeed) % UInt64(workers.count))
    }
}

/// Stream connections by remote address, shared by all workers. Only looked up when a message has
/// no connection of its own yet, so the lock is off the common path.
final class ConnectionRegistry: Sendable {
    private let table = Mutex<[SocketAddress: Handover<StreamConnection>]>([:])

    func register(_ connection: StreamConnection) {
        let address = connection.remoteAddress
        table.withLock { $0[address] = Handover(value: connection) }
    }

    func unregister(_ connection: StreamConnection) {
        let address = connection.remoteAddress
        table.withLock { table in
            if table[address]?.value === connection { table[address] = nil }
        }
    }

    /// The connection to `address`; it may belong to another loop, which alone may use it.
    func lookup(_ address: SocketAddress) -> StreamConnection? {
        table.withLock { $0[address]?.value }
    }
}

/// Per-worker counters; summed over workers when reported.
struct ProxyCounters: Sendable {
    var messagesReceived = 0
    var messagesSent = 0
    var handedOver = 0
    var malformedDropped = 0
    var oversizedDropped = 0
    var malformedAnswered = 0
    var unroutableDropped = 0
    var retransmissionsAbsorbed = 0
    var retransmissionsSent = 0
    var acksAbsorbed = 0
    var requestsForwarded = 0
    var responsesRelayed = 0
    var serverTransactionsCreated = 0
    var transactionsCompleted = 0
    var serverTransactionFailures = 0
    var clientTransactionFailures = 0
    var cancelsReceived = 0
    var cancelsSent = 0
    var loopsDetected = 0
    var keyCollisions = 0
    var sendFailures = 0
    var connectionsOpened = 0
    var dialogsCreated = 0
    var dialogsConfirmed = 0
    var dialogsTerminated = 0
    var outOfOrderRequests = 0

    static func + (lhs: ProxyCounters, rhs: ProxyCounters) -> ProxyCounters {
        var sum = lhs
        sum.messagesReceived += rhs.messagesReceived
        sum.messagesSent += rhs.messagesSent
        sum.handedOver += rhs.handedOver
        sum.malformedDropped += rhs.malformedDropped
        sum.oversizedDropped += rhs.oversizedDropped
        sum.malformedAnswered += rhs.malformedAnswered
        sum.unroutableDropped += rhs.unroutableDropped
        sum.retransmissionsAbsorbed += rhs.retransmissionsAbsorbed
        sum.retransmissionsSent += rhs.retransmissionsSent
        sum.acksAbsorbed += rhs.acksAbsorbed
        sum.requestsForwarded += rhs.requestsForwarded
        sum.responsesRelayed += rhs.responsesRelayed
        sum.serverTransactionsCreated += rhs.serverTransactionsCreated
        sum.transactionsCompleted += rhs.transactionsCompleted
        sum.serverTransactionFailures += rhs.serverTransactionFailures
        sum.clientTransactionFailures += rhs.clientTransactionFailures
        sum.cancelsReceived += rhs.cancelsReceived
        sum.cancelsSent += rhs.cancelsSent
        sum.loopsDetected += rhs.loopsDetected
        sum.keyCollisions += rhs.keyCollisions
        sum.sendFailures += rhs.sendFailures
        sum.connectionsOpened += rhs.connectionsOpened
        sum.dialogsCreated += rhs.dialogsCreated
        sum.dialogsConfirmed += rhs.dialogsConfirmed
        sum.dialogsTerminated += rhs.dialogsTerminated
        sum.outOfOrderRequests += rhs.outOfOrderRequests
        return sum
    }

    /// Name/value pairs for the log line.
    var fields: [(String, Int)] {
        [
            ("received", messagesReceived), ("sent", messagesSent), ("handed_over", handedOver),
            ("malformed_dropped", malformedDropped), ("oversized_dropped", oversizedDropped),
            ("malformed_answered", malformedAnswered),
            ("unroutable_dropped", unroutableDropped), ("retransmissions_absorbed", retransmissionsAbsorbed),
            ("retransmissions_sent", retransmissionsSent), ("acks_absorbed", acksAbsorbed),
            ("requests_forwarded", requestsForwarded), ("responses_relayed", responsesRelayed),
            ("transactions", serverTransactionsCreated), ("transactions_completed", transactionsCompleted),
            ("server_failures", serverTransactionFailures), ("client_failures", clientTransactionFailures),
            ("cancels_received", cancelsReceived), ("cancels_sent", cancelsSent), ("loops", loopsDetected),
            ("key_collisions", keyCollisions), ("send_failures", sendFailures),
            ("connections_opened", connectionsOpened), ("dialogs", dialogsCreated),
            ("dialogs_confirmed", dialogsConfirmed), ("dialogs_terminated", dialogsTerminated),
            ("out_of_order_requests", outOfOrderRequests),
        ]
    }
}
