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
            if Bencode.keyPrecedes(key, entry.key) { return (index, false) }
        }
        return (entries.count, false)
    }

    /// `cookie`, a space and the bencoded dictionary, written in place into one allocation of
    /// the measured size (appending byte by byte to an Array checked its capacity and uniqueness
    /// for every digit).
    func datagram(cookie: String) -> [UInt8] {
        var cookie = cookie
        return cookie.withUTF8 { cookieBytes in
            BencodeWriter.bytes(count: cookieBytes.count + 1 + encodedCount) { output in
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
                    case .bencode(let bencode): bencode.write(to: &output)
                    }
                }
                output.write(UInt8(ascii: "e"))
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
