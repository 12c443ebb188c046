import Testing
@testable import SIPMessage

private let invite = """
    INVITE sip:bob@biloxi.example.com SIP/2.0\r
    Via: SIP/2.0/UDP pc33.atlanta.example.com:5061;branch=z9hG4bK776asdhds;rport\r
    v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKfirst , SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKsecond;received=192.0.2.9\r
    Max-Forwards: 70\r
    To: Bob <sip:bob@biloxi.example.com>\r
    f: "Alice, \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774\r
    i: a84b4c76e66710@pc33.atlanta.example.com\r
    CSeq: 314159 INVITE\r
    Contact: <sip:alice@pc33.atlanta.example.com>\r
    Route: <sip:127.0.0.1:5060;lr>, <sip:p2.example.com;lr;transport=tcp>\r
    Subject: folded\r
     value\r
    Content-Type: application/sdp\r
    l: 4\r
    \r
    v=0\n
    """

@Suite("SIPMessage")
struct SIPMessageTests {
    @Test func startLineAndHeaders() throws {
        let message = try SIPMessage(parsing: invite)
        #expect(message.isRequest)
        #expect(message.method == .invite)
        #expect(message.text(message.requestURIRange) == "sip:bob@biloxi.example.com")
        #expect(message.text(message.callID!) == "a84b4c76e66710@pc33.atlanta.example.com")
        #expect(message.cseq?.number == 314159)
        #expect(message.cseq?.method == .invite)
        #expect(message.maxForwards == .value(70))
        #expect(message.text(message.fromTag!) == "1928301774")
        #expect(message.toTag == nil)
        #expect(message.contentLength == 4)
        #expect(message.text(message.bodyRange) == "v=0\n")
        #expect(message.headerValue(.subject) == "folded value")
    }

    @Test func viaElementsAcrossHeadersAndCompactForms() throws {
        let message = try SIPMessage(parsing: invite)
        var vias: [String] = []
        var branches: [String] = []
        message.forEachVia { via in
            vias.append(message.text(via.hostRange) + ":" + (via.port.map(String.init) ?? "-") + "/" + message.text(via.transportRange))
            branches.append(message.text(via.branchRange!))
            return true
        }
        #expect(vias == ["pc33.atlanta.example.com:5061/UDP", "10.0.0.1:-/TCP", "2001:db8::1:5070/UDP"])
        #expect(branches == ["z9hG4bK776asdhds", "z9hG4bKfirst", "z9hG4bKsecond"])
        let top = try #require(message.topVia)
        #expect(top.rportParameterRange.map(message.text) == "rport")
        #expect(top.rport == nil)
    }

    @Test func quotedDisplayNameWithCommaIsOneElement() throws {
        let message = try SIPMessage(parsing: invite)
        let from = try #require(message.from)
        #expect(message.text(from.uriRange) == "sip:alice@atlanta.example.com")
    }

    @Test func uriParts() throws {
        let message = try SIPMessage(parsing: invite)
        var routes: [URIParts] = []
        message.forEachValue(.route) { element in
            routes.append(message.uri(message.nameAddress(element)!.uriRange)!)
            return true
        }
        #expect(routes.count == 2)
        #expect(message.text(routes[0].hostRange) == "127.0.0.1")
        #expect(routes[0].port == 5060)
        #expect(routes[0].isLooseRouting)
        #expect(routes[1].transportRange.map(message.text) == "tcp")
        let requestURI = try #require(message.requestURI)
        #expect(requestURI.userRange.map(message.text) == "bob")
        #expect(message.text(requestURI.hostRange) == "biloxi.example.com")
    }

