import Logging
import MediaEngine
import SIPEdgeConfig
import SIPEdgeIO
import SIPEdgeTLS
import SIPMessage
import SIPRECMetadata
import SIPRecording
import SIPTransaction

/// Recording sessions toward SRSs (RFC 7866): carrying out each session machine's actions as SIP
/// requests, media-engine commands and timers, and routing the SRS's responses and requests back
/// to the machine.
extension Worker {
    func makeDriver(for call: RecordedCall, instance: RecordingInstance, fields: CallFields) -> RecordingDriver {
        var headerLines: [UInt8] = []
        for template in instance.headers {
            guard let value = template.expand(fields.lookup) else { continue }  // a header the call lacks
            headerLines.append(text: "\(template.name): \(value)\r\n")
        }
        let skip = instance.skipFailoverCodes.map { pattern in Set((100...699).filter { pattern.matches(String($0)) }) } ?? []
        let settings = RecordingSessionSettings(
            noAnswerMilliseconds: instance.srs.map(\.timeoutMilliseconds), skipFailoverCodes: skip,
            pauseOnHold: context.configuration.recording.pauseOnHold)
        let seed = context.tagSeed ^ nextTransactionID()
        var tag: [UInt8] = Array("srs-".utf8)
        tag.append(hex: seed &* 0x9E37_79B9_7F4A_7C15, digits: 16)
        counters[.recordingSessionsOpened] += 1
        return RecordingDriver(
            call: call, instance: instance, settings: settings, extraHeaders: headerLines,
            subscriptionTag: String(decoding: tag, as: UTF8.self), seed: seed, ids: &metadataIDs, logger: logger)
    }

    // MARK: Actions

    func perform(_ driver: RecordingDriver, _ actions: [RecordingAction]) {
        for action in actions {
            switch action {
            case .subscribe: subscribe(driver)
            case .unsubscribe: unsubscribe(driver)
            case .answerMedia: answerMedia(driver)
            case .sendInvite(let srs): sendInitialInvite(driver, srs: srs)
            case .cancelInvite: cancelInvite(driver)
            case .abandonInvite: abandonInvite(driver)
            case .sendReInvite(let update): sendReInvite(driver, update)
            case .sendMetadataUpdate: sendMetadataUpdate(driver)
            case .sendBYE: sendBYE(driver)
            case .startTimer(let timer, let milliseconds):
                _ = schedule(.recordingSession(driver, timer), afterMilliseconds: milliseconds)
            case .report(let event): report(event, for: driver)
            }
        }
        if driver.machine.isFinished { finish(driver) }
    }

    /// rtpengine flags for the media security an SRS asks for, whatever the call's legs use: plain
    /// RTP/AVP with no SDES, or RTP/SAVP offering only the SRS's SDES suites.
    static func securityFlags(_ security: MediaSecurity) -> [String] {
        switch security {
        case .rtp:
            return ["SDES-off", "transport-protocol=RTP/AVP"]
        case .sdes(let suites):
            let excluded = MediaSecurity.knownSuites.filter { !suites.contains($0) }
            return ["transport-protocol=RTP/SAVP"] + excluded.map { "SDES=no-\($0)" }
        }
    }

    private func subscribe(_ driver: RecordingDriver, for target: SRSTarget? = nil, then next: ((Bool) -> Void)? = nil) {
        let call = driver.call
        let srs = target ?? driver.srs ?? driver.instance.srs[0]
        let security = srs.mediaSecurity
        call.engine.subscribeRequest(
            callID: call.callID, subscriptionTag: driver.subscriptionTag,
            flags: Self.securityFlags(security) + driver.instance.mediaFlags, mediaAddress: driver.instance.mediaAddress
        ) { [unowned self] result in
            let succeeded: Bool
            switch result {
            case .success(let subscription):
                driver.offerSDP = subscription.sdp
                driver.streams = subscription.streams
                driver.offerSecurity = security
                succeeded = true
            case .failure(let error):
                self.counters[.mediaEngineFailures] += 1
                driver.logger.warning("media engine refused the recording subscription", metadata: ["error": "\(error)"])
                succeeded = false
            }
            // A re-offer for a failover SRS with other media security goes to `next`, not the session.
            if let next {
                next(succeeded)
            } else {
                self.perform(driver, driver.machine.subscribeCompleted(succeeded: succeeded))
            }
        }
    }

    private func unsubscribe(_ driver: RecordingDriver) {
        let call = driver.call
        guard !call.isOver else { return }  // the call's delete takes the subscription with it
        call.engine.unsubscribe(callID: call.callID, subscriptionTag: driver.subscriptionTag) { [unowned self] result in
            if case .failure(let error) = result {
                self.counters[.mediaEngineFailures] += 1
                driver.logger.warning("media engine did not unsubscribe", metadata: ["error": "\(error)"])
            }
        }
    }

