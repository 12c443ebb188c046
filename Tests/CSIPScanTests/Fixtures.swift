import Foundation
import Glibc
import CSIPScan

/// One message of a `Tests/Fixtures/corpus/*.sipmsgs` file (format in `Tests/Fixtures/README.md`).
struct CorpusMessage: Sendable {
    let capture: String
    let index: Int
    let transport: String
    let bytes: [UInt8]
}

enum Fixtures {
    /// `Tests/Fixtures`, found next to this source file.
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func torture(_ name: String) throws -> [UInt8] {
        let valid = directory.appendingPathComponent("torture/valid/\(name).sip")
        let url = FileManager.default.fileExists(atPath: valid.path)
            ? valid : directory.appendingPathComponent("torture/invalid/\(name).sip")
        return [UInt8](try Data(contentsOf: url))
    }

    static func tortureNames(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("torture/\(folder)").path)
            .filter { $0.hasSuffix(".sip") }.map { String($0.dropLast(4)) }.sorted()
    }

    /// Capture names and message counts from `corpus/index.tsv`.
    static func corpusIndex() throws -> [(file: String, messages: Int)] {
        let text = try String(contentsOf: directory.appendingPathComponent("corpus/index.tsv"), encoding: .utf8)
        return text.split(separator: "\n").dropFirst().map { line in
            let fields = line.split(separator: "\t")
            return (String(fields[0]), Int(fields[2])!)
        }
    }

    static func corpus(_ file: String) throws -> [CorpusMessage] {
        let data = [UInt8](try Data(contentsOf: directory.appendingPathComponent("corpus/\(file)")))
        var messages: [CorpusMessage] = []
        var offset = data.firstIndex(of: UInt8(ascii: "\n"))! + 1
        while offset < data.count {
            let newline = data[offset...].firstIndex(of: UInt8(ascii: "\n"))!
            let fields = String(decoding: data[offset..<newline], as: UTF8.self).split(separator: " ")
            let length = Int(fields[0])!
            let body = newline + 1
            messages.append(CorpusMessage(capture: file, index: messages.count, transport: String(fields[1]),
                                          bytes: Array(data[body..<body + length])))
            offset = body + length + 1
        }
        return messages
    }
}

/// What one `csip_scan_message` call produced.
struct Scan {
    var result: Int32
    var message: csip_message
    var headers: [csip_header]

    var error: UInt32 { message.error }

    /// The bytes a header's name or value range covers, as text (lossy for non-UTF-8 bytes).
    func text(_ bytes: [UInt8], _ offset: UInt32, _ length: UInt32) -> String {
        String(decoding: bytes[Int(offset)..<Int(offset + length)], as: UTF8.self)
    }
}

func scan(_ bytes: [UInt8], stream: Bool = false, capacity: Int = 64, maxSize: Int = 65536,
          lastLength: Int = 0) -> Scan {
    var message = csip_message()
    var headers = [csip_header](repeating: csip_header(), count: capacity)
    var count = capacity
    let flags = Int32(stream ? CSIP_SCAN_STREAM.rawValue : CSIP_SCAN_DATAGRAM.rawValue)
    let result = bytes.withUnsafeBufferPointer { input in
        headers.withUnsafeMutableBufferPointer { output in
            input.withMemoryRebound(to: CChar.self) { chars in
                csip_scan_message(chars.baseAddress, chars.count, &message, output.baseAddress, &count, lastLength,
                                  flags, maxSize)
            }
        }
    }
    return Scan(result: result, message: message, headers: Array(headers.prefix(count)))
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A small valid request with the given extra header lines and body, CRLF line endings.
func request(headers extra: [String] = ["Content-Length: 0"], body: String = "") -> [UInt8] {
    let lines = ["OPTIONS sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
                 "Call-ID: abc@192.0.2.1"] + extra
    return bytes(lines.joined(separator: "\r\n") + "\r\n\r\n" + body)
}

extension csip_scan_error {
    var code: UInt32 { rawValue }
}

extension csip_header_kind {
    var code: UInt16 { UInt16(rawValue) }
}
