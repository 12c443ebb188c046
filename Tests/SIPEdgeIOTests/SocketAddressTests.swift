import Glibc
import SIPEdgeIO
import Testing

@Suite("SocketAddress")
struct SocketAddressTests {
    @Test("IPv4 parses and prints")
    func ipv4() throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 5060)
        #expect(address.ipAddress == "127.0.0.1")
        #expect(address.port == 5060)
        #expect(!address.isIPv6)
        #expect(address.description == "127.0.0.1:5060")
    }

    @Test("IPv6 parses, prints in canonical form, and brackets its description")
    func ipv6() throws {
        let address = try SocketAddress(ipAddress: "0:0:0:0:0:0:0:1", port: 5061)
        #expect(address.ipAddress == "::1")
        #expect(address.isIPv6)
        #expect(address.description == "[::1]:5061")
        #expect(address == (try SocketAddress(ipAddress: "::1", port: 5061)))
    }

    @Test("equality and hashing use address and port")
    func hashing() throws {
        let a = try SocketAddress(ipAddress: "10.0.0.1", port: 5060)
        #expect(a == (try SocketAddress(ipAddress: "10.0.0.1", port: 5060)))
        #expect(a != (try SocketAddress(ipAddress: "10.0.0.1", port: 5062)))
        #expect(a != (try SocketAddress(ipAddress: "10.0.0.2", port: 5060)))
        #expect(Set([a, a.withPort(5060), a.withPort(1)]).count == 2)
    }

    @Test("host names, brackets and garbage are rejected", arguments: ["localhost", "[::1]", "1.2.3", "::g", ""])
    func invalid(text: String) {
        #expect {
            try SocketAddress(ipAddress: text, port: 1)
        } throws: { error in
            (error as? SIPIOError)?.code == .invalidAddress
        }
    }
}
