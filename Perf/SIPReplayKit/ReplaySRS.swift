// ReplaySRS: the Session Recording Server side of a replay (RFC 7866). It answers the recording
// sessions the proxy opens while calls are replayed through it, on the replay's own event loop,
// over UDP and optionally TCP on the same port, and counts what it saw.
//
// What it accepts: an initial INVITE with `Require: siprec`, a Contact carrying `+sip.src`
// (RFC 7866 §6.1.1) and a multipart/mixed body holding an application/sdp part and an
// application/rs-metadata+xml part (or the older application/rs-metadata). It answers 200 with a
// receive-only SDP answer; anything else gets a SIP error naming the problem. Dialog and
// transaction handling follows RFC 3261 as far as an SRS needs it: retransmitted requests get the
// same response, a 2xx (and over UDP a non-2xx final) to an INVITE is resent from T1 doubling up
// to T2 until its ACK, for at most 64·T1 (§13.3.1.4, §17.2.1), CANCEL of a pending INVITE gives
// 200 and 487 (§9.2), requests for unknown dialogs get 481 (§12.2.2).
import Glibc
import SIPEdgeIO
import SIPMessage
import SIPRECMetadata

// MARK: - Statistics

/// What a `ReplaySRS` saw and did. Every count is cumulative except the two session gauges.
public struct SRSStatistics: Sendable, Equatable, Encodable {
    /// Initial INVITEs received (retransmissions not counted).
    public var sessionsOffered = 0
    /// Initial INVITEs answered 200.
    public var sessionsAnswered = 0
    /// Sessions ended by a BYE (answered 200).
    public var sessionsEndedByBye = 0
    /// Pending initial INVITEs ended by CANCEL (answered 487).
    public var sessionsCancelled = 0
    /// Answered sessions whose 2xx never got its ACK within 64·T1; they are dropped.
    public var sessionsWithoutACK = 0
    /// re-INVITEs inside a session answered 200.
    public var reInvitesAnswered = 0
    /// UPDATEs inside a session answered 200.
    public var updatesAnswered = 0
    /// Requests answered with an error (4xx–6xx other than a CANCEL's 487), retransmissions not counted.
    public var requestsRejected = 0
    /// The rejected requests by response, such as "421 Extension Required" or "400 Missing rs-metadata part".
    public var rejections: [String: Int] = [:]
    /// INVITEs (initial or re-INVITE) and UPDATEs whose body held a recording metadata part.
    public var metadataPartsSeen = 0
    /// Initial INVITEs without a recording metadata part.
    public var metadataPartsMissing = 0
    /// Final responses to INVITEs sent again while their ACK was awaited.
    public var responseRetransmissions = 0
    /// Requests that were retransmissions of one already answered (answered again, not re-processed).
    public var requestRetransmissions = 0
    /// Datagrams or stream messages that could not be read as SIP at all (dropped).
    public var unreadableMessages = 0
    /// Sessions answered and not yet ended.
    public var activeSessions = 0
    /// The most sessions active at once.
    public var peakActiveSessions = 0

    public init() {}

    /// Fixed, readable order of the keys (used by the table and the JSON rendering).
    private var fields: [(key: String, label: String, value: Int)] {
        [
            ("sessionsOffered", "sessions offered", sessionsOffered),
            ("sessionsAnswered", "sessions answered", sessionsAnswered),
            ("sessionsEndedByBye", "sessions ended by BYE", sessionsEndedByBye),
            ("sessionsCancelled", "sessions cancelled", sessionsCancelled),
            ("sessionsWithoutACK", "sessions never ACKed", sessionsWithoutACK),
            ("reInvitesAnswered", "re-INVITEs answered", reInvitesAnswered),
            ("updatesAnswered", "UPDATEs answered", updatesAnswered),
            ("requestsRejected", "requests rejected", requestsRejected),
            ("metadataPartsSeen", "metadata parts seen", metadataPartsSeen),
            ("metadataPartsMissing", "metadata parts missing", metadataPartsMissing),
            ("responseRetransmissions", "responses retransmitted", responseRetransmissions),
            ("requestRetransmissions", "requests retransmitted", requestRetransmissions),
            ("unreadableMessages", "unreadable messages", unreadableMessages),
            ("activeSessions", "active sessions", activeSessions),
            ("peakActiveSessions", "peak active sessions", peakActiveSessions),
        ]
    }

