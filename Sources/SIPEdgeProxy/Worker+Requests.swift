import Logging
import SIPEdgeIO
import SIPMessage
import SIPTransaction

extension Worker {
    func handleRequest(_ inbound: Inbound) {
        let request = inbound.message
        if let recording = recordingSession(for: inbound) {
            handleRecordingRequest(inbound, driver: recording)
            return
        }
        switch request.method {
        case .ack:
            handleACK(inbound)
        case .cancel:
            handleCANCEL(inbound)
        default:
            let key = TransactionKey.server(request, inbound.headers, method: request.method, seed: context.hashSeed)
            if let existing = serverTransactions[key] {
                guard TransactionKey.sameTransaction(existing, inbound) else {
                    // Two different transactions with one 64-bit seeded hash: practically never.
                    counters[.keyCollisions] += 1
                    send(request.makeResponse(statusCode: 500, reasonPhrase: "Transaction Key Collision", toTag: makeTag()), to: inbound.replyHop)
                    return
                }
                counters[.retransmissionsAbsorbed] += 1
                performServer(existing, actions: existing.serverStep(.retransmission))
                return
            }
            handleNewRequest(inbound, key: key)
        }
    }

    // MARK: New requests (RFC 3261 §16.3 - §16.6)

    private func handleNewRequest(_ inbound: Inbound, key: UInt64) {
        let request = inbound.message
        let transaction = makeServerTransaction(inbound, key: key)
        // §16.3 step 3: Max-Forwards.
        if case .value(0) = inbound.headers.maxForwards {
            respond(transaction, statusCode: 483, reasonPhrase: "Too Many Hops")
            return
        }
        // §16.3 step 4: loop detection.
        if isLooping(request, inbound.headers) {
            counters[.loopsDetected] += 1
            respond(transaction, statusCode: 482, reasonPhrase: "Loop Detected")
            return
        }
        // §16.4: our own Route entries come off; the next one, if any, is the next hop.
        let routes = context.interfaces.scanRoutes(request)
        let isInitial = inbound.headers.toTag == nil
        let target: NextHopTarget
        if let next = routes.nextRoute {
            target = NextHopTarget(uri: next, in: request)
        } else if let strict = routes.requestURIFromRoute, let uri = request.uri(strict) {
            target = NextHopTarget(uri: uri, in: request)
        } else if isInitial, let upstream = context.upstream {
            target = upstream
        } else if let requestURI = request.requestURI {
            if context.interfaces.isLocal(requestURI, in: request) {
                answerLocally(transaction)
                return
            }
            target = NextHopTarget(uri: requestURI, in: request)
        } else {
            respond(transaction, statusCode: 416, reasonPhrase: "Unsupported URI Scheme")
            return
        }
        if isInitial, request.method == .invite {
            dialogs.trackInitialInvite(transaction, worker: self)
        } else if !isInitial, let (entry, index, direction) = dialogs.find(request, inbound.headers, seed: context.hashSeed) {
            transaction.dialog = entry
            entry.requestStarted(transaction, index: index, direction: direction, worker: self)
        }
        // A recorded call's SDP goes through the media engine first.
        if mediaEngine != nil,
            anchorRequestMedia(transaction, inbound: inbound, isInitial: isInitial, proceed: { [unowned self] in
                self.route(transaction, to: target, routes: routes, isInitial: isInitial)
            })
        {
            return
        }
        route(transaction, to: target, routes: routes, isInitial: isInitial)
    }

    private func route(_ transaction: ProxyTransaction, to target: NextHopTarget, routes: RouteScan, isInitial: Bool) {
        if let address = numericAddress(target) {
            forward(transaction, to: address, transport: target.transport, routes: routes, isInitial: isInitial)
            return
        }
        resolve(target) { [unowned self] result in
            switch result {
            case .success(let address):
                self.forward(transaction, to: address, transport: target.transport, routes: routes, isInitial: isInitial)
            case .failure(let error):
                self.logger.info("next hop unresolvable", metadata: ["host": "\(target.host)", "error": "\(error)"])
                self.respond(transaction, statusCode: 503, reasonPhrase: "Next Hop Unresolvable")
            }
        }
    }

