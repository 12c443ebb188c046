extension SIPMessage {
    /// The CANCEL for this INVITE as this element sent it (RFC 3261 §9.1): same Request-URI, only
    /// the top Via (same branch), the same Route headers, From, To, Call-ID, and CSeq number with
    /// method CANCEL.
    public func makeCANCEL() -> [UInt8]? {
        makeHopByHopRequest(method: "CANCEL", to: nil)
    }

    /// The ACK for a non-2xx final `response` to this INVITE (RFC 3261 §17.1.1.3): like the CANCEL,
    /// but with the To header of the response (it carries the to-tag).
    public func makeACK(for response: SIPMessage) -> [UInt8]? {
        guard let toHeader = response.firstHeader(.to) else { return nil }
        return makeHopByHopRequest(method: "ACK", to: (response, toHeader))
    }

    private func makeHopByHopRequest(method: StaticString, to replacement: (SIPMessage, SIPHeader)?) -> [UInt8]? {
        guard isRequest, let via = topVia, let cseq, let from = firstHeader(.from), let to = firstHeader(.to),
            let callID = firstHeader(.callID)
        else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(512)
        output.append(ascii: method)
        output.append(UInt8(ascii: " "))
        append(requestURIRange, to: &output)
        output.append(ascii: " SIP/2.0\r\nVia: ")
        append(via.range, to: &output)
        output.append(ascii: "\r\n")
        forEachHeader(.route) { header in
            append(ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset), to: &output)
            output.append(ascii: "\r\n")
            return true
        }
        appendLine(from, to: &output)
        if let (response, header) = replacement {
            response.appendLine(header, to: &output)
        } else {
            appendLine(to, to: &output)
        }
        appendLine(callID, to: &output)
        output.append(ascii: "CSeq: ")
        output.append(decimal: Int(cseq.number))
        output.append(UInt8(ascii: " "))
        output.append(ascii: method)
        output.append(ascii: "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        return output
    }

    /// Appends "Name: value\r\n" for `header`, keeping its original spelling.
    public func appendLine(_ header: SIPHeader, to output: inout [UInt8]) {
        append(ByteRange(offset: header.nameRange.offset, count: header.valueRange.end - header.nameRange.offset), to: &output)
        output.append(ascii: "\r\n")
    }
}
