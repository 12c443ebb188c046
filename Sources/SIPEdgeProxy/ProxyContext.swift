import Glibc
import Synchronization
import SIPDialog
import SIPEdgeConfig
import SIPEdgeIO
import SIPEdgeTLS
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
    let tls: TLSContexts
    /// Seeds the hashes that key transactions and pick workers; random per process so that nobody
    /// outside can aim collisions at the tables.
    let hashSeed: UInt64
    let tagSeed: UInt64
    let connections = ConnectionRegistry()
    /// Set once, before any loop runs; read-only afterwards.
    private(set) var workers: [Worker] = []

    init(configuration: ProxyConfiguration, tls: TLSContexts, dialogObserver: DialogObserver?) throws(SIPIOError) {
        self.configuration = configuration
        self.tls = tls
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
        return ownerIndex(ofCallIDHash: message.hash(callID, seed: hashSeed))
    }

    /// The worker for a Call-ID hashed with `hashSeed` (Call-IDs of our own making too).
    func ownerIndex(ofCallIDHash hash: UInt64) -> Int {
        workers.count > 1 ? Int(hash % UInt64(workers.count)) : 0
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

/// What the proxy counts. The reported name is the case name in snake case.
enum Counter: Int, CaseIterable, Sendable {
    case messagesReceived
    case messagesSent
    case handedOver
    case malformedDropped
    case oversizedDropped
    case malformedAnswered
    case unroutableDropped
    case retransmissionsAbsorbed
    case retransmissionsSent
    case acksAbsorbed
    case requestsForwarded
    case responsesRelayed
    case serverTransactionsCreated
    case transactionsCompleted
    case serverTransactionFailures
    case clientTransactionFailures
    case cancelsReceived
    case cancelsSent
    case loopsDetected
    case keyCollisions
    case sendFailures
    case connectionsOpened
    case dialogsCreated
    case dialogsConfirmed
    case dialogsTerminated
    case outOfOrderRequests
    case recordingSessionsOpened
    case recordingSessionsClosed
    case recordingsStarted
    case recordingsStopped
    case recordingsFailed
    case recordingFailovers
    case recordingsPaused
    case recordingsResumed
    case callsNotRecorded
    case mediaSessionsOpened
    case mediaSessionsClosed
    case mediaEngineFailures
    case destinationsUnreachable

    var name: String {
        var name = ""
        for character in String(describing: self) {
            if character.isUppercase {
                name.append("_")
                name.append(Character(character.lowercased()))
            } else {
                name.append(character)
            }
        }
        return name
    }
}

/// Per-worker counters, one slot per `Counter`, stored inline; summed over workers when reported.
struct ProxyCounters: Sendable {
    private var values = InlineArray<48, Int>(repeating: 0)

    subscript(counter: Counter) -> Int {
        get { values[counter.rawValue] }
        set { values[counter.rawValue] = newValue }
    }

    static func + (lhs: ProxyCounters, rhs: ProxyCounters) -> ProxyCounters {
        var sum = lhs
        for counter in Counter.allCases { sum[counter] += rhs[counter] }
        return sum
    }

    /// Name/value pairs for the log line.
    var fields: [(String, Int)] {
        // Gauges derived from opened/closed pairs: what is still open right now.
        Counter.allCases.map { ($0.name, self[$0]) } + [
            ("recordings_active", self[.recordingSessionsOpened] - self[.recordingSessionsClosed]),
            ("media_sessions_active", self[.mediaSessionsOpened] - self[.mediaSessionsClosed]),
        ]
    }
}
