package consul

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/hailsd/hail/events"
)

// Blocking queries' waits (Consul's): 5 minutes unless ?wait= says, at
// most 10.
const (
	DefaultWait = 5 * time.Minute
	MaxWait     = 10 * time.Minute
)

// maxQueryLen bounds the raw query string of a request.
const maxQueryLen = 4096

// query is what a read's URL query asks.
type query struct {
	// index > 0 asks to block until the answer's index moves past it.
	index uint64
	wait  time.Duration
	// passing keeps instances whose every check passes.
	passing bool
	// tags an instance must all have.
	tags []string
	// dc is the datacenter asked for, "" for the agent's own.
	dc string
}

// errQuery is a query a client must fix: 400.
var errQuery = errors.New("bad query")

// parseQuery reads a request's raw query: Consul's parameters, with
// ?token= refused so tokens stay out of URLs and logs.
func parseQuery(raw string) (query, error) {
	q := query{wait: DefaultWait}
	if len(raw) > maxQueryLen {
		return q, fmt.Errorf("%w: the query string is %d bytes, over %d", errQuery, len(raw), maxQueryLen)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("%w: %v", errQuery, err)
	}
	if _, ok := vals["token"]; ok {
		return q, fmt.Errorf("%w: ?token= is refused: send the token in the X-Consul-Token header or as Authorization: Bearer, so it stays out of URLs and logs", errQuery)
	}
	if _, ok := vals["filter"]; ok {
		return q, fmt.Errorf("%w: ?filter= expressions are not supported by hail; use ?tag= and ?passing", errQuery)
	}
	if s := vals.Get("index"); s != "" {
		if q.index, err = strconv.ParseUint(s, 10, 64); err != nil {
			return q, fmt.Errorf("%w: index %q is not a number", errQuery, truncate(s))
		}
	}
	if s := vals.Get("wait"); s != "" {
		if q.wait, err = parseWait(s); err != nil {
			return q, err
		}
	}
	if s, ok := vals["passing"]; ok {
		q.passing = true
		if v := s[0]; v != "" {
			if q.passing, err = strconv.ParseBool(v); err != nil {
				return q, fmt.Errorf("%w: passing %q is not a boolean", errQuery, truncate(v))
			}
		}
	}
	q.tags = vals["tag"]
	if len(q.tags) > events.MaxTags {
		return q, fmt.Errorf("%w: %d tags; at most %d", errQuery, len(q.tags), events.MaxTags)
	}
	q.dc = vals.Get("dc")
	return q, nil
}

// parseWait reads ?wait= as Consul does, a Go duration ("30s",
// "120000ms"), capped at MaxWait.
func parseWait(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: invalid wait time %q: want a duration like 30s or 120000ms", errQuery, truncate(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%w: wait %q is negative", errQuery, truncate(s))
	}
	return min(d, MaxWait), nil
}

// truncate bounds text from a client quoted in an error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