    /// The statistics as "label  value" lines (no trailing newline), then one line per rejection
    /// reason, most frequent first.
    public func tableLines() -> [String] {
        let rows = fields.map { ($0.label, String($0.value)) }
            + sortedRejections.map { ("  rejected \($0.reason)", String($0.count)) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { label, value in
            label + String(repeating: " ", count: width - label.count + 2) + value
        }
    }

    /// The rejection reasons, most frequent first, then by text.
    public var sortedRejections: [(reason: String, count: Int)] {
        rejections.map { (reason: $0.key, count: $0.value) }.sorted {
            $0.count != $1.count ? $0.count > $1.count : $0.reason < $1.reason
        }
    }

    /// The statistics as a JSON-compatible dictionary: Int values, and "rejections" as a
    /// [String: Int] dictionary.
    public var jsonObject: [String: any Sendable] {
        var object: [String: any Sendable] = [:]
        for field in fields { object[field.key] = field.value }
        object["rejections"] = rejections
        return object
    }

    /// The statistics as one JSON object with keys in a fixed order (the order of `tableLines`),
    /// "rejections" last. `indent` prefixes every line after the first.
    public func renderJSON(indent: String = "") -> String {
        var lines = fields.map { "\(indent)  \(reportJSONString($0.key)): \($0.value)" }
        let reasons = sortedRejections.map { "\(reportJSONString($0.reason)): \($0.count)" }
        lines.append("\(indent)  \"rejections\": {" + reasons.joined(separator: ", ") + "}")
        return "{\n" + lines.joined(separator: ",\n") + "\n\(indent)}"
    }

    private enum CodingKeys: String, CodingKey {
        case sessionsOffered, sessionsAnswered, sessionsEndedByBye, sessionsCancelled, sessionsWithoutACK
        case reInvitesAnswered, updatesAnswered, requestsRejected, rejections, metadataPartsSeen
        case metadataPartsMissing, responseRetransmissions, requestRetransmissions, unreadableMessages
        case activeSessions, peakActiveSessions
    }
}


// MARK: - The server

/// A Session Recording Server for replays: answers SIPREC recording sessions over UDP (and TCP on
/// the same port when asked) on the given event loop.
///
/// Every method, and `statistics`, belong to the loop's thread; create it before `loop.run()` on
/// the thread that will run the loop, or on the loop's thread.
public final class ReplaySRS {
    /// How the SRS answers.
    public struct Settings: Sendable {
        /// The first media port of every SDP answer; each further m= line gets the next even port.
        public var mediaPortBase: Int
        /// RFC 3261 T1 and T2, for the resending of INVITE final responses (and 64·T1 to give up).
        public var t1Milliseconds: Int
        public var t2Milliseconds: Int
        /// Answer every acceptable initial INVITE with this status (300–699) instead of 200.
        public var rejectStatus: Int?
        /// Wait this long before answering an initial INVITE (sending 100 Trying first); a CANCEL
        /// can arrive meanwhile.
        public var answerDelayMilliseconds: Int

        public init(
            mediaPortBase: Int = 39000, t1Milliseconds: Int = 500, t2Milliseconds: Int = 4000, rejectStatus: Int? = nil,
            answerDelayMilliseconds: Int = 0
        ) {
            self.mediaPortBase = mediaPortBase
            self.t1Milliseconds = t1Milliseconds
            self.t2Milliseconds = t2Milliseconds
            self.rejectStatus = rejectStatus
            self.answerDelayMilliseconds = answerDelayMilliseconds
        }
    }

    public let loop: EventLoop
    public let settings: Settings
    /// What the SRS saw and did so far.
    public private(set) var statistics = SRSStatistics()

    private var udpSocket: UDPSocket?
    private var listener: StreamListener?
    private let boundAddress: SocketAddress
    /// Sessions by Call-ID.
    private var sessions: [String: Session] = [:]
    /// INVITE server transactions by "branch|sent-by" of the top Via.
    private var inviteTransactions: [String: InviteTransaction] = [:]
    /// INVITE transactions whose final response waits for its ACK, by "Call-ID|CSeq number".
    private var awaitingACK: [String: InviteTransaction] = [:]
    /// Responses to non-INVITE requests, by "branch|sent-by|method", kept 64·T1 for retransmissions.
    private var nonInviteResponses: [String: (bytes: [UInt8], expires: UInt64)] = [:]
    private var lastSweep: UInt64 = 0
    private var closed = false

    /// Binds the SRS.
    /// - Parameters:
    ///   - loop: the event loop serving the sockets and timers (the replay engine's).
    ///   - host: the IP address to bind, 127.0.0.1 by default.
    ///   - port: the port, 0 for any free one (the same one for UDP and TCP).
    ///   - tcp: also listen on TCP on the same port.
    ///   - mediaPortBase, t1Milliseconds, t2Milliseconds, rejectStatus, answerDelayMilliseconds: see `Settings`.
    /// - Throws: `SIPIOError` when the address cannot be bound (or no port free for both transports).
    public convenience init(
        loop: EventLoop, host: String = "127.0.0.1", port: UInt16 = 0, tcp: Bool = false,
        mediaPortBase: Int = 39000, t1Milliseconds: Int = 500, t2Milliseconds: Int = 4000, rejectStatus: Int? = nil,
        answerDelayMilliseconds: Int = 0
    ) throws(SIPIOError) {
        try self.init(
            loop: loop, host: host, port: port, tcp: tcp,
            settings: Settings(
                mediaPortBase: mediaPortBase, t1Milliseconds: t1Milliseconds, t2Milliseconds: t2Milliseconds,
                rejectStatus: rejectStatus, answerDelayMilliseconds: answerDelayMilliseconds))
    }

