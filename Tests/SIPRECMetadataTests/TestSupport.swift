import Glibc
import SIPRECMetadata
import Testing

/// The shared RFC 7865 schema folder: `/work/shared/schema` beside the package (this file is
/// `<package>/Tests/SIPRECMetadataTests/TestSupport.swift`).
let schemaDirectory: String = {
    var components = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(4)  // TestSupport.swift, SIPRECMetadataTests, Tests, the package folder
    return components.joined(separator: "/") + "/shared/schema"
}()

let schemaPath = schemaDirectory + "/rfc7865-recording.xsd"
let catalogPath = schemaDirectory + "/catalog.xml"

func makeValidator() throws -> SchemaValidator {
    try SchemaValidator(schemaPath: schemaPath, catalogPath: catalogPath)
}

/// Asserts that `document` is valid against the RFC 7865 schema, reporting libxml2's reasons.
func expectSchemaValid(_ document: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    do {
        try makeValidator().validate(document)
    } catch {
        Issue.record("not schema-valid: \(error)\n\(document)", sourceLocation: sourceLocation)
    }
}

/// An id whose 16 bytes are all `byte`, so expected documents can spell ids out.
func fixedID(_ byte: UInt8) -> MetadataID {
    MetadataID(bytes: [UInt8](repeating: byte, count: 16))
}

/// 2026-11-26T23:30:05.123Z plus `offset` milliseconds.
func fixedTime(_ offset: Int64 = 0) -> MetadataTime {
    MetadataTime(millisecondsSinceEpoch: 1_795_735_805_123 + offset)
}

/// A two-party call: Alice (participant 0) and Bob (participant 1), `streamsPerSide` streams each,
/// labelled 1, 2, … in the order Alice's, then Bob's.
func twoPartyCall(streamsPerSide: Int = 1) -> RecordingMetadata {
    var streams: [RecordingMetadata.Stream] = []
    for sender in 0..<2 {
        for index in 0..<streamsPerSide {
            let label = sender * streamsPerSide + index + 1
            streams.append(.init(id: fixedID(UInt8(0x20 + label)), label: String(label), sender: sender))
        }
    }
    return RecordingMetadata(
        sessionID: fixedID(0x01), sipSessionID: "a84b4c76e66710@pc33.atlanta.example.com",
        sessionAssociateTime: fixedTime(),
        participants: [
            .init(id: fixedID(0x11), aor: "sip:alice@atlanta.example.com", name: "Alice", associateTime: fixedTime()),
            .init(id: fixedID(0x12), aor: "sip:bob@biloxi.example.com", associateTime: fixedTime(1)),
        ],
        streams: streams)
}

/// Decodes padded base64 independently of the module under test.
func decodeBase64(_ text: String) -> [UInt8]? {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    let characters = Array(text.utf8)
    guard characters.count % 4 == 0 else { return nil }
    var bits: [UInt8] = []  // one entry per bit, simplest to get right
    var padding = 0
    for character in characters {
        if character == UInt8(ascii: "=") {
            padding += 1
            continue
        }
        guard padding == 0, let value = alphabet.firstIndex(of: character) else { return nil }
        for shift in (0..<6).reversed() { bits.append(UInt8(value >> shift & 1)) }
    }
    guard padding <= 2 else { return nil }
    var bytes: [UInt8] = []
    for start in stride(from: 0, to: bits.count - 7, by: 8) {
        bytes.append(bits[start..<start + 8].reduce(0) { $0 << 1 | $1 })
    }
    return bytes
}

func readFile(_ path: String) throws -> String {
    guard let file = fopen(path, "rb") else { throw TestFailure("cannot open \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count == 0 { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A fresh directory under /tmp, removed by `cleanUp`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/siprec-metadata-tests-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: made)
    }

    func write(_ text: String, to name: String) throws -> String {
        let filePath = path + "/" + name
        guard let file = fopen(filePath, "wb") else { throw TestFailure("cannot create \(filePath)") }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw TestFailure("short write") }
        return filePath
    }

    func cleanUp(_ names: [String]) {
        for name in names { unlink(path + "/" + name) }
        rmdir(path)
    }
}

/// Runs a program, with extra environment variables and its output discarded; returns its exit status.
func runProgram(_ arguments: [String], environment extra: [String] = []) throws -> Int32 {
    let environment = extra + (0...).lazy.map { environ[$0] }.prefix { $0 != nil }.map { String(cString: $0!) }
    var argv = arguments.map { strdup($0) } + [nil]
    var envp = environment.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    // The program's output would only clutter the test log.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var child = pid_t()
    let spawned = posix_spawn(&child, arguments[0], &actions, nil, &argv, &envp)
    guard spawned == 0 else { throw TestFailure("posix_spawn \(arguments[0]) failed: \(spawned)") }
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 {
        guard errno == EINTR else { throw TestFailure("waitpid failed") }
    }
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
