// Link layer, IPv4/IPv6 and UDP/TCP headers, down to the transport payload. Pure Swift over the
// owned packet bytes; IPv4 fragments are reassembled here.
import Glibc

/// One side of a flow.
struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address bytes (4 for IPv4, 16 for IPv6).
    var address: [UInt8]
    var port: UInt16

    var host: String {
        if address.count == 4 { return address.map { String($0) }.joined(separator: ".") }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = address.withUnsafeBytes { raw in inet_ntop(AF_INET6, raw.baseAddress, &text, socklen_t(text.count)) }
        return ok == nil ? "?" : String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var description: String { address.count == 4 ? "\(host):\(port)" : "[\(host)]:\(port)" }
}

/// What a packet carried.
enum DecodedPacket {
    case udp(source: Endpoint, destination: Endpoint, payload: [UInt8])
    case tcp(source: Endpoint, destination: Endpoint, sequence: UInt32, flags: UInt8, payload: [UInt8])
    /// The user messages of the complete SCTP DATA chunks of a packet.
    case sctp(source: Endpoint, destination: Endpoint, messages: [[UInt8]])
    /// A fragment kept until its datagram is complete.
    case fragmentHeld
    case skipped(SkipReason)
}

enum SkipReason {
    case truncated, notIP, unsupportedTransport, fragment
}

/// Decodes packets of one link layer; keeps the IPv4 fragments awaiting reassembly.
struct PacketDecoder {
    let linkLayer: LinkLayer
    private var fragments: [FragmentKey: FragmentBuffer] = [:]
    private(set) var fragmentsReassembled = 0
    private var sctpPartial: [SCTPStreamKey: [UInt8]] = [:]

    init(linkLayer: LinkLayer) { self.linkLayer = linkLayer }

    /// Fragments of datagrams that never completed.
    var fragmentsIncomplete: Int { fragments.values.reduce(0) { $0 + $1.pieces.count } }

    mutating func decode(_ packet: [UInt8]) -> DecodedPacket {
        let p = packet
        switch linkLayer {
        case .ethernet:
            return ethernet(p, 0)
        case .linuxCooked:
            guard p.count >= 16 else { return .skipped(.truncated) }
            return network(p, 16, etherType: be16(p, 14))
        case .linuxCooked2:
            guard p.count >= 20 else { return .skipped(.truncated) }
            return network(p, 20, etherType: be16(p, 0))
        case .loopback:
            guard p.count >= 4 else { return .skipped(.truncated) }
            let little = UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
            let family = little > 0xFFFF ? little.byteSwapped : little  // host or network order
            switch family {
            case 2: return ip(p, 4, version: 4)
            case 10, 24, 28, 30: return ip(p, 4, version: 6)  // AF_INET6 on Linux and the BSDs
            default: return .skipped(.notIP)
            }
        case .rawIP:
            guard p.count >= 1 else { return .skipped(.truncated) }
            return ip(p, 0, version: Int(p[0] >> 4))
        case .ipv4: return ip(p, 0, version: 4)
        case .ipv6: return ip(p, 0, version: 6)
        }
    }

    private mutating func ethernet(_ p: [UInt8], _ start: Int) -> DecodedPacket {
        guard p.count >= start + 14 else { return .skipped(.truncated) }
        var type = be16(p, start + 12)
        var offset = start + 14
        while type == 0x8100 || type == 0x88A8 {  // 802.1Q / 802.1ad tags
            guard p.count >= offset + 4 else { return .skipped(.truncated) }
            type = be16(p, offset + 2)
            offset += 4
        }
        return network(p, offset, etherType: type)
    }

    /// GRE, as port mirrors (ERSPAN) use it: the mirrored Ethernet frame or IP packet inside.
    private mutating func gre(_ d: [UInt8], _ o: Int) -> DecodedPacket {
        guard d.count >= o + 4 else { return .skipped(.truncated) }
        let flags = be16(d, o)
        let proto = be16(d, o + 2)
        var offset = o + 4
        if flags & 0x8000 != 0 { offset += 4 }  // checksum
        if flags & 0x2000 != 0 { offset += 4 }  // key
        if flags & 0x1000 != 0 { offset += 4 }  // sequence number
        switch proto {
        case 0x88BE:  // ERSPAN type II (type I has no sequence number and no header)
            return ethernet(d, flags & 0x1000 != 0 ? offset + 8 : offset)
        case 0x22EB:  // ERSPAN type III, with an optional 8-byte subheader
            guard d.count >= offset + 12 else { return .skipped(.truncated) }
            return ethernet(d, offset + 12 + (d[offset + 11] & 0x01 != 0 ? 8 : 0))
        case 0x6558: return ethernet(d, offset)
        default: return network(d, offset, etherType: proto)
        }
    }

