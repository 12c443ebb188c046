import Glibc

internal import CSIPIO

extension SocketAddress {
    /// Parses a numeric address: "127.0.0.1", "::1" or "fe80::1%eth0" (no brackets, no host names).
    public init(ipAddress: String, port: UInt16) throws(SIPIOError) {
        var ipv4 = in_addr()
        if inet_pton(AF_INET, ipAddress, &ipv4) == 1 {
            self.init(host: .v4(ipv4.s_addr), port: port)
            return
        }
        let parts = ipAddress.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        var ipv6 = in6_addr()
        guard inet_pton(AF_INET6, String(parts[0]), &ipv6) == 1 else {
            throw SIPIOError(
                code: .invalidAddress, operation: "parse address \"\(ipAddress)\"",
                reason: "not a numeric IPv4 or IPv6 address")
        }
        var scopeID: UInt32 = 0
        if parts.count == 2 {
            let zone = String(parts[1])
            scopeID = UInt32(zone) ?? if_nametoindex(zone)
            guard scopeID != 0 else {
                throw SIPIOError(
                    code: .invalidAddress, operation: "parse address \"\(ipAddress)\"",
                    reason: "unknown IPv6 zone \"\(zone)\"")
            }
        }
        let (high, low) = withUnsafeBytes(of: ipv6) { ($0.load(as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self)) }
        self.init(host: .v6(high, low, scopeID: scopeID), port: port)
    }

    /// The numeric address text, without the port ("127.0.0.1", "::1", "fe80::1%2").
    public var ipAddress: String {
        // INET6_ADDRSTRLEN (46) covers both families.
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 46) { text in
            switch host {
            case .v4(let address):
                var raw = in_addr(s_addr: address)
                inet_ntop(AF_INET, &raw, text.baseAddress, 46)
                return String(cString: text.baseAddress!)
            case .v6(let high, let low, let scopeID):
                var raw = (high, low)
                inet_ntop(AF_INET6, &raw, text.baseAddress, 46)
                let address = String(cString: text.baseAddress!)
                return scopeID == 0 ? address : "\(address)%\(scopeID)"
            }
        }
    }

    /// Reads a `sockaddr_in` or `sockaddr_in6`; nil for other families.
    init?(sockaddr pointer: UnsafePointer<sockaddr>) {
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            let address = UnsafeRawPointer(pointer).load(as: sockaddr_in.self)
            self.init(host: .v4(address.sin_addr.s_addr), port: UInt16(bigEndian: address.sin_port))
        case AF_INET6:
            let address = UnsafeRawPointer(pointer).load(as: sockaddr_in6.self)
            let (high, low) = withUnsafeBytes(of: address.sin6_addr) {
                ($0.load(as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self))
            }
            self.init(
                host: .v6(high, low, scopeID: address.sin6_scope_id), port: UInt16(bigEndian: address.sin6_port))
        default:
            return nil
        }
    }

    /// Calls `body` with this address as a `sockaddr` and its length.
    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        switch host {
        case .v4(let address):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = port.bigEndian
            raw.sin_addr.s_addr = address
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(let high, let low, let scopeID):
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = port.bigEndian
            raw.sin6_scope_id = scopeID
            withUnsafeMutableBytes(of: &raw.sin6_addr) {
                $0.storeBytes(of: high, as: UInt64.self)
                $0.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
            }
            return withUnsafePointer(to: &raw) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }
}
