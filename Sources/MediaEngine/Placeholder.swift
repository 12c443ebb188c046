// Placeholder until the module lands.
enum MediaEnginePlaceholder {}
