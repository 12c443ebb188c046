import Logging
import MediaEngine
import SIPEdgeConfig
import SIPEdgeIO
import SIPEdgeTLS
import SIPMessage
import SIPRECMetadata
import SIPRecording
import SIPTransaction

/// A message received by some worker, with where it came from.
struct Inbound {
    let message: SIPMessage
    let headers: RoutingHeaders
    let source: SocketAddress
    let interfaceIndex: Int
    let transport: Transport
    let connection: StreamConnection?

    /// Where responses go (RFC 3261 §18.2.2, RFC 3581): on the request's own connection while it
    /// is open; otherwise to the source address, at the source port when the Via asked for `rport`,
    /// else at the Via's sent-by port.
    var replyHop: Hop {
        let via = headers.topVia
        let address = via.rportParameterRange != nil ? source : source.withPort(UInt16(via.port ?? 5060))
        return Hop(transport: transport, address: address, interfaceIndex: interfaceIndex, connection: connection)
    }
}

/// Moves a loop-confined value to another loop through `EventLoop.execute`; the receiving loop
/// becomes its only user.
struct Handover<Value>: @unchecked Sendable {
    let value: Value
}

/// One event loop's share of the proxy. Every call (by Call-ID hash) lives on exactly one worker;
/// messages that arrive on another worker are handed over, never shared under a lock. All state
/// here is touched only from this worker's loop thread.
final class Worker: @unchecked Sendable {
    let index: Int
    let loop: EventLoop
    let context: ProxyContext
    var logger: Logger

    /// Our socket on each UDP interface (by interface index).
    var udpSockets: [Int: UDPSocket] = [:]
    var listeners: [StreamListener] = []
    var serverTransactions: [UInt64: ProxyTransaction] = [:]
    var clientTransactions: [UInt64: ProxyTransaction] = [:]
    var dialogs = DialogTable()
    var wheel: TimerWheel<TimerPurpose>
    var counters = ProxyCounters()
    /// Reused for every forwarded message, so its buffers are allocated once.
    var editor = MessageEditor()
    /// Recording: the media engine client on this worker's loop, the client transactions toward
    /// SRSs, and the recording sessions by their own Call-ID (for requests from the SRS).
    var mediaEngine: (any MediaEngine)?
    var recordingTransactions: [UInt64: RecordingTransaction] = [:]
    /// Keyed by the seeded hash of the Call-ID, so that looking up an arriving request builds no text.
    var recordingsByCallID: [UInt64: RecordingDriver] = [:]
    /// Ids of recording sessions, participants and streams in the metadata.
    var metadataIDs = MetadataIDSource()
    /// The last address an ICMP error was handled for, and when.
    var lastUnreachable: (SocketAddress, UInt64)?
    /// The text of the last peer address seen: peers repeat, and inet_ntop is not free.
    private var lastAddressText: (SocketAddress, String)?
    /// The last numeric next-hop host parsed, see `numericAddress(_:)`.
    var lastNumericHost: (String, UInt16, SocketAddress)?
    private var transactionSequence: UInt64 = 0
    private var tick: LoopTimer?
    private var keepAlive: LoopTimer?
    /// The SRS addresses this worker reached over TCP or TLS: their connections get CRLF keep-alives.
    var recorderConnections: Set<SocketAddress> = []
    /// RFC 5626 §4.4.1 suggests a keep-alive well within NAT and firewall idle timeouts.
    static let keepAliveMilliseconds = 25_000

    init(index: Int, loop: EventLoop, context: ProxyContext, logger: Logger) {
        self.index = index
        self.loop = loop
        self.context = context
        self.logger = logger
        self.logger[metadataKey: "worker"] = "\(index)"
        // 4096 slots of 10 ms turn once in 41 s, longer than the 64·T1 (32 s) a transaction lingers
        // after its final response, so a timer is looked at only in the slot where it fires.
        self.wheel = TimerWheel(
            tickMilliseconds: 10, slotCount: 4096, nowMilliseconds: Int(loop.nowMilliseconds), reservingCapacity: 1024)
    }

