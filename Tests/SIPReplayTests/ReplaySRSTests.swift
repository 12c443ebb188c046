import Glibc
import Foundation
import SIPEdgeIO
import SIPMessage
@testable import SIPReplayKit
import Testing

// ReplaySRS driven over real UDP and TCP sockets on 127.0.0.1, with the bytes a SIPREC client
// (the proxy, see Sources/SIPEdgeProxy/Recording/Worker+Recording.swift) sends.

/// A SIP peer on the SRS's loop: sends exact bytes, keeps every message it receives.
private final class Peer {
    let loop: EventLoop
    var received: [SIPMessage] = []
    var udp: UDPSocket!
    var connection: StreamConnection?
    var closed = false

    init(loop: EventLoop) throws {
        self.loop = loop
        udp = try UDPSocket(loop: loop, bindTo: SocketAddress(ipAddress: "127.0.0.1", port: 0)) { [unowned self] message in
            if let parsed = try? SIPMessage(parsing: message.bytes) { self.received.append(parsed) }
        }
    }

    var port: UInt16 { connection?.localAddress?.port ?? udp.localAddress.port }

    func connect(to address: SocketAddress) {
        let connection = StreamConnection.connect(loop: loop, to: address)
        connection.onMessage = { [unowned self] message in
            if let parsed = try? SIPMessage(parsing: message.bytes, framing: .stream) { self.received.append(parsed) }
        }
        connection.onClose = { [unowned self] _ in self.closed = true }
        self.connection = connection
    }

    func send(_ text: String, to address: SocketAddress) {
        if let connection {
            connection.send(Array(text.utf8))
        } else {
            udp.send(Array(text.utf8), to: address)
        }
    }

    /// Responses received so far with this status and CSeq method.
    func responses(_ status: Int, _ method: String) -> [SIPMessage] {
        received.filter { !$0.isRequest && $0.statusCode == status && cseqMethod($0) == method }
    }
}

extension SIPMessage {
    var statusLine: String {
        let text = String(decoding: bytes, as: UTF8.self)
        return String(text.prefix { $0 != "\r\n" && $0 != "\n" })
    }

    var bodyText: String { String(decoding: bytes[bodyRange.offset..<bodyRange.end], as: UTF8.self) }

    func value(_ name: SIPHeaderName) -> String? { headerValue(name) }

    func extensionHeader(_ name: String) -> String? { firstHeader(named: name).map { text($0.valueRange) } }
}

/// Serves the loop until `done()` holds or `timeoutMilliseconds` pass; returns whether `done()` held.
@discardableResult
private func spin(_ loop: EventLoop, timeoutMilliseconds: Int = 2000, until done: @escaping () -> Bool = { false }) -> Bool {
    var met = false
    let poll = loop.scheduleRepeating(everyMilliseconds: 2) {
        if done() {
            met = true
            loop.stop()
        }
    }
    let deadline = loop.scheduleOnce(afterMilliseconds: timeoutMilliseconds) { loop.stop() }
    loop.run()
    poll.cancel()
    deadline.cancel()
    return met
}

private let boundary = "siprec-edge-7865"

private let offerSDP =
    "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=siprec-edge\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    + "m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    + "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=label:1\r\na=sendonly\r\n"
    + "m=audio 30002 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    + "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=label:2\r\na=sendonly\r\n"

private let metadataXML =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">"
    + "<datamode>complete</datamode><session session_id=\"cmVjb3JkaW5nMTIz\"><sipSessionID>call-1</sipSessionID>"
    + "</session></recording>"

/// The multipart body as the proxy renders it: SDP, then the metadata, closing delimiter.
private func recordingBody(sdp: String = offerSDP, metadataType: String = "application/rs-metadata+xml") -> String {
    "--\(boundary)\r\nContent-Type: application/sdp\r\n\r\n\(sdp)\r\n"
        + "--\(boundary)\r\nContent-Type: \(metadataType)\r\nContent-Disposition: recording-session\r\n\r\n"
        + "\(metadataXML)\r\n--\(boundary)--\r\n"
}

