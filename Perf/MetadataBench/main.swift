// MetadataBench: RecordingMetadata.render and MetadataID.random on one core, with heap allocations
// per operation.
//
//   swift build -c release --scratch-path .build-meta --product MetadataBench
//   .build-meta/release/MetadataBench [SECONDS]
//
// Renders the documents the proxy sends for a typical recorded call (RecordingDriver.metadata():
// two participants, one stream each way, start-time; then the final update with stop and
// disassociate times), round after round for SECONDS (default 3) per case on this one thread.
// Allocations are counted by the malloc interposer in BenchSupport's allocation counter over the timed loops.
import Glibc
import BenchSupport
import SIPRECMetadata


struct Figures {
    var operations = 0
    var seconds = 0.0
    var allocations = 0
    var checksum = 0
}

/// Runs `body` (one operation, returning something to fold into a checksum) in batches of 256
/// until `duration` seconds have passed.
func measure(duration: Double, _ body: () -> Int) -> Figures {
    var figures = Figures()
    let allocationsBefore = heapAllocations
    let start = monotonicSeconds()
    repeat {
        for _ in 0..<256 { figures.checksum &+= body() }
        figures.operations += 256
        figures.seconds = monotonicSeconds() - start
    } while figures.seconds < duration
    figures.allocations = heapAllocations - allocationsBefore
    return figures
}

func report(_ name: String, _ unit: String, _ figures: Figures) {
    let perSecond = Double(figures.operations) / figures.seconds
    let nanoseconds = figures.seconds * 1e9 / Double(figures.operations)
    let allocations = Double(figures.allocations) / Double(figures.operations)
    print(
        name + String(repeating: " ", count: max(1, 24 - name.count))
            + "\(Int(perSecond.rounded())) \(unit)/s, \(Int(nanoseconds.rounded())) ns each, "
            + "\(Double(Int((allocations * 10).rounded())) / 10) allocations each "
            + "(\(figures.operations) in \(Double(Int(figures.seconds * 10)) / 10) s)")
}

/// The proxy's document for a call (RecordingDriver.metadata()): random ids, the time the recording
/// began as association and start time, and at the end the same time as disassociation and stop.
func callMetadata(ended: Bool, overrides: Bool = false) -> RecordingMetadata {
    let start = MetadataTime(millisecondsSinceEpoch: 1_795_735_805_123)
    let end: MetadataTime? = ended ? MetadataTime(millisecondsSinceEpoch: 1_795_735_865_456) : nil
    return RecordingMetadata(
        group: overrides ? .init(id: "dGVhbS1h", extensionXML: #"<ext:team xmlns:ext="urn:example:ext">a</ext:team>"#) : nil,
        sessionID: .random(), sipSessionID: "3848276298220188511@192.0.2.10",
        sessionExtensionXML: overrides ? #"<ext:tag xmlns:ext="urn:example:ext" kind="vip">1</ext:tag>"# : nil,
        sessionAssociateTime: start, sessionDisassociateTime: end, sessionStartTime: start, sessionStopTime: end,
        participants: [
            .init(
                id: .random(), aor: "sip:alice@atlanta.example.com", name: "Alice Liddell",
                overrideXML: overrides ? #"<nameID aor="sip:src@edge"><name>Caller</name></nameID>"# : nil,
                associateTime: start, disassociateTime: end),
            .init(id: .random(), aor: "sip:+15551230000@biloxi.example.com", associateTime: start, disassociateTime: end),
        ],
        streams: [
            .init(id: .random(), label: "1", sender: 0),
            .init(id: .random(), label: "2", sender: 1),
        ])
}

/// A heap object made by the Swift runtime: proves the counter sees allocations from shared
/// libraries, so a zero below means zero.
final class AllocationProbe {}
nonisolated(unsafe) var probe: AllocationProbe?
let probeBefore = heapAllocations
probe = AllocationProbe()
precondition(heapAllocations > probeBefore && probe != nil, "malloc interposition is not active")

let arguments = CommandLine.arguments
let duration = arguments.count > 1 ? Double(arguments[1]) ?? 3 : 3

let invite = callMetadata(ended: false)
let final = callMetadata(ended: true)
let configured = callMetadata(ended: false, overrides: true)
print("INVITE document \(try invite.render().utf8.count) bytes, final \(try final.render().utf8.count) bytes; one thread")

func renderCount(_ metadata: RecordingMetadata) -> Int {
    do { return try metadata.render().utf8.count } catch { fatalError("\(error)") }
}
_ = measure(duration: 0.2) { renderCount(invite) }  // warm-up
report("render INVITE metadata", "documents", measure(duration: duration) { renderCount(invite) })
report("render final metadata", "documents", measure(duration: duration) { renderCount(final) })
report("render with overrides", "documents", measure(duration: duration) { renderCount(configured) })
report("MetadataID.random", "ids", measure(duration: duration) { MetadataID.random().text.utf8.count })
