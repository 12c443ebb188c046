internal import CSIPScan

/// What the scanner found, kept next to the bytes it describes.
struct ScanSummary {
    var message: csip_message
    var headerCount: Int
    var byteCount: Int
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
        let storage = MessageStorage.create(minimumCapacity: capacity) { _ in
            ScanSummary(message: summary, headerCount: headers.count, byteCount: bytes.count)
        }
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
