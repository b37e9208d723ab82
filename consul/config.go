package consul

import (
	"errors"
	"fmt"

	"github.com/hailsd/hail/config"
	"github.com/hailsd/hail/roles"
)

// HTTPConfig is the http section of a program that serves Consul's API
// on it: the address and TLS every program has, and the API's own keys.
type HTTPConfig struct {
	config.Listener `koanf:",squash,flatten"`
	// TokensFile guards the API with tokens in the console's format
	// ("<read|write> sha256:<hex>" lines): reads need a read token.
	// Default none: open.
	TokensFile string `koanf:"tokens_file"`
	// MaxBlocking bounds the blocking queries waiting at once; beyond it
	// they are answered 429. Default 4096.
	MaxBlocking int `koanf:"max_blocking"`
}

// Validate checks the section's own keys; prefix names it ("http").
func (c HTTPConfig) Validate(prefix string) error {
	var errs []error
	if c.MaxBlocking < 1 {
		errs = append(errs, config.FieldError(prefix+".max_blocking", "%d is below 1", c.MaxBlocking))
	}
	if c.TokensFile != "" {
		if _, err := roles.LoadTokens(c.TokensFile); err != nil {
			errs = append(errs, config.FieldError(prefix+".tokens_file", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Options are the HTTPOptions the section says, tokens read from their
// file.
func (c HTTPConfig) Options(prefix, nodeName string) (HTTPOptions, error) {
	o := HTTPOptions{NodeName: nodeName, MaxBlocking: c.MaxBlocking}
	if c.TokensFile != "" {
		t, err := roles.LoadTokens(c.TokensFile)
		if err != nil {
			return o, fmt.Errorf("%s.tokens_file: %w", prefix, err)
		}
		o.Tokens = t
	}
	return o, nil
}
