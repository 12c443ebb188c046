import Glibc
import MediaEngine
import SIPEdgeIO
import Testing

/// A received RTP packet: which socket got it, and its sequence number.
private struct RTPArrival: Sendable, Equatable {
    let socket: String
    let sequence: UInt16
}

/// The port of the first m= line of an SDP body.
private func firstMediaPort(_ sdp: String) -> UInt16? {
    for line in sdp.split(whereSeparator: \.isNewline) where line.hasPrefix("m=") {
        let fields = line.split(separator: " ")
        return fields.count > 1 ? UInt16(fields[1]) : nil
    }
    return nil
}

private func sdpLines(_ sdp: String) -> [Substring] {
    sdp.split(whereSeparator: \.isNewline)
}

/// A plain RTP/AVP PCMU + telephone-event session at `port`.
private func partySDP(name: String, session: Int, port: UInt16, direction: String = "sendrecv", label: String? = nil)
    -> String
{
    var lines = [
        "v=0", "o=- \(session) 1 IN IP4 127.0.0.1", "s=\(name)", "c=IN IP4 127.0.0.1", "t=0 0",
    ]
    lines += mediaLines(port: port, direction: direction, label: label)
    return lines.joined(separator: "\r\n") + "\r\n"
}

private func mediaLines(port: UInt16, direction: String, label: String?) -> [String] {
    ["m=audio \(port) RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"]
        + (label.map { ["a=label:\($0)"] } ?? []) + ["a=ptime:20", "a=\(direction)"]
}

/// One 20 ms PCMU packet.
private func rtpPacket(sequence: UInt16, ssrc: UInt32) -> [UInt8] {
    let timestamp = UInt32(sequence) * 160
    var packet: [UInt8] = [0x80, 0x00, UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
    packet += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: timestamp >> $0) }
    packet += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: ssrc >> $0) }
    return packet + [UInt8](repeating: 0xFF, count: 160)
}

@Suite("RTPEngineClient against rtpengine")
struct RealEngineTests {
    @Test("offer, answer, subscribe, subscribe answer (media forked), unsubscribe, delete")
    func fullCall() async throws {
        let executable = try #require(
            findExecutable("rtpengine"),
            """
            rtpengine is not installed (not in PATH, /usr/bin or /usr/sbin): \
            install the Debian package rtpengine-daemon (`make deps` does)
            """
        )
        let ngPort = try #require(freeUDPPort(in: 22230..<22260), "no free UDP port for rtpengine's NG socket in 22230-22259")
        let files = "/tmp/media-engine-tests-\(getpid())-\(ngPort)"
        let daemon = try ChildProcess(
            executable: executable,
            arguments: [
                "--config-file=none", "--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:\(ngPort)",
                "--port-min=31000", "--port-max=31099", "--foreground", "--log-stderr", "--log-level=5",
                "--pidfile=\(files).pid",
            ],
            logPath: "\(files).log")
        defer {
            daemon.terminate()
            unlink("\(files).pid")
        }

        let harness = try await ClientHarness(
            realEngines: [try SocketAddress(ipAddress: "127.0.0.1", port: ngPort)], timeoutMilliseconds: 200, attempts: 2)

