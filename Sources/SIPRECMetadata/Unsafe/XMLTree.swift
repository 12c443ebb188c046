import Glibc
internal import CLibXML2

/// A libxml2 document under construction, every element in one default namespace. libxml2 escapes
/// text and attribute values when it serialises, so callers pass plain strings.
final class XMLTree {
    /// An element of this tree; only valid while the tree is alive.
    struct Element {
        fileprivate let node: xmlNodePtr
    }

    private let document: xmlDocPtr
    private let namespace: xmlNsPtr
    let root: Element

    init(rootName: String, namespaceURI: String) {
        LibXML2.initialize()
        guard let document = withXMLChars("1.0", { xmlNewDoc($0) }),
            let rootNode = withXMLChars(rootName, { xmlNewDocNode(document, nil, $0, nil) }),
            let namespace = withXMLChars(namespaceURI, { xmlNewNs(rootNode, $0, nil) })
        else { fatalError("libxml2 could not allocate a document") }
        xmlSetNs(rootNode, namespace)
        xmlDocSetRootElement(document, rootNode)
        self.document = document
        self.namespace = namespace
        self.root = Element(node: rootNode)
    }

    deinit {
        xmlFreeDoc(document)
    }

    /// Appends `<name attributes…>text</name>` to `parent` and returns it.
    @discardableResult
    func appendElement(
        _ name: String, to parent: Element, attributes: KeyValuePairs<String, String> = [:], text: String? = nil
    ) -> Element {
        // xmlNewTextChild (unlike xmlNewChild) keeps the content as literal text, never as markup.
        let node = withXMLChars(name) { name in
            guard let text else { return xmlNewTextChild(parent.node, namespace, name, nil) }
            return withXMLChars(xmlCharacters(text)) { xmlNewTextChild(parent.node, namespace, name, $0) }
        }
        guard let node else { fatalError("libxml2 could not allocate an element") }
        for (attribute, value) in attributes {
            let added = withXMLChars(attribute) { name in
                withXMLChars(xmlCharacters(value)) { xmlNewProp(node, name, $0) }
            }
            if added == nil { fatalError("libxml2 could not allocate an attribute") }
        }
        return Element(node: node)
    }

    /// Parses `xml` as the content of `parent` (in scope of the document's namespaces) and appends
    /// the resulting nodes. Throws, naming `purpose` and libxml2's complaint, unless it is a
    /// well-formed sequence of elements and text whose namespace prefixes are all declared.
    func appendFragment(_ xml: String, to parent: Element, purpose: String) throws(MetadataError) {
        var bytes = Array(xml.utf8)
        guard !bytes.isEmpty else { return }  // libxml2 refuses an empty buffer; nothing to add
        let parsed: xmlNodePtr? = try LibXML2.capturingErrors(purpose) { log in
            var nodes: xmlNodePtr?
            let status = bytes.withUnsafeMutableBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    xmlParseInNodeContext(
                        parent.node, $0, Int32(buffer.count),
                        LibXML2.parseOptions | Int32(XML_PARSE_NOBLANKS.rawValue), &nodes)
                }
            }
            guard status == XML_ERR_OK, !log.hasErrors else {
                xmlFreeNodeList(nodes)
                return nil
            }
            return .some(nodes)  // nil nodes (only blanks) is success
        }
        // Whitespace between the fragment's top-level nodes means nothing in element content and
        // would stop libxml2 from indenting the parent; drop it.
        var next = parsed
        while let node = next {
            next = node.pointee.next
            node.pointee.next = nil
            node.pointee.prev = nil
            if xmlIsBlankNode(node) != 0 {
                xmlFreeNode(node)
            } else {
                xmlAddChild(parent.node, node)
            }
        }
    }

    /// The document as UTF-8 text with an XML declaration, indented two spaces per level.
    func serialized() -> String {
        guard let buffer = xmlBufferCreate() else { fatalError("libxml2 could not allocate a buffer") }
        defer { xmlBufferFree(buffer) }
        guard let saver = xmlSaveToBuffer(buffer, "UTF-8", Int32(XML_SAVE_FORMAT.rawValue)) else {
            fatalError("libxml2 could not serialise a document")
        }
        xmlSaveDoc(saver, document)
        xmlSaveClose(saver)  // flushes into the buffer
        let text = UnsafeBufferPointer(start: xmlBufferContent(buffer), count: Int(xmlBufferLength(buffer)))
        return String(decoding: text, as: UTF8.self)
    }
}

/// Lends `text` to libxml2 as a NUL-terminated `xmlChar` string for the duration of `body`.
private func withXMLChars<Result>(_ text: String, _ body: (UnsafePointer<xmlChar>) -> Result) -> Result {
    text.withCString { characters in
        characters.withMemoryRebound(to: xmlChar.self, capacity: strlen(characters) + 1, body)
    }
}

/// `text` with every character XML 1.0 forbids (C0 controls other than tab, LF and CR; U+FFFE,
/// U+FFFF) replaced by U+FFFD: no XML 1.0 parser accepts them, raw or as character references,
/// yet SIP allows them in quoted display names.
private func xmlCharacters(_ text: String) -> String {
    func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A, 0x0D: true
        case 0x00..<0x20, 0xFFFE, 0xFFFF: false
        default: true
        }
    }
    guard !text.unicodeScalars.allSatisfy(isAllowed) else { return text }
    var cleaned = String.UnicodeScalarView()
    for scalar in text.unicodeScalars { cleaned.append(isAllowed(scalar) ? scalar : "\u{FFFD}") }
    return String(cleaned)
}
