// Placeholder until the module lands.
enum SIPRECMetadataPlaceholder {}
