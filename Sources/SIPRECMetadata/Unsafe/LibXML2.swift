import Glibc
internal import CLibXML2
import Synchronization

/// The module's gateway to libxml2: process-wide set-up, and the one place where libxml2's error
/// reports become `MetadataError`s.
enum LibXML2 {
    /// `xmlInitParser` once per process; Swift runs a static initialiser exactly once, thread-safely.
    private static let initialized: Void = {
        xmlInitParser()
        // Nothing we parse may reach the network: resources resolve through the XML catalogs or
        // the file system, and http/ftp URLs fail at once instead of blocking on a connection.
        xmlSetExternalEntityLoader(xmlNoNetExternalEntityLoader)
    }()

    /// Catalogs already added to libxml2's process-wide default catalog.
    private static let loadedCatalogs = Mutex<Set<String>>([])

    static func initialize() {
        _ = initialized
    }

    /// Parser options for every document and fragment: no network, no DTD loading, no entity
    /// substitution (so no external entity is ever fetched).
    static let parseOptions = Int32(XML_PARSE_NONET.rawValue)

    /// Runs one libxml2 operation with its error reports captured on this thread (libxml2 keeps
    /// the structured error handler per thread).
    ///
    /// `body` returns nil when libxml2 signalled failure through its return value. Any report of
    /// error level also counts as a failure, because some (undeclared namespace prefixes) do not
    /// change the return value. Either way the reports become the thrown error's messages.
    static func capturingErrors<Result>(
        _ operation: String, _ body: (XMLErrorLog) -> Result?
    ) throws(MetadataError) -> Result {
        initialize()
        let log = XMLErrorLog()
        xmlSetStructuredErrorFunc(log.handlerContext, recordLibXML2Error)
        let result = withExtendedLifetime(log) { body(log) }
        xmlSetStructuredErrorFunc(nil, nil)
        guard let result, !log.hasErrors else {
            throw MetadataError(operation: operation, messages: log.messages)
        }
        return result
    }

    /// Adds an XML catalog to libxml2's default catalog, once per path for the whole process.
    /// libxml2 does not make catalog loading thread-safe, so loads are serialised here.
    static func loadCatalog(_ path: String) throws(MetadataError) {
        // Once a default catalog exists, libxml2 only notes further catalogs and reads them
        // lazily, so a missing file would go unnoticed until a lookup quietly fails.
        guard access(path, R_OK) == 0 else {
            throw MetadataError(operation: "XML catalog \(path)", message: String(cString: strerror(errno)))
        }
        let failure: MetadataError? = loadedCatalogs.withLock { (loaded: inout Set<String>) -> MetadataError? in
            guard !loaded.contains(path) else { return nil }
            do throws(MetadataError) {
                try capturingErrors("XML catalog \(path)") { _ in xmlLoadCatalog(path) == 0 ? () : nil }
            } catch {
                return error
            }
            loaded.insert(path)
            return nil
        }
        if let failure { throw failure }
    }
}

/// What libxml2 reported while one operation ran.
final class XMLErrorLog {
    private(set) var messages: [String] = []
    private(set) var hasErrors = false

    /// Passed to libxml2 as the handler's user data; valid while the log is alive.
    var handlerContext: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The C handler, for libxml2 contexts that take their own (schema parser and validator).
    var handler: xmlStructuredErrorFunc { recordLibXML2Error }

    fileprivate func record(_ error: xmlError) {
        var text = error.message.map { String(cString: $0) } ?? "unknown libxml2 error \(error.code)"
        while let last = text.last, last.isWhitespace { text.removeLast() }
        if let file = error.file.map({ String(cString: $0) }), !file.isEmpty {
            text = "\(file):\(error.line): " + text
        } else if error.line > 0 {
            text = "line \(error.line): " + text
        }
        if error.level.rawValue >= XML_ERR_ERROR.rawValue {
            hasErrors = true
        } else {
            text = "warning: " + text
        }
        messages.append(text)
    }
}

/// libxml2's structured error callback; the user data is the `XMLErrorLog` of the running operation.
private func recordLibXML2Error(_ context: UnsafeMutableRawPointer?, _ error: xmlErrorPtr?) {
    guard let context, let error else { return }
    Unmanaged<XMLErrorLog>.fromOpaque(context).takeUnretainedValue().record(error.pointee)
}
