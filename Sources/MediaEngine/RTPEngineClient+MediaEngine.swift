import SIPEdgeIO

extension RTPEngineClient: MediaEngine {
    /// The `replace` list of offer and answer: the engine rewrites the o= line and the session c=
    /// line with its own address.
    static let replacedLines: NGCommand.Value = .texts(["origin", "session-connection"])

    public func offer(
        callID: String, fromTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<String, MediaEngineError>) -> Void
    ) {
        var command = NGCommand("offer", callID: callID)
        command["from-tag"] = .text(fromTag)
        exchangeSDP(command, callID: callID, sdp: sdp, flags: flags, completion: completion)
    }

    public func answer(
        callID: String, fromTag: String, toTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<String, MediaEngineError>) -> Void
    ) {
        var command = NGCommand("answer", callID: callID)
        command["from-tag"] = .text(fromTag)
        command["to-tag"] = .text(toTag)
        exchangeSDP(command, callID: callID, sdp: sdp, flags: flags, completion: completion)
    }

    /// An offer or answer for a call: the SDP, the engine's own o= and session c= lines, and the
    /// flags; the reply's SDP is the result.
    private func exchangeSDP(
        _ command: NGCommand, callID: String, sdp: String, flags: [String],
        completion: @escaping (Result<String, MediaEngineError>) -> Void
    ) {
        var command = command
        command["sdp"] = .text(sdp)
        command["replace"] = Self.replacedLines
        NGOptions.apply(flags, to: &command)
        let name = command.name
        send(command, route: .call(callID)) { [self] in completion(sdpOfReply($0, command: name)) }
    }

    /// Deletes the whole call (`delete delay` 0) and forgets its engine, whatever the outcome.
    public func delete(callID: String, completion: @escaping (Result<Void, MediaEngineError>) -> Void) {
        var command = NGCommand("delete", callID: callID)
        command["delete delay"] = .integer(0)
        send(command, route: .callIfPinned(callID)) { [self] result in
            unpin(callID)
            completion(result.map { _ in () })
        }
    }

    public func subscribeRequest(
        callID: String, subscriptionTag: String, flags: [String], mediaAddress: String?,
        completion: @escaping (Result<Subscription, MediaEngineError>) -> Void
    ) {
        var command = NGCommand("subscribe request", callID: callID)
        command["to-tag"] = .text(subscriptionTag)
        if let mediaAddress { command["media address"] = .text(mediaAddress) }
        NGOptions.apply(flags, base: ["all", "siprec"], to: &command)
        send(command, route: .call(callID)) { [self] result in
            completion(
                result.flatMap { reply in
                    SubscriptionReply.parse(reply.body, requestedTag: subscriptionTag).mapError {
                        malformedReply("subscribe request", engine: reply.engine, $0.reason)
                    }
                })
        }
    }

    public func subscribeAnswer(
        callID: String, subscriptionTag: String, sdp: String, flags: [String],
        completion: @escaping (Result<Void, MediaEngineError>) -> Void
    ) {
        var command = NGCommand("subscribe answer", callID: callID)
        command["to-tag"] = .text(subscriptionTag)
        command["sdp"] = .text(sdp)
        NGOptions.apply(flags, base: ["allow transcoding"], to: &command)
        send(command, route: .call(callID)) { completion($0.map { _ in () }) }
    }

    public func unsubscribe(
        callID: String, subscriptionTag: String, completion: @escaping (Result<Void, MediaEngineError>) -> Void
    ) {
        var command = NGCommand("unsubscribe", callID: callID)
        command["to-tag"] = .text(subscriptionTag)
        send(command, route: .call(callID)) { completion($0.map { _ in () }) }
    }

    /// Pings every engine; succeeds as soon as one answers "pong", fails with the last error when
    /// none does.
    public func ping(completion: @escaping (Result<Void, MediaEngineError>) -> Void) {
        var outstanding = engineAddresses.count
        var isDone = false
        for index in engineAddresses.indices {
            ping(engine: index) { result in
                outstanding -= 1
                guard !isDone else { return }
                if case .success = result {
                    isDone = true
                    completion(.success(()))
                } else if outstanding == 0 {
                    isDone = true
                    completion(result)
                }
            }
        }
    }

    /// Pings one engine (by index into ``engineAddresses``); succeeds when it answers "pong".
    public func ping(engine: Int, completion: @escaping (Result<Void, MediaEngineError>) -> Void) {
        send(NGCommand("ping"), route: .engine(engine)) { [self] result in
            completion(
                result.flatMap { reply in
                    reply.body.string("result") == "pong"
                        ? .success(()) : .failure(malformedReply("ping", engine: reply.engine, "result is not pong"))
                })
        }
    }

    /// The call-ids one engine knows (NG `list`), at most `limit` of them.
    public func list(
        limit: Int = 32, engine: Int = 0, completion: @escaping (Result<[String], MediaEngineError>) -> Void
    ) {
        var command = NGCommand("list")
        command["limit"] = .integer(limit)
        send(command, route: .engine(engine)) { [self] result in
            completion(
                result.flatMap { reply in
                    guard let calls = reply.body["calls"]?.list?.compactMap(\.string) else {
                        return .failure(malformedReply("list", engine: reply.engine, "no calls list in the reply"))
                    }
                    return .success(calls)
                })
        }
    }

    /// The engine's whole `query` reply for a call (tags, streams, packet counters), from the
    /// call's engine, or the next engine when the call is not pinned (nothing is pinned).
    public func query(callID: String, completion: @escaping (Result<Bencode, MediaEngineError>) -> Void) {
        send(NGCommand("query", callID: callID), route: .callIfPinned(callID)) {
            completion($0.map(\.message))
        }
    }

    /// The reply's `sdp`, or a malformed-reply error.
    private func sdpOfReply(_ result: Result<Reply, MediaEngineError>, command: String)
        -> Result<String, MediaEngineError>
    {
        result.flatMap { reply in
            guard let sdp = reply.body.string("sdp") else {
                return .failure(malformedReply(command, engine: reply.engine, "no sdp in the reply"))
            }
            return .success(sdp)
        }
    }
}