    /// Binds the SRS with `settings` (see the other initialiser).
    public init(loop: EventLoop, host: String = "127.0.0.1", port: UInt16 = 0, tcp: Bool = false, settings: Settings)
        throws(SIPIOError)
    {
        self.loop = loop
        self.settings = Settings(
            mediaPortBase: min(max(settings.mediaPortBase, 0), 65534),
            t1Milliseconds: max(1, settings.t1Milliseconds),
            t2Milliseconds: max(settings.t2Milliseconds, max(1, settings.t1Milliseconds)),
            rejectStatus: settings.rejectStatus.map { min(max($0, 300), 699) },
            answerDelayMilliseconds: max(0, settings.answerDelayMilliseconds))
        let requested = try SocketAddress(ipAddress: host, port: port)
        // The sockets exist before `self` is complete: they reach it through the inbox.
        let inbox = Inbox()
        // With port 0 the kernel picks the UDP port; TCP then needs the same one, which another
        // process may hold: try a few UDP ports.
        var attempts = port == 0 && tcp ? 20 : 1
        var udp: UDPSocket
        var listener: StreamListener?
        while true {
            attempts -= 1
            udp = try UDPSocket(loop: loop, bindTo: requested) { message in inbox.target?.received(message) }
            guard tcp else { break }
            do {
                listener = try StreamListener(loop: loop, bindTo: udp.localAddress) { connection in
                    inbox.target?.accepted(connection)
                }
                break
            } catch {
                udp.close()
                if attempts <= 0 { throw error }
            }
        }
        boundAddress = udp.localAddress
        udpSocket = udp
        self.listener = listener
        inbox.target = self
    }

    /// Where the sockets deliver: the SRS once initialised (weak, so the sockets do not keep it).
    private final class Inbox {
        weak var target: ReplaySRS?
    }

    deinit {
        for transaction in inviteTransactions.values { transaction.timer?.cancel() }
        for session in sessions.values { session.answerTimer?.cancel() }
    }

    /// The bound address (UDP, and TCP when listening on it).
    public var localAddress: SocketAddress { boundAddress }

    /// Whether the SRS also listens on TCP.
    public var listensOnTCP: Bool { listener != nil }

    /// "sip:srs@IP:PORT", with ";transport=tcp" when `transport` is TCP: a URI the proxy can be
    /// given with `--srs`.
    public func uri(transport: Transport = .udp) -> String {
        "sip:srs@\(boundAddress)" + (transport == .udp ? "" : ";transport=\(transport.rawValue)")
    }

    /// Initial INVITEs accepted and not answered yet (an answer delay is running).
    public var pendingSessions: Int { sessions.values.count { !$0.isActive } }

    /// Answered sessions whose 2xx still waits for its ACK.
    public var sessionsAwaitingACK: Int {
        awaitingACK.values.count { $0.isInitial && $0.session?.isActive == true }
    }

    /// Starts `peakActiveSessions` again from the sessions active now (a replay's next run).
    public func resetPeakActiveSessions() {
        statistics.peakActiveSessions = statistics.activeSessions
    }

    /// Stops listening and cancels every timer; sessions are forgotten (no BYE is sent).
    public func close() {
        guard !closed else { return }
        closed = true
        udpSocket?.close()
        listener?.close()
        for transaction in inviteTransactions.values { transaction.timer?.cancel() }
        for session in sessions.values { session.answerTimer?.cancel() }
        inviteTransactions.removeAll()
        awaitingACK.removeAll()
        sessions.removeAll()
        statistics.activeSessions = 0
    }

    // MARK: Transport

    enum Peer {
        case udp(SocketAddress)
        case stream(StreamConnection)

        var transport: Transport {
            switch self {
            case .udp: .udp
            case .stream(let connection): connection.isTLS ? .tls : .tcp
            }
        }
    }

    private func accepted(_ connection: StreamConnection) {
        connection.onMessage = { [unowned self] message in self.received(message) }
        connection.onMalformed = { [unowned self] _, _ in self.statistics.unreadableMessages += 1 }
    }

    private func send(_ bytes: [UInt8], to peer: Peer) {
        guard !closed else { return }
        switch peer {
        case .udp(let address): udpSocket?.send(bytes, to: address)
        case .stream(let connection): connection.send(bytes)
        }
    }

    private func received(_ received: borrowing ReceivedMessage) {
        guard !closed else { return }
        let peer: Peer = received.connection.map { .stream($0) } ?? .udp(received.source)
        let message: SIPMessage
        do {
            message = try SIPMessage(parsing: received.bytes, framing: received.transport == .udp ? .datagram : .stream)
        } catch {
            // A request whose start line and headers were readable still gets its 400.
            if let partial = error.partial, partial.isRequest, partial.method != .ack, (try? partial.routingHeaders()) != nil {
                reject(partial, peer: peer, status: 400, reason: error.reasonPhrase)
            } else {
                statistics.unreadableMessages += 1
            }
            return
        }
        guard message.isRequest else { return }  // the SRS sends no requests: stray responses are ignored
        handle(message, from: peer)
    }

