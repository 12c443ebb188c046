import Logging
import SIPEdgeIO
import SIPMessage
import SIPTransaction

extension Worker {
    func handleResponse(_ inbound: Inbound) {
        let response = inbound.message
        let via = inbound.headers.topVia
        guard let branch = via.branchRange,
            let id = BranchFormat.transactionID(in: branch, of: response),
            context.interfaces.isLocal(host: via.hostRange, port: via.port, transport: nil, in: response)
        else {
            counters[.unroutableDropped] += 1
            return
        }
        if !recordingTransactions.isEmpty, let recording = recordingTransactions[id] {
            handleRecordingResponse(inbound, transaction: recording)
            return
        }
        guard let transaction = clientTransactions[id] else {
            relayStrayResponse(response)
            return
        }
        let cseq = inbound.headers.cseq
        if cseq.method == .cancel {
            cancelResponseReceived(transaction, statusCode: response.statusCode)
            return
        }
        guard cseq.method == transaction.method || (transaction.method == .other && cseq.method == .other) else {
            counters[.unroutableDropped] += 1
            return
        }
        if let connection = inbound.connection, transaction.nextHop?.connection == nil {
            transaction.nextHop?.connection = connection
        }
        performClient(transaction, actions: transaction.clientStep(.response(statusCode: response.statusCode)), response: inbound)
    }

    /// A 2xx to an INVITE whose client transaction is gone (a late retransmission, or another
    /// fork's answer) still goes upstream, statelessly by its Via (§16.7 step 3 and RFC 6026).
    private func relayStrayResponse(_ response: SIPMessage) {
        guard response.statusCode >= 200, response.statusCode < 300, response.cseq?.method == .invite,
            let relayed = response.withoutTopVia(editor: &editor), let relayedMessage = try? SIPMessage(parsing: relayed),
            let next = relayedMessage.topVia, let transport = Transport(sipText: relayedMessage.text(next.transportRange))
        else {
            counters[.unroutableDropped] += 1
            return
        }
        let host = next.receivedRange.map { relayedMessage.text($0) } ?? relayedMessage.text(next.hostRange)
        let port = UInt16(next.rport ?? next.port ?? 5060)
        guard let address = try? SocketAddress(ipAddress: host, port: port) else {
            counters[.unroutableDropped] += 1
            return
        }
        let interface = context.interfaces.outgoing(for: transport, family: address)
        send(relayed, to: Hop(transport: transport, address: address, interfaceIndex: interface.index, connection: nil))
    }

    /// Carries out a client transaction's actions. `response` is the message that caused them.
    func performClient(_ transaction: ProxyTransaction, actions: TransactionActions, response: Inbound?) {
        if let message = actions.message {
            switch message {
            case .request, .requestRetransmission:
                if let bytes = transaction.forwarded, let hop = transaction.nextHop {
                    if case .requestRetransmission = message { counters[.retransmissionsSent] += 1 }
                    send(bytes, to: hop)
                }
            case .ack:
                // Built once from the forwarded INVITE; retransmitted finals get the same bytes.
                if transaction.ackBytes == nil, let response {
                    transaction.ackBytes = transaction.forwardedMessage?.makeACK(for: response.message)
                }
                if let ack = transaction.ackBytes, let hop = transaction.nextHop { send(ack, to: hop) }
            case .cancel:
                sendCANCEL(transaction)
            case .response, .responseRetransmission:
                break
            }
        }
        if let delivery = actions.delivery, case .response(let statusCode, let isFirstOfKind) = delivery,
            let response
        {
            relay(response, statusCode: statusCode, isFirstOfKind: isFirstOfKind, for: transaction)
        }
        if let failure = actions.failure {
            clientFailed(transaction, failure: failure)
        }
        scheduleAll(actions.timers, for: transaction) { .client(transaction, $0) }
        if actions.isTerminated { clientTerminated(transaction) }
        transaction.releaseSpentBuffers()
    }

