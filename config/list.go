package config

import "strings"

// List is a list key: a YAML list in the file, comma-separated in its
// environment variable and flag ("eu,us").
type List []string

// UnmarshalText splits a comma-separated value, dropping empty items, so
// that HAIL_X="" is the empty list.
func (l *List) UnmarshalText(b []byte) error {
	*l = nil
	for item := range strings.SplitSeq(string(b), ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}
