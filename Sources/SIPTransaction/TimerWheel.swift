/// A hashed timing wheel: O(1) schedule and cancel, time injected by the owner.
///
/// The wheel divides time into ticks (default 10 ms) and keeps one list of timers per slot; a timer
/// lives in the slot of its deadline tick, and a delay longer than one revolution simply waits there
/// until the cursor reaches its tick. A timer fires at the first tick boundary at or after its
/// deadline, so never early and at most one tick late; timers due in the same tick fire in the order
/// they were scheduled.
///
/// Storage is one contiguous array of nodes linked into per-slot lists, with a free list of released
/// nodes: once the wheel has held its peak number of timers, scheduling allocates nothing.
///
/// The wheel never reads a clock. The owner reports the time with ``popExpired(upTo:)`` (or
/// ``advance(to:fire:)``), and ``schedule(afterMilliseconds:payload:)`` counts from the latest time
/// reported. Times are milliseconds on any monotonic scale starting at or above zero.
public struct TimerWheel<Payload> {
    /// Identifies one scheduled timer, for ``TimerWheel/cancel(_:)``; stale once the timer fired or
    /// was cancelled, even if its storage is reused.
    public struct ID: Hashable, Sendable {
        fileprivate let index: Int32
        fileprivate let generation: UInt32
    }

    fileprivate struct Node {
        var payload: Payload?
        var deadlineTick: Int
        var previous: Int32
        var next: Int32
        var generation: UInt32
    }

    private static var none: Int32 { -1 }
    /// `resumeNode` value meaning "scan the current tick's slot from its head".
    private static var fromHead: Int32 { -2 }

    /// The length of one tick, in milliseconds.
    public let tickMilliseconds: Int
    /// The number of slots in one revolution (a power of two).
    public let slotCount: Int
    /// The latest time the owner reported.
    public private(set) var nowMilliseconds: Int
    /// The number of scheduled timers.
    public private(set) var count = 0

    private var nodes: [Node] = []
    private var heads: [Int32]
    private var tails: [Int32]
    private var freeList: Int32 = TimerWheel.none
    /// Every tick up to and including this one has fired all its timers.
    private var processedTick: Int
    /// Where the scan of tick `processedTick + 1` resumes (keeps draining a crowded slot linear).
    private var resumeNode: Int32 = TimerWheel.fromHead

    /// Creates an empty wheel.
    /// - Parameters:
    ///   - tickMilliseconds: the resolution; must be positive.
    ///   - slotCount: slots per revolution, rounded up to a power of two; more slots mean shorter
    ///     lists when many timers are far in the future.
    ///   - nowMilliseconds: the current time; must not be negative.
    ///   - reservingCapacity: timers to make room for up front, so the warm-up does not allocate either.
    public init(
        tickMilliseconds: Int = 10,
        slotCount: Int = 1024,
        nowMilliseconds: Int = 0,
        reservingCapacity: Int = 0
    ) {
        precondition(tickMilliseconds > 0, "the tick must be positive")
        precondition(slotCount > 0 && slotCount <= 1 << 20, "the slot count must be in 1...2^20")
        precondition(nowMilliseconds >= 0, "time must not be negative")
        var slots = 1
        while slots < slotCount { slots <<= 1 }
        self.tickMilliseconds = tickMilliseconds
        self.slotCount = slots
        self.nowMilliseconds = nowMilliseconds
        self.processedTick = nowMilliseconds / tickMilliseconds
        self.heads = Array(repeating: TimerWheel.none, count: slots)
        self.tails = Array(repeating: TimerWheel.none, count: slots)
        nodes.reserveCapacity(reservingCapacity)
    }

    /// Whether no timer is scheduled.
    public var isEmpty: Bool { count == 0 }

    /// How many nodes the storage holds: the peak number of timers scheduled at once, since released
    /// nodes are reused.
    var nodeStorageCount: Int { nodes.count }

