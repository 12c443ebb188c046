/// One part of a multipart body.
public struct BodyPart: Sendable, Equatable {
    public var contentType: String
    public var contentDisposition: String?
    /// The part's content exactly: an SDP body keeps its final CRLF.
    public var body: [UInt8]

    public init(contentType: String, contentDisposition: String? = nil, body: [UInt8]) {
        self.contentType = contentType
        self.contentDisposition = contentDisposition
        self.body = body
    }
}

/// `multipart/mixed` bodies (RFC 2046 §5.1) as SIPREC uses them: SDP plus recording metadata.
///
/// Layout, for boundary `b`:
///
///     --b CRLF  Content-Type: … CRLF  [Content-Disposition: … CRLF]  CRLF  <body> CRLF
///     --b CRLF  … CRLF
///     --b-- CRLF
///
/// The CRLF before each delimiter belongs to the delimiter, not to the part (RFC 2046), so a part
/// body comes back byte for byte: an SDP ending in CRLF is followed by a blank line.
public enum MultipartBody {
    /// The body for `parts`. `boundary` must be 1 to 70 RFC 2046 boundary characters not ending
    /// in a space, and must not occur in any part; `randomBoundary()` makes a safe one.
    public static func render(_ parts: [BodyPart], boundary: String) -> [UInt8] {
        precondition(isValidBoundary(boundary), "invalid multipart boundary '\(boundary)'")
        var output = [UInt8]()
        output.reserveCapacity(parts.reduce(boundary.utf8.count + 8) { $0 + $1.body.count + boundary.utf8.count + 80 })
        // Written piece by piece into one buffer: a body goes into every recorder's INVITE.
        func appendDelimiter() {
            output.append(dash)
            output.append(dash)
            output.append(contentsOf: boundary.utf8)
        }
        for part in parts {
            appendDelimiter()
            output.append(contentsOf: crlf)
            output.append(contentsOf: "Content-Type: ".utf8)
            output.append(contentsOf: part.contentType.utf8)
            output.append(contentsOf: crlf)
            if let disposition = part.contentDisposition {
                output.append(contentsOf: "Content-Disposition: ".utf8)
                output.append(contentsOf: disposition.utf8)
                output.append(contentsOf: crlf)
            }
            output.append(contentsOf: crlf)
            output.append(contentsOf: part.body)
            output.append(contentsOf: crlf)
        }
        appendDelimiter()
        output.append(dash)
        output.append(dash)
        output.append(contentsOf: crlf)
        return output
    }

    /// The Content-Type header value for a body rendered with `boundary`.
    public static func contentType(boundary: String) -> String {
        let isToken = boundary.utf8.allSatisfy { isTokenCharacter($0) }
        return "multipart/mixed;boundary=" + (isToken ? boundary : "\"\(boundary)\"")
    }

    /// A boundary that no SDP or metadata body will contain by chance.
    public static func randomBoundary() -> String {
        "siprec-" + MetadataID.random().text.filter { $0.isLetter || $0.isNumber }
    }

    /// The parts of a multipart body, in order, given the message's Content-Type value (whose
    /// `boundary` parameter may be quoted). The preamble and epilogue are ignored; lines may end
    /// in CRLF or a bare LF. A part without Content-Type is `text/plain` (RFC 2046 §5.1).
    public static func parts(of body: [UInt8], contentType: String) throws(MetadataError) -> [BodyPart] {
        let mediaType = try MediaType(parsing: contentType)
        guard mediaType.type.hasPrefix("multipart/") else {
            throw multipartError("Content-Type \(mediaType.type) is not multipart")
        }
        guard let boundary = mediaType.parameter("boundary"), !boundary.isEmpty else {
            throw multipartError("Content-Type has no boundary parameter")
        }
        let delimiters = delimiterLines(in: body, boundary: Array("--\(boundary)".utf8))
        guard let first = delimiters.first else {
            throw multipartError("no delimiter line --\(boundary)")
        }
        guard let last = delimiters.last, last.isClosing else {
            throw multipartError("missing closing delimiter --\(boundary)--")
        }
        guard !first.isClosing else { throw multipartError("no body parts before --\(boundary)--") }

        var parts: [BodyPart] = []
        for (opening, next) in zip(delimiters, delimiters.dropFirst()) {
            // The line break before the next delimiter line belongs to that delimiter.
            var end = next.lineStart
            if end - 2 >= opening.contentStart, body[end - 2] == cr, body[end - 1] == lf {
                end -= 2
            } else if end - 1 >= opening.contentStart, body[end - 1] == lf {
                end -= 1
            }
            parts.append(try part(body[opening.contentStart..<end], number: parts.count + 1))
        }
        return parts
    }

