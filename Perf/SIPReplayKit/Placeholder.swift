// Placeholder until the module lands.
enum SIPReplayKitPlaceholder {}
