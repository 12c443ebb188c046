import Logging
import SIPDialog
import SIPMessage
import SIPTransaction

/// What observers learn about a dialog with each event.
public struct DialogSnapshot: Sendable {
    public var id: DialogID
    public var state: Dialog.State
}

/// Receives dialog lifecycle events on the worker loop that owns the call. This is the object the
/// recording work attaches to; it must not block.
public typealias DialogObserver = @Sendable (DialogSnapshot, DialogEvent) -> Void

/// A call's dialogs, keyed by Call-ID and caller tag: the dialog the INVITE created plus one
/// sibling per further callee tag when the INVITE forks downstream.
final class DialogEntry {
    let key: UInt64
    let callID: String
    let callerTag: String
    /// One state machine per callee tag; the first is the INVITE's own.
    var dialogs: [Dialog]
    /// Every timer scheduled for these dialogs (the lifetime runs for hours), cancelled at the end.
    var timers: [TimerWheel<TimerPurpose>.ID] = []
    /// The call's recordings and anchored media, when the rules record it.
    var recording: RecordedCall?

    init(key: UInt64, dialog: Dialog) {
        self.key = key
        self.callID = dialog.id.callID
        self.callerTag = dialog.id.callerTag
        self.dialogs = [dialog]
        timers.reserveCapacity(4)
    }

    var isTerminated: Bool { dialogs.allSatisfy(\.isTerminated) }

    /// The dialog for a callee tag: an existing one, the initial one while it has no tag yet, or a
    /// new sibling for a fork.
    func index(forCalleeTag tag: String) -> Int {
        if let existing = dialogs.firstIndex(where: { $0.id.calleeTag == tag }) { return existing }
        if let untagged = dialogs.firstIndex(where: { $0.id.calleeTag == nil }) { return untagged }
        dialogs.append(dialogs[0].forked(calleeTag: tag))
        return dialogs.count - 1
    }

    /// The direction of an in-dialog request and the index of its dialog, if it belongs here.
    func locate(_ request: SIPMessage, _ headers: RoutingHeaders) -> (Int, DialogDirection)? {
        guard let fromTag = headers.fromTag, let toTag = headers.toTag else { return nil }
        for (index, dialog) in dialogs.enumerated() {
            guard let calleeTag = dialog.id.calleeTag else { continue }
            if request.equals(fromTag, callerTag), request.equals(toTag, calleeTag) { return (index, .callerToCallee) }
            if request.equals(fromTag, calleeTag), request.equals(toTag, callerTag) { return (index, .calleeToCaller) }
        }
        return nil
    }

    // MARK: Inputs from the worker

    /// An in-dialog request of dialog `index` travelling in `direction` was forwarded.
    func requestStarted(_ transaction: ProxyTransaction, index: Int, direction: DialogDirection, worker: Worker) {
        transaction.dialogPosition = (index, direction)
        let actions = dialogs[index].receiveRequest(
            InDialogMethod(transaction.method), direction: direction, cseq: transaction.headers.cseq.number)
        if actions.isOutOfOrder { worker.counters[.outOfOrderRequests] += 1 }
        worker.apply(actions, to: self, index: index)
    }

    func responseReceived(_ response: Inbound, to transaction: ProxyTransaction, worker: Worker) {
        let statusCode = response.message.statusCode
        if transaction.isInitialInvite {
            // The tag as text, reusing a known dialog's string when the bytes match.
            let toTag = response.headers.toTag.map { range in
                dialogs.lazy.compactMap(\.id.calleeTag).first { response.message.equals(range, $0) }
                    ?? response.message.text(range)
            }
            if statusCode < 200 {
                guard let toTag else { return }
                let position = index(forCalleeTag: toTag)
                worker.apply(dialogs[position].receiveProvisional(statusCode: statusCode, toTag: toTag), to: self, index: position)
            } else if statusCode < 300 {
                let position = toTag.map { index(forCalleeTag: $0) } ?? 0
                worker.apply(dialogs[position].receiveFinalResponse(statusCode: statusCode, toTag: toTag), to: self, index: position)
            } else {
                // A non-2xx final ends every early dialog of the INVITE.
                for index in dialogs.indices {
                    worker.apply(dialogs[index].receiveFinalResponse(statusCode: statusCode, toTag: nil), to: self, index: index)
                }
            }
            return
        }
        guard let (index, direction) = transaction.dialogPosition else { return }
        let actions = dialogs[index].receiveResponse(
            statusCode: statusCode, method: InDialogMethod(transaction.method), requestDirection: direction,
            cseq: transaction.headers.cseq.number)
        worker.apply(actions, to: self, index: index)
    }

