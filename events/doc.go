// Package events holds hail's wire contract: the message types of
// PROTOCOL.md, the subjects they travel on, and the validation of the names
// inside them. Everything that reads input from the bus goes through here so
// that a bad name is rejected once, with one wording, everywhere.
package events
