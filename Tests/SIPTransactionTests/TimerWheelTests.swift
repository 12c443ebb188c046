import Testing

@testable import SIPTransaction

@Suite("Timer wheel")
struct TimerWheelTests {
    /// Advances `wheel` in steps of `step` up to `end`, recording (time, payload) of every firing.
    private func drive(_ wheel: inout TimerWheel<Int>, from start: Int, to end: Int, step: Int) -> [(
        time: Int, payload: Int
    )] {
        var fired: [(time: Int, payload: Int)] = []
        var now = start
        while now < end {
            now = min(now + step, end)
            wheel.advance(to: now) { fired.append((now, $0)) }
        }
        return fired
    }

    @Test("timers fire in deadline order, same-tick timers in scheduling order")
    func ordering() {
        var wheel = TimerWheel<Int>()
        _ = wheel.schedule(afterMilliseconds: 30, payload: 3)
        _ = wheel.schedule(afterMilliseconds: 10, payload: 1)
        _ = wheel.schedule(afterMilliseconds: 50, payload: 5)
        _ = wheel.schedule(afterMilliseconds: 20, payload: 2)
        _ = wheel.schedule(afterMilliseconds: 50, payload: 6)
        _ = wheel.schedule(afterMilliseconds: 40, payload: 4)
        // 41 ms rounds up to the 50 ms tick: same tick as 5 and 6, so it fires after them.
        _ = wheel.schedule(afterMilliseconds: 41, payload: 7)
        #expect(wheel.count == 7)
        var fired: [Int] = []
        wheel.advance(to: 1_000) { fired.append($0) }
        #expect(fired == [1, 2, 3, 4, 5, 6, 7])
        #expect(wheel.isEmpty)
    }

    @Test("a timer never fires early and at most one tick late")
    func resolution() {
        var wheel = TimerWheel<Int>(tickMilliseconds: 10, nowMilliseconds: 1_003)
        _ = wheel.schedule(afterMilliseconds: 25, payload: 1)  // due at 1 028
        _ = wheel.schedule(afterMilliseconds: 0, payload: 0)  // due now: waits for the next tick
        #expect(wheel.popExpired(upTo: 1_009) == nil)
        #expect(wheel.popExpired(upTo: 1_010) == 0)
        #expect(wheel.popExpired(upTo: 1_027) == nil)
        #expect(wheel.popExpired(upTo: 1_029) == nil)
        #expect(wheel.popExpired(upTo: 1_030) == 1)
        #expect(wheel.nowMilliseconds == 1_030)
    }

    @Test("time never goes backwards")
    func monotonic() {
        var wheel = TimerWheel<Int>()
        wheel.advance(to: 500) { _ in }
        wheel.advance(to: 100) { _ in }
        #expect(wheel.nowMilliseconds == 500)
        _ = wheel.schedule(afterMilliseconds: 100, payload: 1)
        #expect(wheel.popExpired(upTo: 590) == nil)
        #expect(wheel.popExpired(upTo: 600) == 1)
    }

    @Test("cancel removes exactly one timer and reports whether it was pending")
    func cancellation() {
        var wheel = TimerWheel<Int>()
        let first = wheel.schedule(afterMilliseconds: 100, payload: 1)
        let second = wheel.schedule(afterMilliseconds: 100, payload: 2)
        let third = wheel.schedule(afterMilliseconds: 200, payload: 3)
        #expect(wheel.cancel(second) == 2)
        #expect(wheel.cancel(second) == nil)
        #expect(wheel.count == 2)
        var fired: [Int] = []
        wheel.advance(to: 150) { fired.append($0) }
        #expect(fired == [1])
        #expect(wheel.cancel(first) == nil)
        #expect(wheel.cancel(third) == 3)
        wheel.advance(to: 1_000) { fired.append($0) }
        #expect(fired == [1])
        #expect(wheel.isEmpty)
    }

    @Test("delays longer than a revolution wait for their own revolution")
    func longDelays() {
        // 8 slots of 10 ms: one revolution is 80 ms.
        var wheel = TimerWheel<Int>(tickMilliseconds: 10, slotCount: 8)
        _ = wheel.schedule(afterMilliseconds: 1_000, payload: 1_000)
        _ = wheel.schedule(afterMilliseconds: 85, payload: 85)
        _ = wheel.schedule(afterMilliseconds: 5, payload: 5)
        _ = wheel.schedule(afterMilliseconds: 160, payload: 160)
        let fired = drive(&wheel, from: 0, to: 2_000, step: 10)
        #expect(fired.map(\.payload) == [5, 85, 160, 1_000])
        #expect(fired.map(\.time) == [10, 90, 160, 1_000])
    }

