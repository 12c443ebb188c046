import Logging
import MediaEngine
import SIPEdgeConfig
import SIPEdgeIO
import SIPMessage
import SIPRECMetadata
import SIPRecording
import SIPTransaction

/// One recording session toward one instance's SRSs: the `RecordingSession` state machine, the
/// SIP dialog it opens as a UAC (RFC 7866 §6), its media subscription and its metadata. Carries
/// out the machine's actions on the worker that owns the recorded call.
final class RecordingDriver {
    /// The SIP side of the current attempt: a new Call-ID and From tag per SRS tried.
    struct Leg {
        var srsIndex: Int
        var callID: String
        /// The Call-ID's seeded hash: its key among the worker's recording sessions.
        var callIDKey: UInt64
        var localTag: String
        var cseq: UInt32 = 1
        var remoteTag: String? {
            didSet { dialogLines = [] }  // To gains the tag
        }
        /// Where in-dialog requests go: the SRS's Contact, through its Record-Route set.
        var remoteTarget: String
        var routeSet: [String] = []
        var hop: Hop?
        /// From, To and Call-ID as every request of the leg carries them; empty until first used
        /// and again when the SRS's tag changes.
        var dialogLines: [UInt8] = []
    }

    /// Strong: a session outlives its call's dialog (final metadata, BYE, retransmissions). The
    /// call lets go of its sessions as each finishes, so there is no lasting cycle.
    let call: RecordedCall
    let instance: RecordingInstance
    var machine: RecordingSession
    /// The media engine's subscription: our own tag, so ports stay stable across re-subscribes.
    let subscriptionTag: String
    /// The header lines the instance adds to the INVITE, expanded from the call's headers.
    let extraHeaders: [UInt8]
    var leg: Leg?
    /// The last offer from the media engine, and the streams it labels.
    var offerSDP: String?
    /// The media security `offerSDP` was made for.
    var offerSecurity: MediaSecurity?
    var streams: [MediaStreamLabel] = []
    /// The SDP of the SRS's last answer, for the subscribe answer.
    var answerSDP: String?
    /// The pending INVITE (initial or re-INVITE) toward the SRS.
    var pendingInvite: RecordingTransaction?
    // Metadata identities: stable for the life of the session, across failover.
    let sessionID: MetadataID
    let participantIDs: [MetadataID]
    var streamIDs: [String: MetadataID] = [:]
    let startTime = MetadataTime.now()
    var endTime: MetadataTime?
    /// The worker's logger with this session's call, instance and session id; made on first use,
    /// since most sessions never log a line at the usual levels.
    lazy var logger: Logger = {
        var logger = workerLogger
        logger[metadataKey: "sip.callID"] = "\(call.callID)"
        logger[metadataKey: "recording.instance"] = "\(instance.name)"
        logger[metadataKey: "recording.session"] = "\(sessionID)"
        return logger
    }()
    private let workerLogger: Logger

    init(call: RecordedCall, instance: RecordingInstance, settings: RecordingSessionSettings, extraHeaders: [UInt8],
         subscriptionTag: String, seed: UInt64, ids: inout MetadataIDSource, logger: Logger)
    {
        sessionID = ids.next()
        participantIDs = [ids.next(), ids.next()]
        self.call = call
        self.instance = instance
        self.machine = RecordingSession(settings: settings, randomSeed: seed)
        self.extraHeaders = extraHeaders
        self.subscriptionTag = subscriptionTag
        workerLogger = logger
    }

    var srs: SRSTarget? { leg.map { instance.srs[$0.srsIndex] } }

    // MARK: Metadata

    /// The complete snapshot (RFC 7865 §5, `datamode complete`), with disassociate times once the
    /// call has ended.
    func metadata(ids: inout MetadataIDSource) throws(MetadataError) -> [UInt8] {
        func participant(_ index: Int, _ party: RecordedCall.Party, overrideXML: String?) -> RecordingMetadata.Participant {
            RecordingMetadata.Participant(
                id: participantIDs[index], aor: party.aor, name: party.name, overrideXML: overrideXML,
                associateTime: startTime, disassociateTime: endTime)
        }
        let participants = [
            participant(0, call.caller, overrideXML: instance.callerXML),
            participant(1, call.callee, overrideXML: instance.calleeXML),
        ]
        var metadataStreams: [RecordingMetadata.Stream] = []
        metadataStreams.reserveCapacity(streams.count)
        for stream in streams {
            let id = streamIDs[stream.label] ?? ids.next()
            streamIDs[stream.label] = id
            metadataStreams.append(
                RecordingMetadata.Stream(id: id, label: stream.label, sender: stream.participantTag == call.callerTag ? 0 : 1))
        }
        // The schema wants a base64 group_id; a configured name that is not one is encoded.
        let group = instance.group.map { name in
            RecordingMetadata.Group(
                id: RecordingMetadata.Group.isValidID(name) ? name : MetadataID(bytes: Array(name.utf8)).text,
                extensionXML: instance.groupExtensionXML)
        }
        let document = RecordingMetadata(
            group: group, sessionID: sessionID, sipSessionID: call.callID, sessionExtensionXML: instance.sessionExtensionXML,
            sessionAssociateTime: startTime, sessionDisassociateTime: endTime,
            sessionStartTime: startTime, sessionStopTime: endTime,
            participants: participants, streams: metadataStreams)
        return try document.renderBytes()
    }

