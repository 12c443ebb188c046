import SIPRECMetadata
import Testing

@Suite("XMLFragment")
struct XMLFragmentTests {
    @Test(
        "well-formed content is accepted",
        arguments: [
            #"<x:y xmlns:x="urn:x">t</x:y>"#,
            "",
            "   ",
            "plain text &amp; more",
            "<a/>text<b>1</b>",
            #"<nameID aor="sip:a@b"><name xml:lang="en">A</name></nameID>"#,
            "<!-- a comment --><a><![CDATA[<not markup>]]></a>",
            "<a>&#233;&lt;</a>",
            #"<y xmlns="urn:other"><z/></y>"#,
        ])
    func accepted(fragment: String) throws {
        try XMLFragment.validate(fragment)
    }

    @Test("a tag mismatch is rejected, naming the problem")
    func mismatch() {
        let error = #expect(throws: MetadataError.self) { try XMLFragment.validate("<a><b></a>") }
        #expect(error?.operation == "XML fragment")
        #expect(error?.description.contains("Opening and ending tag mismatch: b line 1 and a") == true)
    }

    @Test(
        "malformed content is rejected",
        arguments: [
            ("<x:y>t</x:y>", "Namespace prefix x on y is not defined"),
            ("<a>", "chunk is not well balanced"),
            ("</a>", "chunk is not well balanced"),
            ("</recording><recording>", "chunk is not well balanced"),
            (#"<?xml version="1.0"?><a/>"#, "XML declaration allowed only at the start"),
            ("<!DOCTYPE a><a/>", "StartTag: invalid element name"),
            ("<a>&undefined;</a>", "Entity 'undefined' not defined"),
            ("a ]]> b", "Sequence ']]>' not allowed in content"),
            ("<a b='1' b='2'/>", "Attribute b redefined"),
            ("<a>\u{1}</a>", "PCDATA invalid Char value 1"),
            ("<a", "Couldn't find end of Start Tag a"),
        ])
    func rejected(fragment: String, reason: String) {
        let error = #expect(throws: MetadataError.self, "\(fragment)") { try XMLFragment.validate(fragment) }
        #expect(error?.messages.isEmpty == false)
        #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
    }
}
