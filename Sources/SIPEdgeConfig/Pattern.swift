import Glibc

/// A POSIX extended regular expression (regcomp/regexec), compiled once when the configuration is
/// read and matched on every call.
///
/// Two patterns are equal when their source text and options are equal. glibc's regexec takes a
/// lock inside the compiled expression, so one pattern may be matched from several threads.
public final class Pattern: Hashable, @unchecked Sendable, CustomStringConvertible {
    /// The expression as the user wrote it, without the anchors `anchored` adds.
    public let source: String
    /// Whether the whole text must match (`^(source)$`) rather than any part of it.
    public let anchored: Bool
    public let caseInsensitive: Bool
    private let compiled: UnsafeMutablePointer<regex_t>

    /// Compiles `source`; a pattern the C library refuses is reported with its error text.
    public init(_ source: String, anchored: Bool = false, caseInsensitive: Bool = true)
        throws(ConfigurationProblem)
    {
        guard !source.isEmpty else { throw ConfigurationProblem("empty regular expression") }
        guard !source.utf8.contains(0) else {
            throw ConfigurationProblem("bad regular expression '\(source)': contains a NUL character")
        }
        let expression = anchored ? "^(\(source))$" : source
        var flags = REG_EXTENDED | REG_NOSUB
        if caseInsensitive { flags |= REG_ICASE }
        let compiled = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let status = regcomp(compiled, expression, flags)
        guard status == 0 else {
            let reason = Pattern.errorText(status, compiled)
            compiled.deallocate()  // regcomp frees what it allocated when it fails
            throw ConfigurationProblem("bad regular expression '\(source)': \(reason)")
        }
        self.source = source
        self.anchored = anchored
        self.caseInsensitive = caseInsensitive
        self.compiled = compiled
    }

    deinit {
        regfree(compiled)
        compiled.deallocate()
    }

    /// Whether `text` matches (anywhere in it, or as a whole when anchored).
    public func matches(_ text: String) -> Bool {
        regexec(compiled, text, 0, nil, 0) == 0
    }

    public var description: String { source }

    public static func == (left: Pattern, right: Pattern) -> Bool {
        left.source == right.source && left.anchored == right.anchored
            && left.caseInsensitive == right.caseInsensitive
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(source)
        hasher.combine(anchored)
        hasher.combine(caseInsensitive)
    }

    private static func errorText(_ status: Int32, _ compiled: UnsafeMutablePointer<regex_t>) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = regerror(status, compiled, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
