import Logging
import MediaEngine
import SIPEdgeConfig
import SIPMessage
import SIPRECMetadata
import SIPRecording

/// Media anchoring of recorded calls (RFC 7245 §3.1.1: an SRC inside a proxy must hold the media):
/// every SDP offer and answer of a recorded call goes through the media engine, and the call's
/// messages carry the engine's SDP instead. Nothing else in the call's signalling changes, and a
/// media engine that fails leaves the call unrecorded, never failed.
extension Worker {
    /// Starts the media step a request needs before it is forwarded; returns false when there is
    /// none and the caller forwards at once. `proceed` runs on this loop when the step is done.
    func anchorRequestMedia(_ transaction: ProxyTransaction, inbound: Inbound, isInitial: Bool, proceed: @escaping () -> Void) -> Bool {
        guard let engine = mediaEngine else { return false }
        let request = inbound.message
        guard request.method == .invite || request.method == .update else { return false }
        let call: RecordedCall
        if isInitial {
            guard request.method == .invite, let dialog = transaction.dialog, dialog.recording == nil,
                let created = recordedCall(for: inbound, engine: engine)
            else { return false }
            call = created
            dialog.recording = call
        } else {
            guard let existing = transaction.dialog?.recording, existing.isAnchored, !existing.isOver else { return false }
            call = existing
        }
        guard let sdp = Self.sdpBody(of: request) else {
            if isInitial {
                // Late offer: the offer would come in the 2xx and the answer in the ACK, which the
                // proxy relays statelessly; such calls are not recorded (yet).
                logger.info("call not recorded: the INVITE has no SDP offer", metadata: ["sip.callID": "\(call.callID)"])
                dropRecording(call, of: transaction)
            }
            return false
        }
        let fromTag = inbound.headers.fromTag.map { request.text($0) } ?? ""
        transaction.mediaOffer = sdp
        call.engine.offer(callID: call.callID, fromTag: fromTag, sdp: String(decoding: sdp, as: UTF8.self), flags: []) {
            [unowned self] result in
            switch result {
            case .success(let anchored):
                if !call.isAnchored {
                    call.isAnchored = true
                    self.counters[.mediaSessionsOpened] += 1
                }
                transaction.anchoredBody = Array(anchored.utf8)
            case .failure(let error):
                self.counters[.mediaEngineFailures] += 1
                self.logger.warning(
                    "media engine refused the offer; the call goes on unrecorded",
                    metadata: ["sip.callID": "\(call.callID)", "error": "\(error)"])
                transaction.mediaOffer = nil
                if !call.isAnchored { self.dropRecording(call, of: transaction) }
            }
            proceed()
        }
        return true
    }

    /// The call will not be recorded after all: its sessions close before they started.
    private func dropRecording(_ call: RecordedCall, of transaction: ProxyTransaction) {
        counters[.callsNotRecorded] += 1
        counters[.recordingSessionsClosed] += call.sessions.count
        call.sessions.removeAll()
        call.isOver = true
        transaction.dialog?.recording = nil
    }

    /// A recorded call for an initial INVITE the rules select, with one recording session per
    /// instance; nil when no rule matches.
    private func recordedCall(for inbound: Inbound, engine: any MediaEngine) -> RecordedCall? {
        let request = inbound.message
        let fields = callFields(of: inbound)
        let instances = context.configuration.recording.instances(for: fields.lookup)
        guard !instances.isEmpty, let fromTag = inbound.headers.fromTag else { return nil }
        let call = RecordedCall(
            callID: request.text(inbound.headers.callID), callerTag: request.text(fromTag),
            caller: party(request.from, in: request), callee: party(request.to, in: request), engine: engine)
        for instance in instances {
            call.sessions.append(makeDriver(for: call, instance: instance, fields: fields))
        }
        return call
    }

    func callFields(of inbound: Inbound) -> CallFields {
        let request = inbound.message
        return CallFields(
            requestURI: request.requestURI.map { request.text($0.range) } ?? "",
            from: request.headerValue(.from) ?? "",
            to: request.headerValue(.to) ?? "",
            sourceAddress: inbound.source,
            header: { name in request.firstHeader(named: name).map { request.text($0.valueRange) } })
    }

