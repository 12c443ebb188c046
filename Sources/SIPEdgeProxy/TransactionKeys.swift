import SIPMessage

/// Branch values and table keys. Our branches are
/// `z9hG4bK` + 16 hex digits of loop hash + `-` + 16 hex digits of transaction id, so a response's
/// branch leads straight to its client transaction and a request's Vias reveal loops (§16.3 step 4).
enum BranchFormat {
    static let magicCookie = "z9hG4bK"
    static let length = 7 + 16 + 1 + 16

    /// Our branch for a forwarded request.
    static func append(loopHash: UInt64, transactionID: UInt64, to output: inout [UInt8]) {
        output.append(ascii: "z9hG4bK")
        output.append(hex: loopHash)
        output.append(UInt8(ascii: "-"))
        output.append(hex: transactionID)
    }

    /// The transaction id in one of our branches; nil for branches we did not make.
    static func transactionID(in branch: ByteRange, of message: SIPMessage) -> UInt64? {
        guard isOurs(branch, of: message) else { return nil }
        return parseHex(message, from: branch.offset + 24, count: 16)
    }

    /// The loop hash in one of our branches.
    static func loopHash(in branch: ByteRange, of message: SIPMessage) -> UInt64? {
        guard isOurs(branch, of: message) else { return nil }
        return parseHex(message, from: branch.offset + 7, count: 16)
    }

    private static func isOurs(_ branch: ByteRange, of message: SIPMessage) -> Bool {
        branch.count == length && message.byte(at: branch.offset + 23) == UInt8(ascii: "-")
            && message.equals(ByteRange(offset: branch.offset, count: 7), magicCookie)
    }

    private static func parseHex(_ message: SIPMessage, from offset: Int, count: Int) -> UInt64? {
        var value: UInt64 = 0
        for position in offset..<(offset + count) {
            let digit = message.byte(at: position)
            let nibble: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = digit - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }

    /// RFC 3261 §16.6 step 8: a hash of what stays the same when a request loops back unchanged
    /// (Request-URI, From tag, To tag, Call-ID, CSeq number). A spiral changes the Request-URI.
    static func loopHash(of request: SIPMessage, _ headers: RoutingHeaders, seed: UInt64) -> UInt64 {
        var hash = request.hash(request.requestURIRange, seed: seed)
        if let tag = headers.fromTag { hash = request.hash(tag, seed: hash) }
        if let tag = headers.toTag { hash = request.hash(tag, seed: hash &+ 1) }
        hash = request.hash(headers.callID, seed: hash)
        return (hash ^ UInt64(headers.cseq.number)) &* 0x0000_0100_0000_01b3
    }

    /// True when `branch` carries the RFC 3261 magic cookie.
    static func isRFC3261(_ branch: ByteRange, of message: SIPMessage) -> Bool {
        branch.count > 7 && message.equals(ByteRange(offset: branch.offset, count: 7), magicCookie)
    }
}

enum TransactionKey {
    /// The server-transaction key of a request (RFC 3261 §17.2.3): branch, sent-by and method, with
    /// ACK and CANCEL mapped to the INVITE they belong to when `matchingInvite` is set.
    /// Requests from RFC 2543 elements (no magic cookie) are keyed by Call-ID, CSeq number, From tag,
    /// Request-URI and top Via instead (§17.2.3, second part).
    static func server(_ request: SIPMessage, _ headers: RoutingHeaders, method: SIPMethod, seed: UInt64) -> UInt64 {
        let via = headers.topVia
        var hash: UInt64
        if let branch = via.branchRange, BranchFormat.isRFC3261(branch, of: request) {
            hash = request.hash(branch, seed: seed)
            hash = request.hash(via.hostRange, seed: hash)
            hash = (hash ^ UInt64(via.port ?? 0)) &* 0x0000_0100_0000_01b3
        } else {
            hash = request.hash(via.range, seed: seed)
            hash = request.hash(headers.callID, seed: hash)
            if let tag = headers.fromTag { hash = request.hash(tag, seed: hash) }
            hash = request.hash(request.requestURIRange, seed: hash)
            hash = (hash ^ UInt64(headers.cseq.number)) &* 0x0000_0100_0000_01b3
        }
        return (hash ^ UInt64(method.rawValue)) &* 0x0000_0100_0000_01b3
    }

    /// Whether two requests with the same key really are the same transaction (the key is a hash).
    static func sameTransaction(_ stored: ProxyTransaction, _ candidate: Inbound) -> Bool {
        stored.match.matches(candidate.message, candidate.headers.topVia)
    }
}

/// What identifies a server transaction beyond its hash key, kept as a few bytes so that the
/// request itself can be let go once it was answered: the branch and sent-by host of its top
/// Via (the whole Via for RFC 2543 requests without the magic cookie), and the sent-by port.
struct TransactionMatch {
    private let bytes: [UInt8]
    private let branchCount: Int
    private let port: Int?
    private let hasBranch: Bool

    init(_ request: SIPMessage, _ via: Via) {
        var bytes: [UInt8] = []
        if let branch = via.branchRange, BranchFormat.isRFC3261(branch, of: request) {
            request.append(branch, to: &bytes)
            branchCount = branch.count
            request.append(via.hostRange, to: &bytes)
            hasBranch = true
        } else {
            request.append(via.range, to: &bytes)
            branchCount = bytes.count
            hasBranch = false
        }
        self.bytes = bytes
        self.port = via.port
    }

    func matches(_ message: SIPMessage, _ via: Via) -> Bool {
        guard hasBranch else { return message.equals(via.range, bytes[...]) }
        guard let branch = via.branchRange, via.port == port else { return false }
        return message.equals(branch, bytes[..<branchCount]) && message.equals(via.hostRange, bytes[branchCount...])
    }
}