    @Test func responseStatusLine() throws {
        let message = try SIPMessage(
            parsing: "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
        #expect(!message.isRequest)
        #expect(message.statusCode == 486)
        #expect(message.text(message.reasonRange) == "Busy Here")
        #expect(message.text(message.toTag!) == "2")
        _ = try message.routingHeaders()
    }

    @Test(arguments: [
        ("Call-ID", "Missing Call-ID header"), ("From", "Missing From header"), ("To", "Missing To header"),
        ("CSeq", "Missing CSeq header"),
    ])
    func missingMandatoryHeaderNamesIt(header: String, reason: String) throws {
        let lines = [
            "OPTIONS sip:a@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1",
            "From: <sip:x@y>;tag=1", "To: <sip:a@127.0.0.1>", "Call-ID: abc", "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ].filter { !$0.hasPrefix(header + ":") }
        let message = try SIPMessage(parsing: lines.joined(separator: "\r\n") + "\r\n\r\n")
        let error = #expect(throws: SIPParseError.self) { _ = try message.routingHeaders() }
        #expect(error?.reasonPhrase == reason)
        #expect(error?.statusCode == 400)
        #expect(error?.partial != nil)
    }

    @Test func cseqMethodMismatchIsRejected() throws {
        let message = try SIPMessage(
            parsing: "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        let error = #expect(throws: SIPParseError.self) { _ = try message.routingHeaders() }
        #expect(error?.reasonPhrase == "CSeq method does not match")
    }

    @Test func badContentLengthKeepsHeadersForA400() throws {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: abc\r\n\r\n"
        let error = #expect(throws: SIPParseError.self) { try SIPMessage(parsing: text) }
        #expect(error?.reasonPhrase == "Bad Content-Length")
        let partial = try #require(error?.partial)
        let response = String(decoding: partial.makeResponse(statusCode: 400, reasonPhrase: error!.reasonPhrase, toTag: "t1"), as: UTF8.self)
        #expect(response == "SIP/2.0 400 Bad Content-Length\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=t1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func bodyShorterThanContentLength() throws {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 50\r\n\r\nshort"
        let error = #expect(throws: SIPParseError.self) { try SIPMessage(parsing: text) }
        #expect(error?.reasonPhrase == "Body shorter than Content-Length")
        #expect(error?.partial != nil)
    }

    @Test func editorAppliesEditsInOrder() throws {
        let message = try SIPMessage(parsing: "OPTIONS sip:a@b SIP/2.0\r\nVia: v1\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        var editor = MessageEditor(message)
        let via = try #require(message.firstHeader(.via))
        editor.insert(Array("Via: mine\r\n".utf8), at: via.lineRange.offset)
        editor.replace(message.firstHeader(.maxForwards)!.valueRange, with: Array("69".utf8))
        editor.insert(Array("X-A: 1\r\n".utf8), at: via.lineRange.offset)
        #expect(String(decoding: editor.render(), as: UTF8.self)
            == "OPTIONS sip:a@b SIP/2.0\r\nVia: mine\r\nX-A: 1\r\nVia: v1\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func cancelAndAckFollowRFC3261() throws {
        let forwarded = try SIPMessage(
            parsing: "INVITE sip:bob@10.0.0.2:5080 SIP/2.0\r\nRecord-Route: <sip:p;lr>\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours\r\nVia: SIP/2.0/UDP c;branch=z9hG4bKtheirs\r\nRoute: <sip:r1;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:bob@x>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
        let cancel = String(decoding: try #require(forwarded.makeCANCEL()), as: UTF8.self)
        #expect(cancel == "CANCEL sip:bob@10.0.0.2:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours\r\nRoute: <sip:r1;lr>\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:bob@x>\r\nCall-ID: cid\r\nCSeq: 7 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        let busy = try SIPMessage(
            parsing: "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours\r\nVia: SIP/2.0/UDP c;branch=z9hG4bKtheirs\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:bob@x>;tag=callee\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
        let ack = String(decoding: try #require(forwarded.makeACK(for: busy)), as: UTF8.self)
        #expect(ack == "ACK sip:bob@10.0.0.2:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours\r\nRoute: <sip:r1;lr>\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:bob@x>;tag=callee\r\nCall-ID: cid\r\nCSeq: 7 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func hundredTryingHasNoToTag() throws {
        let message = try SIPMessage(parsing: invite)
        let trying = String(decoding: message.makeResponse(statusCode: 100, reasonPhrase: "Trying", toTag: "x"), as: UTF8.self)
        #expect(trying.contains("To: Bob <sip:bob@biloxi.example.com>\r\n"))
        #expect(trying.hasPrefix("SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com:5061;branch=z9hG4bK776asdhds;rport\r\nv: SIP/2.0/TCP"))
    }

    @Test("header counts around the first scan's stack buffer and the limit", arguments: [47, 48, 49, 127, 128, 129])
    func headerCountsAroundTheScanBuffer(count: Int) throws {
        let filler = (0..<(count - 2)).map { "X-Filler-\($0): x\r\n" }.joined()
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + filler + "Content-Length: 0\r\n\r\n"
        if count <= ScanLimits().maxHeaders {
            let message = try SIPMessage(parsing: text)
            #expect(message.headerCount == count)
            #expect(message.headerValue(.contentLength) == "0")
        } else {
            #expect(throws: SIPParseError.self) { try SIPMessage(parsing: text) }
            do {
                _ = try SIPMessage(parsing: text)
            } catch {
                #expect(error.code == .tooManyHeaders)
            }
        }
    }

    @Test func bodyBytesComeAsReceived() throws {
        let body = "v=0\r\n s=folded?\r\nm=audio 4000 RTP/AVP 0\r\n"
        let text = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Type: Application/SDP;x=1\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        let message = try SIPMessage(parsing: text)
        #expect(message.bytes(message.bodyRange) == Array(body.utf8), "no unfolding inside a body")
        #expect(message.text(message.bodyRange) != body, "text unfolds what looks like a continuation line")
        let type = try #require(message.firstHeader(.contentType)).valueRange
        #expect(message.hasPrefixIgnoringCase(type, "application/sdp"))
        #expect(message.hasPrefixIgnoringCase(type, "APPLICATION/SDP;X=1"))
        #expect(!message.hasPrefixIgnoringCase(type, "application/sdp;x=12"), "longer than the value")
        #expect(!message.hasPrefixIgnoringCase(type, "application/sdq"))
    }

    @Test func headerLookupWorksPastTheFirstIndexTable() throws {
        let filler = (0..<300).map { "X-Filler-\($0): x\r\n" }.joined()
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + filler
            + "Subject: late\r\nSubject: later\r\nContent-Length: 0\r\n\r\n"
        let message = try SIPMessage(parsing: text, limits: ScanLimits(maxHeaders: 400))
        #expect(message.headerCount == 304)
        #expect(message.headerValue(.subject) == "late")
        var subjects: [String] = []
        message.forEachHeader(.subject) { header in
            subjects.append(message.text(header.valueRange))
            return true
        }
        #expect(subjects == ["late", "later"])
        #expect(message.headerValue(.via) == "SIP/2.0/UDP h;branch=z9hG4bK1")
        #expect(message.firstHeader(.callID) == nil)
    }

    @Test func outOfRangePortsAreNotPorts() throws {
        let message = try SIPMessage(
            parsing: "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKa;rport=99999\r\nVia: SIP/2.0/UDP h:70000;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
        var vias: [Via] = []
        message.forEachVia { via in
            vias.append(via)
            return true
        }
        #expect(vias.count == 1)  // "h:70000" is not a sent-by
        #expect(vias.first?.rport == nil)
        #expect(vias.first?.rportParameterRange != nil)
    }

    @Test func overlappingEditsRemoveTheOverlapOnceInsteadOfTrapping() throws {
        let message = try SIPMessage(parsing: "OPTIONS sip:a@b SIP/2.0\r\nX-A: 123456789\r\nContent-Length: 0\r\n\r\n")
        let value = try #require(message.firstHeader(named: "X-A")).valueRange
        var editor = MessageEditor(message)
        editor.remove(ByteRange(offset: value.offset, count: 5))  // "12345"
        editor.replace(ByteRange(offset: value.offset + 3, count: 4), with: Array("ab".utf8))  // "4567" overlaps
        #expect(String(decoding: editor.render(), as: UTF8.self)
            == "OPTIONS sip:a@b SIP/2.0\r\nX-A: ab89\r\nContent-Length: 0\r\n\r\n")
    }
}
