import Glibc

/// The identifier of a group, session, participant or stream in recording metadata (RFC 7865
/// §6.10): a UUID's 16 bytes in standard base64 with padding, 24 characters, as OpenSIPS sends.
public struct MetadataID: Hashable, Sendable, CustomStringConvertible {
    /// The base64 text that goes into the document.
    public let text: String

    /// A new random (version 4) UUID from the system's cryptographic generator: two 64-bit draws
    /// (two getrandom calls), not one per byte.
    public static func random() -> MetadataID {
        var generator = SystemRandomNumberGenerator()
        var uuid: (UInt64, UInt64) = (generator.next(), generator.next())
        return withUnsafeMutableBytes(of: &uuid) { MetadataID(randomBytes: $0) }
    }

    /// A version 4 UUID's identifier made from 16 random bytes.
    fileprivate init(randomBytes bytes: UnsafeMutableRawBufferPointer) {
        // RFC 4122 §4.4: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        self.init(encoding: UnsafeRawBufferPointer(bytes))
    }

    /// The identifier for exactly these bytes (16 for a UUID); deterministic, for tests and for ids
    /// kept elsewhere.
    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { MetadataID(encoding: $0) }
    }

    private init(encoding bytes: UnsafeRawBufferPointer) {
        text = Base64.encode(bytes)
    }

    /// Reads an identifier back from its text; nil unless it is base64 of exactly 16 bytes.
    public init?(text: String) {
        guard let bytes = Base64.decode(text), bytes.count == 16 else { return nil }
        self.text = text
    }

    /// The 16 bytes the text encodes.
    public var bytes: [UInt8] { Base64.decode(text) ?? [] }

    public var description: String { text }
}

/// Random identifiers for one thread, cut from blocks of the system's cryptographic randomness:
/// one `getrandom` call (through `arc4random_buf`) for 64 ids, where ``MetadataID/random()``
/// makes two for each. A recorded call needs about six.
public struct MetadataIDSource {
    private static let blockSize = 1024
    private var block = [UInt8](repeating: 0, count: MetadataIDSource.blockSize)
    private var position = MetadataIDSource.blockSize

    public init() {}

    /// A new random (version 4) UUID's identifier.
    public mutating func next() -> MetadataID {
        if position + 16 > block.count {
            block.withUnsafeMutableBytes { Self.fillRandom($0) }
            position = 0
        }
        defer { position += 16 }
        return block.withUnsafeMutableBytes { bytes in
            MetadataID(randomBytes: UnsafeMutableRawBufferPointer(rebasing: bytes[position..<(position + 16)]))
        }
    }

    /// Fills `buffer` from glibc's `arc4random_buf`: one `getrandom` call per block.
    private static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        arc4random_buf(buffer.baseAddress!, buffer.count)
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: (bytes.count + 2) / 3 * 4) { output in
            var written = 0
            var index = 0
            while index < bytes.count {
                let remaining = bytes.count - index
                let first = UInt32(bytes[index])
                let second = remaining > 1 ? UInt32(bytes[index + 1]) : 0
                let third = remaining > 2 ? UInt32(bytes[index + 2]) : 0
                let triple = first << 16 | second << 8 | third
                output[written] = alphabet[Int(triple >> 18 & 0x3F)]
                output[written + 1] = alphabet[Int(triple >> 12 & 0x3F)]
                output[written + 2] = remaining > 1 ? alphabet[Int(triple >> 6 & 0x3F)] : UInt8(ascii: "=")
                output[written + 3] = remaining > 2 ? alphabet[Int(triple & 0x3F)] : UInt8(ascii: "=")
                written += 4
                index += 3
            }
            return written
        }
    }

    /// The bytes of canonical padded base64 text, or nil when the text is anything else.
    static func decode(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard characters.count % 4 == 0 else { return nil }
        var output = [UInt8]()
        output.reserveCapacity(characters.count / 4 * 3)
        var index = 0
        while index < characters.count {
            let isLastQuantum = index + 4 == characters.count
            var quantum: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let character = characters[index + offset]
                if character == UInt8(ascii: "=") {
                    // Padding only at the end of the last quantum, at most two characters.
                    guard isLastQuantum, offset >= 2 else { return nil }
                    padding += 1
                    quantum <<= 6
                } else {
                    guard padding == 0, let value = sextet(character) else { return nil }
                    quantum = quantum << 6 | value
                }
            }
            output.append(UInt8(quantum >> 16 & 0xFF))
            if padding < 2 { output.append(UInt8(quantum >> 8 & 0xFF)) }
            if padding < 1 { output.append(UInt8(quantum & 0xFF)) }
            // Canonical form: the bits dropped by padding are zero.
            if padding == 1, quantum & 0xFF != 0 { return nil }
            if padding == 2, quantum & 0xFFFF != 0 { return nil }
            index += 4
        }
        return output
    }

    private static func sextet(_ character: UInt8) -> UInt32? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(character - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(character - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(character - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