    @Test("a one-hour timer survives a single jump and an empty wheel skips ahead")
    func hourLongTimerInOneJump() {
        var wheel = TimerWheel<Int>()
        _ = wheel.schedule(afterMilliseconds: 3_600_000, payload: 7)
        #expect(wheel.popExpired(upTo: 3_599_990) == nil)
        #expect(wheel.popExpired(upTo: 7_200_000) == 7)
        #expect(wheel.popExpired(upTo: 86_400_000) == nil)
        _ = wheel.schedule(afterMilliseconds: 10, payload: 8)
        #expect(wheel.popExpired(upTo: 86_400_010) == 8)
    }

    @Test("ten thousand timers each fire once, in order, within one tick of their deadline")
    func manyTimers() {
        var wheel = TimerWheel<Int>(tickMilliseconds: 10, slotCount: 64)
        var deadlines: [Int] = []
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for index in 0..<10_000 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let delay = Int(seed >> 33) % 120_000
            deadlines.append(delay)
            _ = wheel.schedule(afterMilliseconds: delay, payload: index)
        }
        let fired = drive(&wheel, from: 0, to: 130_000, step: 7)
        #expect(fired.count == 10_000)
        #expect(Set(fired.map(\.payload)).count == 10_000)
        #expect(fired.allSatisfy { $0.time >= deadlines[$0.payload] && $0.time < deadlines[$0.payload] + 10 + 7 })
        #expect(zip(fired, fired.dropFirst()).allSatisfy { $0.time <= $1.time })
        // Within one tick, scheduling order (the payload index) is kept.
        let ticks = fired.map { (deadlines[$0.payload] + 9) / 10 }
        #expect(zip(ticks, ticks.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(wheel.isEmpty)
    }

    @Test("released storage is reused and old IDs cannot cancel the new occupant")
    func reuse() {
        var wheel = TimerWheel<Int>()
        let old = wheel.schedule(afterMilliseconds: 10, payload: 1)
        #expect(wheel.popExpired(upTo: 10) == 1)
        for round in 0..<1_000 {
            let ids = (0..<4).map { wheel.schedule(afterMilliseconds: 10 + $0, payload: round * 4 + $0) }
            #expect(wheel.cancel(old) == nil)
            #expect(wheel.cancel(ids[3]) == round * 4 + 3)
            var fired: [Int] = []
            wheel.advance(to: wheel.nowMilliseconds + 20) { fired.append($0) }
            #expect(fired == [round * 4, round * 4 + 1, round * 4 + 2])
        }
        #expect(wheel.nodeStorageCount == 4)
        #expect(wheel.isEmpty)
    }

    @Test("an owner can schedule and cancel between pops, even in the slot being drained")
    func reentrantDraining() {
        var wheel = TimerWheel<Int>()
        _ = wheel.schedule(afterMilliseconds: 10, payload: 1)
        let second = wheel.schedule(afterMilliseconds: 10, payload: 2)
        _ = wheel.schedule(afterMilliseconds: 10, payload: 3)
        var fired: [(Int, Int)] = []
        var now = 0
        while now < 100 {
            now += 10
            while let payload = wheel.popExpired(upTo: now) {
                fired.append((now, payload))
                if payload == 1 {
                    #expect(wheel.cancel(second) == 2)
                    // Due in the same tick as the slot being drained, a new timer still waits a tick.
                    _ = wheel.schedule(afterMilliseconds: 0, payload: 4)
                }
                if payload < 10 { _ = wheel.schedule(afterMilliseconds: 30, payload: payload * 10) }
            }
        }
        #expect(fired.map(\.1) == [1, 3, 4, 10, 30, 40])
        #expect(fired.map(\.0) == [10, 10, 20, 40, 40, 50])
    }

    @Test("the slot count is rounded up to a power of two")
    func slotCountRounding() {
        #expect(TimerWheel<Int>(slotCount: 1_000).slotCount == 1_024)
        #expect(TimerWheel<Int>(slotCount: 1).slotCount == 1)
        #expect(TimerWheel<Int>().tickMilliseconds == 10)
    }
}
