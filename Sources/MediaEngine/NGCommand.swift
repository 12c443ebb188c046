/// An NG request dictionary as the client builds it: entries kept in bencode's key order as they
/// are set, values written straight into the datagram. A `[String: Bencode]` made a heap copy of
/// every string value (the SDP among them) and sorted its keys again for every request.
struct NGCommand {
    enum Value {
        case text(String)
        case integer(Int)
        case texts([String])
        case bencode(Bencode)
    }

    /// Sorted by the keys' bytes, each key once.
    private(set) var entries: [(key: String, value: Value)] = []

    /// A command, with the call it is about.
    init(_ command: String, callID: String? = nil) {
        entries.reserveCapacity(8)
        if let callID { entries.append(("call-id", .text(callID))) }  // "call-id" < "command"
        entries.append(("command", .text(command)))
    }

    /// The command of any dictionary (the public `request`): its entries as they are.
    init(_ message: [String: Bencode]) {
        entries.reserveCapacity(message.count)
        for (key, value) in message { self[key] = .bencode(value) }
    }

    /// The command's name, for errors.
    var name: String { text("command") ?? "?" }

    /// The `call-id`, when it is text.
    var callID: String? { text("call-id") }

    private func text(_ key: String) -> String? {
        switch self[key] {
        case .text(let text)?: return text
        case .bencode(let value)?: return value.string
        default: return nil
        }
    }

    subscript(key: String) -> Value? {
        get {
            let (index, found) = position(of: key)
            return found ? entries[index].value : nil
        }
        set {
            let (index, found) = position(of: key)
            switch (newValue, found) {
            case (let value?, true): entries[index].value = value
            case (let value?, false): entries.insert((key, value), at: index)
            case (nil, true): entries.remove(at: index)
            case (nil, false): break
            }
        }
    }

    /// Where `key` is, or where it would go.
    private func position(of key: String) -> (index: Int, found: Bool) {
        for (index, entry) in entries.enumerated() {
            if entry.key == key { return (index, true) }
            if Self.precedes(key, entry.key) { return (index, false) }
        }
        return (entries.count, false)
    }

    /// Bencode's key order: by the keys' UTF-8 bytes, compared through their contiguous storage
    /// (a generic `lexicographicallyPrecedes` over two UTF-8 views costs several times as much).
    private static func precedes(_ first: String, _ second: String) -> Bool {
        var first = first, second = second
        return first.withUTF8 { left in
            second.withUTF8 { right in
                for index in 0..<min(left.count, right.count) where left[index] != right[index] {
                    return left[index] < right[index]
                }
                return left.count < right.count
            }
        }
    }

    /// `cookie`, a space and the bencoded dictionary, written in place into one allocation of
    /// the measured size (appending byte by byte to an Array checked its capacity and uniqueness
    /// for every digit).
    func datagram(cookie: String) -> [UInt8] {
        var cookie = cookie
        return cookie.withUTF8 { cookieBytes in
            let total = cookieBytes.count + 1 + encodedCount
            return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
                var output = DatagramWriter(buffer: buffer)
                output.write(cookieBytes)
                output.write(UInt8(ascii: " "))
                output.write(UInt8(ascii: "d"))
                for (key, value) in entries {
                    output.writeString(key)
                    switch value {
                    case .text(let text): output.writeString(text)
                    case .integer(let integer): output.writeInteger(integer)
                    case .texts(let texts):
                        output.write(UInt8(ascii: "l"))
                        for text in texts { output.writeString(text) }
                        output.write(UInt8(ascii: "e"))
                    case .bencode(let bencode):  // the public `request` only
                        bencode.encode().withUnsafeBufferPointer { output.write($0) }
                    }
                }
                output.write(UInt8(ascii: "e"))
                precondition(output.count == total, "NG datagram of \(output.count) bytes, measured \(total)")
                initialized = output.count
            }
        }
    }

    private var encodedCount: Int {
        var count = 2
        for (key, value) in entries {
            count += Bencode.encodedStringCount(key.utf8.count)
            switch value {
            case .text(let text): count += Bencode.encodedStringCount(text.utf8.count)
            case .integer(let integer): count += Bencode.integer(integer).encodedCount
            case .texts(let texts): count += texts.reduce(2) { $0 + Bencode.encodedStringCount($1.utf8.count) }
            case .bencode(let bencode): count += bencode.encodedCount
            }
        }
        return count
    }
}

/// Bencode written into a buffer measured beforehand; a write past its end stops the process
/// rather than corrupt memory.
private struct DatagramWriter {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    private(set) var count = 0

    init(buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    mutating func write(_ byte: UInt8) {
        precondition(count < buffer.count, "NG datagram larger than measured")
        buffer[count] = byte
        count += 1
    }

    mutating func write(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        precondition(bytes.count <= buffer.count - count, "NG datagram larger than measured")
        (buffer.baseAddress! + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// `length:bytes`.
    mutating func writeString(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            writeDecimal(UInt(bytes.count))
            write(UInt8(ascii: ":"))
            write(bytes)
        }
    }

    /// `i<decimal>e`.
    mutating func writeInteger(_ value: Int) {
        write(UInt8(ascii: "i"))
        if value < 0 { write(UInt8(ascii: "-")) }
        writeDecimal(value.magnitude)
        write(UInt8(ascii: "e"))
    }

    /// The digits of `value`, most significant first.
    private mutating func writeDecimal(_ value: UInt) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        precondition(digits <= buffer.count - count, "NG datagram larger than measured")
        var remaining = value
        for position in (count..<(count + digits)).reversed() {
            buffer[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
            remaining /= 10
        }
        count += digits
    }
}
