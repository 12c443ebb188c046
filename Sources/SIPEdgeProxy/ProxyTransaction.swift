import SIPEdgeIO
import SIPMessage
import SIPDialog
import SIPRecording
import SIPTransaction

/// Where a message goes: transport, address, the interface that names us, and the stream
/// connection when one is already known.
struct Hop {
    var transport: Transport
    var address: SocketAddress
    var interfaceIndex: Int
    var connection: StreamConnection?
    /// For a new TLS connection: the context and the identity to verify (an SRS's own settings);
    /// nil means the global client context and the address as identity.
    var tls: TLSClientOptions? = nil
}

/// One request the proxy handles statefully: its server transaction toward the sender, the client
/// transaction toward the next hop, and what is needed to answer, retransmit, ACK and CANCEL.
/// A reference type because timers, both transaction tables and the dialog point at it.
final class ProxyTransaction {
    enum ServerSide {
        case invite(ServerInviteTransaction)
        case nonInvite(ServerNonInviteTransaction)
    }

    enum ClientSide {
        case invite(ClientInviteTransaction)
        case nonInvite(ClientNonInviteTransaction)
    }

    /// Key in the worker's server table: hash of branch, sent-by and method (RFC 3261 §17.2.3).
    let serverKey: UInt64
    /// The request as received: responses the proxy makes itself are built from it. Let go once
    /// a final response was sent; `match` still recognises its retransmissions, ACK and CANCEL.
    private(set) var request: SIPMessage?
    let match: TransactionMatch
    let headers: RoutingHeaders
    let method: SIPMethod
    /// Where responses go: back the way the request came.
    let replyHop: Hop
    var server: ServerSide
    /// The last response sent upstream, for retransmissions.
    var lastResponse: [UInt8]?
    /// A to-tag for the responses this proxy makes itself (408, 487 ...), stable per transaction.
    var localTag: String {
        var bytes: [UInt8] = []
        bytes.append(hex: serverKey, digits: 12)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Which responses go upstream (§16.7): one branch today, the same rules as with many.
    var responses: ResponseContext

    /// Our branch id, the key in the worker's client table, once forwarded.
    var clientID: UInt64?
    var client: ClientSide?
    /// The request as forwarded (for retransmission, CANCEL and ACK generation).
    var forwarded: [UInt8]?
    /// The forwarded request parsed, for building a CANCEL or an ACK; only when one is needed.
    var forwardedMessage: SIPMessage? {
        forwarded.flatMap { try? SIPMessage(parsing: $0) }
    }
    var nextHop: Hop?
    /// The ACK for a non-2xx final response, kept for that response's retransmissions.
    var ackBytes: [UInt8]?
    /// Our CANCEL toward the next hop (RFC 3261 §9.1), once one is needed.
    var cancel: CancelLeg?
    /// A final response has been sent upstream.
    var finalSent = false
    /// The dialog this INVITE or in-dialog request belongs to.
    var dialog: DialogEntry?
    /// This INVITE created `dialog` (as opposed to a re-INVITE inside it).
    var isInitialInvite = false
    /// Which of the call's dialogs an in-dialog request belongs to, and which way it travels.
    var dialogPosition: (index: Int, direction: DialogDirection)?
    /// A recorded call's media: the offer this request carried (before the media engine rewrote
    /// it), the engine's replacement, and the answer rewritten for the responses.
    var mediaOffer: [UInt8]?
    var anchoredBody: [UInt8]?
    var mediaAnswer: (original: [UInt8], anchored: [UInt8])?
    var isAnswerPending = false

    init(
        serverKey: UInt64, request: SIPMessage, headers: RoutingHeaders, replyHop: Hop, server: ServerSide
    ) {
        self.serverKey = serverKey
        self.request = request
        self.match = TransactionMatch(request, headers.topVia)
        self.headers = headers
        self.method = request.method
        self.replyHop = replyHop
        self.server = server
        self.responses = ResponseContext(isInvite: request.method == .invite)
        timers.reserveCapacity(8)  // a transaction arms up to about eight timers in its life
    }

    /// Every timer scheduled for this transaction, cancelled when it finishes.
    var timers: [TimerWheel<TimerPurpose>.ID] = []

    var isServerTerminated = false
    var isClientTerminated = true
    var isCancelTerminated = true
    var isFinished: Bool { isServerTerminated && isClientTerminated && isCancelTerminated }
}

/// Our CANCEL of a forwarded INVITE and its own client transaction. Boxed because few calls need
/// one: kept inline, its 120-byte machine would lift every transaction above glibc's per-thread
/// cache limit (1032 bytes) onto malloc's slow path.
final class CancelLeg {
    var machine: ClientNonInviteTransaction
    let bytes: [UInt8]