    // MARK: Requests

    private func handle(_ request: SIPMessage, from peer: Peer) {
        sweep()
        let headers: RoutingHeaders
        do {
            headers = try request.routingHeaders()
        } catch {
            if request.method != .ack { reject(request, peer: peer, status: 400, reason: error.reasonPhrase) }
            return
        }
        let method = request.method
        let transactionKey = Self.transactionKey(request, headers)
        if method == .ack {
            acknowledged(request, headers)
            return
        }
        if method == .invite, let transaction = inviteTransactions[transactionKey] {
            statistics.requestRetransmissions += 1
            send(transaction.lastResponse, to: peer)
            return
        }
        if method == .cancel {
            cancel(request, headers, key: transactionKey, peer: peer)
            return
        }
        let nonInviteKey = transactionKey + "|" + request.text(request.methodRange)
        if method != .invite, let cached = nonInviteResponses[nonInviteKey] {
            statistics.requestRetransmissions += 1
            send(cached.bytes, to: peer)
            return
        }
        let callID = request.text(headers.callID)
        if let toTag = headers.toTag {
            // In a dialog: ours only if the Call-ID and our tag match.
            guard let session = sessions[callID], request.equals(toTag, session.localTag) else {
                respond(request, peer: peer, status: 481, reason: "Call/Transaction Does Not Exist", key: nonInviteKey, isReject: true)
                return
            }
            inDialog(request, session: session, key: transactionKey, nonInviteKey: nonInviteKey, peer: peer)
            return
        }
        switch method {
        case .invite:
            initialInvite(request, headers, key: transactionKey, peer: peer)
        case .options:
            respond(
                request, peer: peer, status: 200, reason: "OK", key: nonInviteKey,
                extra: "Allow: \(Self.allow)\r\nSupported: siprec\r\nAccept: application/sdp, multipart/mixed\r\n")
        default:
            // BYE, UPDATE, INFO ... outside any dialog.
            respond(request, peer: peer, status: 481, reason: "Call/Transaction Does Not Exist", key: nonInviteKey, isReject: true)
        }
    }

    private static let allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"

    /// The top Via's branch and sent-by: what identifies a server transaction (RFC 3261 §17.2.3).
    private static func transactionKey(_ request: SIPMessage, _ headers: RoutingHeaders) -> String {
        let via = headers.topVia
        let branch = via.branchRange.map { request.text($0) } ?? ""
        return branch + "|" + request.text(via.hostRange) + ":" + String(via.port ?? 5060)
    }

    private func initialInvite(_ request: SIPMessage, _ headers: RoutingHeaders, key: String, peer: Peer) {
        statistics.sessionsOffered += 1
        let transaction = InviteTransaction(
            key: key, callID: request.text(headers.callID), cseq: headers.cseq.number, request: request, peer: peer,
            isInitial: true)
        inviteTransactions[key] = transaction
        // RFC 7866 §6.1.1: the SRC requires siprec; other extensions are not supported here.
        var required: [String] = []
        request.forEachValue(.require) { range in
            required.append(request.text(range).trimmingSpaces.lowercased())
            return true
        }
        let unsupported = required.filter { $0 != "siprec" && !$0.isEmpty }
        if !unsupported.isEmpty {
            finalResponse(
                transaction, status: 420, reason: "Bad Extension",
                extra: "Unsupported: \(unsupported.joined(separator: ", "))\r\n", isReject: true)
            return
        }
        guard required.contains("siprec") else {
            finalResponse(transaction, status: 421, reason: "Extension Required", extra: "Require: siprec\r\n", isReject: true)
            return
        }
        guard Self.hasSRCContact(request) else {
            finalResponse(transaction, status: 400, reason: "Missing +sip.src in Contact", isReject: true)
            return
        }
        let body: RecordingBody
        switch Self.recordingBody(of: request) {
        case .success(let found):
            body = found
        case .failure(let problem):
            if problem.metadataMissing { statistics.metadataPartsMissing += 1 }
            finalResponse(transaction, status: problem.status, reason: problem.reason, isReject: true)
            return
        }
        statistics.metadataPartsSeen += 1
        let session = Session(
            callID: transaction.callID, localTag: Self.randomToken(prefix: "srs"),
            remoteTag: headers.fromTag.map { request.text($0) } ?? "", sdpSessionID: UInt64.random(in: 1...(1 << 40)),
            peer: peer)
        guard let offer = body.sdp else {
            finalResponse(transaction, status: 400, reason: "Missing application/sdp part", isReject: true)
            return
        }
        let answer: String
        switch sdpAnswer(offer: offer, sessionID: session.sdpSessionID, version: session.sdpVersion) {
        case .success(let text): answer = text
        case .failure(let problem):
            finalResponse(transaction, status: 488, reason: problem.reason, isReject: true)
            return
        }
        if let status = settings.rejectStatus {
            finalResponse(transaction, status: status, reason: Self.reasonPhrase(status), isReject: true)
            return
        }
        session.answer = answer
        transaction.session = session
        sessions[session.callID] = session
        if settings.answerDelayMilliseconds > 0 {
            transaction.lastResponse = request.makeResponse(statusCode: 100, reasonPhrase: "Trying")
            send(transaction.lastResponse, to: peer)
            session.answerTimer = loop.scheduleOnce(afterMilliseconds: settings.answerDelayMilliseconds) {
                [weak self, weak transaction] in
                guard let self, let transaction, !transaction.isFinal else { return }
                self.sendAnswer(transaction)
            }
        } else {
            sendAnswer(transaction)
        }
    }

