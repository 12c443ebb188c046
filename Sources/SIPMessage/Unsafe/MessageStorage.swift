internal import CSIPScan

/// What the scanner found, kept next to the bytes it describes.
struct ScanSummary {
    var message: csip_message
    var headerCount: Int
    var byteCount: Int
    /// Index of the first header of each kind (`noHeader` when absent or beyond 254), so that
    /// looking up Via, CSeq or Call-ID does not walk the header table.
    var firstIndex = InlineArray<36, UInt8>(repeating: ScanSummary.noHeader)

    static let noHeader: UInt8 = 255
}

/// One allocation per received message: the scan summary in the header, then the message bytes,
/// then the scanner's header table. Immutable after creation, so it can cross event loops.
final class MessageStorage: ManagedBuffer<ScanSummary, UInt8> {
    /// Copies `bytes` (the documented one copy of a received message) and the scanner's results.
    static func make(
        bytes: UnsafeRawBufferPointer,
        summary: csip_message,
        headers: UnsafeBufferPointer<csip_header>
    ) -> MessageStorage {
        let headerStride = MemoryLayout<csip_header>.stride
        let headerStart = alignedHeaderOffset(byteCount: bytes.count)
        let capacity = headerStart + headers.count * headerStride
        var scanned = ScanSummary(message: summary, headerCount: headers.count, byteCount: bytes.count)
        for index in 0..<min(headers.count, Int(ScanSummary.noHeader)) {
            let kind = Int(headers[index].kind)
            if kind < scanned.firstIndex.count, scanned.firstIndex[kind] == ScanSummary.noHeader {
                scanned.firstIndex[kind] = UInt8(index)
            }
        }
        let storage = MessageStorage.create(minimumCapacity: capacity) { _ in scanned }
        let typed = unsafeDowncast(storage, to: MessageStorage.self)
        typed.withUnsafeMutablePointerToElements { base in
            let raw = UnsafeMutableRawPointer(base)
            if let source = bytes.baseAddress { raw.copyMemory(from: source, byteCount: bytes.count) }
            if let headerBase = headers.baseAddress, headers.count > 0 {
                (raw + headerStart).copyMemory(from: headerBase, byteCount: headers.count * headerStride)
            }
        }
        return typed
    }

    static func alignedHeaderOffset(byteCount: Int) -> Int {
        let alignment = MemoryLayout<csip_header>.alignment
        return (byteCount + alignment - 1) / alignment * alignment
    }

    var summary: csip_message { header.message }
    var headerCount: Int { header.headerCount }

    /// Where to start looking for the first header of `kind`: its index when known, the end of
    /// the table when it is absent, or 255 when the table is longer than the index can tell.
    func firstIndex(ofKind kind: UInt16) -> Int {
        let index = Int(kind) < header.firstIndex.count ? header.firstIndex[Int(kind)] : ScanSummary.noHeader
        if index != ScanSummary.noHeader { return Int(index) }
        return header.headerCount > Int(ScanSummary.noHeader) ? Int(ScanSummary.noHeader) : header.headerCount
    }
    var byteCount: Int { header.byteCount }

    /// The message bytes. Do not let the pointer escape `body`.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let count = header.byteCount
        return try withUnsafeMutablePointerToElements { base in
            try body(UnsafeRawBufferPointer(start: base, count: count))
        }
    }

    func scannedHeader(at index: Int) -> csip_header {
        let offset = MessageStorage.alignedHeaderOffset(byteCount: header.byteCount)
            + index * MemoryLayout<csip_header>.stride
        return withUnsafeMutablePointerToElements { base in
            UnsafeRawPointer(base).load(fromByteOffset: offset, as: csip_header.self)
        }
    }
}
