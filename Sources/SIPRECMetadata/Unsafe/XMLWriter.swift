import Glibc
internal import CLibXML2

/// Writes a document front to back into a libxml2 output buffer, laid out byte for byte as
/// libxml2's `xmlSaveDoc` lays out a tree with `XML_SAVE_FORMAT` and encoding UTF-8: the XML
/// declaration, two spaces of indentation per level, a line break after every child of a formatted
/// element, `<name/>` for an element without children, and no formatting at all inside an element
/// that has text among its children (which is why a text-only element is `<name>text</name>`).
///
/// Text and attribute values are escaped by libxml2's own serialiser routines (the ones
/// `xmlSaveDoc` uses for text nodes and attributes), only when a value holds a character they
/// escape; raw XML (configured fragments) is written by libxml2's node serialiser. Markup and
/// values that need no escaping gather in a buffer on the caller's stack and reach libxml2's
/// buffer in a few large writes instead of one call per tag, name and value.
///
/// Why not `xmlTextWriter`: its `xmlTextWriterWriteString` escapes `"` in element content as
/// `&quot;` where the tree serialiser writes it as is, and it allocates a document, a node stack
/// and an output buffer per writer; it would change the metadata's bytes and cost more.
struct XMLWriter: ~Copyable {
    private let output: xmlOutputBufferPtr
    /// Bytes not yet handed to `output`.
    private let pending: UnsafeMutableRawBufferPointer
    private var pendingCount = 0
    /// The indentation level of the next element: the number of open elements.
    private var level = 0
    /// The level of the open element whose content is written without formatting, if any.
    private var unformattedLevel: Int?
    /// The time written last and its text (up to 32 bytes: a year of 4 digits takes 24).
    private var lastTime: MetadataTime?
    private var lastTimeText: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var lastTimeCount = 0

