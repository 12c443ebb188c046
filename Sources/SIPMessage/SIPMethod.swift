/// A request method as a bit flag, so a set of methods is a single mask test.
/// Extension methods are `.other`; their text is in `SIPMessage.methodRange`.
public struct SIPMethod: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let other = SIPMethod([])
    public static let invite = SIPMethod(rawValue: 1 << 0)
    public static let ack = SIPMethod(rawValue: 1 << 1)
    public static let bye = SIPMethod(rawValue: 1 << 2)
    public static let cancel = SIPMethod(rawValue: 1 << 3)
    public static let options = SIPMethod(rawValue: 1 << 4)
    public static let register = SIPMethod(rawValue: 1 << 5)
    public static let prack = SIPMethod(rawValue: 1 << 6)
    public static let update = SIPMethod(rawValue: 1 << 7)
    public static let info = SIPMethod(rawValue: 1 << 8)
    public static let subscribe = SIPMethod(rawValue: 1 << 9)
    public static let notify = SIPMethod(rawValue: 1 << 10)
    public static let refer = SIPMethod(rawValue: 1 << 11)
    public static let message = SIPMethod(rawValue: 1 << 12)
    public static let publish = SIPMethod(rawValue: 1 << 13)

    /// Methods whose initial request creates a dialog, and so get a Record-Route.
    public static let dialogCreating: SIPMethod = [.invite, .subscribe, .refer, .notify]

    private static let names: [(SIPMethod, String)] = [
        (.invite, "INVITE"), (.ack, "ACK"), (.bye, "BYE"), (.cancel, "CANCEL"), (.options, "OPTIONS"),
        (.register, "REGISTER"), (.prack, "PRACK"), (.update, "UPDATE"), (.info, "INFO"),
        (.subscribe, "SUBSCRIBE"), (.notify, "NOTIFY"), (.refer, "REFER"), (.message, "MESSAGE"),
        (.publish, "PUBLISH"),
    ]

    /// The method's token; "OTHER" for extension methods.
    public var description: String {
        SIPMethod.names.first { $0.0 == self }?.1 ?? "OTHER"
    }
}

/// Header kinds the proxy cares about; compact forms map to the same kind.
public enum SIPHeaderName: UInt16, Sendable, Hashable {
    case other = 0
    case via, callID, cseq, from, to, route, recordRoute, maxForwards, contact, contentLength
    case contentType, contentEncoding, contentDisposition, supported, require, proxyRequire, expires
    case subject, event, allow, allowEvents, referTo, referredBy, sessionExpires, userAgent, server
    case acceptContact, rejectContact, requestDisposition, identity, identityInfo, proxyAuthorization
    case authorization, unsupported

    init(rawKind: UInt16) {
        self = SIPHeaderName(rawValue: rawKind) ?? .other
    }

    var rawKind: UInt16 { rawValue }
}

/// Why a message could not be used. `reasonPhrase` is what a 400 response says.
public struct SIPParseError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case incomplete, empty, badStartLine, badMethod, badRequestURI, badVersion, badStatusCode
        case badHeaderName, missingColon, badLineEnding, tooManyHeaders, badContentLength, bodyTruncated
        case missingContentLength, tooLarge, noHeaderEnd
        case missingHeader(SIPHeaderName)
        case badHeader(SIPHeaderName)
        case cseqMethodMismatch
    }

    public var code: Code
    /// The message as far as it could be read (start line and headers), when a response can still
    /// be built from it.
    public var partial: SIPMessage?

    public init(code: Code, partial: SIPMessage?) {
        self.code = code
        self.partial = partial
    }

    /// A reason phrase for the 4xx response that reports this error.
    public var reasonPhrase: String {
        switch code {
        case .incomplete: return "Incomplete message"
        case .empty: return "Empty message"
        case .badStartLine: return "Bad start line"
        case .badMethod: return "Bad method"
        case .badRequestURI: return "Bad Request-URI"
        case .badVersion: return "Unsupported SIP version"
        case .badStatusCode: return "Bad status code"
        case .badHeaderName: return "Bad header name"
        case .missingColon: return "Header line without colon"
        case .badLineEnding: return "Bad line ending"
        case .tooManyHeaders: return "Too many headers"
        case .badContentLength: return "Bad Content-Length"
        case .bodyTruncated: return "Body shorter than Content-Length"
        case .missingContentLength: return "Missing Content-Length header"
        case .tooLarge: return "Message too large"
        case .noHeaderEnd: return "Headers not terminated"
        case .missingHeader(let name): return "Missing \(name.displayName) header"
        case .badHeader(let name): return "Bad \(name.displayName) header"
        case .cseqMethodMismatch: return "CSeq method does not match"
        }
    }

    /// The status code for the response: 505 for a version the proxy does not speak, 513 for an
    /// oversized message, 400 for everything else.
    public var statusCode: Int {
        switch code {
        case .badVersion: return 505
        case .tooLarge: return 513
        default: return 400
        }
    }

    public var description: String { reasonPhrase }
}

extension SIPHeaderName {
    /// The header's full name as RFC 3261 spells it.
    public var displayName: String {
        switch self {
        case .other: return "extension"
        case .via: return "Via"
        case .callID: return "Call-ID"
        case .cseq: return "CSeq"
        case .from: return "From"
        case .to: return "To"
        case .route: return "Route"
        case .recordRoute: return "Record-Route"
        case .maxForwards: return "Max-Forwards"
        case .contact: return "Contact"
        case .contentLength: return "Content-Length"
        case .contentType: return "Content-Type"
        case .contentEncoding: return "Content-Encoding"
        case .contentDisposition: return "Content-Disposition"
        case .supported: return "Supported"
        case .require: return "Require"
        case .proxyRequire: return "Proxy-Require"
        case .expires: return "Expires"
        case .subject: return "Subject"
        case .event: return "Event"
        case .allow: return "Allow"
        case .allowEvents: return "Allow-Events"
        case .referTo: return "Refer-To"
        case .referredBy: return "Referred-By"
        case .sessionExpires: return "Session-Expires"
        case .userAgent: return "User-Agent"
        case .server: return "Server"
        case .acceptContact: return "Accept-Contact"
        case .rejectContact: return "Reject-Contact"
        case .requestDisposition: return "Request-Disposition"
        case .identity: return "Identity"
        case .identityInfo: return "Identity-Info"
        case .proxyAuthorization: return "Proxy-Authorization"
        case .authorization: return "Authorization"
        case .unsupported: return "Unsupported"
        }
    }
}
