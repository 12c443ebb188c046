import SIPEdgeIO
import SIPMessage

/// What RFC 3261 §16.4 does with a request's Route entries.
struct RouteScan {
    /// Byte ranges to delete: whole Route lines, or entries with the comma that joins them.
    var removals: [ByteRange] = []
    /// The first Route entry left, the next hop of a loose-routed request.
    var nextRoute: URIParts?
    /// Set when the previous hop was a strict router: the Request-URI names us, so the last Route
    /// entry is the real Request-URI; this is its URI.
    var requestURIFromRoute: ByteRange?
}

extension LocalInterfaces {
    /// Applies RFC 3261 §16.4 to `request`: a Request-URI naming us (a strict router before us)
    /// is replaced by the last Route entry, which is removed; the Route entries at the top that
    /// name us are removed; the first one left is the next hop.
    func scanRoutes(_ request: SIPMessage) -> RouteScan {
        guard request.firstHeader(.route) != nil else { return RouteScan() }
        var entries: [(line: SIPHeader, element: ByteRange)] = []
        request.forEachHeader(.route) { header in
            request.forEachHeaderValue(header) { element in
                entries.append((header, element))
                return true
            }
            return true
        }
        var scan = RouteScan()
        var removed = [Bool](repeating: false, count: entries.count)
        var candidates = entries.indices
        if let requestURI = request.requestURI, isLocal(requestURI, in: request), let last = entries.last,
            let uri = request.nameAddress(last.element)?.uriRange
        {
            scan.requestURIFromRoute = uri
            removed[entries.count - 1] = true
            candidates = entries.indices.dropLast()
        }
        var next = candidates.startIndex
        while next < candidates.endIndex, let address = request.nameAddress(entries[next].element),
            let uri = request.uri(address.uriRange), isLocal(uri, in: request)
        {
            removed[next] = true
            next += 1
        }
        if next < candidates.endIndex {
            scan.nextRoute = request.nameAddress(entries[next].element).flatMap { request.uri($0.uriRange) }
        }
        // One pass per Route line: all of it goes, or each removed entry goes with one comma.
        var lineStart = 0
        while lineStart < entries.count {
            var lineEnd = lineStart
            while lineEnd < entries.count, entries[lineEnd].line.lineRange == entries[lineStart].line.lineRange { lineEnd += 1 }
            let line = entries[lineStart].line
            if removed[lineStart..<lineEnd].allSatisfy({ $0 }) {
                scan.removals.append(line.lineRange)
            } else {
                // Removed entries are a prefix of the line (ours, at the top) or its last entry
                // (strict routing): a prefix entry goes with the comma after it, the last with the
                // comma before it, so the ranges never overlap.
                for index in lineStart..<lineEnd where removed[index] {
                    let element = entries[index].element
                    if index + 1 < lineEnd {
                        scan.removals.append(ByteRange(offset: element.offset, count: entries[index + 1].element.offset - element.offset))
                    } else {
                        let previousEnd = entries[index - 1].element.end
                        scan.removals.append(ByteRange(offset: previousEnd, count: element.end - previousEnd))
                    }
                }
            }
            lineStart = lineEnd
        }
        return scan
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
    /// Strict routing (§16.4): the Request-URI becomes this URI, taken from the last Route entry.
    var requestURIFromRoute: ByteRange? = nil
    /// The sender's address, for `received` and `rport` on its Via (RFC 3261 §18.2.1, RFC 3581).
    var source: SocketAddress
    var sourceText: String
    /// A new body (the media engine's SDP for an anchored call), with its Content-Length.
    var body: [UInt8]? = nil
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
        if let uri = edits.requestURIFromRoute {
            editor.replace(requestURIRange) { self.append(uri, to: &$0) }
        }
        if let body = edits.body {
            replaceBody(with: body, editor: &editor)
        } else if contentLength == nil {
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
    func withoutTopVia(editor: inout MessageEditor, body: [UInt8]? = nil) -> [UInt8]? {
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
        if let body { replaceBody(with: body, editor: &editor) }
        return editor.render()
    }

    /// Puts `body` in place of the message's body and makes Content-Length say so.
    private func replaceBody(with body: [UInt8], editor: inout MessageEditor) {
        if let header = firstHeader(.contentLength) {
            editor.replace(header.valueRange) { $0.append(decimal: body.count) }
        } else {
            let length = body.count
            editor.insert(at: headerSectionEnd) { output in
                output.append(ascii: "Content-Length: ")
                output.append(decimal: length)
                output.append(ascii: "\r\n")
            }
        }
        if bodyRange.count > 0 {
            editor.replace(bodyRange, with: body)
        } else {
            editor.insert(body, at: bodyRange.offset)
        }
    }
}
