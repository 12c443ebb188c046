/// A TLS failure: what was attempted and OpenSSL's reasons, in the order OpenSSL gave them.
///
/// Configuration errors name the file: `cannot read certificate '/etc/edge/cert.pem': No such file
/// or directory`. A failed certificate verification carries the verification result after OpenSSL's
/// own reason: `certificate verify failed: hostname mismatch`.
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was attempted, such as "cannot read private key '/x/k.pem'" or "TLS handshake".
    public let operation: String
    /// Why, most general first: OpenSSL's reason texts, or a system error's text.
    public let reasons: [String]

    public init(operation: String, reasons: [String]) {
        self.operation = operation
        self.reasons = reasons
    }

    /// "operation: reason; reason".
    public var description: String {
        reasons.isEmpty ? operation : "\(operation): \(reasons.joined(separator: "; "))"
    }
}