    private func sendAnswer(_ transaction: InviteTransaction) {
        guard let session = transaction.session else { return }
        session.answerTimer = nil
        statistics.sessionsAnswered += 1
        statistics.activeSessions += 1
        statistics.peakActiveSessions = max(statistics.peakActiveSessions, statistics.activeSessions)
        session.isActive = true
        finalResponse(
            transaction, status: 200, reason: "OK", toTag: session.localTag,
            extra: contactLine(transaction.peer) + "Allow: \(Self.allow)\r\nSupported: siprec\r\nContent-Type: application/sdp\r\n",
            body: Array(session.answer.utf8))
    }

    private func inDialog(_ request: SIPMessage, session: Session, key: String, nonInviteKey: String, peer: Peer) {
        switch request.method {
        case .bye:
            endSession(session)
            statistics.sessionsEndedByBye += 1
            respond(request, peer: peer, status: 200, reason: "OK", key: nonInviteKey)
        case .invite, .update:
            let isInvite = request.method == .invite
            // A re-INVITE's offer (with or without metadata), or none: then our last answer goes as the offer.
            var offer: String?
            if request.bodyRange.count > 0 {
                switch Self.recordingBody(of: request, requireMetadata: false) {
                case .success(let body):
                    offer = body.sdp
                    if body.hasMetadata { statistics.metadataPartsSeen += 1 }
                case .failure(let problem):
                    rejectInDialog(request, isInvite: isInvite, key: key, nonInviteKey: nonInviteKey, peer: peer, problem.status, problem.reason)
                    return
                }
            }
            if offer == nil, !isInvite {
                // An UPDATE without an offer (metadata alone): its 200 carries no SDP (RFC 3311 §5.2).
                statistics.updatesAnswered += 1
                respond(request, peer: peer, status: 200, reason: "OK", key: nonInviteKey, extra: contactLine(peer))
                return
            }
            let version = session.sdpVersion + 1
            var answer = session.answer
            if let offer {
                switch sdpAnswer(offer: offer, sessionID: session.sdpSessionID, version: version) {
                case .success(let text): answer = text
                case .failure(let problem):
                    rejectInDialog(request, isInvite: isInvite, key: key, nonInviteKey: nonInviteKey, peer: peer, 488, problem.reason)
                    return
                }
            } else {
                answer = Self.replacingVersion(of: answer, with: version)
            }
            session.sdpVersion = version
            session.answer = answer
            let extra = contactLine(peer) + "Content-Type: application/sdp\r\n"
            if isInvite {
                statistics.reInvitesAnswered += 1
                let transaction = InviteTransaction(
                    key: key, callID: session.callID, cseq: request.cseq?.number ?? 0, request: request, peer: peer,
                    isInitial: false)
                transaction.session = session
                inviteTransactions[key] = transaction
                finalResponse(transaction, status: 200, reason: "OK", extra: extra, body: Array(answer.utf8))
            } else {
                statistics.updatesAnswered += 1
                respond(request, peer: peer, status: 200, reason: "OK", key: nonInviteKey, extra: extra, body: Array(answer.utf8))
            }
        case .options, .info:
            respond(request, peer: peer, status: 200, reason: "OK", key: nonInviteKey)
        default:
            respond(
                request, peer: peer, status: 405, reason: "Method Not Allowed", key: nonInviteKey,
                extra: "Allow: \(Self.allow)\r\n", isReject: true)
        }
    }

    private func rejectInDialog(
        _ request: SIPMessage, isInvite: Bool, key: String, nonInviteKey: String, peer: Peer, _ status: Int, _ reason: String
    ) {
        if isInvite {
            let transaction = InviteTransaction(
                key: key, callID: request.text(request.callID!), cseq: request.cseq?.number ?? 0, request: request,
                peer: peer, isInitial: false)
            inviteTransactions[key] = transaction
            finalResponse(transaction, status: status, reason: reason, isReject: true)
        } else {
            respond(request, peer: peer, status: status, reason: reason, key: nonInviteKey, isReject: true)
        }
    }

