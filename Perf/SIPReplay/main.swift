import SIPReplayKit

// Placeholder until the replay tool lands.
print("sip-replay: not built yet")