private struct RequestParts {
    var method = "INVITE"
    var callID = "rs-1@127.0.0.1"
    var cseq = 1
    var branch = "z9hG4bK-rs-1"
    var fromTag = "src1"
    var toTag: String?
    var transport = "UDP"
    var contact: String? = nil
    var require: String? = "siprec"
    var contentType: String? = "multipart/mixed;boundary=\(boundary)"
    var body: String = recordingBody()
    var extra = ""
}

/// A request like the proxy's toward an SRS (Worker+Recording.swift: startTransaction).
private func request(_ parts: RequestParts, srs: SocketAddress, peerPort: UInt16) -> String {
    let target = "sip:srs@\(srs)"
    var text = "\(parts.method) \(target)\(parts.transport == "TCP" ? ";transport=tcp" : "") SIP/2.0\r\n"
    text += "Via: SIP/2.0/\(parts.transport) 127.0.0.1:\(peerPort);branch=\(parts.branch);rport\r\n"
    text += "Max-Forwards: 70\r\n"
    text += "From: <\(target)>;tag=\(parts.fromTag)\r\n"
    text += "To: <\(target)>\(parts.toTag.map { ";tag=\($0)" } ?? "")\r\n"
    text += "Call-ID: \(parts.callID)\r\n"
    text += "CSeq: \(parts.cseq) \(parts.method == "ACK" ? "ACK" : parts.method)\r\n"
    if parts.method == "INVITE" {
        text += "Contact: " + (parts.contact ?? "<sip:127.0.0.1:\(peerPort)\(parts.transport == "TCP" ? ";transport=tcp" : "")>;+sip.src") + "\r\n"
        if let require = parts.require { text += "Require: \(require)\r\n" }
        text += "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n"
    }
    text += "User-Agent: siprec-edge\r\n" + parts.extra
    let hasBody = (parts.method == "INVITE" || parts.method == "UPDATE") && !parts.body.isEmpty
    if hasBody, let contentType = parts.contentType { text += "Content-Type: \(contentType)\r\n" }
    let body = hasBody ? parts.body : ""
    text += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    return text
}

private func lines(_ sdp: String) -> [String] {
    sdp.split(separator: "\r\n", omittingEmptySubsequences: true).map(String.init)
}

private func toTag(_ message: SIPMessage) -> String? { message.toTag.map { message.text($0) } }

private func cseqMethod(_ message: SIPMessage) -> String { message.cseq.map { message.text($0.methodRange) } ?? "" }

private func count(_ peer: Peer, _ status: Int, _ method: String) -> Int {
    peer.received.count { !$0.isRequest && $0.statusCode == status && cseqMethod($0) == method }
}

private func first(_ peer: Peer, _ status: Int, _ method: String) -> SIPMessage? {
    peer.received.first { !$0.isRequest && $0.statusCode == status && cseqMethod($0) == method }
}

@Suite struct ReplaySRSTests {
    // MARK: Sessions over UDP

