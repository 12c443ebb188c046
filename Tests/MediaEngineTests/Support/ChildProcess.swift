import Glibc

/// A child process started with `posix_spawn`; its stdout and stderr go to a log file. Stop it with
/// ``terminate()`` (SIGTERM to its PID, then SIGKILL after 5 s), which also reaps it.
final class ChildProcess {
    let pid: pid_t
    let logPath: String
    /// The raw `waitpid` status once the child has exited.
    private(set) var waitStatus: Int32?

    struct SpawnError: Error, CustomStringConvertible {
        let executable: String
        let errno: Int32
        var description: String { "posix_spawn \(executable): \(String(cString: strerror(errno)))" }
    }

    init(executable: String, arguments: [String], logPath: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard result == 0 else { throw SpawnError(executable: executable, errno: result) }
        self.pid = pid
        self.logPath = logPath
    }

    deinit {
        terminate()
    }

    /// Whether the child still runs; reaps it if it has exited.
    func isRunning() -> Bool {
        guard waitStatus == nil else { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            waitStatus = status
            return false
        }
        return result == 0
    }

    /// "exit status N", "killed by signal N" or "running".
    var exitDescription: String {
        guard let status = waitStatus else { return "running" }
        let signal = status & 0x7F
        return signal == 0 ? "exit status \((status >> 8) & 0xFF)" : "killed by signal \(signal)"
    }

    /// SIGTERM by PID, up to 5 s for it to exit, then SIGKILL; always reaps the child.
    func terminate() {
        guard isRunning() else { return }
        kill(pid, SIGTERM)
        for _ in 0..<500 {
            if !isRunning() { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        waitStatus = status
    }

    /// The last `count` lines of the log.
    func logTail(_ count: Int = 25) -> String {
        guard let file = fopen(logPath, "r") else { return "(no log at \(logPath))" }
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            lines.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            if lines.count > count { lines.removeFirst() }
        }
        return lines.joined()
    }
}

/// The first executable called `name` in PATH, /usr/bin, /usr/sbin or /usr/local/bin.
func findExecutable(_ name: String) -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
    return directories.map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
}

/// The first port in `range` that a UDP socket can bind on 127.0.0.1 right now.
func freeUDPPort(in range: Range<UInt16>) -> UInt16? {
    range.first { port in
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
