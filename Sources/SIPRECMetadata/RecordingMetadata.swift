/// The recording metadata of one recorded call (one Communication Session, RFC 7865), rendered as
/// a complete snapshot in the element order OpenSIPS uses, which is also the schema's order.
public struct RecordingMetadata: Sendable, Equatable {
    /// The namespace of every RFC 7865 element.
    public static let namespace = "urn:ietf:params:xml:ns:recording:1"

    /// The Communication Session Group the call belongs to (`$siprec(group)` in OpenSIPS).
    public struct Group: Sendable, Equatable {
        /// Must be base64 (the schema types `group_id` as xs:base64Binary); see `isValidID`.
        public var id: String
        /// Raw XML placed inside `<group>`: elements of another namespace, declared inline.
        public var extensionXML: String?

        public init(id: String, extensionXML: String? = nil) {
            self.id = id
            self.extensionXML = extensionXML
        }

        /// Whether `id` can be a `group_id`: non-empty canonical base64. Unlike OpenSIPS, which
        /// sends any string, `render()` refuses other ids; check configured ids with this first.
        public static func isValidID(_ id: String) -> Bool {
            !id.isEmpty && Base64.decode(id) != nil
        }
    }

    /// One party of the recorded call.
    public struct Participant: Sendable, Equatable {
        public var id: MetadataID
        /// The address of record, such as the From or To URI; rendered as `<nameID aor=…>`.
        public var aor: String
        /// The display name; `<name>` appears only when there is one.
        public var name: String?
        /// Raw XML that replaces the `<nameID>` element (configured `caller`/`callee`). It must
        /// hold at least one `<nameID>` for the document to be schema-valid.
        public var overrideXML: String?
        public var associateTime: MetadataTime
        public var disassociateTime: MetadataTime?

        public init(
            id: MetadataID, aor: String, name: String? = nil, overrideXML: String? = nil,
            associateTime: MetadataTime, disassociateTime: MetadataTime? = nil
        ) {
            self.id = id
            self.aor = aor
            self.name = name
            self.overrideXML = overrideXML
            self.associateTime = associateTime
            self.disassociateTime = disassociateTime
        }
    }

    /// One recorded media stream: the `a=label` of an m-line of the recording session's SDP.
    public struct Stream: Sendable, Equatable {
        public var id: MetadataID
        public var label: String
        /// The index in `participants` of the participant whose media this stream carries; every
        /// other participant receives it.
        public var sender: Int

        public init(id: MetadataID, label: String, sender: Int) {
            self.id = id
            self.label = label
            self.sender = sender
        }
    }

    public var group: Group?
    public var sessionID: MetadataID
    /// The recorded call's Call-ID.
    public var sipSessionID: String
    /// Raw XML placed at the end of `<session>`: elements of another namespace, declared inline.
    public var sessionExtensionXML: String?
    /// When the recording of the call began (`sessionrecordingassoc`).
    public var sessionAssociateTime: MetadataTime
    /// When the recording of the call ended.
    public var sessionDisassociateTime: MetadataTime?
    /// When the call itself began (`<session><start-time>`); OpenSIPS never sends it.
    public var sessionStartTime: MetadataTime?
    /// When the call itself ended (`<session><stop-time>`); OpenSIPS never sends it.
    public var sessionStopTime: MetadataTime?
    public var participants: [Participant]
    public var streams: [Stream]

    public init(
        group: Group? = nil, sessionID: MetadataID, sipSessionID: String, sessionExtensionXML: String? = nil,
        sessionAssociateTime: MetadataTime, sessionDisassociateTime: MetadataTime? = nil,
        sessionStartTime: MetadataTime? = nil, sessionStopTime: MetadataTime? = nil,
        participants: [Participant], streams: [Stream]
    ) {
        self.group = group
        self.sessionID = sessionID
        self.sipSessionID = sipSessionID
        self.sessionExtensionXML = sessionExtensionXML
        self.sessionAssociateTime = sessionAssociateTime
        self.sessionDisassociateTime = sessionDisassociateTime
        self.sessionStartTime = sessionStartTime
        self.sessionStopTime = sessionStopTime
        self.participants = participants
        self.streams = streams
    }

    /// The complete snapshot (`<datamode>complete</datamode>`) as UTF-8 XML text with an XML
    /// declaration. Throws when a raw XML fragment is not well-formed, the group id is not
    /// base64, or a stream names a sender that is not in `participants`.
    public func render() throws(MetadataError) -> String {
        String(decoding: try renderBytes(), as: UTF8.self)
    }

    /// ``render()`` as UTF-8 bytes, ready for a message body without another copy.
    public func renderBytes() throws(MetadataError) -> [UInt8] {
        try checkReferences()
        let fragments = try ParsedFragments(of: self)
        defer { withExtendedLifetime(fragments.tree) {} }
        return try LibXML2.capturingErrors("recording metadata") { _ in write(fragments) }
    }

    /// The raw XML of the document, parsed in document order (so the first bad one is reported).
    private struct ParsedFragments {
        /// Holds the parsed nodes; nil when the document has no raw XML.
        var tree: XMLTree?
        var group: XMLTree.Fragment?
        var session: XMLTree.Fragment?
        /// By participant index; empty when no participant has an override.
        var participants: [XMLTree.Fragment?] = []

