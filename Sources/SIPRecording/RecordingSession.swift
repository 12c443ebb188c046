/// One recording session (RS, RFC 7866) of one recorded call toward one recording instance's list
/// of SRSs, as a value-type state machine: every input returns the actions its owner carries out
/// (SIP messages toward the SRS, media-engine commands, timers, events to log and count). It knows
/// nothing of sockets, clocks or message bytes, so every path is testable with plain values.
///
/// Media follows the rtpengine 10.5 flow (subscribe request → INVITE → 2xx → subscribe answer):
/// pause is unsubscribe plus a re-INVITE with `a=inactive`, resume and refresh are a new subscribe
/// request (same subscription tag) plus a re-INVITE with the new offer. The final metadata, which
/// changes no media, goes in an UPDATE when the SRS's 2xx allowed one (RFC 7866 §9.1, RFC 3311),
/// otherwise in a re-INVITE with the last offer.
public struct RecordingSession: Sendable {
    public enum Phase: Hashable, Sendable {
        /// Created with the call; the call is not answered yet.
        case waitingForAnswer
        /// The media engine is preparing the offer for the SRS.
        case subscribing
        /// The initial INVITE to SRS number `attempt` is pending.
        case inviting
        /// The SRS accepted; media flows unless paused.
        case active
        /// The call ended: the final metadata is on its way, the BYE follows.
        case finishing
        case finished(RecordingOutcome)
    }

    public let settings: RecordingSessionSettings
    public private(set) var phase: Phase = .waitingForAnswer
    /// The SRS (index into the instance's list) of the current or last INVITE.
    public private(set) var attempt = 0
    /// Paused by request (a future management API); the recording stays paused until resumed.
    public private(set) var pausedByRequest = false
    /// The call's media is on hold (sendonly, inactive or a 0.0.0.0 connection).
    public private(set) var callOnHold = false
    /// Whether the fork is stopped (unsubscribed) and the SRS was told `a=inactive`.
    public private(set) var isMediaPaused = false
    /// A re-INVITE or UPDATE toward the SRS is pending; only one at a time (RFC 3261 §14.1).
    public private(set) var updateInFlight: SessionUpdate?
    /// The SRS's 2xx listed UPDATE in Allow: the final metadata needs no re-INVITE.
    public private(set) var srsAllowsUpdate = false
    /// A further update was asked for while one was pending.
    private var updateQueued = false
    /// The call ended while a message to the SRS was pending.
    private var callIsOver = false
    /// The pending initial INVITE got a provisional response, so it can be cancelled (§9.1).
    private var provisionalReceived = false
    /// Timers carry the generation that armed them; a stale timer is ignored.
    private var timerGeneration = 0
    /// For the 491 back-off (injected, so tests are deterministic).
    private var random: SplitMix

    public init(settings: RecordingSessionSettings, randomSeed: UInt64) {
        self.settings = settings
        self.random = SplitMix(seed: randomSeed)
    }

    /// Whether the recording should be paused now.
    private var shouldPause: Bool { pausedByRequest || (settings.pauseOnHold && callOnHold) }

    public var isFinished: Bool {
        if case .finished = phase { return true }
        return false
    }

    // MARK: The call

    /// The call was answered (a 2xx with SDP, or an 18x with SDP when so configured): prepare the
    /// offer for the SRS.
    public mutating func callAnswered() -> [RecordingAction] {
        guard phase == .waitingForAnswer else { return [] }
        phase = .subscribing
        return [.subscribe]
    }

    /// The call's media changed (a re-INVITE or UPDATE answered with SDP); `onHold` says whether
    /// the call is now on hold.
    public mutating func callMediaChanged(onHold: Bool) -> [RecordingAction] {
        callOnHold = onHold
        guard phase == .active else { return [] }
        return requestUpdate()
    }

    /// The call is over (BYE, CANCEL, failure or expiry).
    public mutating func callEnded() -> [RecordingAction] {
        switch phase {
        case .waitingForAnswer:
            phase = .finished(.notStarted)
            return []
        case .subscribing:
            // The subscription goes with the call's media session; nothing was sent to an SRS.
            callIsOver = true
            phase = .finished(.notStarted)
            return []
        case .inviting:
            callIsOver = true
            // A CANCEL needs a provisional first (§9.1); otherwise the answer decides.
            return provisionalReceived ? [.cancelInvite] : []
        case .active:
            callIsOver = true
            if updateInFlight != nil { return [] }  // the final metadata follows the pending update
            return sendFinalMetadata()
        case .finishing, .finished:
            return []
        }
    }

