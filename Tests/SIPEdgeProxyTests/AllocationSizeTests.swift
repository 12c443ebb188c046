import Glibc
import Testing
import SIPEdgeIO
import SIPMessage
import SIPTransaction
@testable import SIPEdgeProxy

/// glibc serves blocks of up to 1032 usable bytes from a per-thread cache; larger ones take
/// malloc's locked slow path, which also consolidates the fast bins. Objects made for every call
/// stay below that line.
@Suite("Per-call allocation sizes")
struct AllocationSizeTests {
    static let threadCacheLimit = 1032

    /// glibc's malloc_usable_size, which the Glibc module does not export (it lives in malloc.h).
    static let mallocUsableSize: @convention(c) (UnsafeMutableRawPointer?) -> Int = {
        guard let symbol = dlsym(nil, "malloc_usable_size") else { fatalError("no malloc_usable_size") }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutableRawPointer?) -> Int).self)
    }()

    @Test func aProxyTransactionFitsTheThreadCache() throws {
        let invite = try SIPMessage(parsing: """
            INVITE sip:bob@127.0.0.1 SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKsize1\r
            Max-Forwards: 70\r
            From: <sip:alice@127.0.0.1>;tag=a1\r
            To: <sip:bob@127.0.0.1>\r
            Call-ID: size-1\r
            CSeq: 1 INVITE\r
            Contact: <sip:alice@127.0.0.1:5062>\r
            Content-Length: 0\r
            \r

            """)
        let hop = Hop(
            transport: .udp, address: try SocketAddress(ipAddress: "127.0.0.1", port: 5062), interfaceIndex: 0,
            connection: nil)
        let transaction = ProxyTransaction(
            serverKey: 1, request: invite, headers: try invite.routingHeaders(), replyHop: hop,
            server: .invite(ServerInviteTransaction(reliableTransport: false, settings: TimerSettings())))
        let usable = withExtendedLifetime(transaction) {
            Self.mallocUsableSize(Unmanaged.passUnretained(transaction).toOpaque())
        }
        #expect(usable <= Self.threadCacheLimit, "a ProxyTransaction takes \(usable) bytes")
    }
}
