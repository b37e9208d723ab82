// Package schemas holds the JSON Schemas (draft 2020-12) of every hail
// message and validates documents against them. Discovery checks incoming
// announces and deregisters here as well as with package events, so the
// schema and the Go rules cannot drift apart unnoticed.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var files embed.FS

// BaseURL is the $id prefix of every schema.
const BaseURL = "https://github.com/hailsd/hail/schemas/"

// Names of the message schemas, as their files are named without ".json".
const (
	Announce       = "announce"
	Deregister     = "deregister"
	Heartbeat      = "heartbeat"
	HeartbeatReply = "heartbeat_reply"
	InstanceRecord = "instance_record"
	HealthEvent    = "health_event"
	RouteConfig    = "route_config"
	NodeRecord     = "node_record"
	NodeEvent      = "node_event"
	Ack            = "ack"
	Error          = "error"
	Services       = "services"
	InstancesQuery = "instances_query"
	ServicesQuery  = "services_query"
	Instances      = "instances"
	Discover       = "discover"
	RouterStats    = "router_stats"
)

// FS returns the schema files, for serving or inspection.
func FS() fs.FS { return files }

// Set is the compiled schemas. It is safe for concurrent use.
type Set struct {
	schemas map[string]*jsonschema.Schema
}

// Load compiles every embedded schema.
func Load() (*Set, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	entries, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, fmt.Errorf("list schemas: %w", err)
	}
	for _, name := range entries {
		data, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", name, err)
		}
		if err := c.AddResource(BaseURL+name, doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", name, err)
		}
	}
	s := &Set{schemas: make(map[string]*jsonschema.Schema, len(entries))}
	for _, name := range entries {
		sch, err := c.Compile(BaseURL + name)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		s.schemas[strings.TrimSuffix(name, ".json")] = sch
	}
	return s, nil
}

// Names lists the compiled schemas.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.schemas))
	for n := range s.schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks a JSON document against the named schema. The error says
// where in the document each problem is, one problem per clause.
func (s *Set) Validate(name string, data []byte) error {
	sch, ok := s.schemas[name]
	if !ok {
		return fmt.Errorf("no schema named %q", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: malformed JSON: %w", name, err)
	}
	err = sch.Validate(doc)
	var verr *jsonschema.ValidationError
	if errors.As(err, &verr) {
		return fmt.Errorf("%s: %s", name, summarize(verr))
	}
	return err
}

// summarize flattens a validation error to "at /path: problem" clauses,
// leaving out the schema URLs that make the library's own text hard to read.
func summarize(verr *jsonschema.ValidationError) string {
	var parts []string
	for _, u := range verr.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		loc := u.InstanceLocation
		if loc == "" {
			loc = "/"
		}
		parts = append(parts, fmt.Sprintf("at %s: %s", loc, u.Error))
	}
	if len(parts) == 0 {
		return verr.Error()
	}
	return strings.Join(parts, "; ")
}