    /// Opens this worker's sockets on every interface (SO_REUSEPORT, so all workers share them).
    func openSockets() throws(SIPIOError) {
        for interface in context.interfaces.all {
            switch interface.transport {
            case .udp:
                let interfaceIndex = interface.index
                udpSockets[interfaceIndex] = try UDPSocket(
                    loop: loop, bindTo: interface.address, reusePort: true,
                    receiveBufferBytes: context.configuration.udpReceiveBufferBytes,
                    maxDatagramSize: min(context.configuration.maxMessageSize, 65535),
                    coalesceMicroseconds: context.configuration.udpCoalesceMicroseconds
                ) { [unowned self] received in
                    self.receive(received, interfaceIndex: interfaceIndex)
                }
                udpSockets[interfaceIndex]?.onUnreachable = { [unowned self] address, _ in self.reportUnreachable(address) }
            case .tcp, .tls:
                let interfaceIndex = interface.index
                let tls = interface.transport == .tls ? context.tls.server : nil
                listeners.append(
                    try StreamListener(loop: loop, bindTo: interface.address, reusePort: true, tls: tls) { [unowned self] connection in
                        self.adopt(connection, interfaceIndex: interfaceIndex)
                    })
            }
        }
        tick = loop.scheduleRepeating(everyMilliseconds: 10) { [unowned self] in self.fireTimers() }
        if context.configuration.recording.isEnabled {
            keepAlive = loop.scheduleRepeating(everyMilliseconds: Self.keepAliveMilliseconds) { [unowned self] in
                self.sendKeepAlives()
            }
        }
    }

    /// Stops listening; called on the loop thread at shutdown.
    func closeSockets() {
        tick?.cancel()
        keepAlive?.cancel()
        for socket in udpSockets.values { socket.close() }
        for listener in listeners { listener.close() }
        udpSockets.removeAll()
        listeners.removeAll()
    }

    // MARK: Receiving

    func receive(_ received: borrowing ReceivedMessage, interfaceIndex: Int) {
        counters[.messagesReceived] += 1
        let message: SIPMessage
        do {
            message = try SIPMessage(
                parsing: received.bytes, framing: received.transport == .udp ? .datagram : .stream,
                limits: context.scanLimits)
        } catch {
            reject(error, replyHop: sourceHop(of: received, interfaceIndex: interfaceIndex))
            return
        }
        let headers: RoutingHeaders
        do {
            headers = try message.routingHeaders()
        } catch {
            reject(error, replyHop: sourceHop(of: received, interfaceIndex: interfaceIndex))
            return
        }
        let inbound = Inbound(
            message: message, headers: headers, source: received.source, interfaceIndex: interfaceIndex,
            transport: received.transport, connection: received.connection)
        dispatch(inbound)
    }

    /// Straight back to where a message came from, for answering what could not be parsed.
    private func sourceHop(of received: borrowing ReceivedMessage, interfaceIndex: Int) -> Hop {
        Hop(transport: received.transport, address: received.source, interfaceIndex: interfaceIndex, connection: received.connection)
    }

    /// Hands the message to the worker that owns its call.
    func dispatch(_ inbound: Inbound) {
        let owner = context.ownerIndex(of: inbound.message, callID: inbound.headers.callID)
        if owner == index {
            handle(inbound)
        } else {
            counters[.handedOver] += 1
            let target = context.workers[owner]
            let handover = Handover(value: inbound)
            target.loop.execute { target.handle(handover.value) }
        }
    }

    func handle(_ inbound: Inbound) {
        if inbound.message.isRequest {
            handleRequest(inbound)
        } else {
            handleResponse(inbound)
        }
    }

