/// The NG protocol's datagram: `<cookie><space><bencoded dictionary>`, both ways. The reply repeats
/// the request's cookie, which is how a client matches replies to requests.
public enum NGDatagram {
    /// The longest cookie accepted in a received datagram.
    public static let maximumCookieLength = 128

    /// `cookie`, one space, and `message` encoded.
    public static func encode(cookie: String, message: Bencode) -> [UInt8] {
        var cookie = cookie
        return cookie.withUTF8 { cookieBytes in
            BencodeWriter.bytes(count: cookieBytes.count + 1 + message.encodedCount) { output in
                output.write(cookieBytes)
                output.write(UInt8(ascii: " "))
                message.write(to: &output)
            }
        }
    }

    /// The cookie of a received datagram and the offset where its bencoded body starts.
    ///
    /// The cookie is 1 to ``maximumCookieLength`` printable ASCII bytes before the first space.
    /// - Throws: ``NGError`` with code `missingCookie` when there is no such prefix.
    public static func splitCookie(_ datagram: RawSpan) throws(NGError) -> (cookie: String, bodyOffset: Int) {
        let length = try cookieLength(datagram)
        return (String(decoding: datagram.copyBytes(0..<length), as: UTF8.self), length + 1)
    }

    /// The length of a received datagram's cookie (its body starts one byte later), read in place.
    /// - Throws: ``NGError`` with code `missingCookie`, as ``splitCookie(_:)``.
    static func cookieLength(_ datagram: borrowing RawSpan) throws(NGError) -> Int {
        var position = 0
        while position < datagram.byteCount, position <= maximumCookieLength {
            let byte = datagram.byte(at: position)
            if byte == UInt8(ascii: " ") {
                guard position > 0 else { break }
                return position
            }
            guard byte > 0x20, byte < 0x7F else { break }
            position += 1
        }
        throw NGError(code: .missingCookie, offset: position)
    }

    /// The cookie and the decoded body of a received datagram.
    /// - Throws: ``NGError`` when the cookie is missing or the body is not one bencode value.
    public static func decode(_ datagram: RawSpan) throws(NGError) -> (cookie: String, message: Bencode) {
        let (cookie, bodyOffset) = try splitCookie(datagram)
        do {
            return (cookie, try Bencode.decode(datagram.extracting(bodyOffset...)))
        } catch {
            throw NGError(code: error.code, offset: error.offset + bodyOffset)
        }
    }

    /// The cookie and the decoded body of a received datagram; see ``decode(_:)-(RawSpan)``.
    public static func decode(_ datagram: [UInt8]) throws(NGError) -> (cookie: String, message: Bencode) {
        try decode(datagram.span.bytes)
    }
}
