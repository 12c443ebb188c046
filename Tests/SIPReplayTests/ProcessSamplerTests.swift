import Glibc
import Testing

@testable import SIPReplayKit

@Suite struct ProcessSamplerTests {
    /// Spends about `milliseconds` of this thread's CPU time.
    private func burn(milliseconds: Int) -> UInt64 {
        var start = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
        var acc: UInt64 = 1
        while true {
            for i in 0..<100_000 { acc = acc &* 6364136223846793005 &+ UInt64(i) }
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            let elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1_000_000
            if elapsed >= milliseconds { return acc }
        }
    }

    @Test(arguments: [true, false])
    func selfCPUGrowsWhileBurning(preferSched: Bool) throws {
        let sampler = ProcessSampler(pid: getpid(), preferSched: preferSched)
        let before = try #require(sampler.sample())
        #expect(burn(milliseconds: 120) != 0)
        let after = try #require(sampler.sample())
        if !preferSched { #expect(after.cpuSource == .stat) }
        let delta = after.cpuMilliseconds - before.cpuMilliseconds
        // Clock-tick precision for /proc/PID/stat: allow one tick either way.
        #expect(delta >= 100, "CPU grew by \(delta) ms from \(before.cpuSource)")
        #expect(before.rssKilobytes > 0)
        #expect(after.peakRssKilobytes >= after.rssKilobytes)
        #expect(after.processCount == 1)
        let perCall = try #require(ProcessSampler.cpuSecondsPer1000Calls(from: before, to: after, calls: 10))
        #expect(abs(perCall - delta / 10) < 1e-9)
    }

    @Test func cpuPerThousandCalls() {
        let a = ProcessSample(cpuMilliseconds: 1000, rssKilobytes: 1, peakRssKilobytes: 1)
        let b = ProcessSample(cpuMilliseconds: 3500, rssKilobytes: 1, peakRssKilobytes: 1)
        // 2.5 CPU-seconds over 5000 calls = 0.5 s per 1000 calls.
        #expect(ProcessSampler.cpuSecondsPer1000Calls(from: a, to: b, calls: 5000) == 0.5)
        #expect(ProcessSampler.cpuSecondsPer1000Calls(from: a, to: b, calls: 0) == nil)
        #expect(ProcessSampler.cpuSecondsPer1000Calls(from: b, to: a, calls: 10) == 0)
    }

    @Test func deadProcessGivesNil() throws {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for arg in argv { free(arg) } }
        let rc = posix_spawn(&pid, "/bin/true", nil, nil, argv, environ)
        try #require(rc == 0)
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(ProcessSampler(pid: pid).sample() == nil)
        #expect(ProcessSampler(pid: Int32.max).sample() == nil)
        #expect(ProcessSampler(pid: pid, includeDescendants: true).sample() == nil)
    }

    @Test func descendantsAreIncluded() throws {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("5"), nil]
        defer { for arg in argv { free(arg) } }
        try #require(posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ) == 0)
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        // Wait until the child has exec'd sleep and has a resident set of its own.
        var found = false
        for _ in 0..<200 {
            if let child = ProcessSampler(pid: pid).sample(), child.rssKilobytes > 0,
                let stat = ProcessSamplerTests.read("/proc/\(pid)/cmdline"), stat.hasPrefix("/bin/sleep")
            {
                found = true
                break
            }
            usleep(10_000)
        }
        try #require(found)
        let sampler = ProcessSampler(pid: getpid(), includeDescendants: true)
        #expect(sampler.descendants(of: getpid()).contains(pid))
        // Peaks only grow, and sleep may still be loading its libraries: sample the
        // parts before the whole, so the whole cannot have been taken earlier than a part.
        let child = try #require(ProcessSampler(pid: pid).sample())
        let alone = try #require(ProcessSampler(pid: getpid()).sample())
        let family = try #require(sampler.sample())
        #expect(family.processCount >= 2)
        #expect(family.peakRssKilobytes >= alone.peakRssKilobytes + child.peakRssKilobytes)
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        while true {
            let c = fgetc(file)
            if c == EOF { break }
            bytes.append(UInt8(truncatingIfNeeded: c))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func parsers() {
        let sched = """
            sleep (1234, #threads: 1)
            -------------------------------------------------------------------
            se.exec_start                                :      12345678.901234
            se.vruntime                                  :          1.000000
            se.sum_exec_runtime                          :          1234.567890
            nr_switches                                  :                    3
            """
        #expect(ProcessSampler.parseSchedRuntime(sched) == 1234.567890)
        #expect(ProcessSampler.parseSchedRuntime("nothing: 1\n") == nil)

        let status = "Name:\tsiprec-edge\nVmPeak:\t  100000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n"
        let memory = ProcessSampler.parseStatusMemory(status)
        #expect(memory?.rss == 4096)
        #expect(memory?.peak == 5120)
        // A zombie has no VmRSS.
        #expect(ProcessSampler.parseStatusMemory("Name:\tx\nState:\tZ (zombie)\n") == nil)

        // The command name may hold spaces and parentheses.
        let stat = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 1 2 3\n"
        #expect(ProcessSampler.parseStatParent(stat) == 17)
        #expect(ProcessSampler.parseStatCPUTicks(stat) == 325)
        #expect(ProcessSampler.parseStatCPUTicks("12 (x) S 1 2") == nil)
    }
}