    private func makeServerTransaction(_ inbound: Inbound, key: UInt64) -> ProxyTransaction {
        let request = inbound.message
        let reliable = inbound.transport.isReliable
        let server: ProxyTransaction.ServerSide =
            request.method == .invite
            ? .invite(ServerInviteTransaction(reliableTransport: reliable, settings: context.timerSettings))
            : .nonInvite(ServerNonInviteTransaction(reliableTransport: reliable, settings: context.timerSettings))
        let transaction = ProxyTransaction(
            serverKey: key, request: request, headers: inbound.headers, replyHop: inbound.replyHop, server: server)
        serverTransactions[key] = transaction
        counters[.serverTransactionsCreated] += 1
        if request.method == .invite {
            // §16.2: a stateful proxy answers an INVITE with 100 Trying straight away.
            transaction.lastResponse = request.makeResponse(statusCode: 100, reasonPhrase: "Trying")
        }
        performServer(transaction, actions: transaction.serverStep(.start))
        return transaction
    }

    /// A request addressed to the proxy itself: OPTIONS is answered (keep-alive pings from trunks),
    /// anything else has nowhere to go.
    private func answerLocally(_ transaction: ProxyTransaction) {
        if transaction.method == .options {
            respond(transaction, statusCode: 200, reasonPhrase: "OK")
        } else {
            respond(transaction, statusCode: 404, reasonPhrase: "Not Found")
        }
    }

    /// §16.3 step 4: a Via of ours whose loop hash equals this request's means it came back
    /// unchanged. A spiral (changed Request-URI) has a different hash and goes on.
    private func isLooping(_ request: SIPMessage, _ headers: RoutingHeaders) -> Bool {
        var ourHashes: [UInt64] = []
        request.forEachVia(top: headers.topVia) { via in
            if let branch = via.branchRange, let hash = BranchFormat.loopHash(in: branch, of: request),
                context.interfaces.isLocal(host: via.hostRange, port: via.port, transport: nil, in: request)
            {
                ourHashes.append(hash)
            }
            return true
        }
        guard !ourHashes.isEmpty else { return false }
        return ourHashes.contains(BranchFormat.loopHash(of: request, headers, seed: context.hashSeed))
    }

    // MARK: Forwarding

    func forward(
        _ transaction: ProxyTransaction, to address: SocketAddress, transport: Transport, routes: RouteScan,
        isInitial: Bool
    ) {
        // Cancelled or failed while the name was resolved: the request is answered already.
        guard !transaction.finalSent, let request = transaction.request else { return }
        let outgoing = context.interfaces.outgoing(for: transport, family: address)
        let incoming = context.interfaces.all[transaction.replyHop.interfaceIndex]
        var recordRoutes: (LocalInterface?, LocalInterface?) = (nil, nil)
        if isInitial, SIPMethod.dialogCreating.contains(request.method) {
            // RFC 5658: one entry per side when the request changes interface or transport.
            recordRoutes = outgoing.index == incoming.index ? (outgoing, nil) : (outgoing, incoming)
        }
        let id = nextTransactionID()
        let edits = RequestEdits(
            via: outgoing, loopHash: BranchFormat.loopHash(of: request, transaction.headers, seed: context.hashSeed),
            transactionID: id, recordRoutes: recordRoutes, routeRemovals: routes.removals,
            requestURIFromRoute: routes.requestURIFromRoute, source: transaction.replyHop.address,
            sourceText: text(of: transaction.replyHop.address), body: transaction.anchoredBody)
        transaction.anchoredBody = nil
        let bytes = request.forwarded(transaction.headers, with: edits, editor: &editor)
        transaction.forwarded = bytes
        transaction.nextHop = Hop(transport: transport, address: address, interfaceIndex: outgoing.index, connection: nil)
        transaction.clientID = id
        _ = transaction.responses.addBranch()
        clientTransactions[id] = transaction
        transaction.isClientTerminated = false
        counters[.requestsForwarded] += 1
        transaction.client =
            request.method == .invite
            ? .invite(ClientInviteTransaction(
                reliableTransport: transport.isReliable, usesTimerC: true, settings: context.timerSettings))
            : .nonInvite(ClientNonInviteTransaction(reliableTransport: transport.isReliable, settings: context.timerSettings))
        performClient(transaction, actions: transaction.clientStep(.start), response: nil)
    }

