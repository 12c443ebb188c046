import Glibc

/// Seconds on the monotonic clock, for timing benchmark loops.
public func monotonicSeconds() -> Double {
    var clock = timespec()
    clock_gettime(CLOCK_MONOTONIC, &clock)
    return Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
}