    /// Schedules `payload` to fire `afterMilliseconds` after the latest reported time (at the next
    /// tick at the earliest, so even a zero delay waits for time to move on).
    /// - Returns: an ID for ``cancel(_:)``.
    public mutating func schedule(afterMilliseconds delay: Int, payload: Payload) -> ID {
        precondition(delay >= 0, "a timer delay must not be negative")
        let deadline = nowMilliseconds + delay
        let roundedUp = (deadline + tickMilliseconds - 1) / tickMilliseconds
        let deadlineTick = max(roundedUp, nowMilliseconds / tickMilliseconds + 1)

        let index: Int32
        if freeList != TimerWheel.none {
            index = freeList
            freeList = nodes[Int(index)].next
            nodes[Int(index)].payload = payload
            nodes[Int(index)].deadlineTick = deadlineTick
        } else {
            precondition(nodes.count < Int(Int32.max), "too many timers")
            index = Int32(nodes.count)
            nodes.append(
                Node(
                    payload: payload,
                    deadlineTick: deadlineTick,
                    previous: TimerWheel.none,
                    next: TimerWheel.none,
                    generation: 0
                )
            )
        }
        link(index, intoSlot: deadlineTick & (slotCount - 1))
        count += 1
        return ID(index: index, generation: nodes[Int(index)].generation)
    }

    /// Cancels a scheduled timer.
    /// - Returns: its payload, or nil if it already fired or was cancelled.
    @discardableResult
    public mutating func cancel(_ id: ID) -> Payload? {
        guard id.index >= 0, Int(id.index) < nodes.count, nodes[Int(id.index)].generation == id.generation,
            nodes[Int(id.index)].payload != nil
        else { return nil }
        if resumeNode == id.index { resumeNode = nodes[Int(id.index)].next }
        return release(id.index)
    }

    /// Moves time forward to `now` (earlier times are ignored) and removes and returns the next timer
    /// due by then, or nil when none is left.
    ///
    /// Call it in a loop; between calls the owner may schedule and cancel timers, which is what a
    /// timer firing usually leads to. Timers come out in deadline-tick order. Cost: one step per
    /// elapsed tick plus the timers in the slots visited (none when the wheel is empty).
    public mutating func popExpired(upTo now: Int) -> Payload? {
        if now > nowMilliseconds { nowMilliseconds = now }
        let targetTick = nowMilliseconds / tickMilliseconds
        while processedTick < targetTick {
            guard count > 0 else {
                processedTick = targetTick
                resumeNode = TimerWheel.fromHead
                break
            }
            let tick = processedTick + 1
            var node = resumeNode == TimerWheel.fromHead ? heads[tick & (slotCount - 1)] : resumeNode
            while node != TimerWheel.none {
                let next = nodes[Int(node)].next
                if nodes[Int(node)].deadlineTick <= tick {
                    resumeNode = next
                    return release(node)
                }
                node = next
            }
            processedTick = tick
            resumeNode = TimerWheel.fromHead
        }
        return nil
    }

    /// Moves time forward to `now` and fires every timer due by then, in deadline-tick order.
    ///
    /// `fire` must not touch the wheel (it is being mutated); an owner that reschedules from a
    /// firing uses ``popExpired(upTo:)`` instead.
    public mutating func advance(to now: Int, fire: (Payload) -> Void) {
        while let payload = popExpired(upTo: now) {
            fire(payload)
        }
    }

    private mutating func link(_ index: Int32, intoSlot slot: Int) {
        let tail = tails[slot]
        nodes[Int(index)].previous = tail
        nodes[Int(index)].next = TimerWheel.none
        if tail == TimerWheel.none {
            heads[slot] = index
        } else {
            nodes[Int(tail)].next = index
        }
        tails[slot] = index
    }

    /// Unlinks a scheduled node, puts it on the free list and returns its payload.
    private mutating func release(_ index: Int32) -> Payload? {
        let i = Int(index)
        let slot = nodes[i].deadlineTick & (slotCount - 1)
        let previous = nodes[i].previous
        let next = nodes[i].next
        if previous == TimerWheel.none { heads[slot] = next } else { nodes[Int(previous)].next = next }
        if next == TimerWheel.none { tails[slot] = previous } else { nodes[Int(next)].previous = previous }

        let payload = nodes[i].payload
        nodes[i].payload = nil
        nodes[i].generation &+= 1
        nodes[i].previous = TimerWheel.none
        nodes[i].next = freeList
        freeList = index
        count -= 1
        return payload
    }
}

extension TimerWheel: Sendable where Payload: Sendable {}
extension TimerWheel.Node: Sendable where Payload: Sendable {}