    /// The AOR and display name (quotes removed) of a From or To header.
    private func party(_ address: NameAddress?, in message: SIPMessage) -> RecordedCall.Party {
        guard let address else { return RecordedCall.Party(aor: "sip:anonymous@anonymous.invalid", name: nil) }
        var aor = message.text(address.uriRange)
        if aor.hasPrefix("<") { aor.removeFirst() }
        if aor.hasSuffix(">") { aor.removeLast() }
        var name: String?
        if address.uriRange.offset > address.range.offset {
            var display = message.text(ByteRange(offset: address.range.offset, count: address.uriRange.offset - address.range.offset))
            if display.hasSuffix("<") { display.removeLast() }
            display = display.trimmingSpaces
            if display.hasPrefix("\""), display.hasSuffix("\""), display.count >= 2 {
                display = String(display.dropFirst().dropLast())
                display = display.replacingEscapes
            }
            if !display.isEmpty { name = display }
        }
        return RecordedCall.Party(aor: aor, name: name)
    }

    /// The SDP of a message whose Content-Type is application/sdp.
    static func sdpBody(of message: SIPMessage) -> [UInt8]? {
        guard message.bodyRange.count > 0, let type = message.firstHeader(.contentType),
            message.hasPrefixIgnoringCase(type.valueRange, "application/sdp")
        else { return nil }
        return message.bytes(message.bodyRange)
    }

    // MARK: Answers

    /// A response with SDP to an anchored request: its answer goes through the media engine before
    /// the response is relayed. Returns false when the response needs no media step. `relay` gets
    /// the replacement body.
    func anchorResponseMedia(_ response: Inbound, statusCode: Int, for transaction: ProxyTransaction, relay: @escaping ([UInt8]?) -> Void) -> Bool {
        guard transaction.mediaOffer != nil, statusCode > 100, statusCode < 300, let call = transaction.dialog?.recording,
            !call.isOver, let sdp = Self.sdpBody(of: response.message)
        else { return false }
        if let answer = transaction.mediaAnswer, answer.original == sdp {
            relay(answer.anchored)  // a retransmission, or a 200 repeating the 183's answer
            return true
        }
        if transaction.isAnswerPending {
            relay(nil)  // dropped: the far end retransmits its 2xx, and a lost 18x is harmless
            return true
        }
        transaction.isAnswerPending = true
        let message = response.message
        let fromTag = response.headers.fromTag.map { message.text($0) } ?? ""
        let toTag = response.headers.toTag.map { message.text($0) } ?? ""
        call.engine.answer(
            callID: call.callID, fromTag: fromTag, toTag: toTag, sdp: String(decoding: sdp, as: UTF8.self), flags: []
        ) { [unowned self] result in
            transaction.isAnswerPending = false
            switch result {
            case .success(let anchored):
                let body = Array(anchored.utf8)
                transaction.mediaAnswer = (sdp, body)
                relay(body)
                self.mediaAnswered(call, transaction: transaction, statusCode: statusCode, answer: sdp)
            case .failure(let error):
                self.counters[.mediaEngineFailures] += 1
                self.logger.warning(
                    "media engine refused the answer; relaying the callee's own SDP",
                    metadata: ["sip.callID": "\(call.callID)", "error": "\(error)"])
                relay(nil)
            }
        }
        return true
    }

    /// The call's media was negotiated: recordings start on the first answer (a 2xx, or an 18x
    /// when so configured) and follow every later change.
    private func mediaAnswered(_ call: RecordedCall, transaction: ProxyTransaction, statusCode: Int, answer: [UInt8]) {
        guard !call.isOver else { return }
        let isFinal = statusCode >= 200
        if transaction.isInitialInvite {
            guard isFinal || context.configuration.recording.startOnEarlyMedia, !call.isAnswered else { return }
            call.isAnswered = true
            for driver in call.sessions { perform(driver, driver.machine.callAnswered()) }
        } else if isFinal {
            let onHold = SessionDescription.isHold(transaction.mediaOffer ?? []) || SessionDescription.isHold(answer)
            for driver in call.sessions { perform(driver, driver.machine.callMediaChanged(onHold: onHold)) }
        }
    }

    // MARK: The end

    /// The call is over: every recording stops, and the engine forgets the call's media.
    func endRecordedCall(_ call: RecordedCall) {
        guard !call.isOver else { return }
        call.isOver = true
        for driver in call.sessions {
            driver.endTime = .now()
            perform(driver, driver.machine.callEnded())
        }
        guard call.isAnchored else { return }
        call.engine.delete(callID: call.callID) { [unowned self] result in
            self.counters[.mediaSessionsClosed] += 1
            if case .failure(let error) = result {
                self.counters[.mediaEngineFailures] += 1
                self.logger.warning("media engine did not delete the call", metadata: ["sip.callID": "\(call.callID)", "error": "\(error)"])
            }
        }
    }
}

extension String {
    /// A quoted-string's content with its backslash escapes resolved (RFC 3261 §25.1).
    var replacingEscapes: String {
        var output = ""
        var escaped = false
        for character in self {
            if escaped {
                output.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                output.append(character)
            }
        }
        return output
    }
}
