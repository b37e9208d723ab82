package router

import (
	"testing"
	"time"
)

// A caller setting the strategy alone gets the other defaults, not a
// zero timeout refused by Validate.
func TestDefaultsFilledPerField(t *testing.T) {
	tbl, err := NewTable(nil, TableConfig{Route: RouteDefaults{Strategy: "hash"}})
	if err != nil {
		t.Fatal(err)
	}
	got := tbl.cfg.Route
	if got.Strategy != "hash" || got.Timeout != 5*time.Second || got.HashLoadFactor != 1.25 {
		t.Errorf("defaults %+v", got)
	}
}