    /// A message that cannot be proxied: answer requests we can answer (400 with the reason,
    /// 505, 513), drop and count the rest.
    func reject(_ error: SIPParseError, replyHop: Hop) {
        guard let partial = error.partial, partial.isRequest, partial.method != .ack,
            partial.firstHeader(.via) != nil
        else {
            counters[.malformedDropped] += 1
            logger.debug("dropped unusable message", metadata: ["reason": "\(error.reasonPhrase)", "peer": "\(replyHop.address)"])
            return
        }
        counters[.malformedAnswered] += 1
        logger.debug("rejected request", metadata: ["reason": "\(error.reasonPhrase)", "peer": "\(replyHop.address)"])
        let response = partial.makeResponse(
            statusCode: error.statusCode, reasonPhrase: error.reasonPhrase, toTag: makeTag())
        send(response, to: replyHop)
    }

    // MARK: Sending

    /// Sends bytes along a hop: UDP from our socket on its interface, TCP on the hop's connection,
    /// a pooled one, or a new one.
    func send(_ bytes: [UInt8], to hop: Hop) {
        counters[.messagesSent] += 1
        switch hop.transport {
        case .udp:
            guard let socket = udpSockets[hop.interfaceIndex] ?? udpSockets.values.first else {
                counters[.sendFailures] += 1
                return
            }
            socket.send(bytes, to: hop.address)
        case .tcp, .tls:
            guard let connection = hop.connection ?? context.connections.lookup(hop.address) else {
                connect(to: hop, interfaceIndex: hop.interfaceIndex).send(bytes)
                return
            }
            guard connection.loop !== loop else {
                sendOnOwnLoop(bytes, on: connection, hop: hop)
                return
            }
            // Only the owning loop may touch a connection, its state included.
            let handover = Handover(value: (connection, hop))
            let owner = context.workers[connection.loop.index]
            connection.loop.execute {
                let (connection, hop) = handover.value
                owner.sendOnOwnLoop(bytes, on: connection, hop: hop)
            }
        }
    }

    /// Sends on a connection this worker's loop owns; a closed one is replaced by a new connection
    /// to the same address (RFC 3261 §18.2.2: a response opens a new one when the old is gone).
    func sendOnOwnLoop(_ bytes: [UInt8], on connection: StreamConnection, hop: Hop) {
        if connection.isOpen {
            connection.send(bytes)
        } else if let pooled = context.connections.lookup(hop.address), pooled.loop === loop, pooled.isOpen {
            pooled.send(bytes)
        } else {
            connect(to: hop, interfaceIndex: hop.interfaceIndex).send(bytes)
        }
    }

    private func connect(to hop: Hop, interfaceIndex: Int) -> StreamConnection {
        var tls: TLSClientOptions?
        if hop.transport == .tls {
            // Without an SRS's own settings: the global context, the address as the identity.
            tls = hop.tls ?? context.tls.global.map { TLSClientOptions(context: $0, serverName: hop.address.ipAddress) }
        }
        let connection = StreamConnection.connect(loop: loop, to: hop.address, tls: tls)
        counters[.connectionsOpened] += 1
        adopt(connection, interfaceIndex: interfaceIndex)
        return connection
    }

    /// Wires a stream connection (accepted or opened) to this worker and the shared pool.
    func adopt(_ connection: StreamConnection, interfaceIndex: Int) {
        context.connections.register(connection)
        connection.maxMessageSize = context.configuration.maxMessageSize
        connection.onMessage = { [unowned self] received in
            self.receive(received, interfaceIndex: interfaceIndex)
        }
        connection.onMalformed = { [unowned self, unowned connection] received, reason in
            self.logger.info(
                "closing connection after malformed stream data",
                metadata: ["peer": "\(connection.remoteAddress)", "reason": "\(reason)"])
            // A request whose headers could be read still gets its 400 (say, for a missing
            // Content-Length) before the connection closes; anything else is counted.
            let hop = Hop(transport: .tcp, address: connection.remoteAddress, interfaceIndex: interfaceIndex, connection: connection)
            do throws(SIPParseError) {
                _ = try SIPMessage(parsing: received.bytes, framing: .stream, limits: self.context.scanLimits)
                self.counters[.malformedDropped] += 1
            } catch {
                self.reject(error, replyHop: hop)
            }
        }
        connection.onClose = { [unowned self, unowned connection] error in
            self.context.connections.unregister(connection)
            if let error {
                if error.code == .tls {
                    // OpenSSL's own reason: a certificate, handshake or protocol failure.
                    self.logger.warning("TLS connection failed", metadata: ["peer": "\(connection.remoteAddress)", "reason": "\(error)"])
                } else {
                    self.logger.debug("connection closed", metadata: ["peer": "\(connection.remoteAddress)", "error": "\(error)"])
                }
            }
            self.connectionClosed(connection, error: error)
        }
    }

