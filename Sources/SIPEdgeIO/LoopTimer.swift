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

    /// Stops the timer; it will not fire again. Safe inside its own body.
    public func cancel() {
        disarm()
    }

    func fire() {
        body()
    }
}
