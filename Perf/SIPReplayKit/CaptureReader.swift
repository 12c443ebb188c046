// The only file that talks to libpcap: opening a capture (pcap or pcapng), its link type, and the
// packets one by one as owned byte arrays. libpcap's failures become `CaptureError` in
// `CaptureError.fromLibpcap`, nowhere else.
import Glibc
internal import CLibPcap

/// Why a capture cannot be used.
public enum CaptureError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libpcap could not open the file (missing, unreadable, not a pcap or pcapng capture).
    case cannotOpen(path: String, reason: String)
    /// The capture's link layer is not one this reader decodes.
    case unsupportedLinkType(path: String, linkType: Int32, name: String)
    /// Reading failed before any packet could be read.
    case readFailed(path: String, reason: String)
    /// The capture holds no SIP message this reader could find.
    case noSIP(path: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): return "cannot open capture \(path): \(reason)"
        case .unsupportedLinkType(let path, let linkType, let name):
            return "unsupported link type \(linkType) (\(name)) in \(path); "
                + "supported: Ethernet, Linux cooked (SLL, SLL2), raw IP, loopback (NULL, LOOP)"
        case .readFailed(let path, let reason): return "cannot read capture \(path): \(reason)"
        case .noSIP(let path): return "no SIP messages in \(path)"
        }
    }
}

extension CaptureError {
    /// The one place a libpcap failure becomes a Swift error: `errorText` is libpcap's error
    /// buffer or `pcap_geterr`, `opening` tells whether the handle could not even be opened.
    static func fromLibpcap(path: String, errorText: String, opening: Bool) -> CaptureError {
        let reason = errorText.isEmpty ? "unknown libpcap error" : errorText
        return opening ? .cannotOpen(path: path, reason: reason) : .readFailed(path: path, reason: reason)
    }
}

/// Link layers the reader decodes.
public enum LinkLayer: Sendable, Equatable {
    case ethernet, linuxCooked, linuxCooked2, rawIP, loopback, ipv4, ipv6
}

/// One captured packet: its time, the bytes libpcap kept and the length it had on the wire.
public struct CapturedPacket: Sendable {
    /// Seconds since the epoch.
    public var time: Double
    public var bytes: [UInt8]
    public var originalLength: Int
}

/// What ended the reading of a capture.
public enum CaptureEnd: Sendable, Equatable {
    case endOfFile
    /// The file ended in the middle of a packet (or another read error); what came before is kept.
    case truncated(reason: String)
}

/// Reads a pcap or pcapng file through libpcap, packet by packet.
public final class CaptureReader {
    public let path: String
    public let linkLayer: LinkLayer
    /// libpcap's name of the link type (`EN10MB`, `LINUX_SLL` ...).
    public let linkTypeName: String
    /// Set once `next()` has returned nil.
    public private(set) var end: CaptureEnd? = nil
    private let handle: OpaquePointer

    /// Opens `path`; throws for a missing or unreadable file, a file that is not a capture, and a
    /// link type the reader does not decode.
    public init(path: String) throws(CaptureError) {
        self.path = path
        let opened: Result<OpaquePointer, CaptureError> = withUnsafeTemporaryAllocation(
            of: CChar.self, capacity: Int(PCAP_ERRBUF_SIZE)
        ) { errbuf in
            errbuf.initialize(repeating: 0)
            if let handle = pcap_open_offline(path, errbuf.baseAddress) { return .success(handle) }
            let text = String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .failure(CaptureError.fromLibpcap(path: path, errorText: text, opening: true))
        }
        let handle: OpaquePointer
        switch opened {
        case .success(let value): handle = value
        case .failure(let error): throw error
        }
        let linkType = pcap_datalink(handle)
        let name = pcap_datalink_val_to_name(linkType).map { String(cString: $0) } ?? "unknown"
        guard let layer = CaptureReader.layer(linkType) else {
            pcap_close(handle)
            throw .unsupportedLinkType(path: path, linkType: linkType, name: name)
        }
        self.handle = handle
        self.linkLayer = layer
        self.linkTypeName = name
    }

    deinit { pcap_close(handle) }

    private static func layer(_ linkType: Int32) -> LinkLayer? {
        switch linkType {
        case DLT_EN10MB: return .ethernet
        case DLT_LINUX_SLL: return .linuxCooked
        case DLT_LINUX_SLL2: return .linuxCooked2
        case 12, 14, 101: return .rawIP  // DLT_RAW on Linux/BSD, LINKTYPE_RAW
        case DLT_NULL, 108: return .loopback  // DLT_LOOP is 108 except on OpenBSD
        case DLT_IPV4: return .ipv4
        case DLT_IPV6: return .ipv6
        default: return nil
        }
    }

    /// The next packet, or nil at the end of the file or when the file is truncated (see `end`).
    public func next() -> CapturedPacket? {
        if end != nil { return nil }
        var header: UnsafeMutablePointer<pcap_pkthdr>? = nil
        var data: UnsafePointer<UInt8>? = nil
        let status = pcap_next_ex(handle, &header, &data)
        switch status {
        case 1:
            guard let header, let data else { return nil }
            let caplen = Int(header.pointee.caplen)
            // A pcap record stores the seconds as an unsigned 32-bit count, which libpcap passes
            // through a signed one: seconds past 2^31 (2038, or a corrupt clock) come back negative.
            var seconds = Int64(header.pointee.ts.tv_sec)
            if seconds < 0 { seconds += 1 << 32 }
            let time = Double(seconds) + Double(header.pointee.ts.tv_usec) / 1_000_000
            return CapturedPacket(
                time: time, bytes: Array(UnsafeBufferPointer(start: data, count: caplen)),
                originalLength: Int(header.pointee.len))
        case PCAP_ERROR_BREAK:  // -2: no more packets
            end = .endOfFile
            return nil
        default:
            let text = pcap_geterr(handle).map { String(cString: $0) } ?? ""
            let error = CaptureError.fromLibpcap(path: path, errorText: text, opening: false)
            if case .readFailed(_, let reason) = error { end = .truncated(reason: reason) }
            return nil
        }
    }
}