    /// Transactions waiting on a connection that failed get a transport error (§17.1.4).
    private func connectionClosed(_ connection: StreamConnection, error: SIPIOError?) {
        for worker in context.workers {
            let handover = Handover(value: connection)
            let notify: @Sendable () -> Void = { worker.transportFailed(on: handover.value) }
            if worker === self { notify() } else { worker.loop.execute(notify) }
        }
    }

    // MARK: Timers

    func schedule(_ purpose: TimerPurpose, afterMilliseconds delay: Int) -> TimerWheel<TimerPurpose>.ID {
        wheel.schedule(afterMilliseconds: max(delay, 1), payload: purpose)
    }

    /// Schedules a transaction's timers and remembers them, so that they can be cancelled when the
    /// transaction ends: stale timers are harmless, but long ones (B, C, ...) would keep the
    /// transaction in memory for minutes.
    func scheduleAll(_ starts: TimerStarts, for transaction: ProxyTransaction, _ make: (TransactionTimer) -> TimerPurpose) {
        for start in starts {
            transaction.timers.append(schedule(make(start.timer), afterMilliseconds: start.milliseconds))
        }
    }

    func cancelTimers(_ timers: inout [TimerWheel<TimerPurpose>.ID]) {
        for id in timers { wheel.cancel(id) }
        timers.removeAll()
    }

    private func fireTimers() {
        let now = Int(loop.nowMilliseconds)
        while let purpose = wheel.popExpired(upTo: now) {
            switch purpose {
            case .server(let transaction, let timer): serverTimerFired(transaction, timer)
            case .client(let transaction, let timer): clientTimerFired(transaction, timer)
            case .cancel(let transaction, let timer): cancelTimerFired(transaction, timer)
            case .dialog(let dialog, let timer): dialogTimerFired(dialog, timer)
            case .recordingClient(let transaction, let timer): recordingClientTimerFired(transaction, timer)
            case .recordingSession(let driver, let timer): perform(driver, driver.machine.timerFired(timer))
            case .recordingForget(let driver): forgetRecording(driver)
            case .recordingAbandoned(let transaction): recordingAbandonmentEnded(transaction)
            case .recordingResend(let transaction): resendRecordingRequest(transaction)
            }
        }
    }

    // MARK: Identifiers

    /// A transaction id unique across workers: the worker index in the top byte.
    func nextTransactionID() -> UInt64 {
        transactionSequence &+= 1
        return UInt64(index) << 56 | (transactionSequence & 0x00FF_FFFF_FFFF_FFFF)
    }

    /// The numeric text of `address`, from a one-entry cache.
    func text(of address: SocketAddress) -> String {
        if let (cached, text) = lastAddressText, cached == address { return text }
        let text = address.ipAddress
        lastAddressText = (address, text)
        return text
    }

    /// A to-tag for responses the proxy makes itself.
    func makeTag() -> String {
        var bytes: [UInt8] = []
        bytes.append(hex: context.tagSeed ^ nextTransactionID() &* 0x9E37_79B9_7F4A_7C15, digits: 12)
        return String(decoding: bytes, as: UTF8.self)
    }
}
