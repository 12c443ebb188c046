// SIP messages out of decoded packets: one per UDP datagram, and out of TCP streams reassembled
// per direction by sequence number and framed by Content-Length with the project's scanner.
import SIPMessage

/// One SIP message found in the capture.
struct CapturedMessage {
    var time: Double
    var source: Endpoint
    var destination: Endpoint
    var transport: String
    var message: SIPMessage
}

/// Counters of what the extraction met.
struct ExtractionCounters {
    var udpDatagrams = 0
    var tcpSegments = 0
    var nonSIPDatagrams = 0
    var keepAlives = 0
    var tcpRetransmittedSegments = 0
    var tcpGapsSkipped = 0
    var tcpUnparsableBytes = 0
    var webSocketFlows = 0
}

/// True when `bytes[from...]` starts with a SIP start line ("SIP/2.0 " or "METHOD uri SIP/2.0").
func startsWithSIPStartLine(_ bytes: [UInt8], from: Int = 0) -> Bool {
    let sip: [UInt8] = Array("SIP/2.0 ".utf8)
    if bytes.count - from >= sip.count, bytes[from..<(from + sip.count)].elementsEqual(sip) { return true }
    // A method token of upper-case letters, a space, then " SIP/2.0" before the end of the line.
    var index = from
    while index < bytes.count, (65...90).contains(bytes[index]) { index += 1 }
    guard index > from, index < bytes.count, bytes[index] == 32 else { return false }
    let version: [UInt8] = Array(" SIP/2.0\r".utf8)
    let limit = min(bytes.count, index + 2048)
    var cursor = index
    while cursor < limit, bytes[cursor] != 10 {
        if bytes[cursor] == 32, limit - cursor >= version.count,
            bytes[cursor..<(cursor + version.count)].elementsEqual(version)
        {
            return true
        }
        cursor += 1
    }
    return false
}

private func isKeepAlive(_ bytes: [UInt8]) -> Bool {
    !bytes.isEmpty && bytes.allSatisfy { $0 == 13 || $0 == 10 || $0 == 32 || $0 == 0 }
}

/// Finds SIP in a capture's transport payloads.
struct SIPExtractor {
    private(set) var messages: [CapturedMessage] = []
    private(set) var counters = ExtractionCounters()
    private var flows: [FlowKey: TCPStream] = [:]

    mutating func udp(
        _ payload: [UInt8], from source: Endpoint, to destination: Endpoint, time: Double, transport: String = "UDP"
    ) {
        counters.udpDatagrams += 1
        if isKeepAlive(payload) {
            counters.keepAlives += 1
            return
        }
        guard startsWithSIPStartLine(payload), let message = try? SIPMessage(parsing: payload, framing: .datagram)
        else {
            counters.nonSIPDatagrams += 1
            return
        }
        messages.append(CapturedMessage(time: time, source: source, destination: destination, transport: transport, message: message))
    }

    mutating func tcp(
        _ payload: [UInt8], sequence: UInt32, flags: UInt8, from source: Endpoint, to destination: Endpoint, time: Double
    ) {
        counters.tcpSegments += 1
        let key = FlowKey(source: source, destination: destination)
        var stream = flows[key] ?? TCPStream()
        if flags & 0x02 != 0 {  // SYN: the data starts one past its sequence number
            stream = TCPStream()
            stream.next = sequence &+ 1
        }
        if !payload.isEmpty {
            stream.receive(payload, sequence: sequence, counters: &counters)
            drain(&stream, source: source, destination: destination, time: time)
        }
        if flags & 0x05 != 0 {  // FIN or RST: what is left cannot complete
            stream.closed = true
        }
        flows[key] = stream
    }

    /// Ends every stream: a gap left open is skipped so the data after it is still read.
    mutating func finish() {
        for (key, var stream) in flows {
            while stream.skipGap(counters: &counters) {
                drain(&stream, source: key.source, destination: key.destination, time: stream.lastTime)
            }
            counters.tcpUnparsableBytes += stream.buffer.count
            flows[key] = nil
        }
    }

    private mutating func drain(_ stream: inout TCPStream, source: Endpoint, destination: Endpoint, time: Double) {
        stream.lastTime = time
        if stream.isWebSocket { return }
        while !stream.buffer.isEmpty {
            // CRLF keep-alives between messages.
            var skip = 0
            while skip < stream.buffer.count, stream.buffer[skip] == 13 || stream.buffer[skip] == 10 { skip += 1 }
            if skip > 0 {
                if skip >= 2 { counters.keepAlives += 1 }
                stream.buffer.removeFirst(skip)
                continue
            }
            if !startsWithSIPStartLine(stream.buffer) {
                if stream.buffer.count < 16 && !stream.buffer.contains(10) { return }  // wait for more
                if isHTTPUpgrade(stream.buffer) {
                    stream.isWebSocket = true
                    counters.webSocketFlows += 1
                    stream.buffer.removeAll()
                    return
                }
                resync(&stream)
                continue
            }
            do {
                let message = try SIPMessage(parsing: stream.buffer, framing: .stream)
                stream.buffer.removeFirst(message.byteCount)
                messages.append(
                    CapturedMessage(time: time, source: source, destination: destination, transport: "TCP", message: message))
            } catch {
                if error.code == .incomplete { return }
                resync(&stream)
            }
        }
    }

