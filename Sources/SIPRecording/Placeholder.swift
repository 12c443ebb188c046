// Placeholder until the module lands.
enum SIPRecordingPlaceholder {}