/// How the `flags` of a media-engine command become entries of the NG dictionary.
enum NGOptions {
    /// Adds `flags` to `command`: plain flags join `base` in the `flags` list (each once, in order);
    /// `key=value` entries set `command[key]` to the string value. A key the command set to a list
    /// (such as `replace`) gets the value appended; a key set by an earlier flag becomes a list of
    /// both; a key the command set to a single value is overridden.
    static func apply(_ flags: [String], base: [String] = [], to command: inout NGCommand) {
        guard !flags.isEmpty || !base.isEmpty else { return }
        var plain = base
        var keysFromFlags: Set<String> = []
        for flag in flags {
            // Searched as bytes: a Character search walks grapheme clusters, many times slower.
            guard let equals = flag.utf8.firstIndex(of: UInt8(ascii: "=")), equals != flag.startIndex else {
                if !plain.contains(flag) { plain.append(flag) }
                continue
            }
            let key = String(flag[..<equals])  // "=" is ASCII, so a scalar boundary
            let value = String(flag[flag.utf8.index(after: equals)...])
            switch command[key] {
            case .texts(let values)?:
                command[key] = .texts(values + [value])
            case .bencode(.list(let values))?:
                command[key] = .bencode(.list(values + [.string(value)]))
            case .text(let existing)? where keysFromFlags.contains(key):
                command[key] = .texts([existing, value])
            default:
                command[key] = .text(value)
            }
            keysFromFlags.insert(key)
        }
        if !plain.isEmpty { command["flags"] = .texts(plain) }
    }
}

/// Reads a `subscribe request` reply into a ``Subscription``.
enum SubscriptionReply {
    struct Failure: Error {
        let reason: String
    }