    private func answerMedia(_ driver: RecordingDriver) {
        let call = driver.call
        guard let sdp = driver.answerSDP, !call.isOver else {
            perform(driver, driver.machine.mediaAnswerCompleted(succeeded: driver.answerSDP != nil))
            return
        }
        call.engine.subscribeAnswer(
            callID: call.callID, subscriptionTag: driver.subscriptionTag, sdp: sdp, flags: ["allow transcoding"] + driver.instance.mediaFlags
        ) { [unowned self] result in
            if case .failure(let error) = result {
                self.counters[.mediaEngineFailures] += 1
                driver.logger.warning("media engine refused the recorder's answer", metadata: ["error": "\(error)"])
                self.perform(driver, driver.machine.mediaAnswerCompleted(succeeded: false))
            } else {
                self.perform(driver, driver.machine.mediaAnswerCompleted(succeeded: true))
            }
        }
    }

    private func report(_ event: RecordingEvent, for driver: RecordingDriver) {
        let level: Logger.Level
        switch event {
        case .started: counters[.recordingsStarted] += 1; level = .info
        case .failover: counters[.recordingFailovers] += 1; level = .warning
        case .failed: counters[.recordingsFailed] += 1; level = .warning
        case .paused: counters[.recordingsPaused] += 1; level = .info
        case .resumed: counters[.recordingsResumed] += 1; level = .info
        case .updateRejected: level = .warning
        case .stopped: counters[.recordingsStopped] += 1; level = .info
        }
        // Decorating a logger copies its metadata: only for a line that will be written.
        guard logger.logLevel <= level else { return }
        var logger = driver.logger
        logger[metadataKey: "recording.srs"] = "\(driver.srs.map { "\($0)" } ?? "-")"
        if let leg = driver.leg { logger[metadataKey: "recording.callID"] = "\(leg.callID)" }
        switch event {
        case .started: logger.info("recording started")
        case .failover(_, let reason):
            logger.warning("recorder failed, trying the next one", metadata: ["reason": "\(reason)"])
        case .failed(let failure):
            logger.warning("recording failed; the call goes on unrecorded", metadata: ["reason": "\(failure)"])
        case .paused: logger.info("recording paused")
        case .resumed: logger.info("recording resumed")
        case .updateRejected(let statusCode):
            logger.warning("recorder rejected an update", metadata: ["status": "\(statusCode)"])
        case .stopped(let reason): logger.info("recording stopped", metadata: ["reason": "\(reason)"])
        }
    }

    /// A finished session leaves the call; its Call-ID still answers the SRS's retransmissions
    /// for 64·T1.
    private func finish(_ driver: RecordingDriver) {
        let call = driver.call
        guard let index = call.sessions.firstIndex(where: { $0 === driver }) else { return }
        call.sessions.remove(at: index)
        counters[.recordingSessionsClosed] += 1
        _ = schedule(.recordingForget(driver), afterMilliseconds: 64 * context.timerSettings.t1Milliseconds)
    }

    func forgetRecording(_ driver: RecordingDriver) {
        if let leg = driver.leg, recordingsByCallID[leg.callIDKey] === driver { recordingsByCallID.removeValue(forKey: leg.callIDKey) }
    }

    /// A double CRLF on every open connection to an SRS (RFC 5626 §4.4.1), so that idle ones
    /// survive NATs and firewalls and a dead one shows up as a transport error.
    func sendKeepAlives() {
        for address in recorderConnections {
            guard let connection = context.connections.lookup(address) else {
                recorderConnections.remove(address)
                continue
            }
            if connection.loop === loop, connection.isOpen { connection.send(Self.keepAlivePing) }
        }
    }

    static let keepAlivePing: [UInt8] = Array("\r\n\r\n".utf8)

    // MARK: Requests toward the SRS

