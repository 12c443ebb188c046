import Glibc

/// A POSIX thread running one closure; `join()` waits for it. Worker loops each get one, so every
/// loop has a thread of its own for its whole life.
final class LoopThread {
    private var thread = pthread_t()

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let result = pthread_create(&thread, nil, { argument in
            let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, box)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    func join() {
        pthread_join(thread, nil)
    }
}
