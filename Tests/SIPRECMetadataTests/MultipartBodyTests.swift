import SIPRECMetadata
import Testing

private let sdp = Array("v=0\r\no=SRC 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n".utf8)
private let metadataXML = Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"/>\n".utf8)
private let sdpPart = BodyPart(contentType: "application/sdp", body: sdp)
private let metadataPart = BodyPart(
    contentType: "application/rs-metadata+xml", contentDisposition: "recording-session", body: metadataXML)

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("MultipartBody")
struct MultipartBodyTests {
    @Test("a rendered SDP + metadata body, byte for byte")
    func exactBytes() {
        let body = MultipartBody.render(
            [
                BodyPart(contentType: "application/sdp", body: bytes("v=0\r\na=label:1\r\n")),
                BodyPart(contentType: "application/rs-metadata+xml", contentDisposition: "recording-session", body: bytes("<recording/>")),
            ],
            boundary: "siprec-b1")
        let expected =
            "--siprec-b1\r\n" + "Content-Type: application/sdp\r\n" + "\r\n" + "v=0\r\na=label:1\r\n" + "\r\n"
            + "--siprec-b1\r\n" + "Content-Type: application/rs-metadata+xml\r\n" + "Content-Disposition: recording-session\r\n"
            + "\r\n" + "<recording/>" + "\r\n" + "--siprec-b1--\r\n"
        #expect(String(decoding: body, as: UTF8.self) == expected)
    }

    @Test(
        "render then parse gives the parts back exactly",
        arguments: [
            [sdpPart, metadataPart],
            [metadataPart],
            [BodyPart(contentType: "text/plain", body: [])],
            [BodyPart(contentType: "text/plain", body: bytes("no final newline"))],
            [BodyPart(contentType: "text/plain", body: bytes("\r\n\r\nblank lines around\r\n\r\n"))],
            [BodyPart(contentType: "text/plain", body: bytes("--siprec-b1x is not a delimiter\r\n---siprec-b1\r\n"))],
        ])
    func roundTrip(parts: [BodyPart]) throws {
        let body = MultipartBody.render(parts, boundary: "siprec-b1")
        #expect(try MultipartBody.parts(of: body, contentType: "multipart/mixed;boundary=siprec-b1") == parts)
    }

    @Test("a preamble and an epilogue are ignored")
    func preambleAndEpilogue() throws {
        let body = bytes(
            "This is the preamble.\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\nThis is the epilogue.\r\n--b\r\n")
        let parts = try MultipartBody.parts(of: body, contentType: "multipart/mixed; boundary=b")
        #expect(parts == [BodyPart(contentType: "text/plain", body: bytes("hello"))])
    }

    @Test("a quoted boundary with spaces and padding after delimiters")
    func quotedBoundary() throws {
        let body = bytes("--a b:c\r\nContent-Type: text/plain\r\n\r\none\r\n--a b:c \t\r\n\r\ntwo\r\n--a b:c--")
        let parts = try MultipartBody.parts(of: body, contentType: #"Multipart/Mixed ; charset="x" ; BOUNDARY="a b:c""#)
        #expect(parts == [BodyPart(contentType: "text/plain", body: bytes("one")), BodyPart(contentType: "text/plain", body: bytes("two"))])
    }

    @Test("bare LF line ends")
    func bareLineFeeds() throws {
        let body = bytes("--b\nContent-Type: application/sdp\n\nv=0\ns=-\n\n--b\ncontent-disposition: recording-session\nCONTENT-type: application/rs-metadata+xml\n\n<x/>\n--b--\n")
        let parts = try MultipartBody.parts(of: body, contentType: "multipart/mixed;boundary=b")
        #expect(
            parts == [
                BodyPart(contentType: "application/sdp", body: bytes("v=0\ns=-\n")),
                BodyPart(contentType: "application/rs-metadata+xml", contentDisposition: "recording-session", body: bytes("<x/>")),
            ])
    }

    @Test("folded part headers are joined")
    func foldedHeaders() throws {
        let body = bytes("--b\r\nContent-Disposition: recording-session;\r\n handling=required\r\n\r\nx\r\n--b--\r\n")
        let parts = try MultipartBody.parts(of: body, contentType: "multipart/mixed;boundary=b")
        #expect(parts.first?.contentDisposition == "recording-session; handling=required")
    }

    /// A malformed body, shown in the test log by its reason rather than its CRLF-laden bytes.
    struct MalformedCase: Sendable, CustomTestStringConvertible {
        let body: String
        let contentType: String
        let reason: String
        var testDescription: String { reason }
    }

