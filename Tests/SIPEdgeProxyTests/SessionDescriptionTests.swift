@testable import SIPEdgeProxy
import Testing

/// Hold detection (RFC 3264 §8.4) and the paused offer toward the SRS.
@Suite struct SessionDescriptionTests {
    static func sdp(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\r\n") + "\r\n").utf8) }

    static let header = ["v=0", "o=- 1 7 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]

    @Test(arguments: [
        (["m=audio 4000 RTP/AVP 0", "a=sendrecv"], false),
        (["m=audio 4000 RTP/AVP 0"], false),
        (["m=audio 4000 RTP/AVP 0", "a=sendonly"], true),
        (["m=audio 4000 RTP/AVP 0", "a=recvonly"], true),
        (["m=audio 4000 RTP/AVP 0", "a=inactive"], true),
        (["m=audio 4000 RTP/AVP 0", "a=sendonly", "m=video 4002 RTP/AVP 96", "a=sendrecv"], false),
        (["m=audio 4000 RTP/AVP 0", "a=sendonly", "m=video 0 RTP/AVP 96"], true),
        (["m=audio 4000 RTP/AVP 0", "c=IN IP4 0.0.0.0"], true),
    ])
    func holdIsEveryLiveStreamNotSendrecv(media: [String], isHold: Bool) {
        #expect(SessionDescription.isHold(Self.sdp(Self.header + media)) == isHold)
    }

    @Test func sessionLevelDirectionIsInherited() {
        let held = ["v=0", "o=- 1 7 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0"]
        #expect(SessionDescription.isHold(Self.sdp(held)))
    }

    @Test func lineFeedOnlySDPIsReadToo() {
        let text = (Self.header + ["m=audio 4000 RTP/AVP 0", "a=sendonly"]).joined(separator: "\n")
        #expect(SessionDescription.isHold(Array(text.utf8)))
    }

    @Test func pausedOfferHasEveryStreamInactiveAndANewVersion() {
        let offer = (Self.header + [
            "m=audio 30000 RTP/AVP 0", "a=label:1", "a=sendonly", "m=audio 30002 RTP/AVP 0", "a=label:0", "a=sendonly",
        ]).joined(separator: "\r\n") + "\r\n"
        let expected = ([
            "v=0", "o=- 1 8 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
            "m=audio 30000 RTP/AVP 0", "a=label:1", "a=inactive", "m=audio 30002 RTP/AVP 0", "a=label:0", "a=inactive",
        ]).joined(separator: "\r\n") + "\r\n"
        #expect(SessionDescription.inactive(offer) == expected)
    }
}
