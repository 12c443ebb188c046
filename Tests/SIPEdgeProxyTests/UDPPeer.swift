import Glibc

/// A blocking UDP socket on 127.0.0.1 that plays a caller or callee in proxy tests; every receive
/// is bounded by a timeout.
final class UDPPeer {
    let descriptor: Int32
    let port: UInt16

    init() {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(descriptor >= 0, "socket failed")
        self.descriptor = descriptor
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(bound == 0, "bind failed")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        self.port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(descriptor) }

    func send(_ text: String, toPort port: UInt16) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(descriptor, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// The next datagram as text, or nil after `milliseconds`.
    func receive(timeoutMilliseconds milliseconds: Int = 2000) -> String? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(milliseconds)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Receives until a message whose first line starts with `prefix` arrives (others are
    /// returned too, in order), or the timeout passes.
    func receive(startingWith prefix: String, timeoutMilliseconds: Int = 2000) -> String? {
        var remaining = timeoutMilliseconds
        while remaining > 0 {
            guard let message = receive(timeoutMilliseconds: min(remaining, 200)) else {
                remaining -= 200
                continue
            }
            if message.hasPrefix(prefix) { return message }
        }
        return nil
    }
}

/// Reads headers out of a SIP message in tests.
struct TextMessage {
    let lines: [String]

    init(_ text: String) {
        let head = text.components(separatedBy: "\r\n\r\n").first ?? text
        lines = head.components(separatedBy: "\r\n")
    }

    var startLine: String { lines.first ?? "" }

    func values(_ name: String) -> [String] {
        lines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let header = line[..<colon].trimmingCharacters(in: " ")
            guard header.lowercased() == name.lowercased() else { return nil }
            return String(line[line.index(after: colon)...]).trimmingCharacters(in: " ")
        }
    }

    func value(_ name: String) -> String? { values(name).first }
}

extension String {
    func components(separatedBy separator: String) -> [String] {
        var result: [String] = []
        var rest = Substring(self)
        while let range = rest.firstRange(of: separator) {
            result.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        result.append(String(rest))
        return result
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        String(self.drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String { Substring(self).trimmingCharacters(in: set) }
}
