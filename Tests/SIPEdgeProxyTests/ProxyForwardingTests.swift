import Glibc
import Logging
import Synchronization
import Testing
import SIPDialog
import SIPEdgeConfig
@testable import SIPEdgeProxy

/// A proxy on loopback between a caller and a callee played by raw UDP sockets.
final class ProxyFixture {
    enum Upstream { case callee, proxyItself, none }

    let caller: UDPPeer
    let callee: UDPPeer
    let proxyPort: UInt16
    let server: ProxyServer
    let events = EventLog()
    /// How the peers write the loopback address in URIs and Vias.
    let host: String

    init(
        t1Milliseconds: Int = 500, workers: Int = 2, upstream: Upstream = .callee, ipv6: Bool = false,
        configure: (inout ProxyConfiguration) -> Void = { _ in }
    ) throws {
        caller = UDPPeer(ipv6: ipv6)
        callee = UDPPeer(ipv6: ipv6)
        host = ipv6 ? "[::1]" : "127.0.0.1"
        proxyPort = UDPPeer(ipv6: ipv6).port
        var configuration = ProxyConfiguration()
        configuration.listen = [ListenAddress(transport: .udp, host: ipv6 ? "::1" : "127.0.0.1", port: proxyPort)]
        switch upstream {
        case .callee: configuration.upstream = try UpstreamTarget(parsing: "sip:\(host):\(callee.port)")
        case .proxyItself: configuration.upstream = try UpstreamTarget(parsing: "sip:\(host):\(proxyPort)")
        case .none: configuration.upstream = nil
        }
        configuration.workers = workers
        configuration.t1Milliseconds = t1Milliseconds
        configuration.t2Milliseconds = max(4000, t1Milliseconds)
        configure(&configuration)
        let events = self.events
        server = try ProxyServer(
            configuration: configuration,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            dialogObserver: { snapshot, event in
                events.append("\(snapshot.id.callID) \(event)")
            })
        try server.start()
    }

    deinit { server.stop() }

    /// Waits until `condition` holds or `milliseconds` pass, draining the callee meanwhile.
    func wait(upToMilliseconds milliseconds: Int, until condition: () -> Bool) {
        var waited = 0
        while !condition(), waited < milliseconds {
            _ = callee.receive(timeoutMilliseconds: 20)
            waited += 20
        }
    }

    /// A counter from the running proxy.
    func counter(_ name: String) -> Int? {
        server.countersSnapshot().first { $0.0 == name }?.1
    }

    func invite(
        callID: String, branch: String = "z9hG4bKcaller1", maxForwards: Int = 70, cseq: Int = 1,
        requestURIHost: String? = nil
    ) -> String {
        """
        INVITE sip:bob@\(requestURIHost ?? host):\(callee.port) SIP/2.0\r
        Via: SIP/2.0/UDP \(host):\(caller.port);branch=\(branch);rport\r
        Max-Forwards: \(maxForwards)\r
        From: "Alice" <sip:alice@127.0.0.1>;tag=alice1\r
        To: <sip:bob@127.0.0.1>\r
        Call-ID: \(callID)\r
        CSeq: \(cseq) INVITE\r
        Contact: <sip:alice@\(host):\(caller.port)>\r
        Content-Type: application/sdp\r
        Content-Length: 4\r
        \r
        v=0\n
        """
    }