        // Ready when it answers ping (well under a second on this machine).
        let deadline = ContinuousClock.now + .seconds(5)
        var isReady = false
        while !isReady, daemon.isRunning(), ContinuousClock.now < deadline {
            isReady = await harness.call { client, done in client.ping(completion: done) }.success != nil
        }
        try #require(
            isReady,
            """
            rtpengine (\(executable)) did not answer ping on 127.0.0.1:\(ngPort) \
            (\(daemon.exitDescription) after up to 5 s); its log:
            \(daemon.logTail())
            """
        )
        let countersWhenReady = await harness.counters

        // Caller, callee and the two recording-server legs are real sockets, so the fork can be seen.
        let arrivals = Recorder<RTPArrival>()
        let sockets = try await harness.running.run {
            let names = ["caller", "callee", "srs-1", "srs-2"]
            return LoopBound(
                value: try names.map { name in
                    try UDPSocket(loop: harness.running.loop, bindTo: loopback()) { message in
                        message.bytes.withUnsafeBytes { bytes in
                            if bytes.count >= 12 {
                                arrivals.append(RTPArrival(socket: name, sequence: UInt16(bytes[2]) << 8 | UInt16(bytes[3])))
                            }
                        }
                    }
                })
        }
        let ports = sockets.value.map(\.localAddress.port)
        let (callerPort, calleePort, srsPorts) = (ports[0], ports[1], [ports[2], ports[3]])

        let callID = "media-engine-test-\(UInt32.random(in: .min ... .max))"
        let (callerTag, calleeTag, subscriptionTag) = ("caller-tag-1", "callee-tag-1", "srs-\(callID)")

        let offer = await harness.call { client, done in
            client.offer(
                callID: callID, fromTag: callerTag, sdp: partySDP(name: "caller", session: 1001, port: callerPort),
                flags: [], completion: done)
        }
        let offered = try #require(offer.success, "offer: \(String(describing: offer.failure))")
        #expect(firstMediaPort(offered).map { (31000...31099).contains($0) } == true, "offer SDP: \(offered)")

        let answer = await harness.call { client, done in
            client.answer(
                callID: callID, fromTag: callerTag, toTag: calleeTag,
                sdp: partySDP(name: "callee", session: 2002, port: calleePort), flags: [], completion: done)
        }
        let answered = try #require(answer.success, "answer: \(String(describing: answer.failure))")
        let portForCaller = try #require(firstMediaPort(answered), "answer SDP: \(answered)")

        let subscribe = await harness.call { client, done in
            client.subscribeRequest(
                callID: callID, subscriptionTag: subscriptionTag, flags: [], mediaAddress: nil, completion: done)
        }
        let subscription = try #require(subscribe.success, "subscribe request: \(String(describing: subscribe.failure))")
        let lines = sdpLines(subscription.sdp)
        #expect(subscription.subscriptionTag == subscriptionTag)
        #expect(lines.filter { $0.hasPrefix("m=audio ") }.count == 2, "\(subscription.sdp)")
        #expect(lines.filter { $0 == "a=sendonly" }.count == 2, "\(subscription.sdp)")
        let sdpLabels = lines.filter { $0.hasPrefix("a=label:") }.map { String($0.dropFirst("a=label:".count)) }
        #expect(subscription.streams.map(\.label) == sdpLabels)
        #expect(Set(subscription.streams.map(\.participantTag)) == [callerTag, calleeTag])
        #expect(subscription.streams.allSatisfy { $0.mediaType == "audio" && $0.index == 1 })

        // The recording server takes each stream on its own port, labels mirrored.
        var srsAnswer = ["v=0", "o=- 9999 1 IN IP4 127.0.0.1", "s=fake-SRS", "c=IN IP4 127.0.0.1", "t=0 0"]
        for (stream, port) in zip(subscription.streams, srsPorts) {
            srsAnswer += mediaLines(port: port, direction: "recvonly", label: stream.label)
        }
        let srsSDP = srsAnswer.joined(separator: "\r\n") + "\r\n"
        let subscribed = await harness.call { client, done in
            client.subscribeAnswer(callID: callID, subscriptionTag: subscriptionTag, sdp: srsSDP, flags: [], completion: done)
        }
        #expect(subscribed.success != nil, "subscribe answer: \(String(describing: subscribed.failure))")

        let query = await harness.call { client, done in client.query(callID: callID, completion: done) }
        #expect(query.success?["tags"]?[subscriptionTag] != nil, "query: \(String(describing: query))")

        // The caller speaks: the callee hears it, and so does the SRS leg that records the caller.
        let callerLeg = subscription.streams.firstIndex { $0.participantTag == callerTag } == 0 ? "srs-1" : "srs-2"
        let relay = try SocketAddress(ipAddress: "127.0.0.1", port: portForCaller)
        _ = try await harness.running.run {
            for sequence in UInt16(1)...5 {
                sockets.value[0].send(rtpPacket(sequence: sequence, ssrc: 0x1234_5678), to: relay)
            }
        }
        #expect(await eventually(timeout: .seconds(3)) {
            arrivals.values.filter { $0.socket == "callee" }.count == 5
                && arrivals.values.filter { $0.socket == callerLeg }.count == 5
        }, "RTP seen: \(arrivals.values)")
        // Every packet, each once; rtpengine's worker threads may hand the first packet of a new
        // stream on after later ones (seen once: 2, 3, 4, 5, 1), and UDP promises no order.
        #expect(arrivals.values.filter { $0.socket == callerLeg }.map(\.sequence).sorted() == [1, 2, 3, 4, 5])

        // rtpengine's own refusal comes back as an engine error with its reason.
        let unknown = await harness.call { client, done in
            client.subscribeAnswer(callID: callID, subscriptionTag: "no-such-tag", sdp: srsSDP, flags: [], completion: done)
        }
        #expect(unknown.failure?.code == .engineError)
        #expect(unknown.failure?.reason.isEmpty == false)

        let unsubscribed = await harness.call { client, done in
            client.unsubscribe(callID: callID, subscriptionTag: subscriptionTag, completion: done)
        }
        #expect(unsubscribed.success != nil, "unsubscribe: \(String(describing: unsubscribed.failure))")

        let deleted = await harness.call { client, done in client.delete(callID: callID, completion: done) }
        #expect(deleted.success != nil, "delete: \(String(describing: deleted.failure))")
        #expect(await harness.read(\.pinnedCallCount) == 0)

        let list = await harness.call { client, done in client.list(limit: 10, completion: done) }
        #expect(list.success == [], "list after delete: \(String(describing: list))")
        let gone = await harness.call { client, done in client.query(callID: callID, completion: done) }
        #expect(gone.failure?.code == .engineError)

        let counters = await harness.counters
        #expect(counters.timeouts == countersWhenReady.timeouts)
        #expect(counters.malformedReplies == 0 && counters.garbage == 0)
        #expect(counters.engineErrors - countersWhenReady.engineErrors == 2)

        _ = try await harness.running.run { for socket in sockets.value { socket.close() } }
        await harness.shutdown()
        daemon.terminate()
        #expect(daemon.exitDescription == "exit status 0", "rtpengine did not stop cleanly: \(daemon.logTail())")
        unlink("\(files).log")
    }
}
