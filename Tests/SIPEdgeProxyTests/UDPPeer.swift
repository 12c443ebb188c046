import Glibc

/// A blocking UDP socket on 127.0.0.1 that plays a caller or callee in proxy tests; every receive
/// is bounded by a timeout.
final class UDPPeer {
    let descriptor: Int32
    let port: UInt16
    let isIPv6: Bool

    init(ipv6: Bool = false) {
        isIPv6 = ipv6
        let descriptor = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(descriptor >= 0, "socket failed")
        self.descriptor = descriptor
        var storage = UDPPeer.loopback(ipv6: ipv6, port: 0)
        var length = socklen_t(ipv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        precondition(bound == 0, "bind failed")
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        self.port = withUnsafePointer(to: &storage) { pointer in
            ipv6
                ? pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                : pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    deinit { close(descriptor) }

    /// 127.0.0.1 or ::1 with a port, as a sockaddr_storage.
    private static func loopback(ipv6: Bool, port: UInt16) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutablePointer(to: &storage) { pointer in
            if ipv6 {
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    address.pointee.sin6_family = sa_family_t(AF_INET6)
                    address.pointee.sin6_addr = in6addr_loopback
                    address.pointee.sin6_port = port.bigEndian
                }
            } else {
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    address.pointee.sin_family = sa_family_t(AF_INET)
                    address.pointee.sin_addr.s_addr = inet_addr("127.0.0.1")
                    address.pointee.sin_port = port.bigEndian
                }
            }
        }
        return storage
    }

    func send(_ text: String, toPort port: UInt16) {
        var storage = UDPPeer.loopback(ipv6: isIPv6, port: port)
        let length = socklen_t(isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(descriptor, bytes, bytes.count, 0, $0, length)
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