    /// SCTP: the user messages of DATA chunks; a message split over several chunks (B ... E) is
    /// put back together per association direction and stream, in capture order.
    private mutating func sctp(_ src: [UInt8], _ dst: [UInt8], _ d: [UInt8], _ o: Int) -> DecodedPacket {
        guard d.count >= o + 12 else { return .skipped(.truncated) }
        var messages: [[UInt8]] = []
        var offset = o + 12
        while offset + 4 <= d.count {
            let type = d[offset]
            let length = Int(be16(d, offset + 2))
            guard length >= 4, offset + length <= d.count else { break }
            if type == 0, length >= 16 {
                let flags = d[offset + 1]
                let key = SCTPStreamKey(
                    source: src, destination: dst, ports: UInt32(be16(d, o)) << 16 | UInt32(be16(d, o + 2)),
                    stream: be16(d, offset + 8))
                let data = d[(offset + 16)..<(offset + length)]
                if flags & 0x02 != 0 { sctpPartial[key] = [] }  // B: a message begins
                if sctpPartial[key] != nil { sctpPartial[key]!.append(contentsOf: data) }
                if flags & 0x01 != 0, let whole = sctpPartial.removeValue(forKey: key) { messages.append(whole) }  // E
            }
            offset += (length + 3) & ~3
        }
        return .sctp(
            source: Endpoint(address: src, port: be16(d, o)), destination: Endpoint(address: dst, port: be16(d, o + 2)),
            messages: messages)
    }

    private mutating func network(_ p: [UInt8], _ offset: Int, etherType: UInt16) -> DecodedPacket {
        switch etherType {
        case 0x0800: return ip(p, offset, version: 4)
        case 0x86DD: return ip(p, offset, version: 6)
        default: return .skipped(.notIP)
        }
    }

    private mutating func ip(_ p: [UInt8], _ offset: Int, version: Int) -> DecodedPacket {
        switch version {
        case 4: return ipv4(p, offset)
        case 6: return ipv6(p, offset)
        default: return .skipped(.notIP)
        }
    }

    private mutating func ipv4(_ p: [UInt8], _ o: Int) -> DecodedPacket {
        guard p.count >= o + 20, p[o] >> 4 == 4 else { return .skipped(p.count < o + 20 ? .truncated : .notIP) }
        let headerLength = Int(p[o] & 0x0F) * 4
        let totalLength = Int(be16(p, o + 2))
        guard headerLength >= 20, totalLength >= headerLength else { return .skipped(.notIP) }
        // Frames may carry padding past the IP datagram; a short capture is truncated.
        guard p.count >= o + totalLength else { return .skipped(.truncated) }
        let source = Array(p[(o + 12)..<(o + 16)])
        let destination = Array(p[(o + 16)..<(o + 20)])
        let proto = p[o + 9]
        let flagsOffset = be16(p, o + 6)
        let moreFragments = flagsOffset & 0x2000 != 0
        let fragmentOffset = Int(flagsOffset & 0x1FFF) * 8
        let payload = Array(p[(o + headerLength)..<(o + totalLength)])
        if moreFragments || fragmentOffset != 0 {
            let key = FragmentKey(source: source, destination: destination, id: be16(p, o + 4), proto: proto)
            var buffer = fragments[key] ?? FragmentBuffer()
            buffer.pieces.append((fragmentOffset, payload))
            if !moreFragments { buffer.totalLength = fragmentOffset + payload.count }
            guard let whole = buffer.assembled() else {
                fragments[key] = buffer
                if fragments.count > 4096 { fragments.removeAll() }  // bounded: give up on stale ones
                return .fragmentHeld
            }
            fragments[key] = nil
            fragmentsReassembled += 1
            return transport(proto, source, destination, whole, 0)
        }
        return transport(proto, source, destination, payload, 0)
    }

