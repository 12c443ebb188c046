import Glibc
internal import CLibXML2

/// Configured raw XML (participant overrides, group and session extensions) parsed by libxml2 into
/// a scratch document whose root is `<recording>` in the RFC 7865 namespace, so unprefixed elements
/// land in that namespace as they will in the metadata. `XMLWriter.fragment` writes the result.
final class XMLTree {
    /// The nodes parsed from one piece of raw XML, held by an element of the tree named as the
    /// metadata element they go into. Only valid while the tree is alive.
    struct Fragment {
        fileprivate let holder: xmlNodePtr
        let document: xmlDocPtr

        /// The top-level nodes in order, whitespace-only text dropped.
        var nodes: some Sequence<xmlNodePtr> {
            sequence(first: holder.pointee.children) { (node: xmlNodePtr) in node.pointee.next }
        }

        var isEmpty: Bool { holder.pointee.children == nil }

        /// Whether there is text (or CDATA) among the nodes; libxml2 does not format the content of
        /// an element with such children.
        var hasText: Bool {
            nodes.contains {
                switch $0.pointee.type {
                case XML_TEXT_NODE, XML_CDATA_SECTION_NODE, XML_ENTITY_REF_NODE: true
                default: false
                }
            }
        }
    }

    private let document: xmlDocPtr
    private let root: xmlNodePtr
    private let namespace: xmlNsPtr

    init() {
        LibXML2.initialize()
        guard let document = withXMLChars("1.0", { xmlNewDoc($0) }),
            let root = withXMLChars("recording", { xmlNewDocNode(document, nil, $0, nil) }),
            let namespace = withXMLChars(RecordingMetadata.namespace, { xmlNewNs(root, $0, nil) })
        else { fatalError("libxml2 could not allocate a document") }
        xmlSetNs(root, namespace)
        xmlDocSetRootElement(document, root)
        self.document = document
        self.root = root
        self.namespace = namespace
    }

    deinit {
        xmlFreeDoc(document)
    }

    /// Parses `xml` as the content of a new `<elementName>` child of the root, or of the root when
    /// `elementName` is nil (in scope of the RFC 7865 namespace either way). Throws, naming
    /// `purpose` and libxml2's complaint, unless it is a well-formed sequence of elements and text
    /// whose namespace prefixes are all declared.
    func parseFragment(_ xml: String, into elementName: String?, purpose: String) throws(MetadataError) -> Fragment {
        let holder: xmlNodePtr
        if let elementName {
            guard let element = withXMLChars(elementName, { xmlNewChild(root, namespace, $0, nil) }) else {
                fatalError("libxml2 could not allocate an element")
            }
            holder = element
        } else {
            holder = root
        }
        let fragment = Fragment(holder: holder, document: document)
        var bytes = Array(xml.utf8)
        guard !bytes.isEmpty else { return fragment }  // libxml2 refuses an empty buffer; nothing to add
        let parsed: xmlNodePtr? = try LibXML2.capturingErrors(purpose) { log in
            var nodes: xmlNodePtr?
            let status = bytes.withUnsafeMutableBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    xmlParseInNodeContext(
                        holder, $0, Int32(buffer.count),
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
                xmlAddChild(holder, node)
            }
        }
        return fragment
    }
}

/// Lends `text` to libxml2 as a NUL-terminated `xmlChar` string for the duration of `body`.
private func withXMLChars<Result>(_ text: String, _ body: (UnsafePointer<xmlChar>) -> Result) -> Result {
    text.withCString { characters in
        characters.withMemoryRebound(to: xmlChar.self, capacity: strlen(characters) + 1, body)
    }
}
