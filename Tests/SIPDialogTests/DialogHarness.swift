import SIPDialog

/// Owns one dialog and a fake clock: schedules the timers the dialog asks for (never cancelling),
/// fires them in deadline order, and records every event with its time.
struct DialogHarness {
    struct Pending {
        var deadline: Int
        var timer: DialogTimer
    }

    var dialog: Dialog
    var now = 0
    var pending: [Pending] = []
    var events: [(time: Int, event: DialogEvent)] = []
    /// Timer firings the dialog ignored.
    var ignoredFirings: [(time: Int, kind: DialogTimer.Kind)] = []

    init(_ dialog: Dialog) {
        self.dialog = dialog
    }

    @discardableResult
    mutating func input(_ body: (inout Dialog) -> DialogActions) -> DialogActions {
        let actions = body(&dialog)
        record(actions)
        return actions
    }

    /// Moves the clock to `end`, firing each due timer at its own deadline.
    mutating func advance(to end: Int) {
        while let next = pending.indices.min(by: { pending[$0].deadline < pending[$1].deadline }),
            pending[next].deadline <= end
        {
            let due = pending.remove(at: next)
            now = due.deadline
            let actions = dialog.timerFired(due.timer)
            if actions.isEmpty { ignoredFirings.append((now, due.timer.kind)) }
            record(actions)
        }
        now = end
    }

    var eventList: [DialogEvent] { events.map(\.event) }

    private mutating func record(_ actions: DialogActions) {
        for start in actions.timers {
            pending.append(Pending(deadline: now + start.milliseconds, timer: start.timer))
        }
        for event in actions.events {
            events.append((now, event))
        }
    }
}

extension DialogActions {
    var startedTimers: [String] {
        timers.map { "\($0.timer.kind)=\($0.milliseconds)" }
    }
}