    func requestFailed(_ transaction: ProxyTransaction, statusCode: Int, worker: Worker) {
        guard transaction.isInitialInvite else { return }
        for index in dialogs.indices {
            worker.apply(dialogs[index].receiveFinalResponse(statusCode: statusCode, toTag: nil), to: self, index: index)
        }
    }

    func cancelled(worker: Worker) {
        for index in dialogs.indices { worker.apply(dialogs[index].receiveCancel(), to: self, index: index) }
    }

    func acknowledged(index: Int, worker: Worker) {
        worker.apply(dialogs[index].receiveACK(), to: self, index: index)
    }
}

extension InDialogMethod {
    init(_ method: SIPMethod) {
        switch method {
        case .invite: self = .invite
        case .update: self = .update
        case .bye: self = .bye
        default: self = .other
        }
    }
}

/// The dialogs a worker follows.
struct DialogTable {
    private var entries: [UInt64: DialogEntry] = [:]
    var count: Int { entries.count }

    static func key(callID: ByteRange, tag: ByteRange, in message: SIPMessage, seed: UInt64) -> UInt64 {
        message.hash(tag, seed: message.hash(callID, seed: seed))
    }

    /// Creates the dialog of a forwarded initial INVITE.
    mutating func trackInitialInvite(_ transaction: ProxyTransaction, worker: Worker) {
        let headers = transaction.headers
        guard let request = transaction.request, let fromTag = headers.fromTag else { return }
        let callID = headers.callID
        let key = DialogTable.key(callID: callID, tag: fromTag, in: request, seed: worker.context.hashSeed)
        if let existing = entries[key], !existing.isTerminated {
            transaction.dialog = existing  // a new INVITE with the same tags: follow the same dialog
            return
        }
        var dialog = Dialog(
            callID: request.text(callID), callerTag: request.text(fromTag), inviteCSeq: headers.cseq.number,
            settings: worker.context.dialogSettings)
        let entry = DialogEntry(key: key, dialog: dialog)
        entries[key] = entry
        transaction.dialog = entry
        transaction.isInitialInvite = true
        worker.counters[.dialogsCreated] += 1
        let actions = dialog.start()
        entry.dialogs[0] = dialog
        worker.apply(actions, to: entry, index: 0)
    }

    /// The dialog an in-dialog request (or the ACK of a 2xx) belongs to, either direction, with
    /// the index of the dialog among the call's forks and the request's direction.
    func find(_ request: SIPMessage, _ headers: RoutingHeaders, seed: UInt64)
        -> (entry: DialogEntry, index: Int, direction: DialogDirection)?
    {
        // The caller's tag keys the entry: the From tag of the caller's requests, the To tag of
        // the callee's.
        func lookup(_ tag: ByteRange?) -> (entry: DialogEntry, index: Int, direction: DialogDirection)? {
            guard let tag, let entry = entries[DialogTable.key(callID: headers.callID, tag: tag, in: request, seed: seed)],
                request.equals(headers.callID, entry.callID), let (index, direction) = entry.locate(request, headers)
            else { return nil }
            return (entry, index, direction)
        }
        return lookup(headers.fromTag) ?? lookup(headers.toTag)
    }

    mutating func remove(_ entry: DialogEntry) {
        if entries[entry.key] === entry { entries.removeValue(forKey: entry.key) }
    }
}

extension Worker {
    /// Carries out a dialog's actions: timers into the wheel, events to the log and the observer.
    func apply(_ actions: DialogActions, to entry: DialogEntry, index: Int) {
        for start in actions.timers {
            entry.timers.append(schedule(.dialog(entry, start.timer), afterMilliseconds: start.milliseconds))
        }
        guard !actions.events.isEmpty else { return }
        let dialog = entry.dialogs[index]
        for event in actions.events {
            switch event {
            case .confirmed: counters[.dialogsConfirmed] += 1
            case .terminated: counters[.dialogsTerminated] += 1
            default: break
            }
            logger.debug("dialog \(event)", metadata: ["sip.callID": "\(entry.callID)"])
            context.dialogObserver?(DialogSnapshot(id: dialog.id, state: dialog.state), event)
        }
        if entry.isTerminated {
            dialogs.remove(entry)
            cancelTimers(&entry.timers)
            if let recording = entry.recording { endRecordedCall(recording) }
        }
    }

    func dialogTimerFired(_ entry: DialogEntry, _ timer: DialogTimer) {
        for index in entry.dialogs.indices {
            let actions = entry.dialogs[index].timerFired(timer)
            if !actions.isEmpty {
                apply(actions, to: entry, index: index)
                return
            }
        }
    }
}
