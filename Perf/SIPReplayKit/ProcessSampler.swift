import Glibc

// ProcessSampler: CPU time and memory of the proxy under test, read from /proc like
// Perf/LoadBench/load-bench.sh does (the sum of se.sum_exec_runtime over every thread).

/// One reading of a process (and, when asked, its descendants).
public struct ProcessSample: Sendable, Equatable {
    /// CPU time consumed so far, in milliseconds, summed over threads (and descendants).
    public var cpuMilliseconds: Double
    /// Resident set size now (VmRSS), in KiB.
    public var rssKilobytes: Int
    /// Peak resident set size (VmHWM), in KiB; with descendants, the sum of each one's peak.
    public var peakRssKilobytes: Int
    /// Processes that contributed to this sample (1 without descendants).
    public var processCount: Int
    /// Where the CPU time came from.
    public var cpuSource: ProcessSampler.CPUSource

    public init(
        cpuMilliseconds: Double, rssKilobytes: Int, peakRssKilobytes: Int, processCount: Int = 1,
        cpuSource: ProcessSampler.CPUSource = .sched
    ) {
        self.cpuMilliseconds = cpuMilliseconds
        self.rssKilobytes = rssKilobytes
        self.peakRssKilobytes = peakRssKilobytes
        self.processCount = processCount
        self.cpuSource = cpuSource
    }
}

/// Samples the CPU time and memory of one process from /proc.
///
/// CPU time is the sum of `se.sum_exec_runtime` of /proc/PID/task/*/sched (nanosecond precision,
/// kernels with CONFIG_SCHED_DEBUG); when that is unreadable, utime + stime of /proc/PID/stat
/// (clock-tick precision). Memory is VmRSS and VmHWM of /proc/PID/status. With
/// `includeDescendants`, every process whose ppid chain (from /proc/*/stat) leads to the PID adds
/// its CPU time and memory; descendants that exited between two samples take their CPU time with
/// them, so deltas are only meaningful over long-lived children.
public struct ProcessSampler: Sendable {
    public enum CPUSource: String, Sendable {
        /// Sum of se.sum_exec_runtime over threads.
        case sched
        /// utime + stime of /proc/PID/stat.
        case stat
    }

    public let pid: Int32
    public let includeDescendants: Bool
    /// When false, /proc/PID/stat is used even where the sched files are readable.
    public let preferSched: Bool
    /// Root of the proc file system (tests may point it elsewhere).
    let procRoot: String

    public init(pid: Int32, includeDescendants: Bool = false, preferSched: Bool = true) {
        self.init(pid: pid, includeDescendants: includeDescendants, preferSched: preferSched, procRoot: "/proc")
    }

    init(pid: Int32, includeDescendants: Bool, preferSched: Bool, procRoot: String) {
        self.pid = pid
        self.includeDescendants = includeDescendants
        self.preferSched = preferSched
        self.procRoot = procRoot
    }

    /// Reads the process now; nil when it does not exist (any more) or is a zombie.
    public func sample() -> ProcessSample? {
        guard var total = sampleOne(pid) else { return nil }
        if includeDescendants {
            for child in descendants(of: pid) {
                guard let one = sampleOne(child) else { continue }  // exited meanwhile
                total.cpuMilliseconds += one.cpuMilliseconds
                total.rssKilobytes += one.rssKilobytes
                total.peakRssKilobytes += one.peakRssKilobytes
                total.processCount += 1
                if one.cpuSource == .stat { total.cpuSource = .stat }
            }
        }
        return total
    }

    /// CPU seconds spent per 1000 calls between two samples, which is CPU milliseconds per call;
    /// nil when there were no calls.
    public static func cpuSecondsPer1000Calls(from start: ProcessSample, to end: ProcessSample, calls: Int) -> Double? {
        guard calls > 0 else { return nil }
        let milliseconds = Swift.max(end.cpuMilliseconds - start.cpuMilliseconds, 0)
        return milliseconds / Double(calls)
    }

    // MARK: - One process

