internal import CSIPScan

/// How the bytes were framed on the wire.
public enum Framing: Sendable {
    /// One UDP datagram: a missing Content-Length means "the rest of the datagram".
    case datagram
    /// One message already framed from a TCP/TLS stream.
    case stream
}

/// Limits applied while scanning.
public struct ScanLimits: Sendable {
    /// Messages larger than this are rejected.
    public var maxMessageSize: Int
    /// Header lines beyond this count are rejected.
    public var maxHeaders: Int

    public init(maxMessageSize: Int = 65535, maxHeaders: Int = 128) {
        self.maxMessageSize = maxMessageSize
        self.maxHeaders = maxHeaders
    }
}

extension SIPMessage {
    /// Scans `bytes` and keeps one owned copy of them with the scanner's index.
    ///
    /// - Throws: `SIPParseError` with a reason phrase fit for a 400; when the start line and headers
    ///   were readable, the error carries a partial message so a response can still be built.
    public init(parsing bytes: RawSpan, framing: Framing = .datagram, limits: ScanLimits = ScanLimits())
        throws(SIPParseError)
    {
        let result: Result<MessageStorage, SIPParseError> = bytes.withUnsafeBytes { raw in
            SIPMessage.scan(raw, framing: framing, limits: limits)
        }
        switch result {
        case .success(let storage): self.init(storage: storage)
        case .failure(let error): throw error
        }
    }

    /// Convenience for tests and tools: scans a byte array.
    public init(parsing bytes: [UInt8], framing: Framing = .datagram, limits: ScanLimits = ScanLimits())
        throws(SIPParseError)
    {
        try self.init(parsing: bytes.span.bytes, framing: framing, limits: limits)
    }

    /// Convenience for tests and tools: scans the UTF-8 bytes of a string.
    public init(parsing text: String, framing: Framing = .datagram, limits: ScanLimits = ScanLimits())
        throws(SIPParseError)
    {
        try self.init(parsing: Array(text.utf8), framing: framing, limits: limits)
    }

    /// Header slots scanned into first: 48 × 20 bytes stays within the 1 KiB that
    /// `withUnsafeTemporaryAllocation` keeps on the stack; a larger buffer is a heap allocation
    /// for every message.
    static let stackHeaderCapacity = 48

    private static func scan(
        _ raw: UnsafeRawBufferPointer,
        framing: Framing,
        limits: ScanLimits
    ) -> Result<MessageStorage, SIPParseError> {
        let allowed = max(1, limits.maxHeaders)
        let first = scan(raw, framing: framing, limits: limits, headerCapacity: min(allowed, stackHeaderCapacity))
        // Only a message with more headers than the stack buffer holds is scanned again.
        if case .failure(let error) = first, error.code == .tooManyHeaders, allowed > stackHeaderCapacity {
            return scan(raw, framing: framing, limits: limits, headerCapacity: allowed)
        }
        return first
    }

    private static func scan(
        _ raw: UnsafeRawBufferPointer,
        framing: Framing,
        limits: ScanLimits,
        headerCapacity capacity: Int
    ) -> Result<MessageStorage, SIPParseError> {
        withUnsafeTemporaryAllocation(of: csip_header.self, capacity: capacity) { headers in
            var summary = csip_message()
            var headerCount = capacity
            let flags = framing == .stream ? Int32(CSIP_SCAN_STREAM.rawValue) : Int32(CSIP_SCAN_DATAGRAM.rawValue)
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            let consumed = csip_scan_message(
                base, raw.count, &summary, headers.baseAddress, &headerCount, 0, flags, limits.maxMessageSize)
            if consumed > 0 {
                // A datagram may carry bytes past Content-Length; they are not part of the message.
                let length = framing == .stream ? Int(consumed) : raw.count
                let kept = UnsafeRawBufferPointer(rebasing: raw[0..<min(length, raw.count)])
                let storage = MessageStorage.make(
                    bytes: kept, summary: summary,
                    headers: UnsafeBufferPointer(rebasing: headers[0..<headerCount]))
                return .success(storage)
            }
            if consumed == CSIP_SCAN_INCOMPLETE {
                return .failure(SIPParseError(code: .incomplete, partial: nil))
            }
            let code = SIPParseError.Code(scannerError: summary.error)
            var partial: SIPMessage? = nil
            if summary.headers_complete == 1 {
                let storage = MessageStorage.make(
                    bytes: raw, summary: summary,
                    headers: UnsafeBufferPointer(rebasing: headers[0..<headerCount]))
                partial = SIPMessage(storage: storage)
            }
            return .failure(SIPParseError(code: code, partial: partial))
        }
    }
}

extension SIPParseError.Code {
    init(scannerError: UInt32) {
        switch Int(scannerError) {
        case Int(CSIP_ERR_EMPTY.rawValue): self = .empty
        case Int(CSIP_ERR_BAD_START_LINE.rawValue): self = .badStartLine
        case Int(CSIP_ERR_BAD_METHOD.rawValue): self = .badMethod
        case Int(CSIP_ERR_BAD_REQUEST_URI.rawValue): self = .badRequestURI
        case Int(CSIP_ERR_BAD_VERSION.rawValue): self = .badVersion
        case Int(CSIP_ERR_BAD_STATUS_CODE.rawValue): self = .badStatusCode
        case Int(CSIP_ERR_BAD_HEADER_NAME.rawValue): self = .badHeaderName
        case Int(CSIP_ERR_MISSING_COLON.rawValue): self = .missingColon
        case Int(CSIP_ERR_BAD_LINE_ENDING.rawValue): self = .badLineEnding
        case Int(CSIP_ERR_TOO_MANY_HEADERS.rawValue): self = .tooManyHeaders
        case Int(CSIP_ERR_BAD_CONTENT_LENGTH.rawValue): self = .badContentLength
        case Int(CSIP_ERR_BODY_TRUNCATED.rawValue): self = .bodyTruncated
        case Int(CSIP_ERR_MISSING_CONTENT_LENGTH.rawValue): self = .missingContentLength
        case Int(CSIP_ERR_TOO_LARGE.rawValue): self = .tooLarge
        case Int(CSIP_ERR_NO_HEADER_END.rawValue): self = .noHeaderEnd
        default: self = .badStartLine
        }
    }
}

extension SIPHeaderName {
    /// Classifies a header name through the scanner's table (any case, compact forms too).
    public init(classifying name: String) {
        var name = name
        let raw = name.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { csip_scan_header_kind($0.baseAddress, $0.count) }
        }
        self = SIPHeaderName(rawKind: UInt16(truncatingIfNeeded: raw))
    }
}

extension SIPMessage {
    /// Splits a comma-separated header value into trimmed elements (quotes and <...> honoured).
    /// Returns nil when a quote or '<' is left open.
    func splitValues(_ range: ByteRange, into body: (ByteRange) -> Bool) -> Bool {
        storage.withBytes { raw in
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { offsets in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { lengths in
                    let count = csip_scan_split_values(
                        base, UInt32(range.offset), UInt32(range.count), offsets.baseAddress, lengths.baseAddress, 64)
                    if count < 0 { return false }
                    for index in 0..<min(Int(count), 64) {
                        if !body(ByteRange(offset: Int(offsets[index]), count: Int(lengths[index]))) { break }
                    }
                    return true
                }
            }
        }
    }
}

/// The scanner's method classification for a token.
func scannerMethod(_ token: UnsafeRawBufferPointer) -> UInt32 {
    csip_scan_method(token.baseAddress?.assumingMemoryBound(to: CChar.self), token.count)
}