    private func sendInitialInvite(_ driver: RecordingDriver, srs index: Int) {
        if let old = driver.leg, recordingsByCallID[old.callIDKey] === driver { recordingsByCallID.removeValue(forKey: old.callIDKey) }
        let srs = driver.instance.srs[index]
        if driver.offerSecurity != srs.mediaSecurity {
            // The next SRS wants other media security (say, no SRTP): a new offer first, so a
            // recorder that cannot do SRTP never gets an SRTP offer.
            subscribe(driver, for: srs) { [unowned self] succeeded in
                guard driver.machine.phase == .inviting, driver.machine.attempt == index else { return }
                if succeeded {
                    self.sendInitialInvite(driver, srs: index)
                } else {
                    self.perform(driver, driver.machine.inviteFailed(attempt: index, reason: .transportError))
                }
            }
            return
        }
        let callID = makeOwnedCallID()
        let leg = RecordingDriver.Leg(
            srsIndex: index, callID: callID.text, callIDKey: callID.key, localTag: makeTag(), remoteTarget: srs.uri)
        driver.leg = leg
        recordingsByCallID[leg.callIDKey] = driver
        guard let offer = driver.offerSDP, let body = driver.body(sdp: offer, ids: &metadataIDs) else {
            perform(driver, driver.machine.inviteFailed(attempt: index, reason: .transportError))
            return
        }
        let target = NextHopTarget(srs: srs)
        resolve(target) { [unowned self] result in
            guard driver.leg?.srsIndex == index, driver.machine.phase == .inviting else { return }
            switch result {
            case .success(let address):
                let interface = self.recordingInterface(for: driver.instance, transport: target.transport, address: address)
                var hop = Hop(transport: target.transport, address: address, interfaceIndex: interface.index, connection: nil)
                if target.transport == .tls, let tls = self.context.tls.client(for: srs.tls) {
                    // The certificate must name the URI's host (or the configured server name).
                    hop.tls = TLSClientOptions(context: tls, serverName: srs.tls.serverName ?? target.host)
                }
                driver.leg?.hop = hop
                if hop.transport.isStream { self.recorderConnections.insert(address) }
                self.startTransaction(driver, purpose: .initialInvite(attempt: index), body: body, extra: driver.extraHeaders)
            case .failure(let error):
                driver.logger.warning("recorder address unresolvable", metadata: ["srs": "\(srs)", "error": "\(error)"])
                self.perform(driver, driver.machine.inviteFailed(attempt: index, reason: .transportError))
            }
        }
    }

    private func sendReInvite(_ driver: RecordingDriver, _ update: SessionUpdate) {
        guard let offer = driver.offerSDP, driver.leg?.hop != nil else {
            perform(driver, driver.machine.updateCompleted(statusCode: 500))
            return
        }
        let sdp = update == .pause ? SessionDescription.inactive(offer) : offer
        if update == .pause { driver.offerSDP = sdp }  // the next refresh replaces it
        guard let body = driver.body(sdp: sdp, ids: &metadataIDs) else {
            perform(driver, driver.machine.updateCompleted(statusCode: 500))
            return
        }
        driver.leg?.cseq += 1
        startTransaction(driver, purpose: .reInvite, body: body, extra: [])
    }

    private func sendMetadataUpdate(_ driver: RecordingDriver) {
        guard driver.leg?.hop != nil, let body = driver.metadataBody(ids: &metadataIDs) else {
            perform(driver, driver.machine.updateCompleted(statusCode: 500))
            return
        }
        driver.leg?.cseq += 1
        startTransaction(driver, purpose: .metadataUpdate, body: body, extra: Self.recordingSessionDisposition)
    }

    private static let recordingSessionDisposition = Array("Content-Disposition: recording-session\r\n".utf8)

    private func sendBYE(_ driver: RecordingDriver) {
        guard driver.leg?.hop != nil, driver.leg?.remoteTag != nil else { return }
        driver.leg?.cseq += 1
        startTransaction(driver, purpose: .bye, body: nil, extra: [])
    }

    private func cancelInvite(_ driver: RecordingDriver) {
        guard let invite = driver.pendingInvite, case .initialInvite = invite.purpose else { return }
        performRecordingClient(invite, actions: invite.step(.cancel), response: nil)
    }

    private func abandonInvite(_ driver: RecordingDriver) {
        guard let invite = driver.pendingInvite else { return }
        invite.isAbandoned = true
        cancelTimers(&invite.timers)
        driver.pendingInvite = nil
        // Kept for a late 2xx, which is ACKed and BYEd; forgotten after Timer B's length.
        invite.timers.append(schedule(.recordingAbandoned(invite), afterMilliseconds: 64 * context.timerSettings.t1Milliseconds))
    }

