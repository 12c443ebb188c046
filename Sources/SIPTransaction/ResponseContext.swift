/// A set of proxy branches (client transactions of one response context), numbered 0..<64.
///
/// A bit mask: inline, no allocation, iterated in ascending order.
public struct BranchSet: Sequence, Hashable, Sendable {
    /// One bit per branch; bit `n` is branch `n`.
    public private(set) var rawValue: UInt64

    /// An empty set.
    public init() { rawValue = 0 }

    /// The number of branches in the set.
    public var count: Int { rawValue.nonzeroBitCount }
    /// Whether the set is empty.
    public var isEmpty: Bool { rawValue == 0 }

    /// Whether `branch` is in the set.
    public func contains(_ branch: Int) -> Bool {
        (0..<64).contains(branch) && rawValue & (1 << UInt64(branch)) != 0
    }

    mutating func insert(_ branch: Int) { rawValue |= 1 << UInt64(branch) }
    mutating func remove(_ branch: Int) { rawValue &= ~(1 << UInt64(branch)) }

    /// Iterates the branches in ascending order.
    public struct Iterator: IteratorProtocol {
        fileprivate var remaining: UInt64

        /// The next branch, or nil at the end.
        public mutating func next() -> Int? {
            guard remaining != 0 else { return nil }
            let branch = remaining.trailingZeroBitCount
            remaining &= remaining - 1
            return branch
        }
    }

    /// An iterator over the branches in ascending order.
    public func makeIterator() -> Iterator { Iterator(remaining: rawValue) }
}

/// A response the proxy sends upstream on the server transaction.
public struct UpstreamResponse: Hashable, Sendable {
    /// The status code to send.
    public var statusCode: Int
    /// The branch whose response is relayed; nil when the proxy generates the response itself: a 408
    /// for a context without final responses or whose best one is a timeout, and the 500 replacing a 503.
    public var branch: Int?
    /// Whether the relayed 401/407 must carry the WWW-Authenticate and Proxy-Authenticate values of
    /// every other 401/407 in the context (§16.7 step 7): see ``ResponseContext/challengeBranches``.
    public var aggregatesChallenges: Bool

    /// Creates an upstream response.
    public init(statusCode: Int, branch: Int?, aggregatesChallenges: Bool = false) {
        self.statusCode = statusCode
        self.branch = branch
        self.aggregatesChallenges = aggregatesChallenges
    }
}

/// The response context of a stateful proxy (RFC 3261 §16.7): which responses of which branches go
/// upstream, and which branches to cancel.
///
/// The owner adds one branch per client transaction, feeds every response those transactions hand up
/// (and their timeouts and transport errors), and performs the returned actions. Provisionals other
/// than 100 and 2xx responses are forwarded at once (2xx to an INVITE even after a final response);
/// other finals are kept. Once every branch has completed, the owner either adds branches (serial
/// forking, 3xx recursion) or calls ``forwardBestResponse()``, which picks: any 6xx first, else the
/// lowest class (3xx, then 4xx, then 5xx), preferring 401, 407, 415, 420 and 484 within 4xx and real
/// responses over timeouts; a chosen 503 becomes a generated 500.
public struct ResponseContext: Sendable {
    /// What one input asks of the owner.
    public struct Actions: Hashable, Sendable {
        /// A response to send upstream now, if any.
        public var forward: UpstreamResponse?
        /// Pending branches to cancel now (after a 2xx or a 6xx to an INVITE); empty otherwise.
        public var branchesToCancel: BranchSet
        /// Whether no branch is pending after this input: time to add branches or to call
        /// ``ResponseContext/forwardBestResponse()``.
        public var allBranchesCompleted: Bool

        init(forward: UpstreamResponse? = nil, branchesToCancel: BranchSet = BranchSet(), allBranchesCompleted: Bool) {
            self.forward = forward
            self.branchesToCancel = branchesToCancel
            self.allBranchesCompleted = allBranchesCompleted
        }
    }

    private struct Candidate: Sendable {
        var statusCode: Int
        var branch: Int
        /// A timeout (408) or transport failure (503) rather than a received response.
        var isSynthetic: Bool
    }

    /// The most branches one context can hold.
    public static let maximumBranches = 64

    /// Whether the request is an INVITE (2xx after a final are forwarded; branches can be cancelled).
    public let isInvite: Bool
    /// The number of branches added so far; branch numbers are 0..<branchCount.
    public private(set) var branchCount = 0
    /// Branches that have not completed yet (no final response, timeout or transport error).
    public private(set) var pendingBranches = BranchSet()
    /// Branches that answered 401 or 407, whose challenges a chosen 401/407 aggregates.
    public private(set) var challengeBranches = BranchSet()
    /// Whether a 2xx was forwarded upstream.
    public private(set) var hasForwarded2xx = false
    /// Whether a final response (a 2xx, or the best response) was sent upstream.
    public private(set) var hasForwardedFinal = false
    /// Whether a CANCEL was sent (or asked for) on the branches: after an upstream CANCEL, a 2xx or a 6xx.
    public private(set) var hasSentCancel = false
    /// Whether a branch answered 6xx: no new branches may be added (§16.7 step 5).
    public private(set) var hasReceived6xx = false

    private var best: Candidate?

    /// Creates an empty context for a request.
    public init(isInvite: Bool) {
        self.isInvite = isInvite
    }

    /// Whether a branch can be added: no final response went upstream, no 6xx arrived, nothing was
    /// cancelled, and fewer than ``maximumBranches`` exist.
    public var canAddBranch: Bool {
        !hasForwardedFinal && !hasReceived6xx && !hasSentCancel && branchCount < Self.maximumBranches
    }

