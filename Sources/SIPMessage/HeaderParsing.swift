/// The parts of one Via element (RFC 3261 §20.42), as ranges into the message.
public struct Via: Sendable {
    /// The whole element, from "SIP" to the end of its last parameter.
    public var range: ByteRange
    /// "UDP", "TCP", "TLS", ...
    public var transportRange: ByteRange
    /// The host of sent-by, without IPv6 brackets.
    public var hostRange: ByteRange
    public var port: Int?
    /// Everything from the first ';' to the end of the element (may be empty).
    public var parametersRange: ByteRange
    public var branchRange: ByteRange?
    public var receivedRange: ByteRange?
    /// The whole `rport` or `rport=N` parameter, when present.
    public var rportParameterRange: ByteRange?
    public var rport: Int?
}

/// CSeq: sequence number and method.
public struct CSeq: Sendable, Hashable {
    public var number: UInt32
    public var method: SIPMethod
    public var methodRange: ByteRange
}

/// The parts of a SIP or SIPS URI (RFC 3261 §19.1), as ranges into the message.
public struct URIParts: Sendable {
    public var range: ByteRange
    public var schemeRange: ByteRange
    public var userRange: ByteRange?
    /// Without IPv6 brackets.
    public var hostRange: ByteRange
    public var port: Int?
    /// From the first ';' after host:port up to '?' or the end.
    public var parametersRange: ByteRange
    public var transportRange: ByteRange?
    public var maddrRange: ByteRange?
    public var isLooseRouting: Bool
}

/// A name-addr or addr-spec header value (From, To, Contact, Route, Record-Route).
public struct NameAddress: Sendable {
    public var range: ByteRange
    public var uriRange: ByteRange
    /// The header parameters after the URI (after '>' or, for an addr-spec, after the first ';').
    public var parametersRange: ByteRange
    public var tagRange: ByteRange?
}

/// Max-Forwards as read from the message.
public enum MaxForwards: Sendable, Equatable {
    case absent
    case value(Int)
    case invalid
}

extension SIPMessage {
    // MARK: Routing headers, parsed on access

    /// The Call-ID value.
    public var callID: ByteRange? { firstHeader(.callID).map(\.valueRange) }

    /// The CSeq header, nil when absent or unreadable.
    public var cseq: CSeq? {
        guard let header = firstHeader(.cseq) else { return nil }
        return withAllBytes { parseCSeq($0, header.valueRange) }
    }

    /// The first element of the first Via header.
    public var topVia: Via? {
        var result: Via?
        forEachValue(.via) { element in
            result = withAllBytes { parseVia($0, element) }
            return false
        }
        return result
    }

    /// Every Via element in order; return false to stop. `top`, the message's top Via parsed
    /// already (``RoutingHeaders/topVia``), is handed on rather than parsed again.
    public func forEachVia(top: Via? = nil, _ body: (Via) -> Bool) {
        forEachValue(.via) { element in
            if let top, top.range == element { return body(top) }
            guard let via = withAllBytes({ parseVia($0, element) }) else { return true }
            return body(via)
        }
    }

    public var from: NameAddress? { firstHeader(.from).flatMap { nameAddress($0.valueRange) } }
    public var to: NameAddress? { firstHeader(.to).flatMap { nameAddress($0.valueRange) } }
    public var fromTag: ByteRange? { from?.tagRange }
    public var toTag: ByteRange? { to?.tagRange }

    public var maxForwards: MaxForwards {
        guard let header = firstHeader(.maxForwards) else { return .absent }
        return withAllBytes { raw in
            guard let value = parseDecimal(raw, header.valueRange), value <= 255 else { return .invalid }
            return .value(value)
        }
    }

    /// Parses a name-addr / addr-spec element.
    public func nameAddress(_ range: ByteRange) -> NameAddress? {
        withAllBytes { parseNameAddress($0, range) }
    }

    /// Parses a SIP/SIPS URI.
    public func uri(_ range: ByteRange) -> URIParts? {
        withAllBytes { parseURI($0, range) }
    }

