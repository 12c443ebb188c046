/// The headers a proxy routes by, parsed once per message.
public struct RoutingHeaders: Sendable {
    public var topVia: Via
    public var callID: ByteRange
    public var cseq: CSeq
    public var fromTag: ByteRange?
    public var toTag: ByteRange?
    public var maxForwards: MaxForwards
}

extension SIPMessage {
    /// Parses and checks what a proxy needs before it can handle a message statefully (RFC 3261
    /// §16.3 step 1, §8.1.1): Via, From, To, Call-ID and CSeq present and readable, and a request's
    /// CSeq method equal to its method.
    ///
    /// - Throws: `SIPParseError` whose `partial` is this message, so a 400 can name the problem.
    public func routingHeaders() throws(SIPParseError) -> RoutingHeaders {
        guard let topVia else {
            throw SIPParseError(code: firstHeader(.via) == nil ? .missingHeader(.via) : .badHeader(.via), partial: self)
        }
        guard let fromHeader = firstHeader(.from) else { throw SIPParseError(code: .missingHeader(.from), partial: self) }
        guard let from = nameAddress(fromHeader.valueRange) else {
            throw SIPParseError(code: .badHeader(.from), partial: self)
        }
        guard let toHeader = firstHeader(.to) else { throw SIPParseError(code: .missingHeader(.to), partial: self) }
        guard let to = nameAddress(toHeader.valueRange) else { throw SIPParseError(code: .badHeader(.to), partial: self) }
        guard let callID, callID.count > 0 else {
            throw SIPParseError(code: .missingHeader(.callID), partial: self)
        }
        guard firstHeader(.cseq) != nil else { throw SIPParseError(code: .missingHeader(.cseq), partial: self) }
        guard let cseq else { throw SIPParseError(code: .badHeader(.cseq), partial: self) }
        let maxForwards = self.maxForwards
        if isRequest {
            let sameMethod =
                method == .other
                ? equals(methodRange, self, cseq.methodRange)
                : cseq.method == method
            guard sameMethod else { throw SIPParseError(code: .cseqMethodMismatch, partial: self) }
            if case .invalid = maxForwards { throw SIPParseError(code: .badHeader(.maxForwards), partial: self) }
        }
        return RoutingHeaders(
            topVia: topVia, callID: callID, cseq: cseq, fromTag: from.tagRange, toTag: to.tagRange,
            maxForwards: maxForwards)
    }
}
