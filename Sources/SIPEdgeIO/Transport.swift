/// The transport a SIP message arrived on or leaves by.
public enum Transport: String, Sendable, Hashable {
    case udp
    case tcp
}