    private func cancel(_ request: SIPMessage, _ headers: RoutingHeaders, key: String, peer: Peer) {
        let cancelKey = key + "|CANCEL"
        if let cached = nonInviteResponses[cancelKey] {
            statistics.requestRetransmissions += 1
            send(cached.bytes, to: peer)
            return
        }
        // RFC 3261 §9.2: the CANCEL matches the INVITE transaction by its Via; 481 when none.
        guard let transaction = inviteTransactions[key] else {
            respond(request, peer: peer, status: 481, reason: "Call/Transaction Does Not Exist", key: cancelKey, isReject: true)
            return
        }
        respond(request, peer: peer, status: 200, reason: "OK", key: cancelKey, toTag: transaction.session?.localTag)
        guard !transaction.isFinal else { return }
        let tag = transaction.session?.localTag
        if let session = transaction.session {
            session.answerTimer?.cancel()
            session.answerTimer = nil
            sessions[session.callID] = nil
            transaction.session = nil
        }
        statistics.sessionsCancelled += 1
        finalResponse(transaction, status: 487, reason: "Request Terminated", toTag: tag)
    }

    private func acknowledged(_ ack: SIPMessage, _ headers: RoutingHeaders) {
        let ackKey = ack.text(headers.callID) + "|" + String(headers.cseq.number)
        guard let transaction = awaitingACK.removeValue(forKey: ackKey) else { return }  // a late or stray ACK: absorbed
        transaction.timer?.cancel()
        transaction.timer = nil
        transaction.acknowledged = true
    }

    private func endSession(_ session: Session) {
        session.answerTimer?.cancel()
        session.answerTimer = nil
        if session.isActive {
            session.isActive = false
            statistics.activeSessions -= 1
        }
        if sessions[session.callID] === session { sessions[session.callID] = nil }
        // A 2xx still waiting for its ACK has nothing left to establish.
        for (key, transaction) in awaitingACK where transaction.session === session {
            transaction.timer?.cancel()
            transaction.timer = nil
            awaitingACK[key] = nil
        }
    }

    // MARK: Responses

    /// Sends a final response to an INVITE and, until its ACK, resends it: a 2xx on every
    /// transport (RFC 3261 §13.3.1.4), a non-2xx over UDP only (§17.2.1); for at most 64·T1.
    private func finalResponse(
        _ transaction: InviteTransaction, status: Int, reason: String, toTag: String? = nil, extra: String = "",
        body: [UInt8] = [], isReject: Bool = false
    ) {
        let tag = toTag ?? transaction.session?.localTag ?? Self.randomToken(prefix: "srs")
        let bytes = transaction.request.makeResponse(
            statusCode: status, reasonPhrase: reason, toTag: tag, extraHeaders: Array(extra.utf8), body: body)
        if isReject { countRejection(status, reason) }
        transaction.lastResponse = bytes
        transaction.isFinal = true
        transaction.expires = loop.nowMilliseconds + UInt64(64 * settings.t1Milliseconds)
        send(bytes, to: transaction.peer)
        let ackKey = transaction.callID + "|" + String(transaction.cseq)
        awaitingACK[ackKey] = transaction
        let resend = (200..<300).contains(status) || transaction.peer.transport == .udp
        if resend {
            transaction.interval = settings.t1Milliseconds
            scheduleResend(transaction, startedAt: loop.nowMilliseconds, after: transaction.interval)
        }
    }

    private func scheduleResend(_ transaction: InviteTransaction, startedAt: UInt64, after delay: Int) {
        transaction.timer = loop.scheduleOnce(afterMilliseconds: delay) { [weak self, weak transaction] in
            guard let self, let transaction, !transaction.acknowledged, !self.closed else { return }
            let limit = UInt64(64 * self.settings.t1Milliseconds)
            let elapsed = self.loop.nowMilliseconds - startedAt
            guard elapsed < limit else {
                // Timer H, or the 2xx's 64·T1 (RFC 3261 §13.3.1.4): give up.
                transaction.timer = nil
                let ackKey = transaction.callID + "|" + String(transaction.cseq)
                if self.awaitingACK[ackKey] === transaction { self.awaitingACK[ackKey] = nil }
                if let session = transaction.session, transaction.isInitial, session.isActive {
                    self.statistics.sessionsWithoutACK += 1
                    self.endSession(session)
                }
                return
            }
            self.statistics.responseRetransmissions += 1
            self.send(transaction.lastResponse, to: transaction.peer)
            transaction.interval = min(transaction.interval * 2, self.settings.t2Milliseconds)
            self.scheduleResend(transaction, startedAt: startedAt, after: min(transaction.interval, Int(limit - elapsed)))
        }
    }

    /// Responds to a non-INVITE request (or a CANCEL) and keeps the response for retransmissions.
    private func respond(
        _ request: SIPMessage, peer: Peer, status: Int, reason: String, key: String, toTag: String? = nil,
        extra: String = "", body: [UInt8] = [], isReject: Bool = false
    ) {
        let tag = toTag ?? (request.toTag == nil ? Self.randomToken(prefix: "srs") : nil)
        let bytes = request.makeResponse(
            statusCode: status, reasonPhrase: reason, toTag: tag, extraHeaders: Array(extra.utf8), body: body)
        if isReject { countRejection(status, reason) }
        nonInviteResponses[key] = (bytes, loop.nowMilliseconds + UInt64(64 * settings.t1Milliseconds))
        send(bytes, to: peer)
    }

