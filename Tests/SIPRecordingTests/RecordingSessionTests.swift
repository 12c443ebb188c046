import SIPRecording
import Testing

/// Drives the recording session through every path with plain values.
@Suite struct RecordingSessionTests {
    static let twoRecorders = RecordingSessionSettings(noAnswerMilliseconds: [5000, 3000])

    /// A session whose call was answered and whose SRS number 0 accepted.
    func activeSession(_ settings: RecordingSessionSettings = twoRecorders) -> RecordingSession {
        var session = RecordingSession(settings: settings, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        _ = session.inviteAccepted(attempt: 0)
        return session
    }

    /// The no-answer timer the last INVITE armed.
    func noAnswerTimer(in actions: [RecordingAction]) -> RecordingTimer? {
        for case .startTimer(let timer, _) in actions { return timer }
        return nil
    }

    @Test func answeredCallSubscribesThenInvitesTheFirstRecorder() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        #expect(session.phase == .waitingForAnswer)
        #expect(session.callAnswered() == [.subscribe])
        #expect(session.callAnswered() == [], "a second answer (another 2xx) starts nothing")
        #expect(session.phase == .subscribing)
        let invite = session.subscribeCompleted(succeeded: true)
        #expect(invite == [.sendInvite(srs: 0), .startTimer(.noAnswer(generation: 1), milliseconds: 5000)])
        #expect(session.phase == .inviting)
        #expect(session.inviteProvisional(attempt: 0) == [])
        #expect(session.inviteAccepted(attempt: 0) == [.answerMedia, .report(.started(srs: 0))])
        #expect(session.phase == .active)
        #expect(session.timerFired(.noAnswer(generation: 1)) == [], "the answered INVITE's timer is stale")
    }