    /// Builds and sends a request inside the session's current leg, with its client transaction.
    private func startTransaction(
        _ driver: RecordingDriver, purpose: RecordingTransaction.Purpose,
        body: (contentType: String, bytes: [UInt8])?, extra: [UInt8]
    ) {
        guard let leg = driver.leg, let hop = leg.hop else { return }
        let id = nextTransactionID()
        let interface = context.interfaces.all[hop.interfaceIndex]
        let isInvite = purpose.method == .invite
        let method = purpose.method.description
        var output: [UInt8] = []
        // The headers fit in 768 bytes; with 1024 a bodyless BYE alone took malloc's slow path
        // (glibc's per-thread cache stops at 1032 bytes).
        output.reserveCapacity(768 + (body?.bytes.count ?? 0))
        let requestURI = purpose.isInDialog ? leg.remoteTarget : driver.instance.srs[leg.srsIndex].uri
        appendRequestLine(method: method, uri: requestURI, to: &output)
        appendVia(from: interface, transport: hop.transport, transactionID: id, to: &output)
        output.append(ascii: "Max-Forwards: 70\r\n")
        appendDialogHeaders(driver, method: method, cseq: leg.cseq, to: &output)
        if isInvite || purpose == .metadataUpdate {
            // INVITE and UPDATE are target refresh requests: each carries our Contact (RFC 3261
            // §12.2.1.1, RFC 3311 §5.1), with +sip.src (RFC 7866 §6.1.1).
            interface.appendSRCContact(transport: hop.transport, secure: driver.instance.srs[leg.srsIndex].isSIPSURI, to: &output)
        }
        if isInvite {
            output.append(ascii: "Require: siprec\r\n")
            output.append(ascii: "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n")
        }
        output.append(ascii: "User-Agent: siprec-edge\r\n")
        output.append(contentsOf: extra)
        if let body {
            output.append(ascii: "Content-Type: ")
            output.append(text: body.contentType)
            output.append(ascii: "\r\nContent-Length: ")
            output.append(decimal: body.bytes.count)
            output.append(ascii: "\r\n\r\n")
            output.append(contentsOf: body.bytes)
        } else {
            output.append(ascii: "Content-Length: 0\r\n\r\n")
        }
        let transaction = RecordingTransaction(
            id: id, purpose: purpose, bytes: output, hop: hop, settings: context.timerSettings, driver: driver)
        recordingTransactions[id] = transaction
        if isInvite { driver.pendingInvite = transaction }
        performRecordingClient(transaction, actions: transaction.step(.start), response: nil)
    }

    private func appendRequestLine(method: String, uri: String, to output: inout [UInt8]) {
        output.append(text: method)
        output.append(UInt8(ascii: " "))
        output.append(text: uri)
        output.append(ascii: " SIP/2.0\r\n")
    }

    /// From, To, Call-ID, CSeq and the route set of a request in the session's current leg.
    private func appendDialogHeaders(_ driver: RecordingDriver, method: String, cseq: UInt32, to output: inout [UInt8]) {
        guard var leg = driver.leg else { return }
        if leg.dialogLines.isEmpty {
            leg.dialogLines = dialogLines(leg, driver: driver)
            driver.leg = leg
        }
        output.append(contentsOf: leg.dialogLines)
        output.append(ascii: "CSeq: ")
        output.append(decimal: Int(cseq))
        output.append(UInt8(ascii: " "))
        output.append(text: method)
        output.append(ascii: "\r\n")
        for route in leg.routeSet {
            output.append(ascii: "Route: ")
            output.append(text: route)
            output.append(ascii: "\r\n")
        }
    }

    /// The From, To and Call-ID lines every request of a leg repeats: built once per leg, and
    /// again once the SRS's tag is learned.
    private func dialogLines(_ leg: RecordingDriver.Leg, driver: RecordingDriver) -> [UInt8] {
        let srs = driver.instance.srs[leg.srsIndex]
        var lines: [UInt8] = []
        lines.reserveCapacity(256)
        lines.append(ascii: "From: ")
        Self.appendNameAddr(driver.instance.fromURI ?? srs.uri, to: &lines)
        lines.append(ascii: ";tag=")
        lines.append(text: leg.localTag)
        lines.append(ascii: "\r\nTo: ")
        Self.appendNameAddr(driver.instance.toURI ?? srs.uri, to: &lines)
        if let remoteTag = leg.remoteTag {
            lines.append(ascii: ";tag=")
            lines.append(text: remoteTag)
        }
        lines.append(ascii: "\r\nCall-ID: ")
        lines.append(text: leg.callID)
        lines.append(ascii: "\r\n")
        return lines
    }

    /// A URI as a name-addr: in angle brackets unless it already is one (a display name or `<`).
    static func appendNameAddr(_ uri: String, to output: inout [UInt8]) {
        let isNameAddr = uri.containsUTF8Byte(UInt8(ascii: "<"))
        if !isNameAddr { output.append(UInt8(ascii: "<")) }
        output.append(text: uri)
        if !isNameAddr { output.append(UInt8(ascii: ">")) }
    }