    /// §16.7: provisionals other than 100 and every 2xx go up at once; other finals wait until
    /// every branch has completed, then the best one goes up.
    private func relay(_ response: Inbound, statusCode: Int, isFirstOfKind: Bool, for transaction: ProxyTransaction) {
        transaction.dialog?.responseReceived(response, to: transaction, worker: self)
        let actions = transaction.responses.receiveResponse(statusCode: statusCode, fromBranch: 0)
        if actions.forward != nil {
            let anchored = transaction.mediaOffer != nil
                && anchorResponseMedia(response, statusCode: statusCode, for: transaction) { [unowned self] body in
                    // Dropped while the engine works on an earlier copy: the far end retransmits.
                    guard let body else {
                        if !transaction.isAnswerPending { self.relayUpstream(response.message, statusCode: statusCode, for: transaction) }
                        return
                    }
                    self.relayUpstream(response.message, statusCode: statusCode, for: transaction, body: body)
                }
            if !anchored { relayUpstream(response.message, statusCode: statusCode, for: transaction) }
        }
        if actions.allBranchesCompleted { sendBestResponse(transaction, received: response.message) }
    }

    private func relayUpstream(_ response: SIPMessage, statusCode: Int, for transaction: ProxyTransaction, body: [UInt8]? = nil) {
        guard let bytes = response.withoutTopVia(editor: &editor, body: body) else { return }
        counters[.responsesRelayed] += 1
        sendResponse(transaction, statusCode: statusCode, bytes: bytes)
    }

    /// §16.7 step 6: the best final response of the context goes upstream: the received one, or
    /// one the proxy makes (408 when nothing answered, 500 in place of a 503).
    private func sendBestResponse(_ transaction: ProxyTransaction, received: SIPMessage?) {
        guard let best = transaction.responses.forwardBestResponse() else { return }
        if best.branch != nil, let received {
            relayUpstream(received, statusCode: best.statusCode, for: transaction)
        } else if !transaction.finalSent {
            respond(transaction, statusCode: best.statusCode, reasonPhrase: reasonPhrase(for: best.statusCode))
        }
    }

    private func reasonPhrase(for statusCode: Int) -> String {
        switch statusCode {
        case 408: return "Request Timeout"
        case 500: return "Server Internal Error"
        case 503: return "Service Unavailable"
        default: return "Error"
        }
    }

    private func clientFailed(_ transaction: ProxyTransaction, failure: TransactionFailure) {
        counters[.clientTransactionFailures] += 1
        let callID = transaction.request.map { $0.text(transaction.headers.callID) } ?? "-"
        switch failure {
        case .timeout(let timer):
            logger.info(
                "next hop did not answer",
                metadata: ["timer": "\(timer)", "sip.method": "\(transaction.method)", "sip.callID": "\(callID)"])
            _ = transaction.responses.branchTimedOut(0)
        case .transportError:
            logger.info(
                "next hop unreachable",
                metadata: ["hop": "\(transaction.nextHop.map { "\($0.address)" } ?? "-")", "sip.callID": "\(callID)"])
            _ = transaction.responses.branchTransportFailed(0)
        }
        sendBestResponse(transaction, received: nil)
    }

    func clientTimerFired(_ transaction: ProxyTransaction, _ timer: TransactionTimer) {
        performClient(transaction, actions: transaction.clientStep(.timer(timer)), response: nil)
    }

    private func clientTerminated(_ transaction: ProxyTransaction) {
        guard !transaction.isClientTerminated else { return }
        transaction.isClientTerminated = true
        if let id = transaction.clientID, clientTransactions[id] === transaction, transaction.isCancelTerminated {
            clientTransactions.removeValue(forKey: id)
        }
        finishIfDone(transaction)
    }

