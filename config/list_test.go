package config_test

import (
	"slices"
	"testing"

	"github.com/hailsd/hail/config"
)

type listConfig struct {
	Regions []string `koanf:"regions"`
	Name    string   `koanf:"name"`
}

// A key that holds a list takes a comma-separated one from a variable or
// a flag; other keys keep their text, commas and all.
func TestListKeysFromText(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"env", nil, map[string]string{"HAIL_REGIONS": "us,ap"}, []string{"us", "ap"}},
		{"flag", []string{"--regions", " us , ap ,"}, nil, []string{"us", "ap"}},
		{"one", []string{"--regions", "us"}, nil, []string{"us"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &listConfig{Name: "a,b"}
			if _, err := config.Load(c, config.Options{Name: "t", Args: tc.args, Getenv: func(k string) string { return tc.env[k] }}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Regions, tc.want) || c.Name != "a,b" {
				t.Fatalf("regions %q name %q, want %q and a,b", c.Regions, c.Name, tc.want)
			}
		})
	}
}