    private mutating func ipv6(_ p: [UInt8], _ o: Int) -> DecodedPacket {
        guard p.count >= o + 40 else { return .skipped(.truncated) }
        let payloadLength = Int(be16(p, o + 4))
        guard p.count >= o + 40 + payloadLength else { return .skipped(.truncated) }
        let source = Array(p[(o + 8)..<(o + 24)])
        let destination = Array(p[(o + 24)..<(o + 40)])
        var next = p[o + 6]
        var offset = o + 40
        let end = o + 40 + payloadLength
        while true {
            switch next {
            case 0, 43, 60:  // hop-by-hop, routing, destination options
                guard end >= offset + 8 else { return .skipped(.truncated) }
                next = p[offset]
                offset += (Int(p[offset + 1]) + 1) * 8
            case 44:  // fragment: only an unfragmented "atomic" fragment is read
                guard end >= offset + 8 else { return .skipped(.truncated) }
                let field = be16(p, offset + 2)
                if field & 0xFFF9 != 0 { return .skipped(.fragment) }
                next = p[offset]
                offset += 8
            default:
                guard offset <= end else { return .skipped(.truncated) }
                return transport(next, source, destination, Array(p[offset..<end]), 0)
            }
        }
    }

    private mutating func transport(_ proto: UInt8, _ src: [UInt8], _ dst: [UInt8], _ d: [UInt8], _ o: Int)
        -> DecodedPacket
    {
        switch proto {
        case 17:
            guard d.count >= o + 8 else { return .skipped(.truncated) }
            let length = Int(be16(d, o + 4))
            let end = length >= 8 ? min(d.count, o + length) : d.count
            if length > d.count - o { return .skipped(.truncated) }
            return .udp(
                source: Endpoint(address: src, port: be16(d, o)),
                destination: Endpoint(address: dst, port: be16(d, o + 2)),
                payload: Array(d[(o + 8)..<end]))
        case 6:
            guard d.count >= o + 20 else { return .skipped(.truncated) }
            let headerLength = Int(d[o + 12] >> 4) * 4
            guard headerLength >= 20, d.count >= o + headerLength else { return .skipped(.truncated) }
            let sequence = UInt32(be16(d, o + 4)) << 16 | UInt32(be16(d, o + 6))
            return .tcp(
                source: Endpoint(address: src, port: be16(d, o)),
                destination: Endpoint(address: dst, port: be16(d, o + 2)),
                sequence: sequence, flags: d[o + 13], payload: Array(d[(o + headerLength)...]))
        case 4:  // IPv4 in IPv4
            return ipv4(d, o)
        case 41:  // IPv6 in IPv4
            return ipv6(d, o)
        case 47:
            return gre(d, o)
        case 132:
            return sctp(src, dst, d, o)
        default:
            return .skipped(.unsupportedTransport)
        }
    }
}

@inline(__always) func be16(_ p: [UInt8], _ offset: Int) -> UInt16 { UInt16(p[offset]) << 8 | UInt16(p[offset + 1]) }

private struct SCTPStreamKey: Hashable {
    var source: [UInt8]
    var destination: [UInt8]
    var ports: UInt32
    var stream: UInt16
}

private struct FragmentKey: Hashable {
    var source: [UInt8]
    var destination: [UInt8]
    var id: UInt16
    var proto: UInt8
}

private struct FragmentBuffer {
    var pieces: [(Int, [UInt8])] = []
    var totalLength: Int? = nil

    /// The datagram's payload once every byte up to the last fragment is present.
    func assembled() -> [UInt8]? {
        guard let totalLength else { return nil }
        var whole = [UInt8](repeating: 0, count: totalLength)
        var covered = 0
        for (offset, bytes) in pieces.sorted(by: { $0.0 < $1.0 }) {
            if offset > covered { return nil }
            let end = min(totalLength, offset + bytes.count)
            if end > covered {
                whole.replaceSubrange(covered..<end, with: bytes[(covered - offset)..<(end - offset)])
                covered = end
            }
        }
        return covered == totalLength ? whole : nil
    }
}
