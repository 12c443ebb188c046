/// Bytes that are not a well-formed NG datagram or bencode value: what is wrong and where.
public struct NGError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of defect; new kinds can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Hashable, Sendable {
            case truncated, unexpectedByte, leadingZero, negativeZero, integerOverflow, lengthBeyondInput
            case trailingBytes, tooDeep, invalidKey, duplicateKey, missingCookie
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// The input ends inside a value.
        public static let truncated = Code(.truncated)
        /// A byte that cannot start or continue the value being read.
        public static let unexpectedByte = Code(.unexpectedByte)
        /// An integer or a string length written with a leading zero (`i03e`, `03:abc`).
        public static let leadingZero = Code(.leadingZero)
        /// `i-0e`.
        public static let negativeZero = Code(.negativeZero)
        /// An integer outside the 64-bit signed range.
        public static let integerOverflow = Code(.integerOverflow)
        /// A string length larger than the bytes that follow it.
        public static let lengthBeyondInput = Code(.lengthBeyondInput)
        /// Bytes after the end of the top-level value.
        public static let trailingBytes = Code(.trailingBytes)
        /// Lists and dictionaries nested deeper than ``Bencode/maximumDepth``.
        public static let tooDeep = Code(.tooDeep)
        /// A dictionary key that is not a UTF-8 byte string.
        public static let invalidKey = Code(.invalidKey)
        /// The same key twice in one dictionary.
        public static let duplicateKey = Code(.duplicateKey)
        /// An NG datagram without a `<cookie><space>` prefix.
        public static let missingCookie = Code(.missingCookie)

        public var description: String { kind.rawValue }
    }

    /// What is wrong.
    public let code: Code
    /// The byte offset at which the defect was found.
    public let offset: Int

    public init(code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    public var description: String { "malformed NG data (\(code)) at byte \(offset)" }
}
