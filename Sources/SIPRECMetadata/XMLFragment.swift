/// Raw XML meant to go inside a metadata element: the configured participant overrides and the
/// group and session extensions.
public enum XMLFragment {
    /// Checks that `xml` is well-formed content: zero or more elements, text, comments and CDATA,
    /// properly nested, every namespace prefix declared inside the fragment. Unprefixed elements
    /// belong to the RFC 7865 namespace, as they will once inserted. Throws with libxml2's message
    /// (for `<a><b></a>`: "Opening and ending tag mismatch: b line 1 and a").
    ///
    /// This is a well-formedness check only: whether the result is schema-valid depends on where
    /// the fragment goes (an override needs a `<nameID>`, extensions need a foreign namespace).
    public static func validate(_ xml: String) throws(MetadataError) {
        _ = try XMLTree().parseFragment(xml, into: nil, purpose: "XML fragment")
    }
}