    /// A stream connection failed: every client transaction that depends on it gets a transport error.
    func transportFailed(on connection: StreamConnection) {
        for transaction in clientTransactions.values where transaction.nextHop?.connection === connection
            || (transaction.nextHop?.transport == .tcp && transaction.nextHop?.address == connection.remoteAddress)
        {
            guard !transaction.isClientTerminated else { continue }
            performClient(transaction, actions: transaction.clientStep(.transportError), response: nil)
        }
        for transaction in recordingTransactions.values
        where transaction.hop.transport.isStream && transaction.hop.address == connection.remoteAddress
            && !transaction.isTerminated && !transaction.isAbandoned
        {
            performRecordingClient(transaction, actions: transaction.step(.transportError), response: nil)
        }
    }

    /// An ICMP error came back for a datagram sent to `address`: every client transaction waiting
    /// on that UDP next hop fails with a transport error (§18.4), so the best response or the next
    /// SRS follows at once instead of after Timer B.
    ///
    /// The kernel hands the ICMP error to whichever socket of the SO_REUSEPORT group its addresses
    /// hash to, not necessarily the sender's, so every worker is told.
    func reportUnreachable(_ address: SocketAddress) {
        counters[.destinationsUnreachable] += 1
        // Each report walks the transaction tables: a burst for one address is handled once.
        let now = loop.nowMilliseconds
        if let (last, at) = lastUnreachable, last == address, now &- at < 100 { return }
        lastUnreachable = (address, now)
        for worker in context.workers {
            if worker === self {
                unreachable(address)
            } else {
                worker.loop.execute { worker.unreachable(address) }
            }
        }
    }

    private func unreachable(_ address: SocketAddress) {        for transaction in clientTransactions.values
        where transaction.nextHop?.transport == .udp && transaction.nextHop?.address == address && !transaction.isClientTerminated {
            performClient(transaction, actions: transaction.clientStep(.transportError), response: nil)
        }
        for transaction in recordingTransactions.values
        where transaction.hop.transport == .udp && transaction.hop.address == address && !transaction.isTerminated && !transaction.isAbandoned {
            performRecordingClient(transaction, actions: transaction.step(.transportError), response: nil)
        }
    }

    // MARK: Our CANCEL (§9.1)

    private func sendCANCEL(_ transaction: ProxyTransaction) {
        guard transaction.cancel == nil, let hop = transaction.nextHop,
            let bytes = transaction.forwardedMessage?.makeCANCEL()
        else { return }
        var machine = ClientNonInviteTransaction(reliableTransport: hop.transport.isReliable, settings: context.timerSettings)
        let actions = machine.start()
        transaction.cancel = CancelLeg(machine: machine, bytes: bytes)
        transaction.isCancelTerminated = false
        counters[.cancelsSent] += 1
        performCancel(transaction, actions: actions)
    }

    private func performCancel(_ transaction: ProxyTransaction, actions: TransactionActions) {
        if let message = actions.message, let cancel = transaction.cancel, let hop = transaction.nextHop {
            switch message {
            case .request, .requestRetransmission: send(cancel.bytes, to: hop)
            default: break
            }
        }
        scheduleAll(actions.timers, for: transaction) { .cancel(transaction, $0) }
        if actions.isTerminated {
            transaction.isCancelTerminated = true
            if transaction.isClientTerminated, let id = transaction.clientID, clientTransactions[id] === transaction {
                clientTransactions.removeValue(forKey: id)
            }
            finishIfDone(transaction)
        }
    }

    private func cancelResponseReceived(_ transaction: ProxyTransaction, statusCode: Int) {
        guard let cancel = transaction.cancel else { return }
        performCancel(transaction, actions: cancel.machine.receiveResponse(statusCode: statusCode))
    }

    func cancelTimerFired(_ transaction: ProxyTransaction, _ timer: TransactionTimer) {
        guard let cancel = transaction.cancel else { return }
        performCancel(transaction, actions: cancel.machine.timerFired(timer))
    }
}
