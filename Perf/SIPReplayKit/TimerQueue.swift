// TimerQueue: the replay's timers as plain values in a binary min-heap, so a call's timers cost no
// allocation and no loop event each. Cancelling is lazy: the owner checks, when an entry comes due,
// whether it still means anything (a generation or state it kept).

/// What a due timer asks for.
enum ReplayTimerKind: UInt8 {
    /// Send the call's step `index` (its delay passed).
    case sendStep
    /// Resend the call's retransmitted message `index` (RFC 3261 timers A, E, G).
    case retransmit
    /// Fail the call unless it made progress since.
    case timeout
    /// Forget a finished call (its late retransmissions were absorbed until now).
    case forget
}

struct ReplayTimer {
    var deadline: UInt64
    /// Insertion order, so timers due at the same millisecond run first in, first out.
    var sequence: UInt64
    var call: Int
    var kind: ReplayTimerKind
    var index: Int

    func precedes(_ other: ReplayTimer) -> Bool {
        deadline != other.deadline ? deadline < other.deadline : sequence < other.sequence
    }
}

struct TimerQueue {
    private var heap: [ReplayTimer] = []
    private var nextSequence: UInt64 = 0

    var count: Int { heap.count }

    /// When the earliest timer is due.
    var earliestDeadline: UInt64? { heap.first?.deadline }

    mutating func schedule(at deadline: UInt64, call: Int, _ kind: ReplayTimerKind, index: Int = 0) {
        heap.append(ReplayTimer(deadline: deadline, sequence: nextSequence, call: call, kind: kind, index: index))
        nextSequence &+= 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// The earliest timer due at `now`, removed; nil when none is due.
    mutating func popDue(now: UInt64) -> ReplayTimer? {
        guard let top = heap.first, top.deadline <= now else { return nil }
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var smallest = left
            if left + 1 < heap.count, heap[left + 1].precedes(heap[left]) { smallest = left + 1 }
            guard heap[smallest].precedes(heap[parent]) else { break }
            heap.swapAt(smallest, parent)
            parent = smallest
        }
        return top
    }
}
