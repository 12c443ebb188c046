import SIPTransaction
import Testing

@Suite("Proxy response context (RFC 3261 §16.7)")
struct ResponseContextTests {
    /// A context with `count` branches added.
    private func context(isInvite: Bool = true, branches count: Int) -> ResponseContext {
        var context = ResponseContext(isInvite: isInvite)
        for expected in 0..<count { #expect(context.addBranch() == expected) }
        return context
    }

    @Test("a single final response is the best once its branch completes")
    func singleBranch() {
        var context = context(branches: 1)
        #expect(context.forwardBestResponse() == nil)  // still pending
        let actions = context.receiveResponse(statusCode: 486, fromBranch: 0)
        #expect(actions.forward == nil)
        #expect(actions.branchesToCancel.isEmpty)
        #expect(actions.allBranchesCompleted)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 486, branch: 0))
        #expect(context.hasForwardedFinal)
        #expect(context.forwardBestResponse() == nil)
        #expect(context.addBranch() == nil)
    }

    @Test("provisionals other than 100 are forwarded until a final went upstream")
    func provisionals() {
        var context = context(branches: 2)
        #expect(context.receiveResponse(statusCode: 100, fromBranch: 0).forward == nil)
        #expect(
            context.receiveResponse(statusCode: 180, fromBranch: 0).forward
                == UpstreamResponse(statusCode: 180, branch: 0)
        )
        #expect(
            context.receiveResponse(statusCode: 183, fromBranch: 1).forward
                == UpstreamResponse(statusCode: 183, branch: 1)
        )
        _ = context.receiveResponse(statusCode: 200, fromBranch: 1)
        #expect(context.receiveResponse(statusCode: 180, fromBranch: 0).forward == nil)
    }

    @Test("a 2xx to an INVITE is forwarded at once and cancels the pending branches")
    func inviteSuccess() {
        var context = context(branches: 3)
        _ = context.receiveResponse(statusCode: 404, fromBranch: 2)
        let actions = context.receiveResponse(statusCode: 200, fromBranch: 1)
        #expect(actions.forward == UpstreamResponse(statusCode: 200, branch: 1))
        #expect(Array(actions.branchesToCancel) == [0])
        #expect(!actions.allBranchesCompleted)
        #expect(context.hasForwarded2xx && context.hasForwardedFinal && context.hasSentCancel)
        // The cancelled branch answers 487: nothing more goes upstream, but its late 2xx would.
        let cancelled = context.receiveResponse(statusCode: 487, fromBranch: 0)
        #expect(cancelled.forward == nil && cancelled.allBranchesCompleted)
        #expect(context.forwardBestResponse() == nil)
        #expect(
            context.receiveResponse(statusCode: 200, fromBranch: 0).forward
                == UpstreamResponse(statusCode: 200, branch: 0)
        )
        #expect(context.receiveResponse(statusCode: 200, fromBranch: 1).branchesToCancel.isEmpty)
    }

    @Test("a 2xx to an INVITE is forwarded even after the best final response went upstream")
    func successAfterFinal() {
        var context = context(branches: 1)
        _ = context.receiveResponse(statusCode: 408, fromBranch: 0)
        #expect(context.forwardBestResponse()?.statusCode == 408)
        #expect(
            context.receiveResponse(statusCode: 200, fromBranch: 0).forward
                == UpstreamResponse(statusCode: 200, branch: 0)
        )
        #expect(context.hasForwarded2xx)
    }

    @Test("non-INVITE: the first 2xx is forwarded, later ones are not, nothing is cancelled")
    func nonInviteSuccess() {
        var context = context(isInvite: false, branches: 2)
        let first = context.receiveResponse(statusCode: 200, fromBranch: 0)
        #expect(first.forward == UpstreamResponse(statusCode: 200, branch: 0))
        #expect(first.branchesToCancel.isEmpty)
        #expect(!context.hasSentCancel)
        #expect(context.receiveResponse(statusCode: 202, fromBranch: 1).forward == nil)
    }

    @Test("a 6xx beats every other response and cancels the pending branches")
    func globalFailure() {
        var context = context(branches: 3)
        _ = context.receiveResponse(statusCode: 302, fromBranch: 0)
        let decline = context.receiveResponse(statusCode: 603, fromBranch: 1)
        #expect(decline.forward == nil)
        #expect(Array(decline.branchesToCancel) == [2])
        #expect(context.hasReceived6xx && !context.canAddBranch)
        #expect(context.addBranch() == nil)
        #expect(context.receiveResponse(statusCode: 600, fromBranch: 2).branchesToCancel.isEmpty)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 603, branch: 1))
    }

    @Test("otherwise the lowest class wins: 3xx, then 4xx, then 5xx; ties keep the first")
    func lowestClass() {
        let cases: [([Int], UpstreamResponse)] = [
            ([500, 404, 302], UpstreamResponse(statusCode: 302, branch: 2)),
            ([500, 486], UpstreamResponse(statusCode: 486, branch: 1)),
            ([486, 404], UpstreamResponse(statusCode: 486, branch: 0)),
            ([504, 502], UpstreamResponse(statusCode: 504, branch: 0)),
            ([404, 415], UpstreamResponse(statusCode: 415, branch: 1)),  // 415 tells how to retry
            ([484, 401], UpstreamResponse(statusCode: 484, branch: 0)),
        ]
        for (codes, expected) in cases {
            var context = context(branches: codes.count)
            for (branch, code) in codes.enumerated() {
                _ = context.receiveResponse(statusCode: code, fromBranch: branch)
            }
            #expect(context.bestResponse == expected, "\(codes)")
        }
    }

    @Test("a chosen 503 becomes a generated 500")
    func serviceUnavailable() {
        var context = context(branches: 2)
        _ = context.receiveResponse(statusCode: 503, fromBranch: 0)
        _ = context.receiveResponse(statusCode: 504, fromBranch: 1)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 500, branch: nil))
    }

    @Test("401/407 challenges are aggregated when more than one branch challenged")
    func challengeAggregation() {
        var context = context(branches: 3)
        _ = context.receiveResponse(statusCode: 404, fromBranch: 0)
        _ = context.receiveResponse(statusCode: 407, fromBranch: 1)
        _ = context.receiveResponse(statusCode: 401, fromBranch: 2)
        #expect(Array(context.challengeBranches) == [1, 2])
        #expect(
            context.forwardBestResponse() == UpstreamResponse(statusCode: 407, branch: 1, aggregatesChallenges: true)
        )

        var single = self.context(branches: 2)
        _ = single.receiveResponse(statusCode: 401, fromBranch: 0)
        _ = single.receiveResponse(statusCode: 486, fromBranch: 1)
        #expect(single.bestResponse == UpstreamResponse(statusCode: 401, branch: 0, aggregatesChallenges: false))
    }

    @Test("timeouts count as generated 408s and transport failures as 503s; real responses win ties")
    func syntheticResponses() {
        var timedOut = context(branches: 1)
        #expect(timedOut.branchTimedOut(0).allBranchesCompleted)
        #expect(timedOut.bestResponse == UpstreamResponse(statusCode: 408, branch: nil))

        var failed = context(branches: 1)
        _ = failed.branchTransportFailed(0)
        #expect(failed.bestResponse == UpstreamResponse(statusCode: 500, branch: nil))

        var mixed = context(branches: 3)
        _ = mixed.branchTimedOut(0)
        _ = mixed.receiveResponse(statusCode: 404, fromBranch: 1)
        _ = mixed.branchTransportFailed(2)
        #expect(mixed.bestResponse == UpstreamResponse(statusCode: 404, branch: 1))

        var realTimeout = context(branches: 2)
        _ = realTimeout.branchTimedOut(0)
        _ = realTimeout.receiveResponse(statusCode: 408, fromBranch: 1)
        #expect(realTimeout.bestResponse == UpstreamResponse(statusCode: 408, branch: 1))
    }

    @Test("no final response at all gives a generated 408")
    func noFinalResponse() {
        var context = ResponseContext(isInvite: true)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 408, branch: nil))
    }

    @Test("a branch's second final response and responses after it are ignored")
    func duplicateFinals() {
        var context = context(branches: 2)
        _ = context.receiveResponse(statusCode: 486, fromBranch: 0)
        let duplicate = context.receiveResponse(statusCode: 302, fromBranch: 0)
        #expect(duplicate.forward == nil && !duplicate.allBranchesCompleted)
        #expect(context.receiveResponse(statusCode: 180, fromBranch: 0).forward == nil)
        _ = context.branchTimedOut(0)
        _ = context.receiveResponse(statusCode: 500, fromBranch: 1)
        #expect(context.bestResponse == UpstreamResponse(statusCode: 486, branch: 0))
        #expect(context.receiveResponse(statusCode: 99, fromBranch: 1).forward == nil)
    }

    @Test("an upstream CANCEL cancels the pending branches once and stops new ones")
    func upstreamCancel() {
        var context = context(branches: 3)
        _ = context.receiveResponse(statusCode: 486, fromBranch: 1)
        #expect(Array(context.cancelPendingBranches()) == [0, 2])
        #expect(context.hasSentCancel && !context.canAddBranch)
        #expect(context.cancelPendingBranches().isEmpty)
        #expect(context.addBranch() == nil)
        // The branches answer 487; the 486 stays the best (same class, received first).
        _ = context.receiveResponse(statusCode: 487, fromBranch: 0)
        #expect(context.receiveResponse(statusCode: 487, fromBranch: 2).allBranchesCompleted)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 486, branch: 1))
    }

    @Test("serial forking: a branch can be added after all completed, before the best is sent")
    func serialForking() {
        var context = context(branches: 1)
        #expect(context.receiveResponse(statusCode: 480, fromBranch: 0).allBranchesCompleted)
        #expect(context.addBranch() == 1)
        #expect(context.forwardBestResponse() == nil)
        _ = context.receiveResponse(statusCode: 302, fromBranch: 1)
        #expect(context.forwardBestResponse() == UpstreamResponse(statusCode: 302, branch: 1))
    }

    @Test("at most 64 branches")
    func branchLimit() {
        var context = context(branches: ResponseContext.maximumBranches)
        #expect(!context.canAddBranch)
        #expect(context.addBranch() == nil)
        #expect(context.pendingBranches.count == 64)
        #expect(context.pendingBranches.contains(63) && !context.pendingBranches.contains(64))
        let actions = context.receiveResponse(statusCode: 200, fromBranch: 63)
        #expect(actions.branchesToCancel.count == 63)
        #expect(Array(actions.branchesToCancel) == Array(0..<63))
    }
}
