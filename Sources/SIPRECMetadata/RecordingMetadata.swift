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
        try checkReferences()
        let tree = XMLTree(rootName: "recording", namespaceURI: Self.namespace)
        let root = tree.root
        let session = ["session_id": sessionID.text] as KeyValuePairs

        tree.appendElement("datamode", to: root, text: "complete")
        if let group {
            let element = tree.appendElement("group", to: root, attributes: ["group_id": group.id])
            if let xml = group.extensionXML {
                try tree.appendFragment(xml, to: element, purpose: "group extension XML")
            }
        }

        // <session>: the schema orders sipSessionID, group-ref, start-time, stop-time, extensions.
        let sessionElement = tree.appendElement("session", to: root, attributes: session)
        tree.appendElement("sipSessionID", to: sessionElement, text: sipSessionID)
        if let group { tree.appendElement("group-ref", to: sessionElement, text: group.id) }
        if let time = sessionStartTime { tree.appendElement("start-time", to: sessionElement, text: time.xsDateTime) }
        if let time = sessionStopTime { tree.appendElement("stop-time", to: sessionElement, text: time.xsDateTime) }
        if let xml = sessionExtensionXML {
            try tree.appendFragment(xml, to: sessionElement, purpose: "session extension XML")
        }

        for (index, participant) in participants.enumerated() {
            let element = tree.appendElement(
                "participant", to: root, attributes: ["participant_id": participant.id.text])
            if let xml = participant.overrideXML {
                try tree.appendFragment(xml, to: element, purpose: "override XML of participant \(index)")
            } else {
                let nameID = tree.appendElement("nameID", to: element, attributes: ["aor": participant.aor])
                if let name = participant.name { tree.appendElement("name", to: nameID, text: name) }
            }
        }

        for stream in streams {
            let element = tree.appendElement(
                "stream", to: root, attributes: ["stream_id": stream.id.text, "session_id": sessionID.text])
            tree.appendElement("label", to: element, text: stream.label)
        }

        let recordingAssociation = tree.appendElement("sessionrecordingassoc", to: root, attributes: session)
        appendTimes(sessionAssociateTime, sessionDisassociateTime, to: recordingAssociation, in: tree)

        for participant in participants {
            let element = tree.appendElement(
                "participantsessionassoc", to: root,
                attributes: ["participant_id": participant.id.text, "session_id": sessionID.text])
            appendTimes(participant.associateTime, participant.disassociateTime, to: element, in: tree)
        }

        // Each participant sends its own streams and receives everyone else's (RFC 7865 §6.8.1).
        for (index, participant) in participants.enumerated() {
            let element = tree.appendElement(
                "participantstreamassoc", to: root, attributes: ["participant_id": participant.id.text])
            for stream in streams where stream.sender == index {
                tree.appendElement("send", to: element, text: stream.id.text)
            }
            for stream in streams where stream.sender != index {
                tree.appendElement("recv", to: element, text: stream.id.text)
            }
        }
        return tree.serialized()
    }

    private func appendTimes(
        _ associate: MetadataTime, _ disassociate: MetadataTime?, to element: XMLTree.Element, in tree: XMLTree
    ) {
        tree.appendElement("associate-time", to: element, text: associate.xsDateTime)
        if let disassociate { tree.appendElement("disassociate-time", to: element, text: disassociate.xsDateTime) }
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