    /// Our Via for a request toward an SRS: the interface's own prefix, or its address with the
    /// transport the request really leaves by (a TLS SRS reached without a TLS listener).
    private func appendVia(from interface: LocalInterface, transport: Transport, transactionID: UInt64, to output: inout [UInt8]) {
        if interface.transport == transport {
            output.append(contentsOf: interface.viaPrefix)
        } else {
            output.append(text: "Via: SIP/2.0/\(transport.viaName) \(interface.uriHostPort);branch=")
        }
        BranchFormat.append(loopHash: 0, transactionID: transactionID, to: &output)
        output.append(ascii: ";rport\r\n")
    }

    /// A Call-ID that this worker owns (the Call-ID hash picks the worker for every message), so
    /// the SRS's responses and requests come back to the loop that holds the session; with its
    /// hash, the key of `recordingsByCallID`.
    private func makeOwnedCallID() -> (text: String, key: UInt64) {
        while true {
            var bytes: [UInt8] = []
            bytes.append(hex: context.tagSeed &+ nextTransactionID() &* 0x9E37_79B9_7F4A_7C15, digits: 16)
            bytes.append(ascii: "-rs@siprec-edge")
            let key = SIPMessage.hash(bytes, seed: context.hashSeed)
            if context.ownerIndex(ofCallIDHash: key) == index { return (String(decoding: bytes, as: UTF8.self), key) }
        }
    }

    /// The instance's `socket` when it suits the SRS (same transport and address family), else
    /// the interface the proxy would use for that destination.
    private func recordingInterface(for instance: RecordingInstance, transport: Transport, address: SocketAddress) -> LocalInterface {
        if let socket = instance.socket, let chosen = try? SocketAddress(ipAddress: socket.host, port: socket.port),
            let interface = context.interfaces.all.first(where: { $0.address == chosen }),
            interface.transport == transport, interface.address.isIPv6 == address.isIPv6
        {
            return interface
        }
        return context.interfaces.outgoing(for: transport, family: address)
    }

    // MARK: Client transactions toward the SRS

    func performRecordingClient(_ transaction: RecordingTransaction, actions: TransactionActions, response: Inbound?) {
        if let message = actions.message {
            switch message {
            case .request, .requestRetransmission:
                send(transaction.bytes, to: transaction.hop)
            case .ack:
                if let response, let invite = try? SIPMessage(parsing: transaction.bytes), let ack = invite.makeACK(for: response.message) {
                    send(ack, to: transaction.hop)
                }
            case .cancel:
                if let invite = try? SIPMessage(parsing: transaction.bytes), let cancel = invite.makeCANCEL() {
                    let id = nextTransactionID()
                    let cancelTransaction = RecordingTransaction(
                        id: id, purpose: .cancel, bytes: cancel, hop: transaction.hop, settings: context.timerSettings,
                        driver: transaction.driver)
                    // The CANCEL's branch is the INVITE's (§9.1): its responses find the INVITE.
                    transaction.cancel = cancelTransaction
                    performRecordingClient(cancelTransaction, actions: cancelTransaction.step(.start), response: nil)
                }
            case .response, .responseRetransmission:
                break
            }
        }
        if let delivery = actions.delivery, case .response(let statusCode, _) = delivery, let response {
            recordingResponse(response, statusCode: statusCode, to: transaction)
        }
        if let failure = actions.failure, !transaction.isAbandoned {
            let driver = transaction.driver
            switch transaction.purpose {
            case .initialInvite(let attempt):
                let reason: AttemptFailure = failure == .transportError ? .transportError : .timeout
                perform(driver, driver.machine.inviteFailed(attempt: attempt, reason: reason))
            case .reInvite, .metadataUpdate, .bye:
                // A dropped stream connection: the request goes again on a new one, after a back-off
                // (the BYE must reach the SRS); the session hears of the failure only at the end.
                if failure == .transportError, transaction.hop.transport.isStream, transaction.resends < 3 {
                    let delay = 500 << transaction.resends
                    _ = schedule(.recordingResend(transaction), afterMilliseconds: delay)
                } else if transaction.purpose != .bye {
                    perform(driver, driver.machine.updateCompleted(statusCode: failure == .transportError ? 503 : 408))
                }
            case .cancel:
                break
            }
        }
        for start in actions.timers {
            transaction.timers.append(schedule(.recordingClient(transaction, start.timer), afterMilliseconds: start.milliseconds))
        }
        if actions.isTerminated { recordingTransactionTerminated(transaction) }
    }