    /// The multipart body of an INVITE or re-INVITE: the SDP, then the metadata (RFC 7866 §9.1).
    func body(sdp: String, ids: inout MetadataIDSource) -> (contentType: String, bytes: [UInt8])? {
        guard let xml = loggedMetadata(ids: &ids) else { return nil }
        let parts = [
            BodyPart(contentType: "application/sdp", contentDisposition: nil, body: Array(sdp.utf8)),
            BodyPart(contentType: metadataType, contentDisposition: "recording-session", body: xml),
        ]
        return ("multipart/mixed;boundary=\(Self.boundary)", MultipartBody.render(parts, boundary: Self.boundary))
    }

    /// The metadata alone, for an UPDATE without an offer; its Content-Disposition goes in the
    /// request's headers.
    func metadataBody(ids: inout MetadataIDSource) -> (contentType: String, bytes: [UInt8])? {
        guard let xml = loggedMetadata(ids: &ids) else { return nil }
        return (metadataType, xml)
    }

    private var metadataType: String {
        (srs?.legacyMetadataType ?? false) ? "application/rs-metadata" : "application/rs-metadata+xml"
    }

    private func loggedMetadata(ids: inout MetadataIDSource) -> [UInt8]? {
        do {
            return try metadata(ids: &ids)
        } catch {
            logger.error("recording metadata could not be built", metadata: ["error": "\(error)"])
            return nil
        }
    }

    static let boundary = "siprec-edge-7865"
}

/// A client transaction toward an SRS: the initial INVITE of one attempt, a re-INVITE, a BYE or a
/// CANCEL. Responses find it by the transaction id in our Via branch, like proxied requests.
final class RecordingTransaction {
    enum Purpose: Equatable {
        case initialInvite(attempt: Int)
        case reInvite
        /// The final metadata alone, when the SRS allows UPDATE.
        case metadataUpdate
        case bye
        case cancel

        var method: SIPMethod {
            switch self {
            case .initialInvite, .reInvite: return .invite
            case .metadataUpdate: return .update
            case .bye: return .bye
            case .cancel: return .cancel
            }
        }

        /// A request inside the SRS's dialog, sent to its remote target.
        var isInDialog: Bool {
            switch self {
            case .reInvite, .metadataUpdate, .bye: return true
            case .initialInvite, .cancel: return false
            }
        }
    }

    let id: UInt64
    let purpose: Purpose
    let bytes: [UInt8]
    let hop: Hop
    var client: ProxyTransaction.ClientSide
    /// Strong: an abandoned INVITE waits for a late 2xx after its session has finished.
    let driver: RecordingDriver
    var timers: [TimerWheel<TimerPurpose>.ID] = []
    /// Given up (no answer in time, no provisional to CANCEL): only a late 2xx still matters.
    var isAbandoned = false
    var isTerminated = false
    /// How often this request was sent again after its stream connection dropped.
    var resends = 0
    /// Our CANCEL of this INVITE, once sent.
    var cancel: RecordingTransaction?
    /// The ACK for each 2xx, built once (retransmitted 2xx get the same ACK, §13.2.2.4).
    var ackBytes: [UInt8]?

    /// A fresh client transaction (RFC 3261 §17.1) of the kind the purpose's method needs.
    init(id: UInt64, purpose: Purpose, bytes: [UInt8], hop: Hop, settings: TimerSettings, driver: RecordingDriver) {
        self.id = id
        self.purpose = purpose
        self.bytes = bytes
        self.hop = hop
        self.driver = driver
        let reliable = hop.transport.isReliable
        switch purpose {
        case .initialInvite, .reInvite:
            client = .invite(ClientInviteTransaction(reliableTransport: reliable, settings: settings))
        case .metadataUpdate, .bye, .cancel:
            client = .nonInvite(ClientNonInviteTransaction(reliableTransport: reliable, settings: settings))
        }
    }

    var method: SIPMethod { purpose.method }

    func step(_ input: ClientInput) -> TransactionActions {
        client.step(input)
    }
}