    init(machine: ClientNonInviteTransaction, bytes: [UInt8]) {
        self.machine = machine
        self.bytes = bytes
    }
}

/// What a timer in the worker's wheel is for.
enum TimerPurpose {
    case server(ProxyTransaction, TransactionTimer)
    case client(ProxyTransaction, TransactionTimer)
    case cancel(ProxyTransaction, TransactionTimer)
    case dialog(DialogEntry, DialogTimer)
    case recordingClient(RecordingTransaction, TransactionTimer)
    case recordingSession(RecordingDriver, RecordingTimer)
    /// A finished recording session's Call-ID is forgotten (after retransmissions have died down).
    case recordingForget(RecordingDriver)
    /// An INVITE to an SRS that was given up is forgotten.
    case recordingAbandoned(RecordingTransaction)
    /// An in-dialog request toward an SRS goes again after its connection dropped.
    case recordingResend(RecordingTransaction)
}

/// Inputs for the server side, whichever kind of transaction it is.
enum ServerInput {
    case start
    case retransmission
    case response(statusCode: Int)
    case ack
    case timer(TransactionTimer)
    case transportError
}

/// Inputs for the client side, whichever kind of transaction it is.
enum ClientInput {
    case start
    case response(statusCode: Int)
    case cancel
    case timer(TransactionTimer)
    case transportError
}

extension ProxyTransaction.ClientSide {
    /// Feeds the machine and keeps its new state: proxied requests and requests toward SRSs alike.
    /// Inputs that do not apply to the kind (a CANCEL of a non-INVITE) change nothing.
    mutating func step(_ input: ClientInput) -> TransactionActions {
        switch self {
        case .invite(var machine):
            let actions: TransactionActions
            switch input {
            case .start: actions = machine.start()
            case .response(let statusCode): actions = machine.receiveResponse(statusCode: statusCode)
            case .cancel: actions = machine.cancel()
            case .timer(let timer): actions = machine.timerFired(timer)
            case .transportError: actions = machine.transportError()
            }
            self = .invite(machine)
            return actions
        case .nonInvite(var machine):
            let actions: TransactionActions
            switch input {
            case .start: actions = machine.start()
            case .response(let statusCode): actions = machine.receiveResponse(statusCode: statusCode)
            case .cancel: actions = .none
            case .timer(let timer): actions = machine.timerFired(timer)
            case .transportError: actions = machine.transportError()
            }
            self = .nonInvite(machine)
            return actions
        }
    }
}

extension ProxyTransaction {
    /// Feeds the server-side state machine and keeps its new state. Inputs that do not apply to
    /// the kind (an ACK to a non-INVITE transaction) change nothing.
    func serverStep(_ input: ServerInput) -> TransactionActions {
        switch server {
        case .invite(var machine):
            let actions: TransactionActions
            switch input {
            case .start: actions = machine.start()
            case .retransmission: actions = machine.receiveRequestRetransmission()
            case .response(let statusCode): actions = machine.sendResponse(statusCode: statusCode)
            case .ack: actions = machine.receiveACK()
            case .timer(let timer): actions = machine.timerFired(timer)
            case .transportError: actions = machine.transportError()
            }
            server = .invite(machine)
            return actions
        case .nonInvite(var machine):
            let actions: TransactionActions
            switch input {
            case .start: actions = machine.start()
            case .retransmission: actions = machine.receiveRequestRetransmission()
            case .response(let statusCode): actions = machine.sendResponse(statusCode: statusCode)
            case .ack: actions = .none
            case .timer(let timer): actions = machine.timerFired(timer)
            case .transportError: actions = machine.transportError()
            }
            server = .nonInvite(machine)
            return actions
        }
    }

    /// Feeds the client-side state machine, if the request was forwarded, and keeps its new state.
    func clientStep(_ input: ClientInput) -> TransactionActions {
        client?.step(input) ?? .none
    }
}

extension ProxyTransaction {
    /// Drops the bytes no state can use any more: a transaction lives on for 64·T1 after its final
    /// response (RFC 6026), and at a thousand calls a second that is tens of thousands of them.
    /// The request is never sent again once the next hop answered finally (its ACK is built by
    /// then), and the proxy's server side never resends a 2xx itself.
    func releaseSpentBuffers() {
        switch client {
        case .invite(let machine) where machine.state == .accepted || machine.state == .terminated:
            forwarded = nil
        case .invite(let machine) where machine.state == .completed && ackBytes != nil:
            forwarded = nil
        case .nonInvite(let machine) where machine.state == .completed || machine.state == .terminated:
            forwarded = nil
        default:
            break
        }
        if case .invite(let machine) = server, machine.state == .accepted || machine.state == .terminated {
            lastResponse = nil
        }
        if finalSent { request = nil }
    }
}