    @Test(
        "malformed bodies are errors",
        arguments: [
            MalformedCase(body: "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n", contentType: "multipart/mixed;boundary=b", reason: "missing closing delimiter --b--"),
            MalformedCase(body: "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n", contentType: "multipart/mixed;boundary=b", reason: "missing closing delimiter --b--"),
            MalformedCase(body: "hello\r\n", contentType: "multipart/mixed;boundary=b", reason: "no delimiter line --b"),
            MalformedCase(body: "--b--\r\n", contentType: "multipart/mixed;boundary=b", reason: "no body parts"),
            MalformedCase(body: "--b\r\nv=0\r\n--b--\r\n", contentType: "multipart/mixed;boundary=b", reason: "part 1: 'v=0' is not a header line"),
            MalformedCase(body: "--b\r\n\r\nx\r\n--b--", contentType: "multipart/mixed", reason: "no boundary parameter"),
            MalformedCase(body: "--b\r\n\r\nx\r\n--b--", contentType: "application/sdp", reason: "is not multipart"),
            MalformedCase(body: "--b\r\n\r\nx\r\n--b--", contentType: "multipart/mixed;boundary=\"b", reason: "unterminated quoted string"),
        ])
    func malformed(_ malformed: MalformedCase) {
        let error = #expect(throws: MetadataError.self) {
            try MultipartBody.parts(of: bytes(malformed.body), contentType: malformed.contentType)
        }
        #expect(error?.description.contains(malformed.reason) == true, "\(String(describing: error))")
    }

    @Test("a part without headers is text/plain")
    func partWithoutHeaders() throws {
        let parts = try MultipartBody.parts(of: bytes("--b\r\n\r\nraw\r\n--b\r\n--b--\r\n"), contentType: "multipart/mixed;boundary=b")
        #expect(parts == [BodyPart(contentType: "text/plain", body: bytes("raw")), BodyPart(contentType: "text/plain", body: [])])
    }

    @Test("a near-delimiter inside a part, a mixed-case parameter name, and a part's media type")
    func nearDelimitersAndMediaTypes() throws {
        let body = bytes(
            "This is the preamble.\r\n--b 1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b 1x is not a delimiter\r\n"
                + "\r\n--b 1  \r\ncontent-type: Application/RS-Metadata+XML;charset=utf-8\r\n\r\n<x/>\r\n--b 1--\r\nepilogue --b 1\r\n")
        let parts = try MultipartBody.parts(of: body, contentType: "multipart/mixed; boundary=\"b 1\"")
        #expect(parts.map(\.body) == [bytes("v=0\r\n--b 1x is not a delimiter\r\n"), bytes("<x/>")])
        #expect(try parts.map { try MultipartBody.mediaType(of: $0.contentType) } == ["application/sdp", "application/rs-metadata+xml"])
        let upper = try MultipartBody.parts(of: bytes("--x\n\nno headers\n--x--"), contentType: "multipart/mixed;BOUNDARY=x")
        #expect(upper == [BodyPart(contentType: "text/plain", body: bytes("no headers"))])
        #expect(throws: MetadataError.self) { try MultipartBody.mediaType(of: "no-subtype") }
    }

    @Test("random bytes between delimiters never crash the parser")
    func randomBytes() {
        var generator = SystemRandomNumberGenerator()
        let pieces = ["--x", "--x--", "\r\n", "\n", "Content-Type: a/b", ":", " ", "\r", "z"]
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 0..<12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            _ = try? MultipartBody.parts(of: bytes(text), contentType: "multipart/mixed;boundary=x")
        }
    }

    @Test("sdp(of:) finds the SDP of plain and multipart bodies")
    func sdpOfBodies() {
        #expect(MultipartBody.sdp(of: sdp, contentType: "application/sdp") == sdp)
        #expect(MultipartBody.sdp(of: sdp, contentType: "Application/SDP ; charset=utf-8") == sdp)
        let mixed = MultipartBody.render([metadataPart, sdpPart, BodyPart(contentType: "application/sdp", body: bytes("v=1\r\n"))], boundary: "x")
        #expect(MultipartBody.sdp(of: mixed, contentType: "multipart/mixed;boundary=x") == sdp)
        #expect(MultipartBody.sdp(of: mixed, contentType: #"multipart/mixed; boundary="x""#) == sdp)
        let withoutSDP = MultipartBody.render([metadataPart], boundary: "x")
        #expect(MultipartBody.sdp(of: withoutSDP, contentType: "multipart/mixed;boundary=x") == nil)
        #expect(MultipartBody.sdp(of: mixed, contentType: "multipart/mixed;boundary=other") == nil)
        #expect(MultipartBody.sdp(of: sdp, contentType: nil) == nil)
        #expect(MultipartBody.sdp(of: metadataXML, contentType: "application/rs-metadata+xml") == nil)
    }

    @Test("Content-Type values and random boundaries")
    func contentTypeAndBoundary() throws {
        #expect(MultipartBody.contentType(boundary: "siprec-b1") == "multipart/mixed;boundary=siprec-b1")
        #expect(MultipartBody.contentType(boundary: "a b:c") == #"multipart/mixed;boundary="a b:c""#)
        let boundary = MultipartBody.randomBoundary()
        #expect(boundary != MultipartBody.randomBoundary())
        let body = MultipartBody.render([sdpPart, metadataPart], boundary: boundary)
        #expect(try MultipartBody.parts(of: body, contentType: MultipartBody.contentType(boundary: boundary)) == [sdpPart, metadataPart])
    }
}