    @Test func inviteIsAnsweredWithARecvonlyAnswerAndThe200IsResentUntilTheACK() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, t1Milliseconds: 40, t2Milliseconds: 4000)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") >= 1 })
        let ok = try #require(first(peer, 200, "INVITE"))
        #expect(ok.statusLine == "SIP/2.0 200 OK")
        let tag = try #require(toTag(ok))
        #expect(tag.hasPrefix("srs"))
        #expect(ok.value(.contact) == "<sip:srs@\(srs.localAddress)>")
        #expect(ok.value(.contentType) == "application/sdp")
        #expect(ok.value(.callID) == "rs-1@127.0.0.1")
        #expect(ok.value(.via) == "SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK-rs-1;rport")
        let answer = lines(ok.bodyText)
        #expect(answer.count == 19)
        #expect(answer[0] == "v=0")
        #expect(answer[1].hasPrefix("o=replay-srs ") && answer[1].hasSuffix(" 1 IN IP4 127.0.0.1"))
        #expect(Array(answer[2...]) == [
            "s=replay-srs", "c=IN IP4 127.0.0.1", "t=0 0",
            "m=audio 39000 RTP/AVP 0 8 101", "a=recvonly", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=label:1",
            "m=audio 39002 RTP/AVP 0 8 101", "a=recvonly", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=label:2",
        ])
        // No ACK: resent after 40, then 80 ms (T1 doubling); three copies within ~150 ms.
        #expect(spin(loop, timeoutMilliseconds: 1000) { count(peer, 200, "INVITE") >= 3 })
        #expect(peer.responses(200, "INVITE").allSatisfy { $0.bytes == ok.bytes }, "a retransmission is the same response")
        peer.send(
            request(RequestParts(method: "ACK", branch: "z9hG4bK-ack-1", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        spin(loop, timeoutMilliseconds: 60)
        let afterACK = count(peer, 200, "INVITE")
        spin(loop, timeoutMilliseconds: 400)  // the next resend would have been at 160 or 320 ms
        #expect(count(peer, 200, "INVITE") == afterACK, "the ACK stops the retransmissions")
        let stats = srs.statistics
        #expect(stats.sessionsOffered == 1)
        #expect(stats.sessionsAnswered == 1)
        #expect(stats.activeSessions == 1)
        #expect(stats.peakActiveSessions == 1)
        #expect(stats.metadataPartsSeen == 1)
        #expect(stats.responseRetransmissions == afterACK - 1)
        #expect(stats.requestsRejected == 0)
    }

    @Test func retransmittedInviteGetsTheSameResponseAndByeEndsTheSession() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        let invite = request(RequestParts(), srs: srs.localAddress, peerPort: peer.port)
        peer.send(invite, to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 1 })
        peer.send(invite, to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 2 })
        let oks = peer.responses(200, "INVITE")
        #expect(oks[0].bytes == oks[1].bytes)
        let tag = try #require(toTag(oks[0]))
        peer.send(
            request(RequestParts(method: "ACK", branch: "z9hG4bK-ack", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        peer.send(
            request(RequestParts(method: "BYE", cseq: 2, branch: "z9hG4bK-bye", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "BYE") == 1 })
        #expect(first(peer, 200, "BYE")?.statusLine == "SIP/2.0 200 OK")
        #expect(first(peer, 200, "BYE").flatMap(toTag) == tag)
        #expect(srs.statistics.sessionsEndedByBye == 1)
        #expect(srs.statistics.activeSessions == 0)
        #expect(srs.statistics.sessionsOffered == 1)
        #expect(srs.statistics.requestRetransmissions == 1)
        // The session is gone: a new BYE (another transaction) is for an unknown dialog.
        peer.send(
            request(RequestParts(method: "BYE", cseq: 3, branch: "z9hG4bK-bye2", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 481, "BYE") == 1 })
        #expect(first(peer, 481, "BYE")?.statusLine == "SIP/2.0 481 Call/Transaction Does Not Exist")
        #expect(srs.statistics.rejections["481 Call/Transaction Does Not Exist"] == 1)
    }

    @Test func reInviteAndUpdateGetTheAnswerWithItsVersionBumped() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, mediaPortBase: 41000)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 1 })
        let ok = try #require(first(peer, 200, "INVITE"))
        let tag = try #require(toTag(ok))
        let initial = lines(ok.bodyText)
        peer.send(
            request(RequestParts(method: "ACK", branch: "z9hG4bK-a1", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        // A re-INVITE with the same offer (as on a pause: the proxy's re-INVITE carries SDP and metadata).
        peer.send(
            request(RequestParts(cseq: 2, branch: "z9hG4bK-re", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 2 })
        let reOK = peer.responses(200, "INVITE")[1]
        #expect(reOK.value(.cseq) == "2 INVITE")
        #expect(toTag(reOK) == tag)
        let second = lines(reOK.bodyText)
        #expect(second[1] == initial[1].replacingOccurrences(of: " 1 IN IP4", with: " 2 IN IP4"))
        #expect(Array(second[2...]) == Array(initial[2...]))
        #expect(second.contains("m=audio 41000 RTP/AVP 0 8 101") && second.contains("m=audio 41002 RTP/AVP 0 8 101"))
        peer.send(
            request(RequestParts(method: "ACK", cseq: 2, branch: "z9hG4bK-a2", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        // An UPDATE with an offer (SDP and metadata): the answer, version 3.
        peer.send(
            request(RequestParts(method: "UPDATE", cseq: 3, branch: "z9hG4bK-up", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "UPDATE") == 1 })
        let third = lines(try #require(first(peer, 200, "UPDATE")).bodyText)
        #expect(third[1] == initial[1].replacingOccurrences(of: " 1 IN IP4", with: " 3 IN IP4"))
        #expect(Array(third[2...]) == Array(initial[2...]))
        // UPDATEs without an offer (metadata alone, as the proxy's final metadata; or no body): a 200
        // without SDP, since an UPDATE's response may only answer (RFC 3311 §5.2).
        peer.send(
            request(
                RequestParts(
                    method: "UPDATE", cseq: 4, branch: "z9hG4bK-up2", toTag: tag, contentType: "application/rs-metadata+xml",
                    body: metadataXML, extra: "Content-Disposition: recording-session\r\n"),
                srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "UPDATE") == 2 })
        peer.send(
            request(RequestParts(method: "UPDATE", cseq: 5, branch: "z9hG4bK-up3", toTag: tag, body: ""), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "UPDATE") == 3 })
        for answered in peer.responses(200, "UPDATE")[1...] {
            #expect(answered.bodyText.isEmpty)
            #expect(answered.value(.contentLength) == "0")
            #expect(answered.value(.contentType) == nil)
        }
        #expect(srs.statistics.reInvitesAnswered == 1)
        #expect(srs.statistics.updatesAnswered == 3)
        #expect(srs.statistics.metadataPartsSeen == 4)
        #expect(srs.statistics.sessionsAnswered == 1)
        #expect(srs.statistics.requestsRejected == 0)
    }

    @Test func metadataAloneCannotOpenASession() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        peer.send(
            request(
                RequestParts(contentType: "application/rs-metadata+xml", body: metadataXML, extra: "Content-Disposition: recording-session\r\n"),
                srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 400, "INVITE") == 1 })
        #expect(first(peer, 400, "INVITE")?.statusLine == "SIP/2.0 400 Missing application/sdp part")
        #expect(srs.statistics.sessionsAnswered == 0)
    }

    @Test func optionsInfoAndRequestsForUnknownDialogs() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(method: "OPTIONS", callID: "probe", branch: "z9hG4bK-o"), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        peer.send(
            request(RequestParts(method: "BYE", callID: "nobody", cseq: 2, branch: "z9hG4bK-b", toTag: "x"), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        peer.send(
            request(RequestParts(method: "INFO", callID: "nobody2", cseq: 2, branch: "z9hG4bK-i", toTag: "y"), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        peer.send(
            request(RequestParts(method: "CANCEL", callID: "nobody3", branch: "z9hG4bK-never-sent"), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { peer.received.count == 4 })
        #expect(first(peer, 200, "OPTIONS")?.statusLine == "SIP/2.0 200 OK")
        #expect(first(peer, 200, "OPTIONS")?.value(.supported) == "siprec")
        #expect(first(peer, 481, "BYE") != nil)
        #expect(first(peer, 481, "INFO") != nil)
        #expect(first(peer, 481, "CANCEL") != nil)
        #expect(srs.statistics.rejections["481 Call/Transaction Does Not Exist"] == 3)
        #expect(srs.statistics.sessionsOffered == 0)
        // In a session, INFO and OPTIONS get 200.
        peer.send(request(RequestParts(), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 1 })
        let tag = try #require(first(peer, 200, "INVITE").flatMap(toTag))
        peer.send(
            request(RequestParts(method: "INFO", cseq: 2, branch: "z9hG4bK-info", toTag: tag), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INFO") == 1 })
    }

    // MARK: Rejections

    /// Sends one initial INVITE and returns the final response.
    private func answer(to parts: RequestParts, srs: ReplaySRS, peer: Peer, loop: EventLoop) throws -> SIPMessage {
        let before = peer.received.count
        peer.send(request(parts, srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { peer.received.dropFirst(before).contains { $0.statusCode >= 200 } })
        return try #require(peer.received.dropFirst(before).first { $0.statusCode >= 200 })
    }

    @Test func invitesThatAreNotRecordingSessionsAreRejectedWithTheReason() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        func reject(_ id: Int, _ parts: RequestParts) throws -> SIPMessage {
            var parts = parts
            parts.callID = "reject-\(id)"
            parts.branch = "z9hG4bK-reject-\(id)"
            return try answer(to: parts, srs: srs, peer: peer, loop: loop)
        }
        let noRequire = try reject(1, RequestParts(require: nil))
        #expect(noRequire.statusLine == "SIP/2.0 421 Extension Required")
        #expect(noRequire.value(.require) == "siprec")
        #expect(toTag(noRequire) != nil)
        let supportedOnly = try reject(2, RequestParts(require: nil, extra: "Supported: siprec\r\n"))
        #expect(supportedOnly.statusCode == 421)
        let unknownExtension = try reject(3, RequestParts(require: "siprec, 100rel"))
        #expect(unknownExtension.statusLine == "SIP/2.0 420 Bad Extension")
        #expect(unknownExtension.value(.unsupported) == "100rel")
        let noSRC = try reject(4, RequestParts(contact: "<sip:127.0.0.1:5060>"))
        #expect(noSRC.statusLine == "SIP/2.0 400 Missing +sip.src in Contact")
        let sdpOnly = try reject(5, RequestParts(contentType: "application/sdp", body: offerSDP))
        #expect(sdpOnly.statusLine == "SIP/2.0 400 Missing rs-metadata part")
        let noSDP = try reject(
            6,
            RequestParts(
                body: "--\(boundary)\r\nContent-Type: application/rs-metadata+xml\r\n\r\n\(metadataXML)\r\n--\(boundary)--\r\n"))
        #expect(noSDP.statusLine == "SIP/2.0 400 Missing application/sdp part")
        let noBody = try reject(7, RequestParts(contentType: nil, body: ""))
        #expect(noBody.statusLine == "SIP/2.0 400 Missing multipart body (SDP and rs-metadata)")
        let noMedia = try reject(
            8, RequestParts(body: recordingBody(sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")))
        #expect(noMedia.statusLine == "SIP/2.0 488 No m= line in SDP offer")
        let text = try reject(9, RequestParts(contentType: "text/plain", body: "hello"))
        #expect(text.statusLine == "SIP/2.0 415 Unsupported Media Type text/plain")
        // The legacy metadata type is accepted.
        let legacy = try reject(10, RequestParts(body: recordingBody(metadataType: "application/rs-metadata")))
        #expect(legacy.statusLine == "SIP/2.0 200 OK")
        let stats = srs.statistics
        #expect(stats.sessionsOffered == 10)
        #expect(stats.sessionsAnswered == 1)
        #expect(stats.requestsRejected == 9)
        #expect(stats.metadataPartsMissing == 2, "the SDP-only INVITE and the one without a body")
        #expect(stats.rejections["421 Extension Required"] == 2)
        #expect(stats.rejections["400 Missing rs-metadata part"] == 1)
        #expect(stats.activeSessions == 1)
    }

    @Test func malformedMultipartBodiesGet400WithTheReason() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        let sdpPart = "--\(boundary)\r\nContent-Type: application/sdp\r\n\r\n\(offerSDP)\r\n"
        let cases: [(String?, String, String)] = [
            (nil, sdpPart, "SIP/2.0 400 Bad multipart body: missing closing delimiter --\(boundary)--"),
            ("multipart/mixed", recordingBody(), "SIP/2.0 400 Bad multipart body: Content-Type has no boundary parameter"),
            (nil, "no delimiter at all\r\n", "SIP/2.0 400 Bad multipart body: no delimiter line --\(boundary)"),
            (nil, "--\(boundary)--\r\n", "SIP/2.0 400 Bad multipart body: no body parts before --\(boundary)--"),
            (nil, "--\(boundary)\r\nthis is not a header\r\n\r\nx\r\n--\(boundary)--\r\n",
             "SIP/2.0 400 Bad multipart body: part 1: 'this is not a header' is not a header line"),
            // Headers without a body are a valid part (RFC 2046 §5.1.1): an empty SDP, no metadata.
            (nil, "--\(boundary)\r\nContent-Type: application/sdp\r\n--\(boundary)--\r\n",
             "SIP/2.0 400 Missing rs-metadata part"),
            ("multipart/mixed;boundary=\"\(String(repeating: "b", count: 71))\"", recordingBody(),
             "SIP/2.0 400 Bad multipart body: no delimiter line --\(String(repeating: "b", count: 71))"),
            ("multipart/mixed;boundary=\"x", recordingBody(), "SIP/2.0 400 Bad Content-Type: unterminated quoted string"),
            (nil, "--\(boundary)\u{0}\u{1}\u{2}\r\n\u{FF}", "SIP/2.0 400 Bad multipart body: no delimiter line --\(boundary)"),
        ]
        for (index, (contentType, body, expected)) in cases.enumerated() {
            var parts = RequestParts(callID: "bad-\(index)", branch: "z9hG4bK-bad-\(index)", body: body)
            if let contentType { parts.contentType = contentType }
            let response = try answer(to: parts, srs: srs, peer: peer, loop: loop)
            #expect(response.statusLine == expected, "case \(index)")
        }
        #expect(srs.statistics.requestsRejected == cases.count)
        #expect(srs.statistics.sessionsAnswered == 0)
    }

    @Test func nonSuccessFinalIsResentOverUDPUntilItsACK() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, t1Milliseconds: 30)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(require: nil), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop, timeoutMilliseconds: 1000) { count(peer, 421, "INVITE") >= 3 })
        let tag = try #require(first(peer, 421, "INVITE").flatMap(toTag))
        // The ACK of a non-2xx final has the INVITE's branch (RFC 3261 §17.1.1.3).
        peer.send(request(RequestParts(method: "ACK", toTag: tag), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        spin(loop, timeoutMilliseconds: 50)
        let afterACK = count(peer, 421, "INVITE")
        spin(loop, timeoutMilliseconds: 400)
        #expect(count(peer, 421, "INVITE") == afterACK)
        #expect(srs.statistics.requestsRejected == 1, "resending is not rejecting again")
    }

    @Test func configuredRejectStatusAnswersEveryAcceptableInvite() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, rejectStatus: 503)
        let peer = try Peer(loop: loop)
        let response = try answer(to: RequestParts(), srs: srs, peer: peer, loop: loop)
        #expect(response.statusLine == "SIP/2.0 503 Service Unavailable")
        #expect(toTag(response) != nil)
        #expect(srs.statistics.sessionsAnswered == 0)
        #expect(srs.statistics.rejections == ["503 Service Unavailable": 1])
        #expect(srs.statistics.metadataPartsSeen == 1)
    }

    // MARK: CANCEL and timeouts

    @Test func cancelOfAPendingInviteGets200And487() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, answerDelayMilliseconds: 5000)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 100, "INVITE") == 1 })
        #expect(first(peer, 100, "INVITE")?.statusLine == "SIP/2.0 100 Trying")
        peer.send(request(RequestParts(method: "CANCEL"), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 487, "INVITE") == 1 })
        #expect(first(peer, 200, "CANCEL")?.statusLine == "SIP/2.0 200 OK")
        let terminated = try #require(first(peer, 487, "INVITE"))
        #expect(terminated.statusLine == "SIP/2.0 487 Request Terminated")
        #expect(toTag(terminated) != nil)
        #expect(toTag(terminated) == first(peer, 200, "CANCEL").flatMap(toTag))
        #expect(count(peer, 200, "INVITE") == 0)
        let stats = srs.statistics
        #expect(stats.sessionsCancelled == 1)
        #expect(stats.sessionsAnswered == 0)
        #expect(stats.activeSessions == 0)
        #expect(stats.requestsRejected == 0)
    }

    @Test func an200NeverACKedIsGivenUpAfter64T1() throws {
        let loop = try EventLoop(index: 0)
        // T1 5 ms, T2 20 ms: resends at 5, 15, 35, 55 ... ms, given up by 320 ms.
        let srs = try ReplaySRS(loop: loop, t1Milliseconds: 5, t2Milliseconds: 20)
        let peer = try Peer(loop: loop)
        peer.send(request(RequestParts(), srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop, timeoutMilliseconds: 2000) { srs.statistics.sessionsWithoutACK == 1 })
        let sent = count(peer, 200, "INVITE")
        #expect(sent >= 5 && sent <= 20, "\(sent) copies: 1 + resends every T2 after the doubling")
        spin(loop, timeoutMilliseconds: 100)
        #expect(count(peer, 200, "INVITE") == sent, "no resend after giving up")
        #expect(srs.statistics.activeSessions == 0)
        #expect(srs.statistics.peakActiveSessions == 1)
    }

    @Test func peakCountsConcurrentSessions() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        for index in 1...3 {
            peer.send(
                request(RequestParts(callID: "peak-\(index)", branch: "z9hG4bK-peak-\(index)"), srs: srs.localAddress, peerPort: peer.port),
                to: srs.localAddress)
        }
        #expect(spin(loop) { count(peer, 200, "INVITE") == 3 })
        let tags = Set(peer.responses(200, "INVITE").compactMap(toTag))
        #expect(tags.count == 3, "a To-tag per session")
        let first = peer.responses(200, "INVITE")[0]
        peer.send(
            request(
                RequestParts(method: "BYE", callID: first.value(.callID)!, cseq: 2, branch: "z9hG4bK-pb", toTag: toTag(first)),
                srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "BYE") == 1 })
        #expect(srs.statistics.activeSessions == 2)
        #expect(srs.statistics.peakActiveSessions == 3)
    }

    @Test func unreadableDatagramsAreCountedAndBrokenRequestsGet400() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop)
        let peer = try Peer(loop: loop)
        peer.send("\u{1}\u{2} not SIP at all", to: srs.localAddress)
        var noCallID = request(RequestParts(method: "OPTIONS", branch: "z9hG4bK-nocid"), srs: srs.localAddress, peerPort: peer.port)
        noCallID = noCallID.replacingOccurrences(of: "Call-ID: rs-1@127.0.0.1\r\n", with: "")
        peer.send(noCallID, to: srs.localAddress)
        #expect(spin(loop) { peer.received.count == 1 && srs.statistics.unreadableMessages == 1 })
        #expect(peer.received.first?.statusLine == "SIP/2.0 400 Missing Call-ID header")
    }

    // MARK: TCP

    @Test func sessionOverTCPOnTheSamePort() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, tcp: true, t1Milliseconds: 40)
        #expect(srs.listensOnTCP)
        #expect(srs.uri(transport: .tcp) == "sip:srs@\(srs.localAddress);transport=tcp")
        let peer = try Peer(loop: loop)
        peer.connect(to: srs.localAddress)
        #expect(spin(loop) { peer.connection?.localAddress != nil })
        let tcp = RequestParts(transport: "TCP")
        peer.send(request(tcp, srs: srs.localAddress, peerPort: peer.port), to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "INVITE") == 1 })
        let ok = try #require(first(peer, 200, "INVITE"))
        #expect(ok.statusLine == "SIP/2.0 200 OK")
        #expect(ok.value(.contact) == "<sip:srs@\(srs.localAddress);transport=tcp>")
        #expect(lines(ok.bodyText).contains("m=audio 39000 RTP/AVP 0 8 101"))
        let tag = try #require(toTag(ok))
        peer.send(
            request(RequestParts(method: "ACK", branch: "z9hG4bK-tack", toTag: tag, transport: "TCP"), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        peer.send(
            request(RequestParts(method: "BYE", cseq: 2, branch: "z9hG4bK-tbye", toTag: tag, transport: "TCP"), srs: srs.localAddress, peerPort: peer.port),
            to: srs.localAddress)
        #expect(spin(loop) { count(peer, 200, "BYE") == 1 })
        spin(loop, timeoutMilliseconds: 150)
        #expect(count(peer, 200, "INVITE") == 1, "the ACK arrived before any resend")
        #expect(srs.statistics.sessionsEndedByBye == 1)
        #expect(srs.statistics.activeSessions == 0)
        #expect(!peer.closed)
        srs.close()
    }

    @Test func tcpListenerOnAGivenPortAndUDPStillAnswered() throws {
        let loop = try EventLoop(index: 0)
        let srs = try ReplaySRS(loop: loop, tcp: true)
        let udpPeer = try Peer(loop: loop)
        udpPeer.send(request(RequestParts(), srs: srs.localAddress, peerPort: udpPeer.port), to: srs.localAddress)
        #expect(spin(loop) { count(udpPeer, 200, "INVITE") == 1 })
        #expect(first(udpPeer, 200, "INVITE")?.value(.contact) == "<sip:srs@\(srs.localAddress)>")
    }

    // MARK: SDP answers and statistics rendering

    @Test func sdpAnswerKeepsPortZeroAndRejectsBadOffers() throws {
        let offer = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=video 5000 RTP/SAVP 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:98 VP8/90000\r\n"
        let answer = try ReplaySRS.sdpAnswer(offer: offer, sessionID: 7, version: 3, mediaPortBase: 40000).get()
        #expect(lines(answer) == [
            "v=0", "o=replay-srs 7 3 IN IP4 127.0.0.1", "s=replay-srs", "c=IN IP4 127.0.0.1", "t=0 0",
            "m=audio 0 RTP/AVP 0", "a=recvonly", "m=video 40002 RTP/SAVP 96 97", "a=recvonly", "a=rtpmap:96 H264/90000",
        ])
        #expect(throws: ReplaySRS.SDPProblem.self) {
            try ReplaySRS.sdpAnswer(offer: "m=audio 1 RTP/AVP 0\r\n", sessionID: 1, version: 1, mediaPortBase: 40000).get()
        }
        #expect(throws: ReplaySRS.SDPProblem.self) {
            try ReplaySRS.sdpAnswer(offer: "v=0\r\nm=audio x RTP/AVP 0\r\n", sessionID: 1, version: 1, mediaPortBase: 40000).get()
        }
    }

    @Test func statisticsRenderAsTableAndJSON() throws {
        var stats = SRSStatistics()
        stats.sessionsOffered = 5
        stats.sessionsAnswered = 3
        stats.requestsRejected = 2
        stats.rejections = ["421 Extension Required": 1, "400 Missing \"x\" part": 1]
        stats.peakActiveSessions = 2
        let table = stats.tableLines()
        #expect(table.count == 17)
        #expect(table.first?.hasPrefix("sessions offered  ") == true && table.first?.hasSuffix(" 5") == true)
        #expect(table.contains { $0.hasPrefix("peak active sessions ") && $0.hasSuffix(" 2") })
        // One value column.
        #expect(Set(table.map { $0.count - ($0.split(separator: " ").last?.count ?? 0) }).count == 1)
        #expect(table.suffix(2).map { $0.hasPrefix("  rejected 400 Missing \"x\" part ") } == [true, false])
        #expect(table.last?.hasPrefix("  rejected 421 Extension Required  ") == true)
        let json = stats.renderJSON()
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(decoded["sessionsOffered"] as? Int == 5)
        #expect(decoded["peakActiveSessions"] as? Int == 2)
        #expect((decoded["rejections"] as? [String: Int]) == stats.rejections)
        #expect(json.hasPrefix("{\n  \"sessionsOffered\": 5,\n  \"sessionsAnswered\": 3,"))
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(stats)) as? [String: Any]
        #expect(encoded?["requestsRejected"] as? Int == 2)
        #expect(stats.jsonObject["sessionsAnswered"] as? Int == 3)
        #expect(stats.jsonObject["rejections"] as? [String: Int] == stats.rejections)
    }
}