    /// A request from the caller after the INVITE: an in-dialog one (`toTag` set, `routed` adds
    /// the Route to the proxy), the ACK of a non-2xx (same branch as the INVITE), or a CANCEL.
    func callerRequest(
        _ method: String, callID: String, cseq: Int = 1, branch: String, toTag: String? = "bob1", routed: Bool = false
    ) -> String {
        var lines = [
            "\(method) sip:bob@\(host):\(callee.port) SIP/2.0",
            "Via: SIP/2.0/UDP \(host):\(caller.port);branch=\(branch);rport",
        ]
        if routed { lines.append("Route: <sip:\(host):\(proxyPort);lr>") }
        lines += [
            "Max-Forwards: 70", "From: \"Alice\" <sip:alice@\(host)>;tag=alice1",
            "To: <sip:bob@\(host)>" + (toTag.map { ";tag=\($0)" } ?? ""), "Call-ID: \(callID)",
            "CSeq: \(cseq) \(method)", "Content-Length: 0",
        ]
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// A response from the callee to `request` as the proxy forwarded it.
    func response(_ status: String, to forwarded: String, toTag: String? = "bob1", contact: Bool = true) -> String {
        let request = TextMessage(forwarded)
        var lines = ["SIP/2.0 \(status)"]
        for via in request.values("Via") { lines.append("Via: \(via)") }
        for route in request.values("Record-Route") { lines.append("Record-Route: \(route)") }
        lines.append("From: \(request.value("From")!)")
        lines.append("To: \(request.value("To")!)" + (toTag.map { ";tag=\($0)" } ?? ""))
        lines.append("Call-ID: \(request.value("Call-ID")!)")
        lines.append("CSeq: \(request.value("CSeq")!)")
        if contact { lines.append("Contact: <sip:bob@\(host):\(callee.port)>") }
        lines.append("Content-Length: 0")
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }
}

/// Dialog events as the observer saw them, from any worker thread.
final class EventLog: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ entry: String) { storage.withLock { $0.append(entry) } }
    var entries: [String] { storage.withLock { $0 } }
}


