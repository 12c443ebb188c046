import Testing
import SIPEdgeConfig
@testable import SIPEdgeProxy

@Suite("Proxy routing, IPv6, dialog expiry and counters", .serialized)
struct ProxyRoutingTests {
    @Test func ipv6ListenAndUpstream() throws {
        let fixture = try ProxyFixture(ipv6: true)
        fixture.caller.send(fixture.invite(callID: "v6-1"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        let message = TextMessage(forwarded)
        #expect(message.values("Record-Route") == ["<sip:[::1]:\(fixture.proxyPort);lr>"])
        #expect(message.values("Via").first?.hasPrefix("SIP/2.0/UDP [::1]:\(fixture.proxyPort);branch=z9hG4bK") == true)
        #expect(message.values("Via").last == "SIP/2.0/UDP [::1]:\(fixture.caller.port);branch=z9hG4bKcaller1;rport=\(fixture.caller.port);received=::1")
        fixture.callee.send(fixture.response("486 Busy Here", to: forwarded), toPort: fixture.proxyPort)
        let busy = try #require(fixture.caller.receive(startingWith: "SIP/2.0 486"))
        #expect(TextMessage(busy).value("CSeq") == "1 INVITE")
        let ack = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(TextMessage(ack).startLine == "ACK sip:bob@[::1]:\(fixture.callee.port) SIP/2.0")
    }

    @Test func withoutUpstreamTheRequestURINameIsResolved() throws {
        let fixture = try ProxyFixture(upstream: .none)
        fixture.caller.send(fixture.invite(callID: "dns-1", requestURIHost: "localhost"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        #expect(TextMessage(forwarded).startLine == "INVITE sip:bob@localhost:\(fixture.callee.port) SIP/2.0")
    }

    @Test func unknownNameGets503() throws {
        let fixture = try ProxyFixture(upstream: .none)
        fixture.caller.send(
            fixture.invite(callID: "dns-2", requestURIHost: "no-such-host.invalid"), toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 503", timeoutMilliseconds: 8000))
        #expect(TextMessage(response).startLine == "SIP/2.0 503 Next Hop Unresolvable")
    }

    @Test func requestForTheProxyItselfIsAnswered() throws {
        let fixture = try ProxyFixture(upstream: .none)
        fixture.caller.send(
            """
            OPTIONS sip:127.0.0.1:\(fixture.proxyPort) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(fixture.caller.port);branch=z9hG4bKping\r
            Max-Forwards: 70\r
            From: <sip:monitor@127.0.0.1>;tag=m1\r
            To: <sip:127.0.0.1:\(fixture.proxyPort)>\r
            Call-ID: ping-1\r
            CSeq: 1 OPTIONS\r
            Content-Length: 0\r
            \r

            """, toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0"))
        #expect(TextMessage(response).startLine == "SIP/2.0 200 OK")
    }

    /// An in-dialog BYE from the caller with the given Request-URI and Route lines.
    private func bye(_ fixture: ProxyFixture, requestURI: String, routes: [String]) -> String {
        var lines = [
            "BYE \(requestURI) SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:\(fixture.caller.port);branch=z9hG4bKroute\(routes.count)",
        ]
        lines += routes.map { "Route: \($0)" }
        lines += [
            "Max-Forwards: 70", "From: <sip:alice@127.0.0.1>;tag=a1", "To: <sip:bob@127.0.0.1>;tag=b1",
            "Call-ID: route-\(routes.count)-\(requestURI.count)", "CSeq: 2 BYE", "Content-Length: 0",
        ]
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    @Test func ourEntryLeavesAMultiValueRouteAndTheNextEntryIsTheNextHop() throws {
        let fixture = try ProxyFixture(upstream: .none)
        let next = "<sip:127.0.0.1:\(fixture.callee.port);lr>"
        fixture.caller.send(
            bye(fixture, requestURI: "sip:bob@192.0.2.7:5060", routes: ["<sip:127.0.0.1:\(fixture.proxyPort);lr>, \(next)"]),
            toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "BYE"))
        #expect(TextMessage(forwarded).startLine == "BYE sip:bob@192.0.2.7:5060 SIP/2.0")
        #expect(TextMessage(forwarded).values("Route") == [next])
    }

    @Test func afterAStrictRouterTheLastRouteBecomesTheRequestURI() throws {
        // RFC 3261 §16.4: the previous hop put our Record-Route URI in the Request-URI.
        let fixture = try ProxyFixture(upstream: .none)
        let target = "sip:bob@127.0.0.1:\(fixture.callee.port)"
        fixture.caller.send(
            bye(fixture, requestURI: "sip:127.0.0.1:\(fixture.proxyPort);lr", routes: ["<\(target)>"]),
            toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "BYE"))
        #expect(TextMessage(forwarded).startLine == "BYE \(target) SIP/2.0")
        #expect(TextMessage(forwarded).values("Route") == [])
    }

    @Test func strictRoutingWithMoreRoutesKeepsTheMiddleOnes() throws {
        let fixture = try ProxyFixture(upstream: .none)
        let middle = "<sip:127.0.0.1:\(fixture.callee.port);lr>"
        fixture.caller.send(
            bye(fixture, requestURI: "sip:127.0.0.1:\(fixture.proxyPort)", routes: ["\(middle), <sip:carol@192.0.2.9>"]),
            toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "BYE"))
        #expect(TextMessage(forwarded).startLine == "BYE sip:carol@192.0.2.9 SIP/2.0")
        #expect(TextMessage(forwarded).values("Route") == [middle])
    }

    @Test func a503FromTheNextHopGoesUpstreamAs500() throws {
        let fixture = try ProxyFixture()
        fixture.caller.send(fixture.invite(callID: "best-1"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("503 Service Unavailable", to: forwarded), toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 5"))
        #expect(TextMessage(response).startLine == "SIP/2.0 500 Server Internal Error")
        #expect(TextMessage(response).value("CSeq") == "1 INVITE")
        let ack = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(TextMessage(ack).value("To") == "<sip:bob@127.0.0.1>;tag=bob1")
    }

    @Test func unreachableTCPNextHopGives500() throws {
        // Nothing listens on 127.0.0.77, an address no test binds (on 127.0.0.1 a test running in
        // parallel could listen on any port by chance).
        let fixture = try ProxyFixture {
            $0.upstream = try? UpstreamTarget(parsing: "sip:127.0.0.77:5060;transport=tcp")
        }
        fixture.caller.send(fixture.invite(callID: "tcp-refused-1"), toPort: fixture.proxyPort)
        let response = try #require(fixture.caller.receive(startingWith: "SIP/2.0 5", timeoutMilliseconds: 5000))
        #expect(TextMessage(response).startLine == "SIP/2.0 500 Server Internal Error")
    }

    @Test func oversizedDatagramIsDroppedAndCountedAndTheNextCallWorks() throws {
        let fixture = try ProxyFixture { $0.maxMessageSize = 2048 }
        let padding = "X-Padding: " + String(repeating: "a", count: 3000) + "\r\n"
        let oversized = fixture.invite(callID: "big-1").replacingFirst("CSeq: 1 INVITE\r\n", with: "CSeq: 1 INVITE\r\n" + padding)
        fixture.caller.send(oversized, toPort: fixture.proxyPort)
        #expect(fixture.caller.receive(timeoutMilliseconds: 300) == nil)
        #expect(fixture.callee.receive(timeoutMilliseconds: 100) == nil)
        #expect(fixture.counter("oversized_dropped") == 1)
        fixture.caller.send(fixture.invite(callID: "big-2"), toPort: fixture.proxyPort)
        _ = try #require(fixture.callee.receive(startingWith: "INVITE"))
    }

    @Test func dialogWithoutByeExpires() throws {
        let fixture = try ProxyFixture { $0.dialogLifetimeSeconds = 1 }
        fixture.caller.send(fixture.invite(callID: "expiry-1"), toPort: fixture.proxyPort)
        let forwarded = try #require(fixture.callee.receive(startingWith: "INVITE"))
        fixture.callee.send(fixture.response("200 OK", to: forwarded), toPort: fixture.proxyPort)
        _ = try #require(fixture.caller.receive(startingWith: "SIP/2.0 200"))
        fixture.caller.send(
            fixture.callerRequest("ACK", callID: "expiry-1", branch: "z9hG4bKack9", routed: true), toPort: fixture.proxyPort)
        _ = try #require(fixture.callee.receive(startingWith: "ACK"))
        #expect(fixture.counter("active_dialogs") == 1)
        fixture.wait(upToMilliseconds: 3000) { fixture.events.entries.last?.contains("terminated") == true }
        #expect(fixture.events.entries == [
            "expiry-1 confirmed", "expiry-1 terminated(SIPDialog.DialogTerminationReason.expired)",
        ])
        #expect(fixture.counter("active_dialogs") == 0)
        #expect(fixture.counter("dialogs_terminated") == 1)
        #expect(fixture.counter("workers_reporting") == 2)
    }
}