    private func recordingTransactionTerminated(_ transaction: RecordingTransaction) {
        transaction.isTerminated = true
        cancelTimers(&transaction.timers)
        if recordingTransactions[transaction.id] === transaction { recordingTransactions.removeValue(forKey: transaction.id) }
        if transaction.driver.pendingInvite === transaction { transaction.driver.pendingInvite = nil }
    }

    /// Sends a failed in-dialog request again, as a new client transaction under the same branch.
    func resendRecordingRequest(_ failed: RecordingTransaction) {
        let driver = failed.driver
        guard recordingTransactions[failed.id] == nil, driver.leg?.hop != nil else { return }
        let again = RecordingTransaction(
            id: failed.id, purpose: failed.purpose, bytes: failed.bytes, hop: failed.hop, settings: context.timerSettings, driver: driver)
        again.resends = failed.resends + 1
        recordingTransactions[again.id] = again
        if failed.purpose == .reInvite { driver.pendingInvite = again }
        driver.logger.info("resending to the recorder on a new connection", metadata: ["attempt": "\(again.resends)"])
        performRecordingClient(again, actions: again.step(.start), response: nil)
    }

    func recordingAbandonmentEnded(_ transaction: RecordingTransaction) {
        recordingTransactionTerminated(transaction)
    }

    func recordingClientTimerFired(_ transaction: RecordingTransaction, _ timer: TransactionTimer) {
        guard !transaction.isTerminated else { return }
        performRecordingClient(transaction, actions: transaction.step(.timer(timer)), response: nil)
    }

    /// A response from an SRS, matched by our branch.
    func handleRecordingResponse(_ inbound: Inbound, transaction: RecordingTransaction) {
        let cseqMethod = inbound.headers.cseq.method
        if cseqMethod == .cancel {
            if let cancel = transaction.cancel, !cancel.isTerminated {
                performRecordingClient(cancel, actions: cancel.step(.response(statusCode: inbound.message.statusCode)), response: inbound)
            }
            return
        }
        if transaction.isAbandoned {
            let code = inbound.message.statusCode
            if code >= 200, code < 300 { acknowledgeAndHangUp(inbound, transaction: transaction) }
            return
        }
        performRecordingClient(transaction, actions: transaction.step(.response(statusCode: inbound.message.statusCode)), response: inbound)
    }

    private func recordingResponse(_ inbound: Inbound, statusCode: Int, to transaction: RecordingTransaction) {
        let driver = transaction.driver
        let response = inbound.message
        let isSuccess = statusCode >= 200 && statusCode < 300
        if isSuccess, transaction.method == .invite {
            // Every 2xx to an INVITE is ACKed by the UAC core (§13.2.2.4), whatever the session does with it.
            guard driver.leg?.callID == response.text(inbound.headers.callID) else {
                acknowledgeAndHangUp(inbound, transaction: transaction)
                return
            }
            learnDialog(from: response, headers: inbound.headers, driver: driver)
            sendACK(driver, transaction: transaction)
            driver.answerSDP = MultipartBody.sdp(
                of: response.bytes(response.bodyRange), contentType: response.headerValue(.contentType)
            ).map { String(decoding: $0, as: UTF8.self) }
        }
        switch transaction.purpose {
        case .initialInvite(let attempt):
            if statusCode < 200 {
                perform(driver, driver.machine.inviteProvisional(attempt: attempt))
            } else if isSuccess {
                perform(driver, driver.machine.inviteAccepted(attempt: attempt, allowsUpdate: Self.allowsUpdate(response)))
            } else {
                perform(driver, driver.machine.inviteFailed(attempt: attempt, reason: .status(statusCode)))
            }
        case .reInvite, .metadataUpdate:
            if statusCode >= 200 { perform(driver, driver.machine.updateCompleted(statusCode: statusCode)) }
        case .bye, .cancel:
            break
        }
    }

    /// Whether a response's Allow header lists UPDATE (method names are case-sensitive, §7.1).
    private static func allowsUpdate(_ response: SIPMessage) -> Bool {
        var found = false
        response.forEachValue(.allow) { method in
            found = response.equals(method, "UPDATE")
            return !found
        }
        return found
    }