        init(of metadata: RecordingMetadata) throws(MetadataError) {
            let groupXML = metadata.group?.extensionXML
            let hasOverrides = metadata.participants.contains { $0.overrideXML != nil }
            guard groupXML != nil || metadata.sessionExtensionXML != nil || hasOverrides else { return }
            let tree = XMLTree()
            self.tree = tree
            if let xml = groupXML {
                group = try tree.parseFragment(xml, into: "group", purpose: "group extension XML")
            }
            if let xml = metadata.sessionExtensionXML {
                session = try tree.parseFragment(xml, into: "session", purpose: "session extension XML")
            }
            guard hasOverrides else { return }
            for (index, participant) in metadata.participants.enumerated() {
                participants.append(
                    try participant.overrideXML.map { xml throws(MetadataError) in
                        try tree.parseFragment(xml, into: "participant", purpose: "override XML of participant \(index)")
                    })
            }
        }
    }

    /// The document, written front to back; nil when libxml2 failed to write.
    private func write(_ fragments: ParsedFragments) -> [UInt8]? {
        XMLWriter.writing { xml in write(fragments, to: &xml) }
    }

    private func write(_ fragments: ParsedFragments, to xml: inout XMLWriter) -> [UInt8]? {
        xml.declaration()
        xml.startElement("recording")
        xml.attribute("xmlns", Self.namespace)
        xml.endStartTag()
        xml.textElement("datamode", "complete")

        if let group {
            xml.startElement("group")
            xml.attribute("group_id", group.id)
            xml.content(fragments.group, of: "group")
        }

        // <session>: the schema orders sipSessionID, group-ref, start-time, stop-time, extensions.
        xml.startElement("session")
        xml.attribute("session_id", sessionID.text)
        xml.endStartTag(formatted: fragments.session?.hasText != true)
        xml.textElement("sipSessionID", sipSessionID)
        if let group { xml.textElement("group-ref", group.id) }
        if let time = sessionStartTime { xml.textElement("start-time", time) }
        if let time = sessionStopTime { xml.textElement("stop-time", time) }
        if let fragment = fragments.session { xml.fragment(fragment) }
        xml.endElement("session")

        for (index, participant) in participants.enumerated() {
            xml.startElement("participant")
            xml.attribute("participant_id", participant.id.text)
            if participant.overrideXML != nil {
                xml.content(fragments.participants[index], of: "participant")
                continue
            }
            xml.endStartTag()
            xml.startElement("nameID")
            xml.attribute("aor", participant.aor)
            if let name = participant.name {
                xml.endStartTag()
                xml.textElement("name", name)
                xml.endElement("nameID")
            } else {
                xml.endEmptyElement()
            }
            xml.endElement("participant")
        }

        for stream in streams {
            xml.startElement("stream")
            xml.attribute("stream_id", stream.id.text)
            xml.attribute("session_id", sessionID.text)
            xml.endStartTag()
            xml.textElement("label", stream.label)
            xml.endElement("stream")
        }

        xml.startElement("sessionrecordingassoc")
        xml.attribute("session_id", sessionID.text)
        xml.times(sessionAssociateTime, sessionDisassociateTime, of: "sessionrecordingassoc")

        for participant in participants {
            xml.startElement("participantsessionassoc")
            xml.attribute("participant_id", participant.id.text)
            xml.attribute("session_id", sessionID.text)
            xml.times(participant.associateTime, participant.disassociateTime, of: "participantsessionassoc")
        }

        // Each participant sends its own streams and receives everyone else's (RFC 7865 §6.8.1).
        for (index, participant) in participants.enumerated() {
            xml.startElement("participantstreamassoc")
            xml.attribute("participant_id", participant.id.text)
            guard !streams.isEmpty else {
                xml.endEmptyElement()
                continue
            }
            xml.endStartTag()
            for stream in streams where stream.sender == index { xml.textElement("send", stream.id.text) }
            for stream in streams where stream.sender != index { xml.textElement("recv", stream.id.text) }
            xml.endElement("participantstreamassoc")
        }

        xml.endElement("recording")
        return xml.finish()
    }

    private func checkReferences() throws(MetadataError) {
        if let group, !Group.isValidID(group.id) {
            throw MetadataError(
                operation: "recording metadata", message: "group id '\(group.id)' is not base64 (xs:base64Binary)")
        }
        for stream in streams where !participants.indices.contains(stream.sender) {
            throw MetadataError(
                operation: "recording metadata",
                message: "stream \(stream.id) (label \(stream.label)) names sender \(stream.sender), "
                    + "but there are \(participants.count) participants")
        }
    }
}

extension XMLWriter {
    /// The rest of an element whose start tag is open and whose content is only raw XML (or
    /// nothing, then `<name …/>`).
    fileprivate mutating func content(_ fragment: XMLTree.Fragment?, of name: StaticString) {
        guard let fragment, !fragment.isEmpty else {
            endEmptyElement()
            return
        }
        endStartTag(formatted: !fragment.hasText)
        self.fragment(fragment)
        endElement(name)
    }

    /// The rest of an association element whose start tag is open: its associate and disassociate times.
    fileprivate mutating func times(_ associate: MetadataTime, _ disassociate: MetadataTime?, of name: StaticString) {
        endStartTag()
        textElement("associate-time", associate)
        if let disassociate { textElement("disassociate-time", disassociate) }
        endElement(name)
    }
}