    /// The SDP of a message: the body itself when `contentType` is application/sdp, or the first
    /// application/sdp part of a multipart/mixed body; nil otherwise (also for a malformed
    /// multipart body).
    public static func sdp(of body: [UInt8], contentType: String?) -> [UInt8]? {
        guard let contentType, let mediaType = try? MediaType(parsing: contentType) else { return nil }
        switch mediaType.type {
        case "application/sdp":
            return body
        case "multipart/mixed":
            let parts = try? parts(of: body, contentType: contentType)
            return parts?.first { (try? MediaType(parsing: $0.contentType))?.type == "application/sdp" }?.body
        default:
            return nil
        }
    }

    /// The `type/subtype` of a Content-Type value, lower-cased, without its parameters.
    public static func mediaType(of contentType: String) throws(MetadataError) -> String {
        try MediaType(parsing: contentType).type
    }

    // MARK: - Parsing

    private struct DelimiterLine {
        /// Where the `--boundary` line starts.
        var lineStart: Int
        /// Where the line after it starts.
        var contentStart: Int
        var isClosing: Bool
    }

    /// The delimiter lines up to and including the closing one: lines that are exactly
    /// `--boundary` or `--boundary--`, plus optional trailing spaces or tabs (transport padding).
    private static func delimiterLines(in body: [UInt8], boundary delimiter: [UInt8]) -> [DelimiterLine] {
        var lines: [DelimiterLine] = []
        var lineStart = 0
        while lineStart < body.count {
            if body[lineStart...].starts(with: delimiter) {
                var position = lineStart + delimiter.count
                let isClosing = body[position...].starts(with: [dash, dash])
                if isClosing { position += 2 }
                while position < body.count, body[position] == space || body[position] == tab { position += 1 }
                var lineEnd: Int?
                if position == body.count {
                    lineEnd = position
                } else if body[position] == lf {
                    lineEnd = position + 1
                } else if body[position] == cr, position + 1 < body.count, body[position + 1] == lf {
                    lineEnd = position + 2
                }
                if let lineEnd {
                    lines.append(DelimiterLine(lineStart: lineStart, contentStart: lineEnd, isClosing: isClosing))
                    if isClosing { break }  // the rest is the epilogue
                }
            }
            guard let lineFeed = body[lineStart...].firstIndex(of: lf) else { break }
            lineStart = lineFeed + 1
        }
        return lines
    }

    /// One part: header lines up to a blank line, then the body.
    private static func part(_ bytes: ArraySlice<UInt8>, number: Int) throws(MetadataError) -> BodyPart {
        var headers: [(name: String, value: String)] = []
        var position = bytes.startIndex
        var body: ArraySlice<UInt8> = []
        while position < bytes.endIndex {
            let lineFeed = bytes[position...].firstIndex(of: lf)
            var lineEnd = lineFeed ?? bytes.endIndex
            if lineEnd > position, bytes[lineEnd - 1] == cr { lineEnd -= 1 }
            let line = bytes[position..<lineEnd]
            position = lineFeed.map { $0 + 1 } ?? bytes.endIndex
            if line.isEmpty {
                body = bytes[position...]
                break
            }
            let text = String(decoding: line, as: UTF8.self)
            if line.first == space || line.first == tab, !headers.isEmpty {
                headers[headers.count - 1].value += " " + trimmed(text)  // folded continuation line
            } else if let colon = text.firstIndex(of: ":") {
                let name = trimmed(String(text[..<colon])).lowercased()
                headers.append((name, trimmed(String(text[text.index(after: colon)...]))))
            } else {
                throw multipartError("part \(number): '\(text)' is not a header line")
            }
        }
        return BodyPart(
            contentType: headers.first { $0.name == "content-type" }?.value ?? "text/plain",
            contentDisposition: headers.first { $0.name == "content-disposition" }?.value,
            body: Array(body))
    }

    private static func multipartError(_ message: String) -> MetadataError {
        MetadataError(operation: "multipart body", message: message)
    }