    // MARK: ACK

    private func handleACK(_ inbound: Inbound) {
        let ack = inbound.message
        let key = TransactionKey.server(ack, inbound.headers, method: .invite, seed: context.hashSeed)
        if let transaction = serverTransactions[key], transaction.method == .invite,
            TransactionKey.sameTransaction(transaction, inbound)
        {
            let actions = transaction.serverStep(.ack)
            performServer(transaction, actions: actions)
            // The ACK for our non-2xx final response ends here (hop by hop, §17.2.1); one that
            // matches an INVITE answered 2xx (RFC 6026 Accepted) belongs to the caller's dialog.
            guard actions.delivery == .ack else {
                counters[.acksAbsorbed] += 1
                return
            }
        }
        // The ACK for a 2xx is a request of its own, routed end to end without a transaction.
        forwardStatelessly(inbound)
    }

    /// Forwards a request without keeping a transaction (the ACK of a 2xx): loose routing, our Via
    /// with a branch derived from the sender's so retransmissions keep the same branch.
    private func forwardStatelessly(_ inbound: Inbound) {
        let request = inbound.message
        if case .value(0) = inbound.headers.maxForwards {
            counters[.malformedDropped] += 1
            return
        }
        let routes = context.interfaces.scanRoutes(request)
        let target: NextHopTarget
        if let next = routes.nextRoute {
            target = NextHopTarget(uri: next, in: request)
        } else if let strict = routes.requestURIFromRoute, let uri = request.uri(strict) {
            target = NextHopTarget(uri: uri, in: request)
        } else if let requestURI = request.requestURI, !context.interfaces.isLocal(requestURI, in: request) {
            target = NextHopTarget(uri: requestURI, in: request)
        } else if inbound.headers.toTag == nil, let upstream = context.upstream {
            target = upstream
        } else {
            counters[.unroutableDropped] += 1
            return
        }
        if let (entry, index, _) = dialogs.find(request, inbound.headers, seed: context.hashSeed) {
            entry.acknowledged(index: index, worker: self)
        }
        let send = { [unowned self] (address: SocketAddress) in
            let outgoing = self.context.interfaces.outgoing(for: target.transport, family: address)
            let headers = inbound.headers
            let derived = headers.topVia.branchRange.map { request.hash($0, seed: self.context.hashSeed) } ?? 0
            let edits = RequestEdits(
                via: outgoing, loopHash: BranchFormat.loopHash(of: request, headers, seed: self.context.hashSeed),
                transactionID: derived, routeRemovals: routes.removals,
                requestURIFromRoute: routes.requestURIFromRoute, source: inbound.source,
                sourceText: self.text(of: inbound.source))
            self.counters[.requestsForwarded] += 1
            self.send(
                request.forwarded(headers, with: edits, editor: &self.editor),
                to: Hop(transport: target.transport, address: address, interfaceIndex: outgoing.index, connection: nil))
        }
        if let address = numericAddress(target) {
            send(address)
            return
        }
        resolve(target) { [unowned self] result in
            guard case .success(let address) = result else {
                self.counters[.unroutableDropped] += 1
                return
            }
            send(address)
        }
    }

    // MARK: CANCEL (§16.10)