    @Test func mediaEngineFailureLeavesTheCallUnrecorded() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        #expect(session.subscribeCompleted(succeeded: false) == [.report(.failed(.mediaEngine))])
        #expect(session.phase == .finished(.failed(.mediaEngine)))
    }

    @Test func negativeAnswerFailsOverWithTheSecondRecordersTimeout() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        let next = session.inviteFailed(attempt: 0, reason: .status(503))
        #expect(next == [
            .report(.failover(from: 0, reason: .status(503))), .sendInvite(srs: 1),
            .startTimer(.noAnswer(generation: 3), milliseconds: 3000),
        ])
        #expect(session.attempt == 1)
        #expect(session.inviteFailed(attempt: 0, reason: .status(500)) == [], "a late answer to the old attempt is ignored")
        let last = session.inviteFailed(attempt: 1, reason: .status(486))
        #expect(last == [.unsubscribe, .report(.failed(.allRecordersFailed(last: .status(486))))])
        #expect(session.phase == .finished(.failed(.allRecordersFailed(last: .status(486)))))
    }

    @Test func skipCodesEndTheFailover() {
        var session = RecordingSession(
            settings: RecordingSessionSettings(noAnswerMilliseconds: [5000, 5000], skipFailoverCodes: [408, 487]),
            randomSeed: 1)
        _ = session.callAnswered()
        let invite = session.subscribeCompleted(succeeded: true)
        let timer = noAnswerTimer(in: invite)!
        // A timeout counts as 408.
        #expect(session.timerFired(timer) == [.abandonInvite, .unsubscribe, .report(.failed(.skipped(.timeout)))])
        #expect(session.phase == .finished(.failed(.skipped(.timeout))))
    }

    @Test func timeoutCancelsARingingInviteAndFailsOver() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        let timer = noAnswerTimer(in: session.subscribeCompleted(succeeded: true))!
        _ = session.inviteProvisional(attempt: 0)
        let actions = session.timerFired(timer)
        #expect(actions.first == .cancelInvite)
        #expect(actions.contains(.sendInvite(srs: 1)))
        #expect(actions.contains(.report(.failover(from: 0, reason: .timeout))))
        #expect(session.timerFired(timer) == [], "a timer fires once")
    }

    @Test func transportErrorFailsOver() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.inviteFailed(attempt: 0, reason: .transportError).contains(.sendInvite(srs: 1)))
    }

    @Test func callEndingBeforeAnswerSendsNothing() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        #expect(session.callEnded() == [])
        #expect(session.phase == .finished(.notStarted))
        #expect(session.callAnswered() == [])
    }

    @Test func callEndingWhileSubscribingDropsTheOffer() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        #expect(session.callEnded() == [])
        #expect(session.subscribeCompleted(succeeded: true) == [], "no INVITE for a call that is gone")
        #expect(session.isFinished)
    }

    @Test func callEndingWhileTheRecorderRingsCancels() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        _ = session.inviteProvisional(attempt: 0)
        #expect(session.callEnded() == [.cancelInvite])
        // The 487 that follows ends the session without a failover.
        #expect(session.inviteFailed(attempt: 0, reason: .status(487)) == [])
        #expect(session.phase == .finished(.stopped(.callEnded)))
    }

    @Test func callEndingBeforeAnyProvisionalCancelsWhenOneArrives() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.callEnded() == [], "no CANCEL before a provisional (§9.1)")
        #expect(session.inviteProvisional(attempt: 0) == [.cancelInvite])
    }

    @Test func callEndingBeforeAnyResponseByesAnAnswer() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        _ = session.callEnded()
        #expect(session.inviteAccepted(attempt: 0) == [.sendBYE, .report(.started(srs: 0)), .report(.stopped(.callEnded))])
        #expect(session.phase == .finished(.stopped(.callEnded)))
    }

    @Test func callEndSendsFinalMetadataThenBye() {
        var session = activeSession()
        let end = session.callEnded()
        #expect(end == [.sendReInvite(.finalMetadata), .startTimer(.finalMetadata(generation: 3), milliseconds: 2000)])
        #expect(session.phase == .finishing)
        #expect(session.updateCompleted(statusCode: 200) == [.sendBYE, .report(.stopped(.callEnded))])
        #expect(session.phase == .finished(.stopped(.callEnded)))
        #expect(session.timerFired(.finalMetadata(generation: 3)) == [])
    }

    @Test func srsAllowingUpdateGetsTheFinalMetadataInAnUpdate() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.inviteAccepted(attempt: 0, allowsUpdate: true) == [.answerMedia, .report(.started(srs: 0))])
        #expect(session.srsAllowsUpdate)
        // Media changes still go in re-INVITEs (they carry an offer); only the final metadata is an UPDATE.
        #expect(session.callMediaChanged(onHold: true) == [.unsubscribe, .sendReInvite(.pause), .report(.paused)])
        #expect(session.updateCompleted(statusCode: 200) == [])
        let end = session.callEnded()
        #expect(end == [.sendMetadataUpdate, .startTimer(.finalMetadata(generation: 3), milliseconds: 2000)])
        #expect(session.updateInFlight == .finalMetadata)
        #expect(session.updateCompleted(statusCode: 200) == [.sendBYE, .report(.stopped(.callEnded))])
        #expect(session.phase == .finished(.stopped(.callEnded)))
    }

    @Test func rejectedMetadataUpdateStillEndsWithBye() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        _ = session.inviteAccepted(attempt: 0, allowsUpdate: true)
        #expect(session.callEnded().first == .sendMetadataUpdate)
        #expect(session.updateCompleted(statusCode: 501) == [.sendBYE, .report(.stopped(.callEnded))])
    }

    @Test func updateAllowedByAFailedAttemptDoesNotCarryOver() {
        // Only the 2xx of the attempt that was accepted counts: SRS 0 timed out, SRS 1 says nothing of UPDATE.
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.inviteAccepted(attempt: 1, allowsUpdate: true) == [], "not the pending attempt")
        _ = session.inviteFailed(attempt: 0, reason: .status(503))
        _ = session.inviteAccepted(attempt: 1)
        #expect(!session.srsAllowsUpdate)
        #expect(session.callEnded().first == .sendReInvite(.finalMetadata))
    }

    @Test func unansweredFinalMetadataStillEndsWithBye() {
        var session = activeSession()
        _ = session.callEnded()
        #expect(session.timerFired(.finalMetadata(generation: 3)) == [.sendBYE, .report(.stopped(.callEnded))])
        #expect(session.updateCompleted(statusCode: 408) == [], "the late answer changes nothing")
    }

    @Test func rejectedFinalMetadataStillEndsWithBye() {
        var session = activeSession()
        _ = session.callEnded()
        #expect(session.updateCompleted(statusCode: 500) == [.sendBYE, .report(.stopped(.callEnded))])
    }

    @Test func holdPausesAndUnholdResumes() {
        var session = activeSession()
        #expect(session.callMediaChanged(onHold: true) == [.unsubscribe, .sendReInvite(.pause), .report(.paused)])
        #expect(session.isMediaPaused)
        #expect(session.updateCompleted(statusCode: 200) == [])
        #expect(session.callMediaChanged(onHold: true) == [], "still on hold: nothing new for the SRS")
        #expect(session.callMediaChanged(onHold: false) == [.subscribe, .report(.resumed)])
        #expect(session.subscribeCompleted(succeeded: true) == [.sendReInvite(.refresh)])
        #expect(session.updateCompleted(statusCode: 200) == [.answerMedia])
        #expect(!session.isMediaPaused)
    }

    @Test func holdDoesNotPauseWhenSwitchedOff() {
        var session = activeSession(RecordingSessionSettings(noAnswerMilliseconds: [5000], pauseOnHold: false))
        #expect(session.callMediaChanged(onHold: true) == [.subscribe], "the changed media is refreshed instead")
    }

    @Test func changedCallMediaRefreshesTheRecorder() {
        var session = activeSession()
        #expect(session.callMediaChanged(onHold: false) == [.subscribe])
        #expect(session.updateInFlight == .refresh)
        // A second change while the first is pending waits for it.
        #expect(session.callMediaChanged(onHold: false) == [])
        #expect(session.subscribeCompleted(succeeded: true) == [.sendReInvite(.refresh)])
        #expect(session.updateCompleted(statusCode: 200) == [.answerMedia, .subscribe])
    }

    @Test func glareRetriesAfterTheBackOff() {
        var session = activeSession()
        _ = session.pause()
        let retry = session.updateCompleted(statusCode: 491)
        guard case .startTimer(let timer, let delay)? = retry.first else {
            Issue.record("expected a retry timer, got \(retry)")
            return
        }
        #expect((2100...4000).contains(delay) && delay % 10 == 0)
        #expect(session.timerFired(timer) == [], "already paused: the retry finds nothing left to change")
        _ = session.resume()
        #expect(session.updateInFlight == .refresh)
    }

    @Test func glareRetryResendsARefresh() {
        var session = activeSession()
        _ = session.callMediaChanged(onHold: false)
        _ = session.subscribeCompleted(succeeded: true)
        let retry = session.updateCompleted(statusCode: 491)
        guard case .startTimer(let timer, _)? = retry.first else {
            Issue.record("expected a retry timer, got \(retry)")
            return
        }
        #expect(session.timerFired(timer) == [.subscribe])
    }

    @Test func lostRecorderEndsTheRecording() {
        var session = activeSession()
        _ = session.callMediaChanged(onHold: false)
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.updateCompleted(statusCode: 481) == [.unsubscribe, .sendBYE, .report(.failed(.recorderLost))])
    }

    @Test func otherRejectedUpdatesAreReportedAndTheRecordingGoesOn() {
        var session = activeSession()
        _ = session.callMediaChanged(onHold: false)
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.updateCompleted(statusCode: 488) == [.report(.updateRejected(statusCode: 488))])
        #expect(session.phase == .active)
    }

    @Test func recorderByeStopsTheForkOnly() {
        var session = activeSession()
        #expect(session.recorderHungUp() == [.unsubscribe, .report(.stopped(.recorderHungUp))])
        #expect(session.phase == .finished(.stopped(.recorderHungUp)))
        #expect(session.callEnded() == [], "nothing more to send when the call ends")
    }

    @Test func mediaFailureMidCallStopsTheRecording() {
        var session = activeSession()
        #expect(session.mediaAnswerCompleted(succeeded: false) == [.unsubscribe, .sendBYE, .report(.failed(.mediaEngine))])
    }

    @Test func pauseRequestedBeforeTheAnswerTakesEffectOnAcceptance() {
        var session = RecordingSession(settings: Self.twoRecorders, randomSeed: 1)
        #expect(session.pause() == [])
        _ = session.callAnswered()
        _ = session.subscribeCompleted(succeeded: true)
        #expect(session.inviteAccepted(attempt: 0) == [
            .answerMedia, .report(.started(srs: 0)), .unsubscribe, .sendReInvite(.pause), .report(.paused),
        ])
    }

    @Test func callEndingDuringAnUpdateWaitsForIt() {
        var session = activeSession()
        _ = session.callMediaChanged(onHold: true)
        #expect(session.callEnded() == [])
        let after = session.updateCompleted(statusCode: 200)
        #expect(after == [.sendReInvite(.finalMetadata), .startTimer(.finalMetadata(generation: 3), milliseconds: 2000)])
    }
}
