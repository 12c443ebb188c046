import MediaEngine
import SIPEdgeConfig
import SIPEdgeIO
import SIPRECMetadata
import SIPRecording

/// A call the proxy records: its media anchored on one media engine, and one recording session
/// per recording instance the rules gave it. Lives on the worker that owns the call.
final class RecordedCall {
    struct Party {
        var aor: String
        var name: String?
    }

    let callID: String
    let callerTag: String
    let caller: Party
    let callee: Party
    let engine: any MediaEngine
    /// The recording sessions, one per instance, created when the INVITE is anchored.
    var sessions: [RecordingDriver] = []
    /// The engine holds a media session for this call (the offer succeeded) until `delete`.
    var isAnchored = false
    var isOver = false
    /// When the call's media was last answered with SDP: the recordings start from then.
    var isAnswered = false

    init(callID: String, callerTag: String, caller: Party, callee: Party, engine: any MediaEngine) {
        self.callID = callID
        self.callerTag = callerTag
        self.caller = caller
        self.callee = callee
        self.engine = engine
    }
}

/// The call's own headers as the recording rules and header templates see them.
struct CallFields {
    var requestURI: String
    var from: String
    var to: String
    /// Where the INVITE came from; written out only for a rule or template that asks.
    var sourceAddress: SocketAddress
    /// Header lookup by name (case-insensitive), first occurrence.
    var header: (String) -> String?

    func lookup(_ field: CallField) -> String? {
        switch field {
        case .requestURI: return requestURI
        case .from: return from
        case .to: return to
        case .source: return "\(sourceAddress)"
        case .header(let name): return header(name)
        }
    }
}
