import MediaEngine
import SIPEdgeIO
import Synchronization
import Testing

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("RTPEngineClient against a fake engine")
struct RTPEngineClientTests {
    @Test("offer: the exact bencoded request, and the engine's SDP back")
    func offerWire() async throws {
        let harness = try await ClientHarness(responders: [healthy])
        let result = await harness.call { client, done in
            client.offer(
                callID: "c1", fromTag: "ft", sdp: "v=0\r\n", flags: ["trust-address", "transport-protocol=RTP/AVP"],
                completion: done)
        }
        #expect(result.success == "v=0 offer from fake")
        let requests = harness.engines[0].requests.values
        try #require(requests.count == 1)
        #expect(
            text(requests[0].body)
                == "d7:call-id2:c17:command5:offer5:flagsl13:trust-addresse8:from-tag2:ft"
                + "7:replacel6:origin18:session-connectione3:sdp5:v=0\r\n18:transport-protocol7:RTP/AVPe")
        #expect(!requests[0].cookie.isEmpty && !requests[0].cookie.contains(" "))
        var expected = RTPEngineCounters()
        expected.requests = 1
        expected.replies = 1
        #expect(await harness.counters == expected)
        await harness.shutdown()
    }

    @Test("every command sends the dictionary rtpengine expects")
    func commandDictionaries() async throws {
        let harness = try await ClientHarness(responders: [healthy])
        _ = await harness.call { client, done in
            client.answer(callID: "c1", fromTag: "ft", toTag: "tt", sdp: "v=0", flags: [], completion: done)
        }
        _ = await harness.call { client, done in
            client.subscribeRequest(
                callID: "c1", subscriptionTag: "srs-1", flags: ["SDES-off", "siprec", "transport-protocol=RTP/AVP"],
                mediaAddress: "192.0.2.1", completion: done)
        }
        _ = await harness.call { client, done in
            client.subscribeAnswer(
                callID: "c1", subscriptionTag: "srs-1", sdp: "v=0 srs", flags: ["replace=origin"], completion: done)
        }
        _ = await harness.call { client, done in client.unsubscribe(callID: "c1", subscriptionTag: "srs-1", completion: done) }
        _ = await harness.call { client, done in client.query(callID: "c1", completion: done) }
        _ = await harness.call { client, done in client.list(limit: 5, completion: done) }
        _ = await harness.call { client, done in client.ping(completion: done) }
        _ = await harness.call { client, done in client.delete(callID: "c1", completion: done) }
        _ = await harness.call { client, done in
            client.offer(
                callID: "c2", fromTag: "ft", sdp: "v=0",
                flags: ["replace=zero-address", "direction=internal", "direction=external"], completion: done)
        }
        let expected: [Bencode] = [
            [
                "command": "answer", "call-id": "c1", "from-tag": "ft", "to-tag": "tt", "sdp": "v=0",
                "replace": ["origin", "session-connection"],
            ],
            [
                "command": "subscribe request", "call-id": "c1", "to-tag": "srs-1", "media address": "192.0.2.1",
                "flags": ["all", "siprec", "SDES-off"], "transport-protocol": "RTP/AVP",
            ],
            [
                "command": "subscribe answer", "call-id": "c1", "to-tag": "srs-1", "sdp": "v=0 srs",
                "flags": ["allow transcoding"], "replace": "origin",
            ],
            ["command": "unsubscribe", "call-id": "c1", "to-tag": "srs-1"],
            ["command": "query", "call-id": "c1"],
            ["command": "list", "limit": 5],
            ["command": "ping"],
            ["command": "delete", "call-id": "c1", "delete delay": 0],
            [
                "command": "offer", "call-id": "c2", "from-tag": "ft", "sdp": "v=0",
                "replace": ["origin", "session-connection", "zero-address"], "direction": ["internal", "external"],
            ],
        ]
        let sent = harness.engines[0].requests.values.map(\.message)
        #expect(sent.count == expected.count)
        for (sent, expected) in zip(sent, expected) {
            #expect(sent == expected)
        }
        let cookies = harness.engines[0].requests.values.map(\.cookie)
        #expect(Set(cookies).count == cookies.count, "cookies are unique")
        #expect(harness.completions.count == expected.count)
        await harness.shutdown()
    }

    @Test("cookies differ between clients, even on loops with the same index")
    func cookiesPerClient() async throws {
        let first = try await ClientHarness(responders: [healthy])
        let second = try await ClientHarness(responders: [healthy])
        for harness in [first, second] {
            _ = await harness.call { client, done in client.ping(completion: done) }
        }
        #expect(first.engines[0].requests.values[0].cookie != second.engines[0].requests.values[0].cookie)
        await first.shutdown()
        await second.shutdown()
    }

    @Test("lost requests are sent again with the same cookie, waiting twice as long each time")
    func retransmission() async throws {
        let harness = try await ClientHarness(
            timeoutMilliseconds: 50, responders: [{ $0.attempt < 3 ? [] : FakeEngine.healthyReply($0) }])
        let result = await harness.call { client, done in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
        #expect(result.success == "v=0 offer from fake")
        let requests = harness.engines[0].requests.values
        try #require(requests.count == 3)
        #expect(Set(requests.map(\.datagram)).count == 1, "every attempt is the same datagram")
        let gaps = [requests[1].receivedAt - requests[0].receivedAt, requests[2].receivedAt - requests[1].receivedAt]
        #expect(gaps[0] >= 45 && gaps[1] >= 95, "gaps \(gaps)")
        let counters = await harness.counters
        #expect(counters.requests == 1 && counters.retransmissions == 2 && counters.replies == 1 && counters.timeouts == 0)
        await harness.shutdown()
    }

    @Test("no reply at all: a timeout error after the configured attempts; a late reply is a stray")
    func timeout() async throws {
        let harness = try await ClientHarness(timeoutMilliseconds: 30, attempts: 3, responders: [silent])
        let result = await harness.call { client, done in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
        let error = try #require(result.failure)
        #expect(error.code == .timeout)
        #expect(error.command == "offer")
        #expect(error.engine == harness.engines[0].address)
        #expect(harness.engines[0].requests.count == 3)

        // The reply arrives after the client gave up: counted, ignored, no second completion.
        let engine = harness.engines[0]
        let cookie = engine.requests.values[0].cookie
        let clientAddress = await harness.read(\.localAddress)
        _ = try await harness.running.run {
            engine.send(FakeEngine.reply(cookie, ["result": "ok", "sdp": "late"]), to: clientAddress)
        }
        #expect(await eventually { await harness.counters.strayReplies == 1 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(harness.engines[0].requests.count == 3, "nothing is sent after the last attempt")
        #expect(harness.completions.count == 1)
        let counters = await harness.counters
        #expect(counters.requests == 1 && counters.retransmissions == 2 && counters.timeouts == 1)
        #expect(counters.replies == 0)
        await harness.shutdown()
    }

    @Test("attempts is configurable: one attempt sends once")
    func singleAttempt() async throws {
        let harness = try await ClientHarness(timeoutMilliseconds: 30, attempts: 1, responders: [silent])
        let result = await harness.call { client, done in client.ping(engine: 0, completion: done) }
        #expect(result.failure?.code == .timeout)
        #expect(harness.engines[0].requests.count == 1)
        #expect(await harness.counters.retransmissions == 0)
        await harness.shutdown()
    }

    @Test("replies with an unknown cookie, duplicates and garbage are counted and ignored")
    func straysAndGarbage() async throws {
        let harness = try await ClientHarness(responders: [
            { request in
                let ok = FakeEngine.reply(request.cookie, ["result": "ok", "sdp": "right"])
                return [
                    FakeEngine.reply("not-" + request.cookie, ["result": "ok", "sdp": "wrong cookie"]),
                    Array("garbage-without-a-space".utf8),
                    [],
                    [0x01, 0x02, 0x20, 0x64, 0x65],
                    Array(" d6:result2:oke".utf8),
                    ok,
                    ok,  // duplicate
                ]
            }
        ])
        let result = await harness.call { client, done in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
        #expect(result.success == "right")
        #expect(await eventually { await harness.counters.strayReplies == 2 })
        let counters = await harness.counters
        #expect(counters.garbage == 4)
        #expect(counters.replies == 1)
        #expect(harness.completions.count == 1)
        await harness.shutdown()
    }

    @Test("a reply with the right cookie from another address is ignored")
    func wrongSource() async throws {
        let running = try RunningLoop()
        // The impostor knows the cookie but is not the engine the request went to.
        let impostor = try await running.run { LoopBound(value: try FakeEngine(loop: running.loop, respond: silent)) }.value
        let harness = try await ClientHarness(timeoutMilliseconds: 200, responders: [
            { request in
                if request.attempt == 1 {
                    running.loop.execute {
                        let reply = FakeEngine.reply(request.cookie, ["result": "ok", "sdp": "impostor"])
                        impostor.send(reply, to: request.source)
                    }
                    return []
                }
                return [FakeEngine.reply(request.cookie, ["result": "ok", "sdp": "engine"])]
            }
        ])
        let result = await harness.call { client, done in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
        #expect(result.success == "engine")
        let counters = await harness.counters
        #expect(counters.strayReplies == 1 && counters.retransmissions == 1)
        await harness.shutdown()
        await running.shutdown()
    }

    @Test("engine errors carry rtpengine's error-reason")
    func engineError() async throws {
        let harness = try await ClientHarness(responders: [
            { [FakeEngine.reply($0.cookie, ["result": "error", "error-reason": "Unknown call-id"])] }
        ])
        let result = await harness.call { client, done in
            client.subscribeAnswer(callID: "c1", subscriptionTag: "t", sdp: "v=0", flags: [], completion: done)
        }
        let error = try #require(result.failure)
        #expect(error.code == .engineError)
        #expect(error.reason == "Unknown call-id")
        #expect(error.command == "subscribe answer")
        #expect(error.description.contains("Unknown call-id"))
        #expect(await harness.counters.engineErrors == 1)
        await harness.shutdown()
    }

    @Test(
        "replies that do not fit the command are malformed",
        arguments: [
            "d6:result2:ok",  // truncated body
            "l6:result2:oke",  // not a dictionary
            "d3:sdp3:v=0e",  // no result
            "d6:result2:oke",  // ok but no sdp for an offer
            "d6:resulti1ee",  // result is not a string
        ])
    func malformedReplies(body: String) async throws {
        let harness = try await ClientHarness(responders: [{ [Array(($0.cookie + " " + body).utf8)] }])
        let result = await harness.call { client, done in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
        #expect(result.failure?.code == .malformedReply)
        let counters = await harness.counters
        #expect(counters.malformedReplies == 1 && counters.retransmissions == 0)
        await harness.shutdown()
    }

    @Test("ping needs a pong")
    func pingNeedsPong() async throws {
        let harness = try await ClientHarness(responders: [{ [FakeEngine.reply($0.cookie, ["result": "ok"])] }])
        let result = await harness.call { client, done in client.ping(completion: done) }
        #expect(result.failure?.code == .malformedReply)
        await harness.shutdown()
    }

    @Test("subscribe request: streams follow the m= lines, labels map to participants")
    func subscription() async throws {
        let harness = try await ClientHarness(responders: [healthy])
        let result = await harness.call { client, done in
            client.subscribeRequest(callID: "c1", subscriptionTag: "srs-1", flags: [], mediaAddress: nil, completion: done)
        }
        let subscription = try #require(result.success)
        #expect(subscription.sdp == FakeEngine.subscriptionSDP)
        #expect(subscription.subscriptionTag == "srs-1")
        #expect(
            subscription.streams == [
                MediaStreamLabel(label: "1", participantTag: "caller", index: 1, mediaType: "audio"),
                MediaStreamLabel(label: "0", participantTag: "callee", index: 1, mediaType: "audio"),
            ])
        await harness.shutdown()
    }

    @Test(
        "subscribe request replies: tag-medias alone, media-labels alone, no labels, unknown label",
        arguments: [
            ("tag-medias", true), ("media-labels", true), ("unlabelled", true), ("unknown label", false),
            ("no sdp", false),
        ])
    func subscriptionVariants(variant: String, isValid: Bool) async throws {
        var reply = FakeEngine.subscriptionReply.dictionary!
        switch variant {
        case "tag-medias":
            reply["media-labels"] = nil
        case "media-labels":
            reply["tag-medias"] = nil
        case "unlabelled":
            reply["media-labels"] = nil
            let unlabelled = FakeEngine.subscriptionSDP.replacing("a=label:1\r\n", with: "")
            reply["sdp"] = .string(unlabelled.replacing("a=label:0\r\n", with: ""))
        case "unknown label":
            reply["sdp"] = .string(FakeEngine.subscriptionSDP.replacing("a=label:0", with: "a=label:7"))
        default:
            reply["sdp"] = nil
        }
        let body = Bencode.dictionary(reply)
        let harness = try await ClientHarness(responders: [{ [FakeEngine.reply($0.cookie, body)] }])
        let result = await harness.call { client, done in
            client.subscribeRequest(callID: "c1", subscriptionTag: "mine", flags: [], mediaAddress: nil, completion: done)
        }
        if isValid {
            let subscription = try #require(result.success)
            #expect(subscription.subscriptionTag == "srs-1", "the engine's to-tag wins")
            #expect(subscription.streams.map(\.label) == ["1", "0"])
            #expect(subscription.streams.map(\.participantTag) == ["caller", "callee"])
        } else {
            #expect(result.failure?.code == .malformedReply)
            #expect(await harness.counters.malformedReplies == 1)
        }
        await harness.shutdown()
    }

    @Test("close fails waiting requests and every later one with a socket error")
    func close() async throws {
        let harness = try await ClientHarness(timeoutMilliseconds: 10_000, responders: [silent])
        let waiting = Recorder<MediaEngineError>()
        _ = await harness.read { client in
            client.offer(callID: "c1", fromTag: "ft", sdp: "v=0", flags: []) { result in
                if let error = result.failure { waiting.append(error) }
            }
        }
        #expect(await eventually { harness.engines[0].requests.count == 1 })
        await harness.read { $0.close() }
        #expect(waiting.values.map(\.code) == [.socketError])
        let later = await harness.call { client, done in client.ping(completion: done) }
        #expect(later.failure?.code == .socketError)
        await harness.shutdown()
    }

    @Test("IPv6 engines get an IPv6 socket")
    func ipv6() async throws {
        let harness = try await ClientHarness(ipv6: true, responders: [healthy])
        #expect(await harness.read(\.localAddress).isIPv6)
        let result = await harness.call { client, done in client.ping(completion: done) }
        #expect(result.success != nil)
        await harness.shutdown()
    }

    @Test("no engines, or engines of both families, are refused")
    func badConfiguration() async throws {
        let loop = try EventLoop(index: 0)
        for engines in [[], [loopback(port: 2223), loopback(ipv6: true, port: 2223)]] {
            #expect(throws: MediaEngineError.self) {
                _ = try RTPEngineClient(loop: loop, configuration: .init(engines: engines))
            }
        }
    }
}

@Suite("RTPEngineClient with several engines")
struct RTPEngineClientEngineSetTests {
    /// The index of the fake engine that received the request for `command` and `callID`.
    private func engineIndex(_ harness: ClientHarness, _ command: String, _ callID: String) -> [Int] {
        harness.engines.indices.filter { index in
            harness.engines[index].requests.values.contains { $0.command == command && $0.callID == callID }
        }
    }

    private func offer(_ harness: ClientHarness, _ callID: String) async -> Result<String, MediaEngineError> {
        await harness.call { client, done in
            client.offer(callID: callID, fromTag: "ft", sdp: "v=0", flags: [], completion: done)
        }
    }

    @Test("new calls go round robin; every later command for a call goes to its engine until delete")
    func stickiness() async throws {
        let harness = try await ClientHarness(responders: [
            { FakeEngine.healthyReply($0, name: "engine 0") }, { FakeEngine.healthyReply($0, name: "engine 1") },
        ])
        #expect(await offer(harness, "A").success == "v=0 offer from engine 0")
        #expect(await offer(harness, "B").success == "v=0 offer from engine 1")
        #expect(await offer(harness, "C").success == "v=0 offer from engine 0")
        for callID in ["A", "B", "C"] {
            _ = await harness.call { client, done in
                client.answer(callID: callID, fromTag: "ft", toTag: "tt", sdp: "v=0", flags: [], completion: done)
            }
            _ = await harness.call { client, done in
                client.subscribeRequest(callID: callID, subscriptionTag: "s", flags: [], mediaAddress: nil, completion: done)
            }
            _ = await harness.call { client, done in
                client.subscribeAnswer(callID: callID, subscriptionTag: "s", sdp: "v=0", flags: [], completion: done)
            }
            _ = await harness.call { client, done in
                client.unsubscribe(callID: callID, subscriptionTag: "s", completion: done)
            }
            _ = await harness.call { client, done in client.query(callID: callID, completion: done) }
        }
        for (callID, engine) in [("A", 0), ("B", 1), ("C", 0)] {
            for command in ["offer", "answer", "subscribe request", "subscribe answer", "unsubscribe", "query"] {
                #expect(engineIndex(harness, command, callID) == [engine], "\(command) \(callID)")
            }
        }
        #expect(await harness.read(\.pinnedCallCount) == 3)
        #expect(await harness.read { $0.engineIndex(forCall: "B") } == 1)

        _ = await harness.call { client, done in client.delete(callID: "B", completion: done) }
        #expect(engineIndex(harness, "delete", "B") == [1])
        #expect(await harness.read(\.pinnedCallCount) == 2)
        #expect(await harness.read { $0.engineIndex(forCall: "B") } == nil)

        // The rotation goes on where it was: D takes engine 1, and a B reused afterwards is new.
        #expect(await offer(harness, "D").success == "v=0 offer from engine 1")
        #expect(await offer(harness, "B").success == "v=0 offer from engine 0")
        await harness.shutdown()
    }

    @Test("an engine that timed out is skipped by new calls for a while; a retried call moves")
    func failedEngineSkipped() async throws {
        // The timeout also bounds the healthy engine's replies: 100 ms was once too short for them
        // in a full parallel run on two cores, and a late reply marks engine 1 failed too.
        let harness = try await ClientHarness(
            timeoutMilliseconds: 400, attempts: 2, failureHoldMilliseconds: 3000,
            responders: [silent, { FakeEngine.healthyReply($0, name: "engine 1") }])
        let first = await offer(harness, "X")
        #expect(first.failure?.code == .timeout)
        #expect(first.failure?.engine == harness.engines[0].address)
        #expect(await harness.read(\.pinnedCallCount) == 0, "an unconfirmed pin is dropped on timeout")

        #expect(await offer(harness, "Y").success == "v=0 offer from engine 1")
        #expect(await offer(harness, "Z").success == "v=0 offer from engine 1")
        #expect(await offer(harness, "X").success == "v=0 offer from engine 1")
        #expect(engineIndex(harness, "offer", "X") == [0, 1])

        // After the hold, engine 0 gets new calls again.
        try await Task.sleep(for: .milliseconds(3100))
        _ = await offer(harness, "W")
        #expect(engineIndex(harness, "offer", "W") == [0])
        await harness.shutdown()
    }

    @Test("a call whose engine answered stays pinned when a later command times out")
    func confirmedPinSurvivesTimeout() async throws {
        let answering = Mutex(true)
        let harness = try await ClientHarness(
            timeoutMilliseconds: 400, attempts: 2,
            responders: [{ answering.withLock { $0 } ? FakeEngine.healthyReply($0) : [] }, healthy])
        #expect(await offer(harness, "A").success != nil)
        answering.withLock { $0 = false }
        let answer = await harness.call { client, done in
            client.answer(callID: "A", fromTag: "ft", toTag: "tt", sdp: "v=0", flags: [], completion: done)
        }
        #expect(answer.failure?.code == .timeout)
        #expect(await harness.read { $0.engineIndex(forCall: "A") } == 0)
        #expect(engineIndex(harness, "answer", "A") == [0])
        await harness.shutdown()
    }

    @Test("ping succeeds when one engine answers and fails when none does")
    func pingSet() async throws {
        let oneUp = try await ClientHarness(timeoutMilliseconds: 500, attempts: 1, responders: [silent, healthy])
        #expect(await oneUp.call { client, done in client.ping(completion: done) }.success != nil)
        await oneUp.shutdown()
        let allDown = try await ClientHarness(timeoutMilliseconds: 20, attempts: 1, responders: [silent, silent])
        #expect(await allDown.call { client, done in client.ping(completion: done) }.failure?.code == .timeout)
        #expect(allDown.engines.allSatisfy { $0.requests.count == 1 })
        await allDown.shutdown()
    }
}