    /// Drops bytes up to the next line that starts a SIP message.
    private mutating func resync(_ stream: inout TCPStream) {
        var index = 1
        while index < stream.buffer.count {
            if stream.buffer[index - 1] == 10, startsWithSIPStartLine(stream.buffer, from: index) { break }
            index += 1
        }
        counters.tcpUnparsableBytes += index
        stream.buffer.removeFirst(index)
    }

    private func isHTTPUpgrade(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes.prefix(512), as: UTF8.self).lowercased()
        return (text.hasPrefix("get ") || text.hasPrefix("http/1.1 101")) && text.contains("upgrade: websocket")
    }
}

private struct FlowKey: Hashable {
    var source: Endpoint
    var destination: Endpoint
}

/// One direction of a TCP connection being put back in order.
private struct TCPStream {
    /// The sequence number of the next byte expected; nil until the stream's start is known.
    var next: UInt32? = nil
    /// In-order bytes not yet framed.
    var buffer: [UInt8] = []
    /// Segments that arrived ahead of `next`, by sequence number.
    var pending: [UInt32: [UInt8]] = [:]
    var closed = false
    var isWebSocket = false
    var lastTime: Double = 0

    mutating func receive(_ payload: [UInt8], sequence: UInt32, counters: inout ExtractionCounters) {
        guard let expected = next else {
            // The capture began mid-connection: start at a segment that begins a SIP message.
            if startsWithSIPStartLine(payload) || isHTTPStart(payload) {
                next = sequence
                append(payload, sequence: sequence, counters: &counters)
            } else {
                counters.tcpUnparsableBytes += payload.count
            }
            return
        }
        let distance = Int32(bitPattern: sequence &- expected)
        if distance > 0 {
            if let held = pending[sequence], held.count >= payload.count {
                counters.tcpRetransmittedSegments += 1
            } else {
                pending[sequence] = payload
            }
            // A hole that never fills (a segment the capture lost) must not stall the stream.
            if pending.count > 64 { _ = skipGap(counters: &counters) }
            return
        }
        append(payload, sequence: sequence, counters: &counters)
    }

    /// Appends the part of a segment at or before `next` that is new, then any pending segment
    /// that has become contiguous.
    private mutating func append(_ payload: [UInt8], sequence: UInt32, counters: inout ExtractionCounters) {
        guard let expected = next else { return }
        let overlap = Int(-Int32(bitPattern: sequence &- expected))
        if overlap >= payload.count {
            counters.tcpRetransmittedSegments += 1
        } else {
            buffer.append(contentsOf: payload[overlap...])
            next = expected &+ UInt32(payload.count - overlap)
        }
        while let current = next,
            let key = pending.keys.first(where: { Int32(bitPattern: $0 &- current) <= 0 })
        {
            let segment = pending.removeValue(forKey: key)!
            let covered = Int(-Int32(bitPattern: key &- current))
            if covered >= segment.count {
                counters.tcpRetransmittedSegments += 1
                continue
            }
            buffer.append(contentsOf: segment[covered...])
            next = current &+ UInt32(segment.count - covered)
        }
    }

    /// Jumps over a missing range to the earliest pending segment; the unfinished message is lost.
    mutating func skipGap(counters: inout ExtractionCounters) -> Bool {
        guard let current = next,
            let first = pending.keys.min(by: { Int32(bitPattern: $0 &- current) < Int32(bitPattern: $1 &- current) })
        else { return false }
        counters.tcpGapsSkipped += 1
        counters.tcpUnparsableBytes += buffer.count
        buffer.removeAll()
        let segment = pending.removeValue(forKey: first)!
        next = nil
        receive(segment, sequence: first, counters: &counters)
        if next == nil {
            // Not a message start: resume at the next pending segment that is one.
            next = first &+ UInt32(segment.count)
            buffer.removeAll()
            return !pending.isEmpty ? skipGapFromStart(counters: &counters) : false
        }
        return true
    }

    private mutating func skipGapFromStart(counters: inout ExtractionCounters) -> Bool {
        while let current = next,
            let first = pending.keys.min(by: { Int32(bitPattern: $0 &- current) < Int32(bitPattern: $1 &- current) })
        {
            let segment = pending.removeValue(forKey: first)!
            if startsWithSIPStartLine(segment) {
                next = first
                append(segment, sequence: first, counters: &counters)
                return true
            }
            counters.tcpUnparsableBytes += segment.count
            next = first &+ UInt32(segment.count)
        }
        return false
    }

    private func isHTTPStart(_ bytes: [UInt8]) -> Bool {
        bytes.starts(with: Array("GET ".utf8)) || bytes.starts(with: Array("HTTP/1.1 ".utf8))
    }
}
