/// A one-shot or repeating timer on an event loop. A scheduled timer keeps itself alive, so the
/// result of `scheduleOnce` may be ignored; keep it only to cancel.
public final class LoopTimer {
    let loop: EventLoop
    let handle: OpaquePointer
    let isRepeating: Bool
    private let body: () -> Void
    /// While armed, the timer holds one retain of itself (see `arm` and `disarm`).
    var isArmed = false

    init(loop: EventLoop, repeating: Bool, body: @escaping () -> Void) {
        self.loop = loop
        self.isRepeating = repeating
        self.body = body
        handle = Self.makeHandle(loop: loop, repeating: repeating)
        attach()
    }

    deinit {
        freeHandle()
    }

    /// Whether the timer will still fire.
    public var isScheduled: Bool { isArmed }

    /// Arms a one-shot timer to fire once after `milliseconds` (negative counts as 0), in place of
    /// any firing still pending: one timer re-armed instead of a new one per deadline.
    public func schedule(afterMilliseconds milliseconds: Int) {
        precondition(!isRepeating, "a repeating timer keeps its period")
        arm(milliseconds: max(milliseconds, 0))
    }

    /// Stops the timer; it will not fire again. Safe inside its own body.
    public func cancel() {
        disarm()
    }

    func fire() {
        body()
    }
}
