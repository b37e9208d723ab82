package events

// MaxRegionLen bounds a region's name (PROTOCOL v1.5).
const MaxRegionLen = 64

// DefaultRegion is the region of a program whose server names no
// JetStream domain (PROTOCOL v1.5).
const DefaultRegion = "local"

// ValidateRegion checks a region's name. It is a JetStream domain, so it
// may hold no '.', '*' or '>', and one token of hail_remote's keys
// (<region>.<service>.<id>), so it is one subject token: [a-z0-9_-], at
// most 64 bytes. Lower case only, as service names, so that "EU" and "eu"
// are not two regions.
func ValidateRegion(s string) error {
	switch {
	case s == "":
		return invalid("region is empty")
	case len(s) > MaxRegionLen:
		return invalid("region is %d bytes, over the %d-byte limit", len(s), MaxRegionLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		case c >= 'A' && c <= 'Z':
			return invalid("region %q contains upper case %q; regions are lower case", s, c)
		default:
			return invalid("region %q contains %s; a region is one subject token of a-z 0-9 _ -", truncate(s), describe(c))
		}
	}
	return nil
}