    /// Adds a branch (one forwarded request with its client transaction).
    /// - Returns: its number, or nil when ``canAddBranch`` is false.
    public mutating func addBranch() -> Int? {
        guard canAddBranch else { return nil }
        let branch = branchCount
        branchCount += 1
        pendingBranches.insert(branch)
        return branch
    }

    /// A branch's client transaction handed a response up (codes outside 100...699 are ignored).
    public mutating func receiveResponse(statusCode: Int, fromBranch branch: Int) -> Actions {
        precondition(branch >= 0 && branch < branchCount, "unknown branch")
        guard (100...699).contains(statusCode) else { return Actions(allBranchesCompleted: pendingBranches.isEmpty) }
        if statusCode < 200 {
            // §16.7 step 5: 100 is hop-by-hop; nothing provisional follows a final response upstream.
            let forwards = statusCode > 100 && !hasForwardedFinal && pendingBranches.contains(branch)
            return Actions(
                forward: forwards ? UpstreamResponse(statusCode: statusCode, branch: branch) : nil,
                allBranchesCompleted: pendingBranches.isEmpty
            )
        }
        if statusCode < 300 {
            return receiveSuccess(statusCode: statusCode, fromBranch: branch)
        }
        return complete(branch, with: Candidate(statusCode: statusCode, branch: branch, isSynthetic: false))
    }

    /// A branch's client transaction timed out: treated as a 408 from it (§16.8).
    public mutating func branchTimedOut(_ branch: Int) -> Actions {
        precondition(branch >= 0 && branch < branchCount, "unknown branch")
        return complete(branch, with: Candidate(statusCode: 408, branch: branch, isSynthetic: true))
    }

    /// A branch's request could not be sent: treated as a 503 from it (§16.9).
    public mutating func branchTransportFailed(_ branch: Int) -> Actions {
        precondition(branch >= 0 && branch < branchCount, "unknown branch")
        return complete(branch, with: Candidate(statusCode: 503, branch: branch, isSynthetic: true))
    }

    /// The request was cancelled upstream (§16.10): returns the pending branches to cancel (empty if
    /// a cancel already went out) and allows no new branches.
    public mutating func cancelPendingBranches() -> BranchSet {
        guard !hasSentCancel else { return BranchSet() }
        hasSentCancel = true
        return pendingBranches
    }

    /// The response ``forwardBestResponse()`` would send now: the best final response so far, or a
    /// generated 408 if there is none.
    public var bestResponse: UpstreamResponse {
        guard let best else { return UpstreamResponse(statusCode: 408, branch: nil) }
        if best.statusCode == 503 { return UpstreamResponse(statusCode: 500, branch: nil) }
        if best.isSynthetic { return UpstreamResponse(statusCode: best.statusCode, branch: nil) }
        let isChallenge = best.statusCode == 401 || best.statusCode == 407
        return UpstreamResponse(
            statusCode: best.statusCode,
            branch: best.branch,
            aggregatesChallenges: isChallenge && challengeBranches.count > 1
        )
    }

    /// Sends the best response upstream (§16.7 step 6) once every branch has completed.
    /// - Returns: the response to send, or nil while branches are pending or once a final was forwarded.
    public mutating func forwardBestResponse() -> UpstreamResponse? {
        guard pendingBranches.isEmpty, !hasForwardedFinal else { return nil }
        hasForwardedFinal = true
        return bestResponse
    }

    private mutating func receiveSuccess(statusCode: Int, fromBranch branch: Int) -> Actions {
        pendingBranches.remove(branch)
        var actions = Actions(allBranchesCompleted: pendingBranches.isEmpty)
        guard isInvite || !hasForwardedFinal else { return actions }
        actions.forward = UpstreamResponse(statusCode: statusCode, branch: branch)
        hasForwardedFinal = true
        if isInvite && !hasForwarded2xx {
            actions.branchesToCancel = cancelRemaining()
        }
        hasForwarded2xx = true
        return actions
    }

    private mutating func complete(_ branch: Int, with candidate: Candidate) -> Actions {
        guard pendingBranches.contains(branch) else { return Actions(allBranchesCompleted: pendingBranches.isEmpty) }
        pendingBranches.remove(branch)
        if candidate.statusCode == 401 || candidate.statusCode == 407 {
            challengeBranches.insert(branch)
        }
        if isBetter(candidate) {
            best = candidate
        }
        var actions = Actions(allBranchesCompleted: pendingBranches.isEmpty)
        if candidate.statusCode >= 600 && !hasReceived6xx {
            hasReceived6xx = true
            if isInvite { actions.branchesToCancel = cancelRemaining() }
        }
        return actions
    }

    /// Marks the remaining pending branches as cancelled and returns them (empty if already done).
    private mutating func cancelRemaining() -> BranchSet {
        guard !hasSentCancel, !pendingBranches.isEmpty else { return BranchSet() }
        hasSentCancel = true
        return pendingBranches
    }

    private func isBetter(_ candidate: Candidate) -> Bool {
        guard let best else { return true }
        let candidateRank = Self.rank(candidate.statusCode)
        let bestRank = Self.rank(best.statusCode)
        if candidateRank != bestRank { return candidateRank < bestRank }
        return best.isSynthetic && !candidate.isSynthetic
    }

    /// Lower is better: 6xx, 3xx, preferred 4xx, other 4xx, 5xx (§16.7 step 6).
    private static func rank(_ statusCode: Int) -> Int {
        switch statusCode {
        case 600...699: return 0
        case 300...399: return 1
        case 401, 407, 415, 420, 484: return 2
        case 400...499: return 3
        default: return 4
        }
    }
}
