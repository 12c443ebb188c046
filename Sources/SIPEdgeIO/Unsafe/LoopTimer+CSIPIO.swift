internal import CSIPIO

extension LoopTimer {
    static func makeHandle(loop: EventLoop, repeating: Bool) -> OpaquePointer {
        guard let handle = csip_io_timer_new(loop.handle, repeating ? 1 : 0) else {
            fatalError("out of memory creating a timer")
        }
        return handle
    }

    func attach() {
        let context = Unmanaged.passUnretained(self).toOpaque()
        if isRepeating {
            csip_io_timer_attach(handle, { Unmanaged<LoopTimer>.fromOpaque($0!).takeUnretainedValue().fire() }, context)
        } else {
            csip_io_timer_attach(
                handle,
                { context in
                    // Takes back the retain made by `arm`; the timer lives until its body returns.
                    let timer = Unmanaged<LoopTimer>.fromOpaque(context!).takeRetainedValue()
                    timer.isArmed = false
                    timer.fire()
                },
                context)
        }
    }

    /// Starts the timer and, while it is armed, keeps it alive with one retain.
    func arm(milliseconds: Int) {
        let result = csip_io_timer_start(handle, UInt64(milliseconds))
        precondition(result == 0, "timer could not be armed: \(String(cString: csip_io_strerror(result)))")
        if !isArmed {
            isArmed = true
            _ = Unmanaged.passRetained(self)
        }
    }

    func disarm() {
        guard isArmed else { return }
        csip_io_timer_stop(handle)
        isArmed = false
        Unmanaged.passUnretained(self).release()
    }

    func freeHandle() { csip_io_timer_free(handle) }
}