    // MARK: The media engine

    /// The subscribe request completed: `succeeded` says whether there is an offer for the SRS.
    public mutating func subscribeCompleted(succeeded: Bool) -> [RecordingAction] {
        switch phase {
        case .subscribing:
            guard succeeded else {
                phase = .finished(.failed(.mediaEngine))
                return [.report(.failed(.mediaEngine))]
            }
            phase = .inviting
            attempt = 0
            return inviteCurrent()
        case .active:
            guard updateInFlight == .refresh else { return [] }
            guard succeeded else { return stopMidCall(.mediaEngine) }
            return [.sendReInvite(.refresh)]
        default:
            return []
        }
    }

    /// The subscribe answer (the SRS's SDP handed to the engine) completed.
    public mutating func mediaAnswerCompleted(succeeded: Bool) -> [RecordingAction] {
        guard phase == .active, !succeeded else { return [] }
        return stopMidCall(.mediaEngine)
    }

    // MARK: The SRS

    /// A provisional response to the initial INVITE of `attempt`.
    public mutating func inviteProvisional(attempt: Int) -> [RecordingAction] {
        guard phase == .inviting, attempt == self.attempt, !provisionalReceived else { return [] }
        provisionalReceived = true
        return callIsOver ? [.cancelInvite] : []
    }

    /// A 2xx to the initial INVITE of `attempt`; `allowsUpdate` says whether its Allow header
    /// lists UPDATE. The owner ACKs every 2xx itself (§13.2.2.4), and BYEs the answer of a stale
    /// attempt (one given up after a timeout).
    public mutating func inviteAccepted(attempt: Int, allowsUpdate: Bool = false) -> [RecordingAction] {
        guard phase == .inviting, attempt == self.attempt else { return [] }
        timerGeneration += 1  // the no-answer timer
        srsAllowsUpdate = allowsUpdate
        if callIsOver {
            phase = .finished(.stopped(.callEnded))
            return [.sendBYE, .report(.started(srs: attempt)), .report(.stopped(.callEnded))]
        }
        phase = .active
        var actions: [RecordingAction] = [.answerMedia, .report(.started(srs: attempt))]
        if shouldPause { actions += requestUpdate() }
        return actions
    }

    /// A final non-2xx to the initial INVITE of `attempt`, or its transaction timed out (408) or
    /// failed on the transport.
    public mutating func inviteFailed(attempt: Int, reason: AttemptFailure) -> [RecordingAction] {
        guard phase == .inviting, attempt == self.attempt else { return [] }
        timerGeneration += 1
        return failOver(reason)
    }

    /// A final response to the pending re-INVITE or UPDATE: `statusCode` 2xx, or the failure.
    public mutating func updateCompleted(statusCode: Int) -> [RecordingAction] {
        guard let update = updateInFlight else { return [] }
        updateInFlight = nil
        var actions: [RecordingAction] = []
        if (200..<300).contains(statusCode), update == .refresh, phase == .active { actions.append(.answerMedia) }
        if update == .finalMetadata || phase == .finishing {
            phase = .finished(.stopped(.callEnded))
            return actions + [.sendBYE, .report(.stopped(.callEnded))]
        }
        switch statusCode {
        case 200..<300:
            break
        case 491:
            // §14.1: we own the RS's Call-ID, so retry after 2.1 to 4 s in units of 10 ms.
            timerGeneration += 1
            updateQueued = true
            actions.append(.startTimer(.retryUpdate(generation: timerGeneration), milliseconds: 2100 + Int(random.next() % 191) * 10))
            return actions
        case 408, 481:
            // The SRS lost the dialog (or does not answer it): the recording is over.
            phase = .finished(.failed(.recorderLost))
            return actions + [.unsubscribe, .sendBYE, .report(.failed(.recorderLost))]
        default:
            actions.append(.report(.updateRejected(statusCode: statusCode)))
        }
        if callIsOver { return actions + sendFinalMetadata() }
        if updateQueued {
            updateQueued = false
            actions += requestUpdate()
        }
        return actions
    }

    /// The SRS sent BYE: the recording ends, the call goes on.
    public mutating func recorderHungUp() -> [RecordingAction] {
        switch phase {
        case .active, .finishing:
            let wasFinishing = phase == .finishing
            phase = .finished(.stopped(.recorderHungUp))
            updateInFlight = nil
            return (wasFinishing ? [] : [.unsubscribe]) + [.report(.stopped(.recorderHungUp))]
        default:
            return []
        }
    }

