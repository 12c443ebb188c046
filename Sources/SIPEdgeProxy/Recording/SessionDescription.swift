/// The few things the recording work reads from or changes in an SDP body (RFC 4566). The media
/// engine writes the SDPs; the proxy only has to recognise hold and turn an offer inactive.
enum SessionDescription {
    /// Whether the SDP puts the call on hold (RFC 3264 §8.4): every audio or video stream
    /// `sendonly`, `recvonly` or `inactive` (at media level, or inherited from the session level),
    /// or a connection address of 0.0.0.0 (the RFC 2543 way).
    static func isHold(_ sdp: [UInt8]) -> Bool {
        var sessionDirection = "sendrecv"
        var streamDirections: [String] = []
        var inMedia = false
        var inRejectedStream = false
        var sawZeroConnection = false
        for line in lines(of: sdp) {
            if line.hasPrefix("m=") {
                inMedia = true
                // A rejected stream (port 0) neither holds nor resumes anything.
                inRejectedStream = line.split(separator: " ").dropFirst().first == "0"
                if !inRejectedStream { streamDirections.append(sessionDirection) }
                continue
            }
            if inRejectedStream { continue }
            if line.hasPrefix("c=") && line.hasSuffix(" 0.0.0.0") { sawZeroConnection = true }
            guard line.hasPrefix("a=") else { continue }
            let attribute = String(line.dropFirst(2))
            guard ["sendrecv", "sendonly", "recvonly", "inactive"].contains(attribute) else { continue }
            if inMedia {
                streamDirections[streamDirections.count - 1] = attribute
            } else {
                sessionDirection = attribute
            }
        }
        if sawZeroConnection { return true }
        guard !streamDirections.isEmpty else { return false }
        return streamDirections.allSatisfy { $0 != "sendrecv" }
    }

    /// The same SDP with every stream `a=inactive` and the origin's version raised by one: the
    /// paused offer toward the SRS (RFC 7866 §8.1.1).
    static func inactive(_ sdp: String) -> String {
        var output: [Substring] = []
        var sawMedia = false
        for trimmed in lines(of: Array(sdp.utf8)) {
            if trimmed.hasPrefix("m=") {
                if sawMedia { output.append("a=inactive") }
                sawMedia = true
            }
            if ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(trimmed) { continue }
            if trimmed.hasPrefix("o=") {
                output.append(Substring(raisingVersion(of: Substring(trimmed))))
                continue
            }
            if trimmed.isEmpty { continue }
            output.append(Substring(trimmed))
        }
        if sawMedia { output.append("a=inactive") }
        return output.joined(separator: "\r\n") + "\r\n"
    }

    /// `o=user id version ...` with `version` plus one.
    static func raisingVersion(of origin: Substring) -> String {
        var fields = origin.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        if fields.count >= 3, let version = UInt64(fields[2]) { fields[2] = String(version &+ 1) }
        return fields.joined(separator: " ")
    }

    /// The lines of an SDP, split on bytes: in Swift's String a CRLF is one Character, so a split
    /// on "\n" or "\r" Characters would never happen.
    static func lines(of sdp: [UInt8]) -> [String] {
        sdp.split(whereSeparator: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") })
            .map { String(decoding: $0, as: UTF8.self).trimmingSpaces }
    }
}

extension String {
    var trimmingSpaces: String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
