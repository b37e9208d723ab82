package events

import "fmt"

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

// AllRegions is a query's region for every region known.
const AllRegions = "*"

// validateRegionField checks an optional region field of a message.
func validateRegionField(region string) error {
	if region == "" {
		return nil
	}
	if err := ValidateRegion(region); err != nil {
		return fmt.Errorf("region: %w", err)
	}
	return nil
}

// ValidateRegionQuery checks a query's region: empty (the own region), a
// region, or AllRegions, which pages nothing (paged is whether the query
// has a limit or an after): a page of every region at once would have no
// one key to go on from.
func ValidateRegionQuery(region string, paged bool) error {
	if region == AllRegions {
		if paged {
			return invalid("region %q cannot be paged (limit, after); page one region at a time", AllRegions)
		}
		return nil
	}
	return validateRegionField(region)
}