    func sampleOne(_ pid: Int32) -> ProcessSample? {
        let base = "\(procRoot)/\(pid)"
        guard let status = readProcFile(base + "/status"),
            let memory = Self.parseStatusMemory(status)
        else { return nil }
        var cpu: Double?
        var source = CPUSource.sched
        if preferSched { cpu = schedCPUMilliseconds(base) }
        if cpu == nil {
            guard let stat = readProcFile(base + "/stat"),
                let ticks = Self.parseStatCPUTicks(stat)
            else { return nil }
            cpu = Double(ticks) * 1000 / Double(Self.clockTicksPerSecond)
            source = .stat
        }
        return ProcessSample(
            cpuMilliseconds: cpu ?? 0, rssKilobytes: memory.rss, peakRssKilobytes: memory.peak,
            processCount: 1, cpuSource: source)
    }

    /// Sum of se.sum_exec_runtime over the threads of one process; nil when no sched file of a
    /// thread could be read.
    func schedCPUMilliseconds(_ base: String) -> Double? {
        var total = 0.0
        var found = false
        for tid in Self.numericEntries(of: base + "/task") {
            guard let text = readProcFile("\(base)/task/\(tid)/sched"),
                let ms = Self.parseSchedRuntime(text)
            else { continue }
            total += ms
            found = true
        }
        return found ? total : nil
    }

    /// Every process whose ppid chain leads to `root`, breadth first.
    func descendants(of root: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for pid in Self.numericEntries(of: procRoot) {
            guard let stat = readProcFile("\(procRoot)/\(pid)/stat"),
                let ppid = Self.parseStatParent(stat)
            else { continue }
            children[ppid, default: []].append(pid)
        }
        var result: [Int32] = []
        var queue = children[root] ?? []
        var seen: Set<Int32> = [root]
        while let next = queue.first {
            queue.removeFirst()
            guard seen.insert(next).inserted else { continue }
            result.append(next)
            queue.append(contentsOf: children[next] ?? [])
        }
        return result
    }

    // MARK: - Parsers (internal for the tests)

    /// se.sum_exec_runtime of a sched file, in milliseconds.
    static func parseSchedRuntime(_ text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix("se.sum_exec_runtime") {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let number = line[line.index(after: colon)...].trimmingSpaces()
            return Double(number)
        }
        return nil
    }

    /// VmRSS and VmHWM (KiB) of a status file; nil without VmRSS (a zombie or kernel thread).
    static func parseStatusMemory(_ text: String) -> (rss: Int, peak: Int)? {
        var rss: Int?
        var peak: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") {
                rss = kilobytes(line.dropFirst(6))
            } else if line.hasPrefix("VmHWM:") {
                peak = kilobytes(line.dropFirst(6))
            }
        }
        guard let rss else { return nil }
        return (rss, Swift.max(peak ?? rss, rss))
    }

    private static func kilobytes(_ field: Substring) -> Int? {
        var text = field.trimmingSpaces()
        if text.hasSuffix("kB") { text = text.dropLast(2).trimmingSpaces() }
        return Int(text)
    }

    /// The fields of a stat file after the command name (which may hold spaces and parentheses):
    /// index 0 is the state (field 3 of proc(5)).
    static func statFieldsAfterName(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
    }

    /// utime + stime (fields 14 and 15), in clock ticks.
    static func parseStatCPUTicks(_ text: String) -> Int? {
        guard let fields = statFieldsAfterName(text), fields.count > 12,
            let utime = Int(fields[11]), let stime = Int(fields[12])
        else { return nil }
        return utime + stime
    }

    /// ppid (field 4).
    static func parseStatParent(_ text: String) -> Int32? {
        guard let fields = statFieldsAfterName(text), fields.count > 1 else { return nil }
        return Int32(fields[1])
    }

    static let clockTicksPerSecond: Int = {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? ticks : 100
    }()

    /// Names of a directory that are decimal numbers (PIDs, TIDs).
    static func numericEntries(of path: String) -> [Int32] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var result: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.prefix(while: { $0 != 0 })
                return String(decoding: bytes, as: UTF8.self)
            }
            if let number = Int32(name), number > 0 { result.append(number) }
        }
        return result
    }
}

/// The whole text of a /proc file (whose size reads as 0), nil when it cannot be opened.
fileprivate func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}
