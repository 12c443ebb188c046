import SIPRECMetadata
import Testing

@Suite("MetadataID")
struct MetadataIDTests {
    @Test("known bytes give the standard padded base64")
    func knownBytes() {
        #expect(MetadataID(bytes: Array(0..<16)).text == "AAECAwQFBgcICQoLDA0ODw==")
        // '+' and '/' come from the standard alphabet, not the URL-safe one.
        #expect(MetadataID(bytes: [0xFB, 0xFF, 0xBF] + [UInt8](repeating: 0, count: 13)).text == "+/+/AAAAAAAAAAAAAAAAAA==")
        #expect(MetadataID(bytes: Array(0..<16)).description == "AAECAwQFBgcICQoLDA0ODw==")
    }

    @Test(
        "RFC 4648 test vectors",
        arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")])
    func rfc4648Vectors(input: String, expected: String) {
        #expect(MetadataID(bytes: Array(input.utf8)).text == expected)
    }

    @Test("random ids are 24 characters of base64 for a version 4 UUID")
    func randomIDs() throws {
        var seen = Set<MetadataID>()
        for _ in 0..<64 {
            let id = MetadataID.random()
            #expect(id.text.count == 24)
            let bytes = try #require(decodeBase64(id.text))
            #expect(bytes.count == 16)
            #expect(bytes[6] >> 4 == 4, "UUID version")
            #expect(bytes[8] >> 6 == 0b10, "UUID variant")
            #expect(id.bytes == bytes)
            seen.insert(id)
        }
        #expect(seen.count == 64)
    }

    @Test("ids from a source are version 4 UUIDs, all different, across several blocks of randomness")
    func sourceIDs() throws {
        var source = MetadataIDSource()
        var seen = Set<MetadataID>()
        var ones = [Int](repeating: 0, count: 128)  // how often each bit of the 16 bytes was set
        let draws = 1000  // 64 ids per block: 16 blocks
        for _ in 0..<draws {
            let id = source.next()
            let bytes = try #require(decodeBase64(id.text))
            #expect(bytes.count == 16)
            #expect(bytes[6] >> 4 == 4, "UUID version")
            #expect(bytes[8] >> 6 == 0b10, "UUID variant")
            for bit in 0..<128 where bytes[bit / 8] >> (7 - bit % 8) & 1 == 1 { ones[bit] += 1 }
            seen.insert(id)
        }
        #expect(seen.count == draws)
        // Every bit but the six fixed ones varies: a block reused or left zero would show here.
        let fixed: Set<Int> = [48, 49, 50, 51, 64, 65]
        for bit in 0..<128 where !fixed.contains(bit) {
            #expect((350...650).contains(ones[bit]), "bit \(bit) set \(ones[bit]) times in \(draws)")
        }
    }

    @Test("reading an id back from text")
    func parsing() {
        #expect(MetadataID(text: "AAECAwQFBgcICQoLDA0ODw==")?.bytes == Array(0..<16))
        #expect(MetadataID(text: "AAECAwQFBgcICQoLDA0ODx==") == nil, "non-zero bits under the padding")
        #expect(MetadataID(text: "AAECAwQFBgcICQoLDA0ODw=") == nil, "23 characters")
        #expect(MetadataID(text: "AAECAwQFBgcICQoLDA0OD-==") == nil, "URL-safe alphabet")
        #expect(MetadataID(text: "Zm9vYmFy") == nil, "not 16 bytes")
        #expect(MetadataID(text: "AA=CAwQFBgcICQoLDA0ODw==") == nil, "padding in the middle")
    }
}