    /// The SRS's tag, Contact and Record-Route from its 2xx (§12.1.2).
    private func learnDialog(from response: SIPMessage, headers: RoutingHeaders, driver: RecordingDriver) {
        guard driver.leg?.remoteTag == nil else { return }
        driver.leg?.remoteTag = headers.toTag.map { response.text($0) }
        let contact = response.firstHeader(.contact).flatMap { response.nameAddress($0.valueRange) }
        if let contact {
            var uri = response.text(contact.uriRange)
            if uri.hasPrefix("<") { uri.removeFirst() }
            if uri.hasSuffix(">") { uri.removeLast() }
            driver.leg?.remoteTarget = uri
        }
        var routes: [String] = []
        var lastRecordRoute: ByteRange?
        response.forEachValue(.recordRoute) { element in
            routes.append(response.text(element))
            lastRecordRoute = element
            return true
        }
        driver.leg?.routeSet = routes.reversed()
        // In-dialog requests go to the first route (the last Record-Route), else to the remote
        // target (§12.2.1.1); parsed in place, as every other URI of a received message.
        let next = lastRecordRoute.flatMap { response.nameAddress($0) } ?? contact
        if let next, let uri = response.uri(next.uriRange), let hop = driver.leg?.hop {
            let nextHop = NextHopTarget(srsURI: uri, in: response)
            if let address = numericAddress(nextHop), address != hop.address || nextHop.transport != hop.transport {
                // The SRS's Contact names another place; its identity is checked there too.
                var moved = Hop(transport: nextHop.transport, address: address, interfaceIndex: hop.interfaceIndex, connection: nil)
                if nextHop.transport == .tls, let tls = hop.tls { moved.tls = TLSClientOptions(context: tls.context, serverName: nextHop.host) }
                driver.leg?.hop = moved
            }
        }
    }

    /// The ACK of a 2xx: a new request within the dialog, with the INVITE's CSeq number (§13.2.2.4).
    private func sendACK(_ driver: RecordingDriver, transaction: RecordingTransaction) {
        guard let leg = driver.leg, let hop = leg.hop else { return }
        if transaction.ackBytes == nil {
            let interface = context.interfaces.all[hop.interfaceIndex]
            var output: [UInt8] = []
            output.reserveCapacity(512)
            appendRequestLine(method: "ACK", uri: leg.remoteTarget, to: &output)
            appendVia(from: interface, transport: hop.transport, transactionID: nextTransactionID(), to: &output)
            output.append(ascii: "Max-Forwards: 70\r\n")
            appendDialogHeaders(driver, method: "ACK", cseq: leg.cseq, to: &output)
            output.append(ascii: "Content-Length: 0\r\n\r\n")
            transaction.ackBytes = output
        }
        if let ack = transaction.ackBytes { send(ack, to: hop) }
    }

    /// A 2xx from an attempt the session gave up on: ACK it and end that dialog at once.
    private func acknowledgeAndHangUp(_ inbound: Inbound, transaction: RecordingTransaction) {
        guard let invite = try? SIPMessage(parsing: transaction.bytes) else { return }
        let response = inbound.message
        // ACK and BYE built from the INVITE with the answer's To tag: a one-off dialog.
        let toTag = inbound.headers.toTag.map { response.text($0) } ?? ""
        let callID = invite.headerValue(.callID) ?? ""
        let from = invite.headerValue(.from) ?? ""
        let to = (invite.headerValue(.to) ?? "") + ";tag=\(toTag)"
        let number = invite.cseq?.number ?? 1
        let interface = context.interfaces.all[transaction.hop.interfaceIndex]
        for (method, cseq) in [("ACK", number), ("BYE", number + 1)] {
            var output: [UInt8] = []
            output.append(text: "\(method) \(invite.requestURI.map { invite.text($0.range) } ?? "") SIP/2.0\r\n")
            appendVia(from: interface, transport: transaction.hop.transport, transactionID: nextTransactionID(), to: &output)
            output.append(ascii: "Max-Forwards: 70\r\n")
            output.append(text: "From: \(from)\r\nTo: \(to)\r\nCall-ID: \(callID)\r\nCSeq: \(cseq) \(method)\r\nContent-Length: 0\r\n\r\n")
            send(output, to: transaction.hop)
        }
    }

    // MARK: Requests from the SRS

    /// The recording session a request from an SRS belongs to, by its Call-ID.
    func recordingSession(for inbound: Inbound) -> RecordingDriver? {
        guard !recordingsByCallID.isEmpty else { return nil }
        let callID = inbound.headers.callID
        guard let driver = recordingsByCallID[inbound.message.hash(callID, seed: context.hashSeed)],
            let leg = driver.leg, inbound.message.equals(callID, leg.callID)
        else { return nil }
        return driver
    }