    /// Runs `body` with a new writer whose pending bytes live on this stack frame (1 KiB: a larger
    /// temporary allocation would come from the heap).
    static func writing<Result>(_ body: (inout XMLWriter) -> Result) -> Result {
        withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 1) { pending in
            var writer = XMLWriter(pending: pending)
            return body(&writer)
        }
    }

    private init(pending: UnsafeMutableRawBufferPointer) {
        LibXML2.initialize()
        // No encoder: the text goes through as UTF-8, as it does with xmlSaveToBuffer(…, "UTF-8", …).
        guard let output = xmlAllocOutputBuffer(nil) else { fatalError("libxml2 could not allocate a buffer") }
        self.output = output
        self.pending = pending
    }

    deinit {
        xmlOutputBufferClose(output)
    }

    private var isFormatted: Bool { unformattedLevel == nil }

    /// `<?xml version="1.0" encoding="UTF-8"?>` and its line break.
    mutating func declaration() {
        raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
    }

    /// The beginning of a start tag: indentation and `<name`. Attributes follow, then `endStartTag`
    /// or `endEmptyElement`.
    mutating func startElement(_ name: StaticString) {
        indent()
        raw("<")
        raw(name)
    }

    /// ` name="value"`, the value escaped as libxml2 escapes attribute values.
    mutating func attribute(_ name: StaticString, _ value: String) {
        raw(" ")
        raw(name)
        raw("=\"")
        writeEscaped(value, as: .attribute)
        raw("\"")
    }

    /// Ends a start tag whose content follows. With `formatted` false (the element has text among
    /// its children) nothing inside the element is indented or broken into lines.
    mutating func endStartTag(formatted: Bool = true) {
        raw(">")
        if isFormatted, !formatted { unformattedLevel = level }
        if isFormatted { raw("\n") }
        level += 1
    }

    /// Ends the start tag of an element without content: `/>`.
    mutating func endEmptyElement() {
        raw("/>")
        lineBreak()
    }

    /// `</name>` for the element opened last.
    mutating func endElement(_ name: StaticString) {
        level -= 1
        indent()
        raw("</")
        raw(name)
        raw(">")
        if unformattedLevel == level { unformattedLevel = nil }
        lineBreak()
    }

    /// `<name>text</name>`, the text escaped as libxml2 escapes text nodes.
    mutating func textElement(_ name: StaticString, _ text: String) {
        startTextElement(name)
        writeEscaped(text, as: .text)
        endTextElement(name)
    }

    /// `<name>time</name>` with the time as an xs:dateTime.
    mutating func textElement(_ name: StaticString, _ time: MetadataTime) {
        startTextElement(name)
        // Digits and -:.TZ, nothing to escape. Most times of a document are one instant (the
        // call's start, or its end): the text of the last one is kept rather than made again.
        if time == lastTime {
            withUnsafeBytes(of: lastTimeText) { raw(UnsafeRawBufferPointer(rebasing: $0[..<lastTimeCount])) }
        } else {
            time.withXSDateTime { text in
                raw(text)
                guard text.count <= MemoryLayout.size(ofValue: lastTimeText) else {
                    lastTime = nil
                    return
                }
                withUnsafeMutableBytes(of: &lastTimeText) { $0.copyMemory(from: text) }
                lastTimeCount = text.count
                lastTime = time
            }
        }
        endTextElement(name)
    }

    /// The top-level nodes of `fragment` as the children of the element opened last, each written
    /// by libxml2's node serialiser as `xmlSaveDoc` writes it in that place.
    mutating func fragment(_ fragment: XMLTree.Fragment) {
        // xmlSaveDoc gives the document its encoding while it saves, and the attribute serialiser
        // copies non-ASCII characters as they are only when the document has one.
        let document = fragment.document
        let encoding = document.pointee.encoding
        document.pointee.encoding = utf8Document.pointee.encoding
        defer { document.pointee.encoding = encoding }
        for node in fragment.nodes {
            indent()
            flush()
            xmlNodeDumpOutput(output, document, node, Int32(level), isFormatted ? 1 : 0, "UTF-8")
            lineBreak()
        }
    }

    /// The document written so far, or nil when libxml2 failed to write into its buffer (it reports
    /// why through its error handler).
    mutating func finish() -> [UInt8]? {
        flush()
        guard output.pointee.error == 0, let content = xmlOutputBufferGetContent(output) else { return nil }
        return Array(UnsafeBufferPointer(start: content, count: xmlOutputBufferGetSize(output)))
    }

    // MARK: - Pieces

    private mutating func startTextElement(_ name: StaticString) {
        indent()
        raw("<")
        raw(name)
        raw(">")
    }

    private mutating func endTextElement(_ name: StaticString) {
        raw("</")
        raw(name)
        raw(">")
        lineBreak()
    }

    private mutating func indent() {
        guard isFormatted, level > 0 else { return }
        let spaces: StaticString = "                                                            "  // 60
        // libxml2 stops indenting deeper than 30 levels; this document is never that deep.
        let count = min(2 * level, spaces.utf8CodeUnitCount)
        spaces.withUTF8Buffer { raw(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer($0)[..<count])) }
    }

    private mutating func lineBreak() {
        if isFormatted { raw("\n") }
    }

    @inline(__always) private mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { raw(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always) private mutating func raw(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if pendingCount + bytes.count > pending.count {
            flush()
            guard bytes.count <= pending.count else {
                xmlOutputBufferWrite(output, Int32(bytes.count), base.assumingMemoryBound(to: CChar.self))
                return
            }
        }
        (pending.baseAddress! + pendingCount).copyMemory(from: base, byteCount: bytes.count)
        pendingCount += bytes.count
    }

    /// Hands the pending bytes to libxml2, before libxml2 itself writes into `output`.
    private mutating func flush() {
        guard pendingCount > 0 else { return }
        xmlOutputBufferWrite(output, Int32(pendingCount), pending.baseAddress!.assumingMemoryBound(to: CChar.self))
        pendingCount = 0
    }

    private enum Escaping {
        /// Element content: `xmlEscapeContent`, what `xmlSaveDoc` uses for text nodes.
        case text
        /// Attribute values: `xmlAttrSerializeTxtContent`, what `xmlSaveDoc` uses for attributes.
        case attribute
    }

    /// Writes `value` with the characters XML 1.0 forbids replaced, escaped by libxml2 when it holds
    /// anything libxml2 would escape and copied as it is otherwise (ids, times and most names).
    private mutating func writeEscaped(_ value: String, as escaping: Escaping) {
        var value = value
        var scan = value.withUTF8 { CharacterScan($0) }
        if scan.hasForbidden {
            value = replacingForbiddenCharacters(value)
            scan = value.withUTF8 { CharacterScan($0) }
        }
        switch escaping {
        case .text where scan.hasTextSpecial:
            flush()
            value.withCString { characters in
                characters.withMemoryRebound(to: xmlChar.self, capacity: strlen(characters) + 1) {
                    _ = xmlOutputBufferWriteEscape(output, $0, nil)  // nil: xmlEscapeContent
                }
            }
        case .attribute where scan.hasAttributeSpecial:
            guard let buffer = xmlBufferCreate() else { fatalError("libxml2 could not allocate a buffer") }
            defer { xmlBufferFree(buffer) }
            value.withCString { characters in
                characters.withMemoryRebound(to: xmlChar.self, capacity: strlen(characters) + 1) {
                    xmlAttrSerializeTxtContent(buffer, utf8Document, nil, $0)
                }
            }
            raw(UnsafeRawBufferPointer(start: xmlBufferContent(buffer), count: Int(xmlBufferLength(buffer))))
        default:
            value.withUTF8 { raw(UnsafeRawBufferPointer($0)) }
        }
    }
}

