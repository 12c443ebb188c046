import Foundation
import Glibc
import CSIPScan
import Testing

/// Every message of the real captures (Tests/Fixtures/corpus) in both modes, plus stream framing at
/// every split point for a sample.
@Suite("pcap corpus")
struct CorpusTests {
    static let captures: [String] = (try? Fixtures.corpusIndex().map(\.file)) ?? []

    @Test("the index lists every capture with its message count")
    func indexMatchesFiles() throws {
        let index = try Fixtures.corpusIndex()
        #expect(index.count == 25)
        #expect(index.reduce(0) { $0 + $1.messages } == 5868)
        for entry in index {
            #expect(try Fixtures.corpus(entry.file).count == entry.messages, "\(entry.file)")
        }
    }

    @Test("every message scans whole in datagram mode", arguments: captures)
    func datagram(capture: String) throws {
        for message in try Fixtures.corpus(capture) {
            let r = scan(message.bytes, capacity: 128)
            #expect(r.result == Int32(message.bytes.count), "\(capture) #\(message.index): \(r.error)")
            #expect(r.message.headers_complete == 1)
            #expect(r.headers.contains { $0.kind == CSIP_HDR_CALL_ID.code }, "\(capture) #\(message.index)")
            #expect(r.headers.contains { $0.kind == CSIP_HDR_CSEQ.code }, "\(capture) #\(message.index)")
            for header in r.headers {
                #expect(header.name_len > 0 && header.name_off + header.name_len <= header.value_off)
                #expect(Int(header.value_off + header.value_len) <= Int(r.message.body_off))
            }
        }
    }

    @Test("every message frames identically in stream mode", arguments: captures)
    func stream(capture: String) throws {
        for message in try Fixtures.corpus(capture) {
            let datagram = scan(message.bytes, capacity: 128)
            let r = scan(message.bytes, stream: true, capacity: 128)
            if datagram.message.content_length < 0 {
                // UDP may omit Content-Length (RFC 3261 18.3); a stream cannot.
                #expect(message.transport == "udp")
                #expect(r.result == CSIP_SCAN_MALFORMED)
                #expect(r.error == CSIP_ERR_MISSING_CONTENT_LENGTH.code)
            } else {
                #expect(r.result == Int32(message.bytes.count), "\(capture) #\(message.index)")
                #expect(r.headers.count == datagram.headers.count)
                #expect(r.message.body_off == datagram.message.body_off)
            }
        }
    }

    @Test("a TCP capture replayed as one stream splits into its messages, keep-alives included")
    func pipelinedStream() throws {
        let messages = try Fixtures.corpus("heplify_sip_ipv4_tcp_fragmented.sipmsgs")
        var buffer: [UInt8] = []
        for (i, message) in messages.enumerated() {
            buffer += message.bytes
            if i % 7 == 0 { buffer += bytes("\r\n\r\n") }  // RFC 5626 keep-alives between messages
        }
        var offset = 0, found = 0
        while offset < buffer.count {
            let r = scan(Array(buffer[offset...]), stream: true, capacity: 128)
            if r.result == CSIP_SCAN_MALFORMED && r.error == CSIP_ERR_EMPTY.code {
                offset += Int(r.message.error_offset)
                continue
            }
            try #require(r.result > 0, "message \(found) at \(offset): \(r.error)")
            #expect(Int(r.result) - Int(r.message.leading_crlf) * 2 == messages[found].bytes.count)
            offset += Int(r.result)
            found += 1
        }
        #expect(found == messages.count)
    }

    /// A sample: the first message of every capture with a body, and a few bodiless ones.
    static let sample: [CorpusMessage] = {
        var picked: [CorpusMessage] = []
        for capture in captures {
            guard let messages = try? Fixtures.corpus(capture) else { continue }
            picked += messages.filter { scan($0.bytes).message.content_length > 0 }.prefix(1)
            picked += messages.filter { scan($0.bytes).message.content_length == 0 }.prefix(1)
        }
        return picked
    }()

    @Test("every prefix of a message is incomplete in stream mode, the whole is not")
    func everySplitPoint() throws {
        #expect(Self.sample.count >= 30)
        for message in Self.sample {
            let whole = scan(message.bytes, stream: true, capacity: 128)
            guard whole.result > 0 else { continue }  // no Content-Length: covered above
            for split in 0..<message.bytes.count {
                let r = scan(Array(message.bytes[..<split]), stream: true, capacity: 128)
                #expect(r.result == CSIP_SCAN_INCOMPLETE, "\(message.capture) #\(message.index) split \(split)")
            }
        }
    }

    @Test("drip-feeding one byte at a time with last_len gives -2 until the last byte")
    func incrementalLastLength() throws {
        for message in Self.sample {
            let whole = scan(message.bytes, stream: true, capacity: 128)
            guard whole.result > 0 else { continue }
            var lastLength = 0
            for end in 1...message.bytes.count {
                let r = scan(Array(message.bytes[..<end]), stream: true, capacity: 128, lastLength: lastLength)
                if end < message.bytes.count {
                    #expect(r.result == CSIP_SCAN_INCOMPLETE, "\(message.capture) #\(message.index) at \(end)")
                    lastLength = end
                } else {
                    #expect(r.result == whole.result)
                    #expect(r.headers.count == whole.headers.count)
                    #expect(r.message.body_off == whole.message.body_off)
                }
            }
        }
    }

    @Test("two segments at every split point: the first never yields a message early")
    func twoSegmentsWithLastLength() throws {
        for message in Self.sample.prefix(10) {
            let whole = scan(message.bytes, stream: true, capacity: 128)
            guard whole.result > 0 else { continue }
            for split in 1..<message.bytes.count {
                let first = scan(Array(message.bytes[..<split]), stream: true, capacity: 128)
                #expect(first.result == CSIP_SCAN_INCOMPLETE)
                let second = scan(message.bytes, stream: true, capacity: 128, lastLength: split)
                #expect(second.result == whole.result, "\(message.capture) #\(message.index) split \(split)")
            }
        }
    }
}