    /// Answers a request inside a recording session (RFC 7866 §8): BYE ends the recording (200,
    /// the fork stops; OpenSIPS answers 405 and forks on); a re-INVITE or UPDATE gets a 200 with our
    /// offer, and its SDP goes to the media engine; OPTIONS and INFO get 200.
    func handleRecordingRequest(_ inbound: Inbound, driver: RecordingDriver) {
        let request = inbound.message
        let localTag = driver.leg?.localTag
        switch request.method {
        case .ack:
            if let sdp = Self.sdpBody(of: request) {
                driver.answerSDP = String(decoding: sdp, as: UTF8.self)
                answerMedia(driver)
            }
        case .bye:
            send(request.makeResponse(statusCode: 200, reasonPhrase: "OK", toTag: localTag), to: inbound.replyHop)
            perform(driver, driver.machine.recorderHungUp())
        case .invite, .update:
            if driver.machine.isFinished {
                send(request.makeResponse(statusCode: 481, reasonPhrase: "Call/Transaction Does Not Exist", toTag: localTag), to: inbound.replyHop)
                return
            }
            if let sdp = MultipartBody.sdp(of: request.bytes(request.bodyRange), contentType: request.headerValue(.contentType)) {
                driver.answerSDP = String(decoding: sdp, as: UTF8.self)
                answerMedia(driver)
            }
            var extra: [UInt8] = []
            if let interface = driver.leg?.hop.map({ context.interfaces.all[$0.interfaceIndex] }) {
                interface.appendSRCContact(transport: inbound.transport, secure: driver.srs?.isSIPSURI ?? false, to: &extra)
            }
            extra.append(ascii: "Require: siprec\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n")
            let body = driver.offerSDP.map { Array($0.utf8) } ?? []
            if !body.isEmpty { extra.append(ascii: "Content-Type: application/sdp\r\n") }
            send(request.makeResponse(statusCode: 200, reasonPhrase: "OK", toTag: localTag, extraHeaders: extra, body: body), to: inbound.replyHop)
        case .options, .info:
            send(request.makeResponse(statusCode: 200, reasonPhrase: "OK", toTag: localTag), to: inbound.replyHop)
        case .cancel:
            send(request.makeResponse(statusCode: 200, reasonPhrase: "OK", toTag: localTag), to: inbound.replyHop)
        default:
            send(
                request.makeResponse(
                    statusCode: 405, reasonPhrase: "Method Not Allowed", toTag: localTag,
                    extraHeaders: Array("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n".utf8)),
                to: inbound.replyHop)
        }
    }
}

extension NextHopTarget {
    /// From the SRS's Contact or Record-Route: `sips:` means TLS (RFC 5630), else the `transport`
    /// parameter, UDP by default; the port defaults by transport (RFC 3261 §19.1.2).
    init(srsURI uri: URIParts, in message: SIPMessage) {
        host = message.text(uri.hostRange)
        transport =
            message.equalsIgnoringCase(uri.schemeRange, "sips") ? .tls : uri.transportRange.flatMap { Transport(sipText: message.text($0)) } ?? .udp
        port = uri.port.map { UInt16($0) } ?? (transport == .tls ? 5061 : 5060)
    }

    init(srs: SRSTarget) {
        host = srs.host.hasPrefix("[") ? String(srs.host.dropFirst().dropLast()) : srs.host
        transport = srs.transport.flatMap { Transport(rawValue: $0.rawValue) } ?? .udp
        port = srs.port ?? (transport == .tls ? 5061 : 5060)  // RFC 3261 §19.1.2
        address = try? SocketAddress(ipAddress: host, port: port ?? 5060)
    }
}

extension LocalInterface {
    /// `host:port` as our URIs name this interface (IPv6 in brackets).
    var uriHostPort: String {
        var text: [UInt8] = []
        appendHostPort(to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    func appendHostPort(to output: inout [UInt8]) {
        let isIPv6 = ipText.containsUTF8Byte(UInt8(ascii: ":"))
        if isIPv6 { output.append(UInt8(ascii: "[")) }
        output.append(text: ipText)
        if isIPv6 { output.append(UInt8(ascii: "]")) }
        output.append(UInt8(ascii: ":"))
        output.append(decimal: Int(address.port))
    }

    /// The Contact of a recording session's requests and answers (RFC 7866 §6.1: `+sip.src`), with
    /// the transport the session uses. Without a listener of that transport the SRS can only reach
    /// us over the connection the session opened (give the proxy a `tls:` listener for TLS SRSs).
    /// A `sips:` SRS gets a `sips:` Contact (RFC 5630 §3.1.3).
    func appendSRCContact(transport: Transport, secure: Bool, to output: inout [UInt8]) {
        output.append(ascii: secure ? "Contact: <sips:" : "Contact: <sip:")
        appendHostPort(to: &output)
        if !secure, transport != .udp {
            output.append(ascii: ";transport=")
            output.append(text: transport.rawValue)
        }
        output.append(ascii: ">;+sip.src\r\n")
    }
}