    /// A 400-type answer to a request that could not even be read as a transaction.
    private func reject(_ request: SIPMessage, peer: Peer, status: Int, reason: String) {
        countRejection(status, reason)
        send(request.makeResponse(statusCode: status, reasonPhrase: reason, toTag: Self.randomToken(prefix: "srs")), to: peer)
    }

    private func countRejection(_ status: Int, _ reason: String) {
        statistics.requestsRejected += 1
        statistics.rejections["\(status) \(reason)", default: 0] += 1
    }

    private func contactLine(_ peer: Peer) -> String {
        let transport = peer.transport
        return "Contact: <sip:srs@\(boundAddress)" + (transport == .udp ? "" : ";transport=\(transport.rawValue)") + ">\r\n"
    }

    /// Forgets transactions and cached responses past their 64·T1 (checked at most once a second).
    private func sweep() {
        let now = loop.nowMilliseconds
        guard now >= lastSweep + 1000 else { return }
        lastSweep = now
        nonInviteResponses = nonInviteResponses.filter { $0.value.expires > now }
        inviteTransactions = inviteTransactions.filter { !$0.value.isFinal || $0.value.expires > now || $0.value.timer != nil }
    }

    // MARK: Helpers

    private static func hasSRCContact(_ request: SIPMessage) -> Bool {
        var found = false
        request.forEachValue(.contact) { range in
            if let address = request.nameAddress(range), request.parameter("+sip.src", in: address.parametersRange) != nil {
                found = true
            }
            return !found
        }
        return found
    }

    struct BodyProblem: Error {
        var status: Int
        var reason: String
        var metadataMissing = false
    }

    struct SDPProblem: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    struct RecordingBody {
        /// The offer; nil for metadata alone (an in-dialog update that changes no media).
        var sdp: String?
        var hasMetadata: Bool
    }

    /// The SDP and metadata of a recording session's INVITE (RFC 7866 §9.1: multipart/mixed).
    static func recordingBody(of request: SIPMessage, requireMetadata: Bool = true) -> Result<RecordingBody, BodyProblem> {
        let body = Array(request.bytes[request.bodyRange.offset..<request.bodyRange.end])
        guard !body.isEmpty else {
            return .failure(BodyProblem(status: 400, reason: "Missing multipart body (SDP and rs-metadata)", metadataMissing: requireMetadata))
        }
        guard let contentType = request.headerValue(.contentType) else {
            return .failure(BodyProblem(status: 400, reason: "Missing Content-Type"))
        }
        let mediaType: String
        do {
            mediaType = try MultipartBody.mediaType(of: contentType)
        } catch {
            return .failure(BodyProblem(status: 400, reason: "Bad Content-Type: \(error.messages.joined(separator: "; "))"))
        }
        if mediaType == "application/rs-metadata+xml" || mediaType == "application/rs-metadata" {
            // Metadata alone (RFC 7866 §9.1): an update inside a session, never its first INVITE.
            guard !requireMetadata else { return .failure(BodyProblem(status: 400, reason: "Missing application/sdp part")) }
            return .success(RecordingBody(sdp: nil, hasMetadata: true))
        }
        if mediaType == "application/sdp" {
            if requireMetadata {
                return .failure(BodyProblem(status: 400, reason: "Missing rs-metadata part", metadataMissing: true))
            }
            return .success(RecordingBody(sdp: String(decoding: body, as: UTF8.self), hasMetadata: false))
        }
        guard mediaType == "multipart/mixed" else {
            return .failure(BodyProblem(status: 415, reason: "Unsupported Media Type \(mediaType)"))
        }
        let parts: [BodyPart]
        do {
            parts = try MultipartBody.parts(of: body, contentType: contentType)
        } catch {
            return .failure(BodyProblem(status: 400, reason: "Bad multipart body: \(error.messages.joined(separator: "; "))"))
        }
        let partTypes = parts.map { try? MultipartBody.mediaType(of: $0.contentType) }
        let sdp = partTypes.firstIndex { $0 == "application/sdp" }.map { parts[$0] }
        let metadata = partTypes.firstIndex { $0 == "application/rs-metadata+xml" || $0 == "application/rs-metadata" }
        guard let sdp else { return .failure(BodyProblem(status: 400, reason: "Missing application/sdp part")) }
        if requireMetadata, metadata == nil {
            return .failure(BodyProblem(status: 400, reason: "Missing rs-metadata part", metadataMissing: true))
        }
        return .success(RecordingBody(sdp: String(decoding: sdp.body, as: UTF8.self), hasMetadata: metadata != nil))
    }

