import SIPTransaction

/// A transaction the harness can drive by its timers.
protocol TimerDrivenTransaction {
    mutating func timerFired(_ timer: TransactionTimer) -> TransactionActions
}

extension ClientInviteTransaction: TimerDrivenTransaction {}
extension ClientNonInviteTransaction: TimerDrivenTransaction {}
extension ServerInviteTransaction: TimerDrivenTransaction {}
extension ServerNonInviteTransaction: TimerDrivenTransaction {}

/// Owns one transaction and a timer wheel on an injected clock, performs the timer actions the way a
/// real owner would (never cancelling), and records what happened when.
struct TransactionHarness<Machine: TimerDrivenTransaction> {
    struct Entry: Equatable {
        var time: Int
        /// The timer whose firing produced the actions; nil for inputs.
        var firedTimer: TransactionTimer.Kind?
        var actions: TransactionActions
    }

    var machine: Machine
    var wheel = TimerWheel<TransactionTimer>(tickMilliseconds: 10)
    var now = 0
    var log: [Entry] = []

    init(_ machine: Machine) {
        self.machine = machine
    }

    /// Applies an input to the machine at the current time.
    @discardableResult
    mutating func input(_ body: (inout Machine) -> TransactionActions) -> TransactionActions {
        let actions = body(&machine)
        record(actions, firedTimer: nil)
        return actions
    }

    /// Advances the clock tick by tick up to `end`, firing due timers into the machine.
    mutating func run(until end: Int) {
        while now < end {
            now = min(now + wheel.tickMilliseconds, end)
            while let timer = wheel.popExpired(upTo: now) {
                record(machine.timerFired(timer), firedTimer: timer.kind)
            }
        }
    }

    /// When the machine asked for `message`, in order.
    func times(of message: TransactionMessage) -> [Int] {
        log.filter { $0.actions.message == message }.map(\.time)
    }

    /// Entries produced by timer firings that had an effect.
    var effectiveFirings: [Entry] {
        log.filter { $0.firedTimer != nil && !$0.actions.isEmpty }
    }

    /// Timer firings that the machine ignored as stale.
    var ignoredFirings: [Entry] {
        log.filter { $0.firedTimer != nil && $0.actions.isEmpty }
    }

    /// When the machine reported `failure`.
    func times(of failure: TransactionFailure) -> [Int] {
        log.filter { $0.actions.failure == failure }.map(\.time)
    }

    /// When the machine terminated (at most once).
    var terminationTimes: [Int] {
        log.filter(\.actions.isTerminated).map(\.time)
    }

    private mutating func record(_ actions: TransactionActions, firedTimer: TransactionTimer.Kind?) {
        for start in actions.timers {
            _ = wheel.schedule(afterMilliseconds: start.milliseconds, payload: start.timer)
        }
        log.append(Entry(time: now, firedTimer: firedTimer, actions: actions))
    }
}

extension TransactionActions {
    /// The kinds and delays of the timers started, for compact assertions.
    var startedTimers: [String] {
        timers.map { "\($0.timer.kind)=\($0.milliseconds)" }
    }
}