    // MARK: Requests from a management interface

    public mutating func pause() -> [RecordingAction] {
        pausedByRequest = true
        return phase == .active ? requestUpdate() : []
    }

    public mutating func resume() -> [RecordingAction] {
        pausedByRequest = false
        return phase == .active ? requestUpdate() : []
    }

    // MARK: Timers

    public mutating func timerFired(_ timer: RecordingTimer) -> [RecordingAction] {
        switch timer {
        case .noAnswer(let generation):
            guard generation == timerGeneration, phase == .inviting else { return [] }
            timerGeneration += 1
            // Stop the attempt: CANCEL once it rang, else just stop waiting for it.
            let stop: RecordingAction = provisionalReceived ? .cancelInvite : .abandonInvite
            return [stop] + failOver(.timeout)
        case .retryUpdate(let generation):
            guard generation == timerGeneration, phase == .active, updateInFlight == nil else { return [] }
            updateQueued = false
            return requestUpdate()
        case .finalMetadata(let generation):
            guard generation == timerGeneration, phase == .finishing else { return [] }
            phase = .finished(.stopped(.callEnded))
            updateInFlight = nil
            return [.sendBYE, .report(.stopped(.callEnded))]
        }
    }

    // MARK: Steps

    private mutating func inviteCurrent() -> [RecordingAction] {
        provisionalReceived = false
        timerGeneration += 1
        return [
            .sendInvite(srs: attempt),
            .startTimer(.noAnswer(generation: timerGeneration), milliseconds: settings.noAnswerMilliseconds[attempt]),
        ]
    }

    private mutating func failOver(_ reason: AttemptFailure) -> [RecordingAction] {
        if callIsOver {
            phase = .finished(.stopped(.callEnded))
            return []
        }
        if settings.skipFailoverCodes.contains(reason.statusCode) {
            phase = .finished(.failed(.skipped(reason)))
            return [.unsubscribe, .report(.failed(.skipped(reason)))]
        }
        guard attempt + 1 < settings.noAnswerMilliseconds.count else {
            phase = .finished(.failed(.allRecordersFailed(last: reason)))
            return [.unsubscribe, .report(.failed(.allRecordersFailed(last: reason)))]
        }
        let failed = attempt
        attempt += 1
        return [.report(.failover(from: failed, reason: reason))] + inviteCurrent()
    }

    /// Brings the SRS and the fork in line with the call: pause, resume, or a refreshed offer.
    private mutating func requestUpdate() -> [RecordingAction] {
        guard updateInFlight == nil else {
            updateQueued = true
            return []
        }
        if shouldPause {
            guard !isMediaPaused else { return [] }  // already paused: the SRS has nothing new to see
            isMediaPaused = true
            updateInFlight = .pause
            return [.unsubscribe, .sendReInvite(.pause), .report(.paused)]
        }
        var actions: [RecordingAction] = []
        if isMediaPaused {
            isMediaPaused = false
            actions.append(.report(.resumed))
        }
        updateInFlight = .refresh
        return [.subscribe] + actions
    }

    private mutating func sendFinalMetadata() -> [RecordingAction] {
        phase = .finishing
        updateInFlight = .finalMetadata
        timerGeneration += 1
        return [
            srsAllowsUpdate ? .sendMetadataUpdate : .sendReInvite(.finalMetadata),
            .startTimer(.finalMetadata(generation: timerGeneration), milliseconds: settings.finalMetadataMilliseconds),
        ]
    }

    private mutating func stopMidCall(_ failure: RecordingFailure) -> [RecordingAction] {
        phase = .finished(.failed(failure))
        updateInFlight = nil
        return [.unsubscribe, .sendBYE, .report(.failed(failure))]
    }
}

/// What a session needs to know of its instance.
public struct RecordingSessionSettings: Hashable, Sendable {
    /// One entry per SRS of the instance, in failover order: how long its INVITE may go unanswered.
    public var noAnswerMilliseconds: [Int]
    /// Final status codes that end the failover (the instance's `skip_failover_codes`, evaluated
    /// once for every code); a timeout counts as 408.
    public var skipFailoverCodes: Set<Int>
    public var pauseOnHold: Bool
    /// How long the BYE waits for the answer to the final metadata's re-INVITE or UPDATE.
    public var finalMetadataMilliseconds: Int

