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
    /// The interface our Via names.
    var via: LocalInterface
    var loopHash: UInt64
    var transactionID: UInt64
    /// Record-Route entries, top first: ours toward the next hop, then (when the request changes
    /// interface) ours toward the sender.
    var recordRoutes: (LocalInterface?, LocalInterface?) = (nil, nil)
    var routeRemovals: [ByteRange] = []
    /// The sender's address, for `received` and `rport` on its Via (RFC 3261 §18.2.1, RFC 3581).
    var source: SocketAddress
    var sourceText: String
}

extension SIPMessage {
    /// The request with our Via on top, `received`/`rport` on the sender's Via, Max-Forwards
    /// decremented (or added), our Route entries removed, Record-Route added, and a Content-Length
    /// when the sender left it out. `editor` is the worker's reusable one.
    func forwarded(_ headers: RoutingHeaders, with edits: RequestEdits, editor: inout MessageEditor) -> [UInt8] {
        editor.reset(for: self)
        if let top = edits.recordRoutes.0 { editor.insert(top.recordRoute, at: headersOffset) }
        if let second = edits.recordRoutes.1 { editor.insert(second.recordRoute, at: headersOffset) }
        editor.insert(at: firstHeader(.via)?.lineRange.offset ?? headersOffset) { output in
            output.append(contentsOf: edits.via.viaPrefix)
            BranchFormat.append(loopHash: edits.loopHash, transactionID: edits.transactionID, to: &output)
            output.append(ascii: "\r\n")
        }
        addReceived(to: headers.topVia, edits: edits, editor: &editor)
        switch headers.maxForwards {
        case .value(let hops):
            editor.replace(firstHeader(.maxForwards)!.valueRange) { $0.append(decimal: max(hops - 1, 0)) }
        case .absent, .invalid:
            editor.insert(at: headerSectionEnd) { $0.append(ascii: "Max-Forwards: 70\r\n") }
        }
        for removal in edits.routeRemovals { editor.remove(removal) }
        if contentLength == nil {
            let length = bodyRange.count
            editor.insert(at: headerSectionEnd) { output in
                output.append(ascii: "Content-Length: ")
                output.append(decimal: length)
                output.append(ascii: "\r\n")
            }
        }
        return editor.render()
    }

    private func addReceived(to via: Via, edits: RequestEdits, editor: inout MessageEditor) {
        if let rport = via.rportParameterRange, via.rport == nil {
            let port = Int(edits.source.port)
            editor.replace(rport) { output in
                output.append(ascii: "rport=")
                output.append(decimal: port)
            }
        }
        guard via.rportParameterRange != nil || !equals(via.hostRange, edits.sourceText) else { return }
        if let received = via.receivedRange {
            editor.replace(received) { $0.append(text: edits.sourceText) }
        } else {
            editor.insert(at: via.range.end) { output in
                output.append(ascii: ";received=")
                output.append(text: edits.sourceText)
            }
        }
    }

    /// The response without its top Via element (ours), for relaying upstream (§16.7 step 3).
    /// `editor` is the worker's reusable one.
    func withoutTopVia(editor: inout MessageEditor) -> [UInt8]? {
        guard let header = firstHeader(.via) else { return nil }
        editor.reset(for: self)
        var secondElement: ByteRange?
        var seen = 0
        forEachHeaderValue(header) { element in
            seen += 1
            if seen == 2 { secondElement = element }
            return seen < 2
        }
        if let secondElement {
            editor.remove(ByteRange(offset: header.valueRange.offset, count: secondElement.offset - header.valueRange.offset))
        } else {
            editor.remove(header.lineRange)
        }
        return editor.render()
    }
}