    private static func isValidBoundary(_ boundary: String) -> Bool {
        let characters = boundary.utf8
        return (1...70).contains(characters.count) && characters.last != space
            && characters.allSatisfy { isAlphanumeric($0) || isOtherBoundaryCharacter($0) }
    }
}

/// A Content-Type value: `type/subtype` lower-cased, and its parameters.
struct MediaType {
    var type: String
    var parameters: [(name: String, value: String)]

    func parameter(_ name: String) -> String? {
        parameters.first { $0.name == name }?.value
    }

    /// Parses `type/subtype *(; name=value)`, values as tokens or quoted strings (with `\` escapes).
    init(parsing value: String) throws(MetadataError) {
        let characters = Array(value.utf8)
        var position = 0
        func skipWhitespace() {
            while position < characters.count, characters[position] == space || characters[position] == tab {
                position += 1
            }
        }
        func token() -> String {
            let start = position
            while position < characters.count,
                isMIMETokenCharacter(characters[position]) || characters[position] == slash
            {
                position += 1
            }
            return String(decoding: characters[start..<position], as: UTF8.self)
        }
        func failure(_ message: String) -> MetadataError {
            MetadataError(operation: "Content-Type '\(value)'", message: message)
        }

        skipWhitespace()
        type = token().lowercased()
        guard type.contains("/") else { throw failure("no type/subtype") }
        parameters = []
        skipWhitespace()
        while position < characters.count {
            guard characters[position] == semicolon else { throw failure("expected ';' at offset \(position)") }
            position += 1
            skipWhitespace()
            let name = token().lowercased()
            skipWhitespace()
            guard !name.isEmpty, position < characters.count, characters[position] == equals else {
                throw failure("parameter without a name=value at offset \(position)")
            }
            position += 1
            skipWhitespace()
            var parameterValue: [UInt8] = []
            if position < characters.count, characters[position] == quote {
                position += 1
                var closed = false
                while position < characters.count {
                    let character = characters[position]
                    position += 1
                    if character == quote {
                        closed = true
                        break
                    }
                    if character == backslash, position < characters.count {
                        parameterValue.append(characters[position])
                        position += 1
                    } else {
                        parameterValue.append(character)
                    }
                }
                guard closed else { throw failure("unterminated quoted string") }
            } else {
                parameterValue = Array(token().utf8)
            }
            parameters.append((name, String(decoding: parameterValue, as: UTF8.self)))
            skipWhitespace()
        }
    }
}

// MARK: - Characters

private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")
private let crlf: [UInt8] = [cr, lf]
private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
private let dash = UInt8(ascii: "-")
private let slash = UInt8(ascii: "/")
private let semicolon = UInt8(ascii: ";")
private let equals = UInt8(ascii: "=")
private let quote = UInt8(ascii: "\"")
private let backslash = UInt8(ascii: "\\")

private func isAlphanumeric(_ character: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(character)
        || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(character)
        || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(character)
}

/// RFC 3261 token characters (the SIP header grammar our Content-Type values follow).
private func isTokenCharacter(_ character: UInt8) -> Bool {
    if isAlphanumeric(character) { return true }
    switch character {
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "%"), UInt8(ascii: "*"),
        UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "`"), UInt8(ascii: "'"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// RFC 2045 token characters: printable ASCII except the tspecials; what a receiver accepts.
private func isMIMETokenCharacter(_ character: UInt8) -> Bool {
    guard (0x21...0x7E).contains(character) else { return false }
    switch character {
    case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"),
        UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ":"), UInt8(ascii: "\\"), UInt8(ascii: "\""),
        UInt8(ascii: "/"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "?"), UInt8(ascii: "="):
        return false
    default:
        return true
    }
}

/// RFC 2046 boundary characters besides letters and digits.
private func isOtherBoundaryCharacter(_ character: UInt8) -> Bool {
    switch character {
    case UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "+"), UInt8(ascii: "_"),
        UInt8(ascii: ","), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: ":"),
        UInt8(ascii: "="), UInt8(ascii: "?"), UInt8(ascii: " "):
        return true
    default:
        return false
    }
}

private func trimmed(_ text: String) -> String {
    var text = Substring(text)
    while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
    while let last = text.last, last == " " || last == "\t" { text.removeLast() }
    return String(text)
}