    /// The Request-URI's parts (requests only).
    public var requestURI: URIParts? { isRequest ? uri(requestURIRange) : nil }

    /// The value of a `;name=value` parameter inside `parameters`, or an empty range for a
    /// parameter without value; nil when the parameter is absent.
    public func parameter(_ name: String, in parameters: ByteRange) -> ByteRange? {
        withAllBytes { raw in findParameter(raw, parameters, name) }
    }
}

// MARK: - Byte-level parsers (internal, over the message's bytes)

@inline(__always) private func byte(_ raw: UnsafeRawBufferPointer, _ index: Int) -> UInt8 { raw[index] }

private func skipWhitespace(_ raw: UnsafeRawBufferPointer, _ index: inout Int, _ end: Int) {
    while index < end, isLinearWhitespace(raw[index]) { index += 1 }
}

private func trimmed(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> ByteRange {
    var lower = start
    var upper = end
    while lower < upper, isLinearWhitespace(raw[lower]) { lower += 1 }
    while upper > lower, isLinearWhitespace(raw[upper - 1]) { upper -= 1 }
    return ByteRange(offset: lower, count: upper - lower)
}

func parseDecimal(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> Int? {
    guard range.count > 0, range.count <= 10 else { return nil }
    var value = 0
    for index in range.offset..<range.end {
        let digit = raw[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        value = value * 10 + Int(digit)
    }
    return value
}

/// A port number: decimal digits up to 65535.
private func parsePort(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> Int? {
    parseDecimal(raw, range).flatMap { $0 <= 65535 ? $0 : nil }
}

/// Reads a host at `index`: an IPv6 reference without its brackets, or everything up to ':', ';'
/// or whitespace. Nil for an empty host or an unclosed '['.
private func readHost(_ raw: UnsafeRawBufferPointer, _ index: inout Int, _ end: Int) -> ByteRange? {
    let start: Int
    let host: ByteRange
    if index < end, raw[index] == UInt8(ascii: "[") {
        start = index + 1
        while index < end, raw[index] != UInt8(ascii: "]") { index += 1 }
        guard index < end else { return nil }
        host = ByteRange(offset: start, count: index - start)
        index += 1
    } else {
        start = index
        while index < end, raw[index] != UInt8(ascii: ":"), raw[index] != UInt8(ascii: ";"), !isLinearWhitespace(raw[index]) {
            index += 1
        }
        host = ByteRange(offset: start, count: index - start)
    }
    return host.count > 0 ? host : nil
}

private func parseCSeq(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> CSeq? {
    var index = range.offset
    let end = range.end
    let numberStart = index
    while index < end, raw[index] >= UInt8(ascii: "0"), raw[index] <= UInt8(ascii: "9") { index += 1 }
    guard let number = parseDecimal(raw, ByteRange(offset: numberStart, count: index - numberStart)),
        number <= Int(UInt32.max)
    else { return nil }
    let beforeSpace = index
    skipWhitespace(raw, &index, end)
    guard index > beforeSpace, index < end else { return nil }
    let methodStart = index
    while index < end, !isLinearWhitespace(raw[index]) { index += 1 }
    let methodRange = ByteRange(offset: methodStart, count: index - methodStart)
    skipWhitespace(raw, &index, end)
    guard index == end else { return nil }
    return CSeq(number: UInt32(number), method: classifyMethod(raw, methodRange), methodRange: methodRange)
}

func classifyMethod(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> SIPMethod {
    let slice = UnsafeRawBufferPointer(rebasing: raw[range.offset..<range.end])
    return SIPMethod(rawValue: scannerMethod(slice))
}

private func parseVia(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> Via? {
    // sent-protocol: "SIP" / "2.0" / transport, with optional whitespace around the slashes.
    var index = range.offset
    let end = range.end
    func token() -> ByteRange? {
        skipWhitespace(raw, &index, end)
        let start = index
        while index < end, raw[index] != UInt8(ascii: "/"), !isLinearWhitespace(raw[index]) { index += 1 }
        return index > start ? ByteRange(offset: start, count: index - start) : nil
    }
    func slash() -> Bool {
        skipWhitespace(raw, &index, end)
        guard index < end, raw[index] == UInt8(ascii: "/") else { return false }
        index += 1
        return true
    }
    guard token() != nil, slash(), token() != nil, slash(), let transport = token() else { return nil }
    skipWhitespace(raw, &index, end)
    guard index < end else { return nil }
    // sent-by
    guard let hostRange = readHost(raw, &index, end) else { return nil }
    skipWhitespace(raw, &index, end)
    var port: Int?
    if index < end, raw[index] == UInt8(ascii: ":") {
        index += 1
        skipWhitespace(raw, &index, end)
        let start = index
        while index < end, raw[index] >= UInt8(ascii: "0"), raw[index] <= UInt8(ascii: "9") { index += 1 }
        guard let value = parsePort(raw, ByteRange(offset: start, count: index - start)) else { return nil }
        port = value
        skipWhitespace(raw, &index, end)
    }
    guard index == end || raw[index] == UInt8(ascii: ";") else { return nil }
    let parameters = ByteRange(offset: index, count: end - index)
    var via = Via(
        range: range, transportRange: transport, hostRange: hostRange, port: port, parametersRange: parameters,
        branchRange: nil, receivedRange: nil, rportParameterRange: nil, rport: nil)
    forEachParameter(raw, parameters) { whole, name, value in
        if equalsIgnoringCase(raw, name, "branch") {
            via.branchRange = value
        } else if equalsIgnoringCase(raw, name, "received") {
            via.receivedRange = value
        } else if equalsIgnoringCase(raw, name, "rport") {
            via.rportParameterRange = whole
            if let value, let port = parsePort(raw, value) { via.rport = port }
        }
    }
    return via
}

/// Calls `body` for every `;name[=value]` parameter in `range` (whole parameter, name, value).
func forEachParameter(
    _ raw: UnsafeRawBufferPointer, _ range: ByteRange,
    _ body: (ByteRange, ByteRange, ByteRange?) -> Void
) {
    var index = range.offset
    let end = range.end
    while index < end {
        guard raw[index] == UInt8(ascii: ";") else {
            index += 1
            continue
        }
        index += 1
        let start = index
        var quoted = false
        var equals: Int?
        while index < end {
            let current = raw[index]
            if current == UInt8(ascii: "\"") { quoted.toggle() }
            if !quoted, current == UInt8(ascii: ";") { break }
            if !quoted, current == UInt8(ascii: "="), equals == nil { equals = index }
            index += 1
        }
        let whole = trimmed(raw, start, index)
        if let equals {
            body(whole, trimmed(raw, start, equals), trimmed(raw, equals + 1, index))
        } else {
            body(whole, whole, nil)
        }
    }
}

func findParameter(_ raw: UnsafeRawBufferPointer, _ range: ByteRange, _ name: String) -> ByteRange? {
    findParameter(raw, range) { equalsIgnoringCase(raw, $0, text: name) }
}

/// ``findParameter(_:_:_:)`` for a name known at compile time, compared without going through String.
func findParameter(_ raw: UnsafeRawBufferPointer, _ range: ByteRange, _ name: StaticString) -> ByteRange? {
    findParameter(raw, range) { equalsIgnoringCase(raw, $0, name) }
}

/// The value of the first parameter whose name `isWanted` (an empty range after a valueless one).
private func findParameter(_ raw: UnsafeRawBufferPointer, _ range: ByteRange, where isWanted: (ByteRange) -> Bool) -> ByteRange? {
    var found: ByteRange?
    forEachParameter(raw, range) { whole, parameterName, value in
        if found == nil, isWanted(parameterName) {
            found = value ?? ByteRange(offset: whole.end, count: 0)
        }
    }
    return found
}

func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ range: ByteRange, _ literal: StaticString) -> Bool {
    guard range.count == literal.utf8CodeUnitCount else { return false }
    let pointer = literal.utf8Start
    for index in 0..<range.count where asciiLower(raw[range.offset + index]) != asciiLower(pointer[index]) {
        return false
    }
    return true
}

/// Compares with a String known only at run time; literals go to the StaticString overload.
func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ range: ByteRange, text literal: String) -> Bool {
    var literal = literal
    return literal.withUTF8 { utf8 in
        guard range.count == utf8.count else { return false }
        for index in 0..<range.count where asciiLower(raw[range.offset + index]) != asciiLower(utf8[index]) {
            return false
        }
        return true
    }
}

private func parseNameAddress(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> NameAddress? {
    var index = range.offset
    let end = range.end
    var uriRange: ByteRange?
    var parametersStart = end
    // A quoted display name or a '<' means name-addr; otherwise addr-spec.
    var quoted = false
    var scan = index
    var openAngle: Int?
    while scan < end {
        let current = raw[scan]
        if current == UInt8(ascii: "\\"), quoted {
            scan += 2
            continue
        }
        if current == UInt8(ascii: "\"") { quoted.toggle() }
        if !quoted, current == UInt8(ascii: "<") {
            openAngle = scan
            break
        }
        scan += 1
    }
    if let openAngle {
        index = openAngle + 1
        let start = index
        while index < end, raw[index] != UInt8(ascii: ">") { index += 1 }
        guard index < end else { return nil }
        uriRange = ByteRange(offset: start, count: index - start)
        parametersStart = index + 1
    } else {
        guard !quoted else { return nil }
        let start = index
        while index < end, raw[index] != UInt8(ascii: ";"), !isLinearWhitespace(raw[index]) { index += 1 }
        uriRange = trimmed(raw, start, index)
        parametersStart = index
    }
    guard let uriRange, uriRange.count > 0 else { return nil }
    let parameters = ByteRange(offset: parametersStart, count: end - parametersStart)
    return NameAddress(
        range: range, uriRange: uriRange, parametersRange: parameters,
        tagRange: findParameter(raw, parameters, "tag"))
}

private func parseURI(_ raw: UnsafeRawBufferPointer, _ range: ByteRange) -> URIParts? {
    let end = range.end
    var index = range.offset
    while index < end, raw[index] != UInt8(ascii: ":") { index += 1 }
    guard index < end else { return nil }
    let scheme = ByteRange(offset: range.offset, count: index - range.offset)
    guard equalsIgnoringCase(raw, scheme, "sip") || equalsIgnoringCase(raw, scheme, "sips") else { return nil }
    index += 1
    // The headers part starts at '?'; userinfo ends at the last '@' before it.
    var headersStart = end
    var at: Int?
    var scan = index
    while scan < end {
        if raw[scan] == UInt8(ascii: "?") {
            headersStart = scan
            break
        }
        if raw[scan] == UInt8(ascii: "@") { at = scan }
        scan += 1
    }
    var userRange: ByteRange?
    if let at {
        var userEnd = index
        while userEnd < at, raw[userEnd] != UInt8(ascii: ":") { userEnd += 1 }
        userRange = ByteRange(offset: index, count: userEnd - index)
        index = at + 1
    }
    guard let hostRange = readHost(raw, &index, headersStart) else { return nil }
    var port: Int?
    if index < headersStart, raw[index] == UInt8(ascii: ":") {
        index += 1
        let start = index
        while index < headersStart, raw[index] != UInt8(ascii: ";") { index += 1 }
        guard let value = parsePort(raw, ByteRange(offset: start, count: index - start)) else { return nil }
        port = value
    }
    let parameters = ByteRange(offset: index, count: headersStart - index)
    var parts = URIParts(
        range: range, schemeRange: scheme, userRange: userRange, hostRange: hostRange, port: port,
        parametersRange: parameters, transportRange: nil, maddrRange: nil, isLooseRouting: false)
    forEachParameter(raw, parameters) { _, name, value in
        if equalsIgnoringCase(raw, name, "transport") {
            parts.transportRange = value
        } else if equalsIgnoringCase(raw, name, "maddr") {
            parts.maddrRange = value
        } else if equalsIgnoringCase(raw, name, "lr") {
            parts.isLooseRouting = true
        }
    }
    return parts
}
