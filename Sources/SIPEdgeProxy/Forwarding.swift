import SIPEdgeIO
import SIPMessage

/// The leading Route entries that name this proxy, and the first one that does not.
struct RouteScan {
    /// Byte ranges to delete: whole header lines, or the leading part of a multi-value line.
    var removals: [ByteRange] = []
    /// The first Route entry left, the next hop of a loose-routed request.
    var nextRoute: URIParts?
    /// Whether the removed entries included one with `transport=tcp` and one without (we were
    /// double record-routed), which tells the interface pair the dialog uses.
    var removedCount = 0
}

extension LocalInterfaces {
    /// Finds the Route entries at the top of `request` that point at us (RFC 3261 §16.4).
    func scanRoutes(_ request: SIPMessage) -> RouteScan {
        var scan = RouteScan()
        var stillOurs = true
        request.forEachHeader(.route) { header in
            guard stillOurs else { return false }
            var firstKept: ByteRange?
            _ = elements(of: header, in: request) { element in
                guard let address = request.nameAddress(element), let uri = request.uri(address.uriRange),
                    isLocal(uri, in: request)
                else {
                    firstKept = element
                    scan.nextRoute = request.nameAddress(element).flatMap { request.uri($0.uriRange) }
                    return false
                }
                scan.removedCount += 1
                return true
            }
            if let firstKept {
                stillOurs = false
                if firstKept.offset > header.valueRange.offset {
                    scan.removals.append(
                        ByteRange(offset: header.valueRange.offset, count: firstKept.offset - header.valueRange.offset))
                }
                return false
            }
            scan.removals.append(header.lineRange)
            return true
        }
        return scan
    }

    private func elements(of header: SIPHeader, in message: SIPMessage, _ body: (ByteRange) -> Bool) -> Bool {
        var result = true
        message.forEachHeaderValue(header) { element in
            result = body(element)
            return result
        }
        return result
    }
}

/// What to change in a request that is forwarded.
struct RequestEdits {
    var via: (interface: LocalInterface, branch: [UInt8])
    var recordRoutes: [LocalInterface] = []
    var routeRemovals: [ByteRange] = []
    /// The sender's address, for `received` and `rport` on its Via (RFC 3261 §18.2.1, RFC 3581).
    var source: SocketAddress
}

extension SIPMessage {
    /// The request with our Via on top, `received`/`rport` on the sender's Via, Max-Forwards
    /// decremented (or added), our Route entries removed, Record-Route added, and a Content-Length
    /// when the sender left it out.
    func forwarded(with edits: RequestEdits) -> [UInt8] {
        var editor = MessageEditor(self)
        for interface in edits.recordRoutes {
            editor.insert(interface.recordRoute, at: headersOffset)
        }
        var viaLine = edits.via.interface.viaPrefix
        viaLine.append(contentsOf: edits.via.branch)
        viaLine.append(ascii: "\r\n")
        let firstVia = firstHeader(.via)
        editor.insert(viaLine, at: firstVia?.lineRange.offset ?? headersOffset)
        if let via = topVia { addReceived(to: via, source: edits.source, editor: &editor) }
        switch maxForwards {
        case .value(let hops):
            var digits: [UInt8] = []
            digits.append(decimal: max(hops - 1, 0))
            editor.replace(firstHeader(.maxForwards)!.valueRange, with: digits)
        case .absent, .invalid:
            var line: [UInt8] = []
            line.append(ascii: "Max-Forwards: 70\r\n")
            editor.insert(line, at: headerSectionEnd)
        }
        for removal in edits.routeRemovals { editor.remove(removal) }
        if contentLength == nil {
            var line: [UInt8] = []
            line.append(ascii: "Content-Length: ")
            line.append(decimal: bodyRange.count)
            line.append(ascii: "\r\n")
            editor.insert(line, at: headerSectionEnd)
        }
        return editor.render()
    }

    private func addReceived(to via: Via, source: SocketAddress, editor: inout MessageEditor) {
        let sourceHost = source.ipAddress
        var suffix: [UInt8] = []
        if let rport = via.rportParameterRange, via.rport == nil {
            var filled: [UInt8] = []
            filled.append(ascii: "rport=")
            filled.append(decimal: Int(source.port))
            editor.replace(rport, with: filled)
        }
        if via.rportParameterRange != nil || !equals(via.hostRange, sourceHost) {
            if let received = via.receivedRange {
                var address: [UInt8] = []
                address.append(text: sourceHost)
                editor.replace(received, with: address)
            } else {
                suffix.append(ascii: ";received=")
                suffix.append(text: sourceHost)
                editor.insert(suffix, at: via.range.end)
            }
        }
    }

    /// The response without its top Via element (ours), for relaying upstream (§16.7 step 3).
    func withoutTopVia() -> [UInt8]? {
        guard let header = firstHeader(.via) else { return nil }
        var editor = MessageEditor(self)
        var elements: [ByteRange] = []
        forEachHeaderValue(header) { element in
            elements.append(element)
            return elements.count < 2
        }
        if elements.count < 2 {
            editor.remove(header.lineRange)
        } else {
            editor.remove(ByteRange(offset: header.valueRange.offset, count: elements[1].offset - header.valueRange.offset))
        }
        return editor.render()
    }
}
