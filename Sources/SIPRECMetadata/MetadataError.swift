/// A metadata document, XML fragment, schema or multipart body that could not be built, parsed or
/// validated.
public struct MetadataError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was being done, such as "XML fragment", "schema validation" or "multipart body".
    public let operation: String
    /// Why it failed, in the order reported. For XML work these are libxml2's own messages, each
    /// prefixed with its line number.
    public let messages: [String]

    public init(operation: String, messages: [String]) {
        self.operation = operation
        self.messages = messages
    }

    public init(operation: String, message: String) {
        self.init(operation: operation, messages: [message])
    }

    public var description: String {
        messages.isEmpty ? "\(operation): failed without a reason" : "\(operation): " + messages.joined(separator: "; ")
    }
}