    /// The receive-only answer to `offer`: one m= line per offered one, same media, protocol and
    /// formats, ports from `mediaPortBase` by 2 (0 where the offer's port is 0), with the offer's
    /// rtpmap, fmtp and label attributes of each stream.
    func sdpAnswer(offer: String, sessionID: UInt64, version: UInt64) -> Result<String, SDPProblem> {
        Self.sdpAnswer(offer: offer, sessionID: sessionID, version: version, mediaPortBase: settings.mediaPortBase)
    }

    static func sdpAnswer(offer: String, sessionID: UInt64, version: UInt64, mediaPortBase: Int) -> Result<String, SDPProblem> {
        let lines = offer.split(omittingEmptySubsequences: true) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        guard lines.first?.hasPrefix("v=") == true else { return .failure(SDPProblem("SDP offer does not start with v=")) }
        var out = "v=0\r\no=replay-srs \(sessionID) \(version) IN IP4 127.0.0.1\r\ns=replay-srs\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        var streams = 0
        var formats: Set<Substring> = []
        for line in lines {
            if line.hasPrefix("m=") {
                let fields = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 4, let offeredPort = Int(fields[1].split(separator: "/")[0]) else {
                    return .failure(SDPProblem("Bad m= line in SDP offer"))
                }
                let port = offeredPort == 0 ? 0 : mediaPortBase + 2 * streams
                guard port <= 65535 else { return .failure(SDPProblem("Too many m= lines in SDP offer")) }
                streams += 1
                formats = Set(fields[3...])
                out += "m=\(fields[0]) \(port) \(fields[2]) \(fields[3...].joined(separator: " "))\r\n"
                out += "a=recvonly\r\n"
            } else if streams > 0, line.hasPrefix("a=rtpmap:") || line.hasPrefix("a=fmtp:") {
                let format = line.dropFirst(line.hasPrefix("a=rtpmap:") ? 9 : 7).prefix { $0 != " " }
                if formats.contains(format) { out += line + "\r\n" }
            } else if streams > 0, line.hasPrefix("a=label:") {
                out += line + "\r\n"
            }
        }
        guard streams > 0 else { return .failure(SDPProblem("No m= line in SDP offer")) }
        return .success(out)
    }

    /// The answer with another version in its o= line.
    static func replacingVersion(of sdp: String, with version: UInt64) -> String {
        var lines = sdp.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        if let index = lines.firstIndex(where: { $0.hasPrefix("o=") }) {
            var fields = lines[index].split(separator: " ").map(String.init)
            if fields.count >= 3 { fields[2] = String(version) }
            lines[index] = fields.joined(separator: " ")
        }
        return lines.joined(separator: "\r\n")
    }

    static func randomToken(prefix: String) -> String {
        prefix + String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 408: "Request Timeout"
        case 480: "Temporarily Unavailable"
        case 486: "Busy Here"
        case 488: "Not Acceptable Here"
        case 500: "Server Internal Error"
        case 503: "Service Unavailable"
        case 504: "Server Time-out"
        case 600: "Busy Everywhere"
        case 603: "Decline"
        default: status < 400 ? "Redirection" : status < 500 ? "Client Error" : status < 600 ? "Server Error" : "Global Failure"
        }
    }
}

// MARK: - Sessions and transactions

extension ReplaySRS {
/// One recording session (a dialog), from its initial INVITE to its BYE.
final class Session {
    let callID: String
    let localTag: String
    let remoteTag: String
    let sdpSessionID: UInt64
    var sdpVersion: UInt64 = 1
    var answer = ""
    let peer: ReplaySRS.Peer
    /// Answered and not ended (counted in `activeSessions`).
    var isActive = false
    var answerTimer: LoopTimer?

    init(callID: String, localTag: String, remoteTag: String, sdpSessionID: UInt64, peer: ReplaySRS.Peer) {
        self.callID = callID
        self.localTag = localTag
        self.remoteTag = remoteTag
        self.sdpSessionID = sdpSessionID
        self.peer = peer
    }
}

/// An INVITE server transaction: its last response, resent while the ACK is awaited.
final class InviteTransaction {
    let key: String
    let callID: String
    let cseq: UInt32
    let request: SIPMessage
    let peer: ReplaySRS.Peer
    let isInitial: Bool
    var session: Session?
    var lastResponse: [UInt8] = []
    var isFinal = false
    var acknowledged = false
    var expires: UInt64 = .max
    var interval = 0
    var timer: LoopTimer?

    init(key: String, callID: String, cseq: UInt32, request: SIPMessage, peer: ReplaySRS.Peer, isInitial: Bool) {
        self.key = key
        self.callID = callID
        self.cseq = cseq
        self.request = request
        self.peer = peer
        self.isInitial = isInitial
    }
}
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: String {
        let characters = self.drop { $0 == " " || $0 == "\t" }
        var end = characters.endIndex
        while end > characters.startIndex, characters[characters.index(before: end)] == " " || characters[characters.index(before: end)] == "\t" {
            end = characters.index(before: end)
        }
        return String(characters[..<end])
    }
}
