package events

// Version is the release of hail's own programs, as their NATS micro
// services report it (micro requires SemVer).
const Version = "0.5.0"