    private func handleCANCEL(_ inbound: Inbound) {
        let cancel = inbound.message
        let key = TransactionKey.server(cancel, inbound.headers, method: .invite, seed: context.hashSeed)
        guard let transaction = serverTransactions[key], TransactionKey.sameTransaction(transaction, inbound)
        else {
            send(
                cancel.makeResponse(statusCode: 481, reasonPhrase: "Call/Transaction Does Not Exist", toTag: makeTag()),
                to: inbound.replyHop)
            return
        }
        // The CANCEL is answered hop by hop; the INVITE gets its 487 from the far end.
        send(cancel.makeResponse(statusCode: 200, reasonPhrase: "OK", toTag: transaction.localTag), to: inbound.replyHop)
        counters[.cancelsReceived] += 1
        transaction.dialog?.cancelled(worker: self)
        cancelClientSide(transaction)
    }

    /// Cancels the forwarded INVITE, or answers 487 if it never left.
    func cancelClientSide(_ transaction: ProxyTransaction) {
        guard !transaction.finalSent else { return }
        guard case .invite = transaction.client else {
            respond(transaction, statusCode: 487, reasonPhrase: "Request Terminated")
            return
        }
        for _ in transaction.responses.cancelPendingBranches() {
            performClient(transaction, actions: transaction.clientStep(.cancel), response: nil)
        }
    }

    // MARK: Answering

    /// Sends a response the proxy makes itself through the server transaction. A final failure
    /// also ends the dialog the INVITE started, if it got that far.
    func respond(_ transaction: ProxyTransaction, statusCode: Int, reasonPhrase: String) {
        if statusCode >= 300 { transaction.dialog?.requestFailed(transaction, statusCode: statusCode, worker: self) }
        guard let request = transaction.request else { return }  // a final response went already
        let bytes = request.makeResponse(
            statusCode: statusCode, reasonPhrase: reasonPhrase, toTag: transaction.localTag)
        sendResponse(transaction, statusCode: statusCode, bytes: bytes)
    }

    /// Hands a response (relayed or our own) to the server transaction, which sends it.
    func sendResponse(_ transaction: ProxyTransaction, statusCode: Int, bytes: [UInt8]) {
        if statusCode >= 200 {
            if transaction.finalSent, statusCode >= 300 { return }
            transaction.finalSent = true
        }
        transaction.lastResponse = bytes
        let actions = transaction.serverStep(.response(statusCode: statusCode))
        if actions.message == nil, statusCode >= 200, statusCode < 300 {
            // 2xx retransmissions from the far end pass straight through (RFC 6026 Accepted).
            send(bytes, to: transaction.replyHop)
        }
        performServer(transaction, actions: actions)
        transaction.releaseSpentBuffers()
    }

    func performServer(_ transaction: ProxyTransaction, actions: TransactionActions) {
        if let message = actions.message {
            switch message {
            case .response, .responseRetransmission:
                if let bytes = transaction.lastResponse { send(bytes, to: transaction.replyHop) }
            case .request, .requestRetransmission, .ack, .cancel:
                break
            }
        }
        if let failure = actions.failure {
            counters[.serverTransactionFailures] += 1
            logger.debug("server transaction failed", metadata: ["failure": "\(failure)"])
        }
        scheduleAll(actions.timers, for: transaction) { .server(transaction, $0) }
        if actions.isTerminated { serverTerminated(transaction) }
    }

    func serverTimerFired(_ transaction: ProxyTransaction, _ timer: TransactionTimer) {
        performServer(transaction, actions: transaction.serverStep(.timer(timer)))
    }

    private func serverTerminated(_ transaction: ProxyTransaction) {
        guard !transaction.isServerTerminated else { return }
        transaction.isServerTerminated = true
        if serverTransactions[transaction.serverKey] === transaction {
            serverTransactions.removeValue(forKey: transaction.serverKey)
        }
        finishIfDone(transaction)
    }

    func finishIfDone(_ transaction: ProxyTransaction) {
        guard transaction.isFinished else { return }
        counters[.transactionsCompleted] += 1
        cancelTimers(&transaction.timers)
    }
}
