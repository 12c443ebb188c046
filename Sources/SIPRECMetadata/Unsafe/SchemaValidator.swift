import Glibc
internal import CLibXML2

/// Validates documents against an XML Schema, offline. Parsed once; `validate` may be called from
/// several threads at once because each call uses its own validation context and libxml2 only
/// reads a compiled schema.
public final class SchemaValidator: @unchecked Sendable {
    private let schema: xmlSchemaPtr

    /// Compiles the schema at `schemaPath`. Imports resolve through `catalogPath`, or when that is
    /// nil through a `catalog.xml` beside the schema if there is one (the RFC 7865 schema imports
    /// `https://www.w3.org/2001/xml.xsd`, which the catalog maps to a local copy). Catalogs join
    /// libxml2's process-wide default catalog. Network URLs are never fetched.
    public init(schemaPath: String, catalogPath: String? = nil) throws(MetadataError) {
        LibXML2.initialize()
        if let catalog = catalogPath ?? Self.catalogBeside(schemaPath) {
            try LibXML2.loadCatalog(catalog)
        }
        schema = try LibXML2.capturingErrors("XML schema \(schemaPath)") { log in
            guard let parser = xmlSchemaNewParserCtxt(schemaPath) else { return nil }
            defer { xmlSchemaFreeParserCtxt(parser) }
            xmlSchemaSetParserStructuredErrors(parser, log.handler, log.handlerContext)
            return xmlSchemaParse(parser)
        }
    }

    deinit {
        xmlSchemaFree(schema)
    }

    /// Throws unless `document` is well-formed and valid; the error carries libxml2's messages
    /// with their line numbers. DTDs and external entities in `document` are not loaded.
    public func validate(_ document: String) throws(MetadataError) {
        var bytes = Array(document.utf8)
        try LibXML2.capturingErrors("schema validation") { log -> Void? in
            let parsed = bytes.withUnsafeMutableBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    xmlReadMemory($0, Int32(buffer.count), nil, "UTF-8", LibXML2.parseOptions)
                }
            }
            guard let parsed else { return nil }
            defer { xmlFreeDoc(parsed) }
            guard let validation = xmlSchemaNewValidCtxt(schema) else { return nil }
            defer { xmlSchemaFreeValidCtxt(validation) }
            xmlSchemaSetValidStructuredErrors(validation, log.handler, log.handlerContext)
            return xmlSchemaValidateDoc(validation, parsed) == 0 ? () : nil
        }
    }

    private static func catalogBeside(_ schemaPath: String) -> String? {
        let directory = schemaPath.lastIndex(of: "/").map { String(schemaPath[...$0]) } ?? ""
        let candidate = directory + "catalog.xml"
        return access(candidate, R_OK) == 0 ? candidate : nil
    }
}