/// An empty document whose encoding is UTF-8, only ever read: `xmlAttrSerializeTxtContent` copies
/// non-ASCII characters as they are for such a document (as `xmlSaveDoc` does while it saves in
/// UTF-8) and would write character references without one.
nonisolated(unsafe) private let utf8Document: xmlDocPtr = {
    LibXML2.initialize()
    guard let document = xmlNewDoc(nil), let encoding = xmlCharStrdup("UTF-8") else {
        fatalError("libxml2 could not allocate a document")
    }
    document.pointee.encoding = UnsafePointer(encoding)
    return document
}()

/// What one pass over a value's UTF-8 found.
private struct CharacterScan {
    /// A character XML 1.0 forbids: a C0 control other than tab, LF and CR, U+FFFE or U+FFFF.
    var hasForbidden = false
    /// `<`, `>`, `&` or CR: what libxml2 escapes in text.
    var hasTextSpecial = false
    /// The text specials, `"`, tab or LF: what libxml2 escapes in attribute values.
    var hasAttributeSpecial = false

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = UnsafeRawPointer(bytes.baseAddress) else { return }
        // Eight bytes at a time: a word that holds none of the bytes `look` reacts to (most of an
        // id, a URI, a name or a time, digits and punctuation included) is skipped whole.
        var start = 0
        while start < bytes.count {
            let end = min(start + 8, bytes.count)
            if end - start == 8, !Self.mayHoldSpecial(base.loadUnaligned(fromByteOffset: start, as: UInt64.self)) {
                start = end
                continue
            }
            for index in start..<end { look(at: index, in: bytes) }
            start = end
        }
    }

    /// Whether a byte of `word` is below 0x20, one of `"`, `&`, `<`, `>`, or above 0x7F. The
    /// classic SWAR tests, exact about whether such a byte exists (not about which one it is).
    private static func mayHoldSpecial(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func hasByte(below limit: UInt8) -> UInt64 { (word &- ones &* UInt64(limit)) & ~word & highBits }
        @inline(__always) func hasByte(_ value: UInt8) -> UInt64 {
            let matched = word ^ (ones &* UInt64(value))
            return (matched &- ones) & ~matched & highBits
        }
        let special = hasByte(below: 0x20) | hasByte(UInt8(ascii: "\"")) | hasByte(UInt8(ascii: "&"))
            | hasByte(UInt8(ascii: "<")) | hasByte(UInt8(ascii: ">"))
        return special | (word & highBits) != 0
    }

    private mutating func look(at index: Int, in bytes: UnsafeBufferPointer<UInt8>) {
        let byte = bytes[index]
        guard byte < UInt8(ascii: "?") || byte == 0xEF else { return }
        switch byte {
        case UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&"), UInt8(ascii: "\r"):
            hasTextSpecial = true
            hasAttributeSpecial = true
        case UInt8(ascii: "\""), UInt8(ascii: "\t"), UInt8(ascii: "\n"):
            hasAttributeSpecial = true
        case 0x00..<0x20:
            hasForbidden = true
        case 0xEF:
            if index + 2 < bytes.count, bytes[index + 1] == 0xBF, bytes[index + 2] & 0xFE == 0xBE {
                hasForbidden = true
            }
        default:
            break
        }
    }
}

/// `text` with every character XML 1.0 forbids (C0 controls other than tab, LF and CR; U+FFFE,
/// U+FFFF) replaced by U+FFFD: no XML 1.0 parser accepts them, raw or as character references,
/// yet SIP allows them in quoted display names.
private func replacingForbiddenCharacters(_ text: String) -> String {
    var cleaned = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: cleaned.append(scalar)
        case 0x00..<0x20, 0xFFFE, 0xFFFF: cleaned.append("\u{FFFD}")
        default: cleaned.append(scalar)
        }
    }
    return String(cleaned)
}
