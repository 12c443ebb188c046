// ScanBench: CSIPScan throughput on one core and heap allocations per message.
//
//   make bench-scan        (release build, then .build-bench/release/ScanBench Tests/Fixtures/corpus)
//   ScanBench CORPUS_DIR [SECONDS]
//
// Loads every message of Tests/Fixtures/corpus/*.sipmsgs into one buffer, then scans them all,
// round after round, for SECONDS (default 5) per mode on this one thread. Allocations are counted by
// the malloc interposer in BenchSupport's allocation counter over the timed loops only.
import Foundation
import Glibc
import BenchSupport
import CSIPScan

struct Corpus {
    var bytes: [UInt8] = []
    var messages: [(offset: Int, length: Int)] = []
}

func loadCorpus(_ directory: String) throws -> Corpus {
    var corpus = Corpus()
    let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sipmsgs") }
    for file in files.sorted() {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(file)))
        var offset = data.firstIndex(of: UInt8(ascii: "\n"))! + 1
        while offset < data.count {
            let newline = data[offset...].firstIndex(of: UInt8(ascii: "\n"))!
            let length = Int(String(decoding: data[offset..<newline].prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self))!
            corpus.messages.append((corpus.bytes.count, length))
            corpus.bytes += data[(newline + 1)..<(newline + 1 + length)]
            offset = newline + 2 + length
        }
    }
    return corpus
}


struct Round {
    var messages = 0
    var bytes = 0
    var seconds = 0.0
    var allocations = 0
    var checksum = 0
}

/// Scans `messages` round after round for at least `duration` seconds; returns what was done.
func run(_ corpus: Corpus, messages: [(offset: Int, length: Int)], flags: csip_scan_flags, duration: Double,
         headers: UnsafeMutablePointer<csip_header>) -> Round {
    var round = Round()
    var message = csip_message()
    let roundBytes = messages.reduce(0) { $0 + $1.length }
    corpus.bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { chars in
            let base = chars.baseAddress!
            let allocationsBefore = heapAllocations
            let start = monotonicSeconds()
            repeat {
                for (offset, length) in messages {
                    var count = 128
                    let result = csip_scan_message(base + offset, length, &message, headers, &count, 0,
                                                   Int32(flags.rawValue), 65536)
                    round.checksum &+= Int(result) &+ count
                }
                round.messages += messages.count
                round.bytes += roundBytes
                round.seconds = monotonicSeconds() - start
            } while round.seconds < duration
            round.allocations = heapAllocations - allocationsBefore
        }
    }
    return round
}

func report(_ name: String, _ round: Round) {
    let perSecond = Double(round.messages) / round.seconds
    print(String(format: "%@: %.2f million messages/s, %.0f MB/s, %.4f allocations per message (%d in %d messages, %.1f s)",
                 name, perSecond / 1e6, Double(round.bytes) / round.seconds / 1e6,
                 Double(round.allocations) / Double(round.messages), round.allocations, round.messages, round.seconds))
}

let arguments = CommandLine.arguments
let directory = arguments.count > 1 ? arguments[1] : "Tests/Fixtures/corpus"
let duration = arguments.count > 2 ? Double(arguments[2]) ?? 5 : 5

/// A heap object made by the Swift runtime (swift_allocObject in libswiftCore): proves the counter
/// sees allocations from shared libraries, so a zero below means zero.
final class AllocationProbe {}
nonisolated(unsafe) var probe: AllocationProbe?
let probeBefore = heapAllocations
probe = AllocationProbe()
precondition(heapAllocations > probeBefore && probe != nil, "malloc interposition is not active")

let corpus = try loadCorpus(directory)
let headers = UnsafeMutablePointer<csip_header>.allocate(capacity: 128)
defer { headers.deallocate() }

// Every message must scan in datagram mode, or the figures would measure error paths.
var message = csip_message()
let streamable = corpus.bytes.withUnsafeBufferPointer { buffer in
    buffer.withMemoryRebound(to: CChar.self) { chars in
        corpus.messages.filter { offset, length in
            var count = 128
            let result = csip_scan_message(chars.baseAddress! + offset, length, &message, headers, &count, 0,
                                           Int32(CSIP_SCAN_DATAGRAM.rawValue), 65536)
            precondition(result > 0, "corpus message at \(offset) does not scan: \(message.error)")
            return message.content_length >= 0
        }
    }
}
let totalBytes = corpus.messages.reduce(0) { $0 + $1.length }
print("corpus: \(corpus.messages.count) messages, \(totalBytes) bytes (average \(totalBytes / corpus.messages.count)), one thread")

_ = run(corpus, messages: corpus.messages, flags: CSIP_SCAN_DATAGRAM, duration: 0.2, headers: headers)  // warm-up
let datagram = run(corpus, messages: corpus.messages, flags: CSIP_SCAN_DATAGRAM, duration: duration, headers: headers)
report("datagram", datagram)
let stream = run(corpus, messages: streamable, flags: CSIP_SCAN_STREAM, duration: duration, headers: headers)
report("stream  ", stream)
print("checksum \(datagram.checksum &+ stream.checksum)")