    public init(noAnswerMilliseconds: [Int], skipFailoverCodes: Set<Int> = [], pauseOnHold: Bool = true, finalMetadataMilliseconds: Int = 2000) {
        precondition(!noAnswerMilliseconds.isEmpty, "a recording instance has at least one SRS")
        self.noAnswerMilliseconds = noAnswerMilliseconds
        self.skipFailoverCodes = skipFailoverCodes
        self.pauseOnHold = pauseOnHold
        self.finalMetadataMilliseconds = finalMetadataMilliseconds
    }
}

/// What the session asks of its owner, in order.
public enum RecordingAction: Hashable, Sendable {
    /// Media engine: subscribe request (same subscription tag every time); report the result with
    /// `subscribeCompleted`. Its SDP is the offer of the next INVITE or re-INVITE.
    case subscribe
    /// Media engine: unsubscribe (the fork stops at once).
    case unsubscribe
    /// Media engine: subscribe answer with the SDP of the SRS's last 2xx; report with `mediaAnswerCompleted`.
    case answerMedia
    /// A new INVITE (new Call-ID, From tag, CSeq 1) with the stored offer and metadata to SRS number `srs`.
    case sendInvite(srs: Int)
    /// CANCEL the pending initial INVITE.
    case cancelInvite
    /// Stop retransmitting the pending initial INVITE and forget it (no provisional yet, so no CANCEL);
    /// a late 2xx is ACKed and BYEd by the owner.
    case abandonInvite
    /// A re-INVITE with a metadata snapshot and the offer the update calls for; report its final
    /// response with `updateCompleted`.
    case sendReInvite(SessionUpdate)
    /// An UPDATE whose body is only the final metadata snapshot (the SRS allows UPDATE); report its
    /// final response with `updateCompleted`.
    case sendMetadataUpdate
    case sendBYE
    case startTimer(RecordingTimer, milliseconds: Int)
    /// Something to log and count.
    case report(RecordingEvent)
}

/// Why a re-INVITE (or, for the final metadata, an UPDATE) goes to the SRS.
public enum SessionUpdate: Hashable, Sendable {
    /// The fresh offer (`a=sendonly`) and a complete metadata snapshot: resume, or a changed call.
    case refresh
    /// The last offer with every stream `a=inactive`.
    case pause
    /// The complete metadata with disassociate times, before the BYE.
    case finalMetadata
}

public enum RecordingTimer: Hashable, Sendable {
    case noAnswer(generation: Int)
    case retryUpdate(generation: Int)
    case finalMetadata(generation: Int)
}

/// Why one SRS did not take the session.
public enum AttemptFailure: Hashable, Sendable, CustomStringConvertible {
    case status(Int)
    case timeout
    case transportError

    /// The code the skip list is matched against: a timeout is a 408, a transport error a 503
    /// (RFC 3261 §8.1.3.1).
    public var statusCode: Int {
        switch self {
        case .status(let code): return code
        case .timeout: return 408
        case .transportError: return 503
        }
    }

    public var description: String {
        switch self {
        case .status(let code): return "\(code)"
        case .timeout: return "timeout"
        case .transportError: return "transport error"
        }
    }
}

public enum RecordingFailure: Hashable, Sendable, CustomStringConvertible {
    /// The media engine could not fork (no answer, or an error).
    case mediaEngine
    /// Every SRS of the list failed; `last` is the last one's failure.
    case allRecordersFailed(last: AttemptFailure)
    /// A failure code matched `skip_failover_codes`.
    case skipped(AttemptFailure)
    /// The SRS no longer knows the session (408 or 481 to a re-INVITE).
    case recorderLost

    public var description: String {
        switch self {
        case .mediaEngine: return "media engine failed"
        case .allRecordersFailed(let last): return "every recorder failed (last: \(last))"
        case .skipped(let failure): return "recorder refused with \(failure), failover skipped"
        case .recorderLost: return "recorder lost the session"
        }
    }
}

public enum StopReason: Hashable, Sendable {
    case callEnded
    case recorderHungUp
}

public enum RecordingOutcome: Hashable, Sendable {
    /// The call ended before any SRS was asked.
    case notStarted
    case stopped(StopReason)
    case failed(RecordingFailure)
}

public enum RecordingEvent: Hashable, Sendable {
    case started(srs: Int)
    case failover(from: Int, reason: AttemptFailure)
    case failed(RecordingFailure)
    case paused
    case resumed
    case updateRejected(statusCode: Int)
    case stopped(StopReason)
}

/// A small deterministic generator (SplitMix64) for back-off jitter.
struct SplitMix: Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
