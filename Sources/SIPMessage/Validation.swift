extension SIPMessage {
    /// Checks what a proxy needs before it can handle a message statefully (RFC 3261 §16.3 step 1,
    /// §8.1.1): Via, From, To, Call-ID and CSeq present and readable, and a request's CSeq method
    /// equal to its method.
    ///
    /// - Throws: `SIPParseError` whose `partial` is this message, so a 400 can name the problem.
    public func validateForProxy() throws(SIPParseError) {
        guard viaCount > 0, topVia != nil else {
            throw SIPParseError(code: firstHeader(.via) == nil ? .missingHeader(.via) : .badHeader(.via), partial: self)
        }
        guard firstHeader(.from) != nil else { throw SIPParseError(code: .missingHeader(.from), partial: self) }
        guard from != nil else { throw SIPParseError(code: .badHeader(.from), partial: self) }
        guard firstHeader(.to) != nil else { throw SIPParseError(code: .missingHeader(.to), partial: self) }
        guard to != nil else { throw SIPParseError(code: .badHeader(.to), partial: self) }
        guard let callID, callID.count > 0 else {
            throw SIPParseError(code: .missingHeader(.callID), partial: self)
        }
        guard firstHeader(.cseq) != nil else { throw SIPParseError(code: .missingHeader(.cseq), partial: self) }
        guard let cseq else { throw SIPParseError(code: .badHeader(.cseq), partial: self) }
        if isRequest {
            let sameMethod =
                method == .other
                ? equals(methodRange, self, cseq.methodRange)
                : cseq.method == method
            guard sameMethod else { throw SIPParseError(code: .cseqMethodMismatch, partial: self) }
            if case .invalid = maxForwards { throw SIPParseError(code: .badHeader(.maxForwards), partial: self) }
        }
    }
}
