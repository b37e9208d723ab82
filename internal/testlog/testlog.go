// Package testlog is a log sink a test can read while the program under
// test writes to it.
package testlog

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a concurrency-safe bytes.Buffer for program output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Line is the first line written so far that holds substr.
func (s *Buffer) Line(substr string) (string, bool) {
	for line := range strings.Lines(s.String()) {
		if strings.Contains(line, substr) {
			return line, true
		}
	}
	return "", false
}