@Suite("Proxy forwarding over UDP", .serialized)
struct ProxyForwardingTests {
    @Test func inviteGetsTryingAndIsForwardedWithViaRecordRouteAndMaxForwards() throws {
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "fwd-1"), toPort: fixture.proxyPort)

        let trying = try #require(fixture.caller.receive(startingWith: "SIP/2.0 100"))
        #expect(trying == """
            SIP/2.0 100 Trying\r
            Via: SIP/2.0/UDP 127.0.0.1:\(fixture.caller.port);branch=z9hG4bKcaller1;rport\r
            From: "Alice" <sip:alice@127.0.0.1>;tag=alice1\r
            To: <sip:bob@127.0.0.1>\r
            Call-ID: fwd-1\r
            CSeq: 1 INVITE\r
            Content-Length: 0\r
            \r

            """)

        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        let message = TextMessage(forwarded)
        #expect(message.startLine == "INVITE sip:bob@127.0.0.1:\(fixture.callee.port) SIP/2.0")
        #expect(message.values("Record-Route") == ["<sip:127.0.0.1:\(fixture.proxyPort);lr>"])
        let vias = message.values("Via")
        #expect(vias.count == 2)
        #expect(vias[0].hasPrefix("SIP/2.0/UDP 127.0.0.1:\(fixture.proxyPort);branch=z9hG4bK"))
        #expect(vias[0].count == "SIP/2.0/UDP 127.0.0.1:\(fixture.proxyPort);branch=".count + 40)
        #expect(vias[1] == "SIP/2.0/UDP 127.0.0.1:\(fixture.caller.port);branch=z9hG4bKcaller1;rport=\(fixture.caller.port);received=127.0.0.1")
        #expect(message.value("Max-Forwards") == "69")
        #expect(forwarded.hasSuffix("\r\n\r\nv=0\n"))
        #expect(message.value("Content-Length") == "4")
    }

    @Test func responsesComeBackWithoutOurViaAndTheCallCompletes() throws {
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "fwd-2"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("180 Ringing", to: forwarded), toPort: fixture.proxyPort)
        let ringing = try #require(fixture.caller.receive(startingWith: "SIP/2.0 180"))
        #expect(TextMessage(ringing).values("Via") == [
            "SIP/2.0/UDP 127.0.0.1:\(fixture.caller.port);branch=z9hG4bKcaller1;rport=\(fixture.caller.port);received=127.0.0.1"
        ])
        #expect(TextMessage(ringing).values("Record-Route") == ["<sip:127.0.0.1:\(fixture.proxyPort);lr>"])
        fixture.callee.send(fixture.response("200 OK", to: forwarded), toPort: fixture.proxyPort)
        let ok = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        #expect(TextMessage(ok).value("To") == "<sip:bob@127.0.0.1>;tag=bob1")

        // ACK and BYE follow the route set: Route to the proxy, Request-URI the callee's Contact.
        fixture.caller.send(
            fixture.callerRequest("ACK", callID: "fwd-2", branch: "z9hG4bKack1", routed: true), toPort: fixture.proxyPort)
        let ack = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(TextMessage(ack).values("Route") == [])
        #expect(TextMessage(ack).values("Via").count == 2)
        fixture.caller.send(
            fixture.callerRequest("BYE", callID: "fwd-2", cseq: 2, branch: "z9hG4bKbye1", routed: true),
            toPort: fixture.proxyPort)
        let bye = try #require(fixture.callee.receive(startingWith: "BYE"))
        fixture.callee.send(fixture.response("200 OK", to: bye, toTag: nil, contact: false), toPort: fixture.proxyPort)
        let byeOK = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        #expect(TextMessage(byeOK).value("CSeq") == "2 BYE")
        let events = fixture.events.entries
        #expect(events == ["fwd-2 early", "fwd-2 confirmed", "fwd-2 terminated(SIPDialog.DialogTerminationReason.byeFromCaller)"])
    }

    @Test func nothingIsLeftBehindOnceTheTransactionsEnd() throws {
        // T1 = 20 ms and T4 = 100 ms: Timers D, I, K, L and M (the longest, 64·T1) end within 1.3 s.
        let fixture = try ProxyFixture(t1Milliseconds: 20) { $0.t4Milliseconds = 100 }
        fixture.caller.send(fixture.invite(callID: "clean-1"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("486 Busy Here", to: forwarded), toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 486"))
        _ = try #require(fixture.callee.receive(startingWith: "ACK"))
        fixture.caller.send(fixture.callerRequest("ACK", callID: "clean-1", branch: "z9hG4bKcaller1"), toPort: fixture.proxyPort)
        fixture.wait(upToMilliseconds: 1000) { fixture.counter("acks_absorbed") == 1 }
        #expect(fixture.counter("acks_absorbed") == 1)
        fixture.wait(upToMilliseconds: 4000) {
            fixture.counter("active_server_transactions") == 0 && fixture.counter("active_client_transactions") == 0
        }
        #expect(fixture.counter("active_server_transactions") == 0)
        #expect(fixture.counter("active_client_transactions") == 0)
        #expect(fixture.counter("active_dialogs") == 0)
        // Only the timers of finished transactions and dialogs were due; all were cancelled.
        #expect(fixture.counter("pending_timers") == 0)
    }

    @Test func ackOfA2xxIsForwardedEvenWithTheInvitesBranch() throws {
        // Some user agents reuse the INVITE's branch for the ACK of a 2xx; it must still reach
        // the callee (RFC 6026: the Accepted state passes it on instead of absorbing it).
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "fwd-ack"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("200 OK", to: forwarded), toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        fixture.caller.send(
            fixture.callerRequest("ACK", callID: "fwd-ack", branch: "z9hG4bKcaller1", routed: true), toPort: fixture.proxyPort)
        let ack = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(TextMessage(ack).value("CSeq") == "1 ACK")
        #expect(fixture.counter("acks_absorbed") == 0)
    }

    @Test func retransmittedInviteIsAbsorbedAndAnsweredAgain() throws {
        let fixture = try ProxyFixture()
        let invite = fixture.invite(callID: "fwd-3")
        fixture.caller.send(invite, toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 100"))
        _ = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.caller.send(invite, toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 100"))
        #expect(fixture.callee.receive(timeoutMilliseconds: 300) == nil)
    }

    @Test func everyRetransmissionOfA2xxGoesUpstreamAndARetransmittedInviteIsAbsorbed() throws {
        // Under loss the callee's own 200 retransmissions are the caller's only way to get a lost
        // 200: each goes up unchanged (§16.7), while a retransmitted INVITE in Accepted is absorbed
        // (RFC 6026 §7.1): neither answered nor forwarded.
        let fixture = try ProxyFixture()
        let invite = fixture.invite(callID: "fwd-2xx-again")
        fixture.caller.send(invite, toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 100"))
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        let ok = fixture.response("200 OK", to: forwarded)
        fixture.callee.send(ok, toPort: fixture.proxyPort)
        let first = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        for _ in 0..<2 {
            fixture.callee.send(ok, toPort: fixture.proxyPort)
            #expect(fixture.caller.receive(startingWith: "SIP/2.0 200") == first)
        }
        fixture.caller.send(invite, toPort: fixture.proxyPort)
        #expect(fixture.caller.receive(timeoutMilliseconds: 300) == nil)
        #expect(fixture.callee.receive(timeoutMilliseconds: 100) == nil)
    }

    @Test func maxForwardsZeroIsAnswered483() throws {
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "fwd-4", maxForwards: 0), toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 483"))
        #expect(TextMessage(response).startLine == "SIP/2.0 483 Too Many Hops")
        #expect(TextMessage(response).value("To")?.hasPrefix("<sip:bob@127.0.0.1>;tag=") == true)
        #expect(fixture.callee.receive(timeoutMilliseconds: 200) == nil)
    }

    @Test func requestLoopingBackIsAnswered482() throws {
        let fixture = try ProxyFixture(upstream: .proxyItself)
        fixture.caller.send(fixture.invite(callID: "fwd-5"), toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 482"))
        #expect(TextMessage(response).startLine == "SIP/2.0 482 Loop Detected")
    }

    @Test func missingCallIDIsAnswered400NamingIt() throws {
        let fixture = try ProxyFixture()
        let invite = fixture.invite(callID: "x").replacingFirst("Call-ID: x\r\n", with: "")
        fixture.caller.send(invite, toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 400"))
        #expect(TextMessage(response).startLine == "SIP/2.0 400 Missing Call-ID header")
        #expect(TextMessage(response).value("CSeq") == "1 INVITE")
    }

    @Test func silentNextHopGives408AfterTimerB() throws {
        let fixture = try ProxyFixture(t1Milliseconds: 20)
        fixture.caller.send(fixture.invite(callID: "fwd-6"), toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 100"))
        // Timer A retransmits at 20, 40, 80 ... ms until Timer B (64·T1 = 1.28 s).
        var retransmissions = 0
        while fixture.callee.receive(timeoutMilliseconds: 400) != nil { retransmissions += 1 }
        #expect(retransmissions >= 5)
        let timeout = try #require(fixture.caller.receive(startingWith: "SIP/2.0 408", timeoutMilliseconds: 3000))
        #expect(TextMessage(timeout).startLine == "SIP/2.0 408 Request Timeout")
    }

    @Test func cancelBeforeAnswerIsRelayedAndThe487ComesBack() throws {
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "fwd-7"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("180 Ringing", to: forwarded), toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 180"))
        fixture.caller.send(
            fixture.callerRequest("CANCEL", callID: "fwd-7", branch: "z9hG4bKcaller1", toTag: nil), toPort: fixture.proxyPort)
        let cancelOK = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        #expect(TextMessage(cancelOK).value("CSeq") == "1 CANCEL")
        let cancel = try #require(fixture.callee.receive(startingWith: "CANCEL"))
        #expect(TextMessage(cancel).value("Via") == TextMessage(forwarded).values("Via").first)
        #expect(TextMessage(cancel).value("CSeq") == "1 CANCEL")
        fixture.callee.send(fixture.response("200 OK", to: cancel, toTag: nil, contact: false), toPort: fixture.proxyPort)
        fixture.callee.send(fixture.response("487 Request Terminated", to: forwarded), toPort: fixture.proxyPort)
        let ack = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(TextMessage(ack).value("CSeq") == "1 ACK")
        #expect(TextMessage(ack).value("To") == "<sip:bob@127.0.0.1>;tag=bob1")
        let terminated = try #require(fixture.caller.receive(startingWith: "SIP/2.0 487"))
        #expect(TextMessage(terminated).value("CSeq") == "1 INVITE")
        let events = fixture.events.entries
        #expect(events.last == "fwd-7 terminated(SIPDialog.DialogTerminationReason.cancelled)")
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }
}