    /// The reply's SDP and tag, with its streams ordered as the SDP's m= lines.
    ///
    /// Each m= line's `a=label` is looked up in `media-labels`, then in `tag-medias`. When the SDP
    /// has no labels at all, `tag-medias` in reply order is used if it has one media per m= line,
    /// and otherwise the streams are empty.
    static func parse(_ reply: NGReply, requestedTag: String) -> Result<Subscription, Failure> {
        // Every dictionary is walked once, picking the keys it needs.
        let (sdpValue, toTag, tagMedias, mediaLabels) = reply.entries("sdp", "to-tag", "tag-medias", "media-labels", of: reply.root)
        guard let sdp = sdpValue.flatMap(reply.string) else { return .failure(Failure(reason: "no sdp in the reply")) }
        let tag = toTag.flatMap(reply.string) ?? requestedTag

        /// A media's label, participant tag, index and type.
        func fields(of media: NGReply.Value) -> (label: String?, tag: String?, index: Int, type: String) {
            let (label, tag, index, type) = reply.entries("label", "tag", "index", "type", of: media)
            return (
                label.flatMap(reply.string), tag.flatMap(reply.string), index.flatMap(reply.integer) ?? 0,
                type.flatMap(reply.string) ?? ""
            )
        }

        var byLabel: [String: MediaStreamLabel] = [:]
        var inReplyOrder: [MediaStreamLabel] = []
        for entry in tagMedias.map(reply.elements) ?? [] {
            let (participantValue, medias, _, _) = reply.entries("tag", "medias", of: entry)
            guard let participant = participantValue.flatMap(reply.string) else { continue }
            for value in medias.map(reply.elements) ?? [] {
                let media = fields(of: value)
                guard let label = media.label else { continue }
                let labelled = MediaStreamLabel(label: label, participantTag: participant, index: media.index, mediaType: media.type)
                inReplyOrder.append(labelled)
                byLabel[label] = labelled
            }
        }
        let labelledMedia = mediaLabels.map { reply.entries(of: $0) } ?? []
        for (label, value) in labelledMedia {
            let media = fields(of: value)
            guard let participant = media.tag else { continue }
            byLabel[label] = MediaStreamLabel(label: label, participantTag: participant, index: media.index, mediaType: media.type)
        }

        let sections = mediaSections(of: sdp)
        let labelledCount = sections.count { $0.label != nil }
        if labelledCount == 0 {
            let streams = inReplyOrder.count == sections.count ? inReplyOrder : []
            return .success(Subscription(sdp: sdp, subscriptionTag: tag, streams: streams))
        }
        guard labelledCount == sections.count else {
            return .failure(Failure(reason: "only \(labelledCount) of \(sections.count) m= lines have a label"))
        }
        var streams: [MediaStreamLabel] = []
        for (number, section) in sections.enumerated() {
            guard var stream = byLabel[section.label!] else {
                let reason = "label \(section.label!) of m= line \(number + 1) is not in media-labels or tag-medias"
                return .failure(Failure(reason: reason))
            }
            if stream.mediaType.isEmpty { stream.mediaType = section.mediaType }
            streams.append(stream)
        }
        return .success(Subscription(sdp: sdp, subscriptionTag: tag, streams: streams))
    }
}

/// The m= sections of an SDP body: each one's media type and `a=label`, in order.
///
/// Scanned as UTF-8 bytes: splitting a String into Characters cost more than the rest of the
/// subscription reply together.
func mediaSections(of sdp: String) -> [(mediaType: String, label: String?)] {
    let labelPrefix = "a=label:".utf8
    var sections: [(mediaType: String, label: String?)] = []
    var sdp = sdp
    sdp.withUTF8 { bytes in
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n"), bytes[end] != UInt8(ascii: "\r") { end += 1 }
            let line = UnsafeBufferPointer(rebasing: bytes[start..<end])
            if line.count >= 2, line[0] == UInt8(ascii: "m"), line[1] == UInt8(ascii: "=") {
                let type = line[2...].prefix { $0 != UInt8(ascii: " ") }
                sections.append((String(decoding: type, as: UTF8.self), nil))
            } else if line.count >= 3, line[2] == UInt8(ascii: "l"), line.starts(with: labelPrefix), !sections.isEmpty, sections[sections.count - 1].label == nil {
                sections[sections.count - 1].label = String(decoding: line[labelPrefix.count...], as: UTF8.self)
            }
            start = end + 1
        }
    }
    return sections
}
