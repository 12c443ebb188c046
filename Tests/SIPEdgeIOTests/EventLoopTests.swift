import Foundation
import SIPEdgeIO
import Synchronization
import Testing

@Suite("EventLoop")
struct EventLoopTests {
    @Test("execute from other threads runs every task on the loop, in each thread's order")
    func executeFromOtherThreads() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let order = Recorder<(producer: Int, sequence: Int, onLoop: Bool)>()
        let producers = 4
        let tasksEach = 250
        let started = Atomic<Int>(0)
        for producer in 0..<producers {
            Thread {
                started.add(1, ordering: .relaxed)
                for sequence in 0..<tasksEach {
                    loop.execute { order.append((producer, sequence, loop.isCurrent)) }
                }
            }.start()
        }
        #expect(!loop.isCurrent)
        #expect(await eventually { order.count == producers * tasksEach })
        let values = order.values
        #expect(values.count == producers * tasksEach)
        #expect(values.allSatisfy { $0.onLoop })
        for producer in 0..<producers {
            #expect(values.filter { $0.producer == producer }.map(\.sequence) == Array(0..<tasksEach))
        }
        await running.shutdown()
    }

    @Test("stop before run still stops the loop")
    func stopBeforeRun() async throws {
        let loop = try EventLoop(index: 7)
        #expect(loop.index == 7)
        loop.stop()
        let returned = Atomic<Bool>(false)
        Thread {
            loop.run()
            returned.store(true, ordering: .releasing)
        }.start()
        #expect(await eventually { returned.load(ordering: .acquiring) })
    }

    @Test("a one-shot timer fires once, no earlier than asked")
    func onceTimer() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let fired = Recorder<UInt64>()
        let start = try await running.run {
            let start = loop.nowMilliseconds
            loop.scheduleOnce(afterMilliseconds: 50) { fired.append(loop.nowMilliseconds) }
            return start
        }
        #expect(await eventually { fired.count == 1 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(fired.count == 1)
        #expect(fired.values[0] - start >= 50)
        await running.shutdown()
    }

    @Test("a repeating timer fires until cancelled, then never again")
    func repeatingTimer() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let ticks = Recorder<UInt64>()
        let (start, timer) = try await running.run {
            (loop.nowMilliseconds, LoopBound(value: loop.scheduleRepeating(everyMilliseconds: 10) { ticks.append(loop.nowMilliseconds) }))
        }
        #expect(await eventually { ticks.count >= 5 })
        let stillScheduled = try await running.run { () -> Bool in
            timer.value.cancel()
            return timer.value.isScheduled
        }
        #expect(!stillScheduled)
        let countAtCancel = ticks.count
        try await Task.sleep(for: .milliseconds(60))
        #expect(ticks.count == countAtCancel)
        // libevent schedules each tick from the previous deadline, so tick n is due at start + 10·n
        // (a late tick is followed by an early one, but none comes before its deadline).
        let times = ticks.values
        for (n, time) in zip(1..., times) {
            #expect(time - start >= UInt64(10 * n - 1), "tick \(n) early: \(times) from \(start)")
        }
        await running.shutdown()
    }

    @Test("a repeating timer can cancel itself from its body")
    func repeatingTimerCancelsItself() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let ticks = Recorder<Int>()
        try await running.run {
            let holder = LoopBound(value: Box<LoopTimer>())
            holder.value.object = loop.scheduleRepeating(everyMilliseconds: 5) {
                ticks.append(ticks.count + 1)
                if ticks.count == 3 {
                    holder.value.object?.cancel()
                    holder.value.object = nil
                }
            }
        }
        #expect(await eventually { ticks.count == 3 })
        try await Task.sleep(for: .milliseconds(50))
        #expect(ticks.values == [1, 2, 3])
        await running.shutdown()
    }

    @Test("a cancelled one-shot timer never fires")
    func cancelledOnceTimer() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let fired = Recorder<Int>()
        let scheduled = try await running.run { () -> (Bool, Bool) in
            let timer = loop.scheduleOnce(afterMilliseconds: 30) { fired.append(1) }
            let before = timer.isScheduled
            timer.cancel()
            return (before, timer.isScheduled)
        }
        #expect(scheduled == (true, false))
        try await Task.sleep(for: .milliseconds(100))
        #expect(fired.count == 0)
        await running.shutdown()
    }

    @Test("a made timer fires once per arming; arming again replaces the pending firing")
    func reArmedTimer() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let fired = Recorder<UInt64>()
        let (start, timer) = try await running.run { () -> (UInt64, LoopBound<LoopTimer>) in
            let timer = loop.makeTimer { fired.append(loop.nowMilliseconds) }
            let unarmed = timer.isScheduled
            timer.schedule(afterMilliseconds: 200)
            timer.schedule(afterMilliseconds: 40)  // earlier: replaces the 200
            return (unarmed ? 0 : loop.nowMilliseconds, LoopBound(value: timer))
        }
        #expect(start != 0, "a made timer is not armed")
        #expect(await eventually { fired.count == 1 })
        #expect(fired.values[0] - start >= 40 && fired.values[0] - start < 200)
        try await running.run {
            timer.value.schedule(afterMilliseconds: 30)
            timer.value.schedule(afterMilliseconds: 80)  // later: replaces the 30
        }
        #expect(await eventually { fired.count == 2 })
        try await Task.sleep(for: .milliseconds(250))
        #expect(fired.count == 2, "the replaced firings never come")
        #expect(fired.values[1] - fired.values[0] >= 80)
        _ = try await running.run { timer.value.cancel() }
        await running.shutdown()
    }

    @Test("the monotonic clock advances with real time")
    func monotonicClock() async throws {
        let loop = try EventLoop(index: 0)
        let first = loop.nowMilliseconds
        try await Task.sleep(for: .milliseconds(30))
        let elapsed = loop.nowMilliseconds - first
        #expect(elapsed >= 30 && elapsed < 5000)
    }

    @Test("localhost resolves from /etc/hosts")
    func resolveLocalhost() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let results = Recorder<Result<[SocketAddress], SIPIOError>>()
        try await running.run { loop.resolve(host: "localhost") { results.append($0) } }
        #expect(await eventually { results.count == 1 })
        let addresses = try results.values[0].get()
        #expect(addresses.contains(try SocketAddress(ipAddress: "127.0.0.1", port: 0)))
        #expect(addresses.allSatisfy { $0.ipAddress == "127.0.0.1" || $0.ipAddress == "::1" })
        #expect(Set(addresses).count == addresses.count)
        await running.shutdown()
    }

    @Test("a numeric IPv6 host resolves to itself")
    func resolveNumeric() async throws {
        let running = try RunningLoop()
        let loop = running.loop
        let results = Recorder<Result<[SocketAddress], SIPIOError>>()
        try await running.run { loop.resolve(host: "::1") { results.append($0) } }
        #expect(await eventually { results.count == 1 })
        #expect(try results.values[0].get() == [try SocketAddress(ipAddress: "::1", port: 0)])
        await running.shutdown()
    }
}
