package roles

import "testing"

func TestHashToken(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		// sha256sum of the empty input and of "s3cret" (printf %s s3cret | sha256sum).
		{"", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"s3cret", "sha256:1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"},
	} {
		if got := HashToken(tc.token); got != tc.want {
			t.Errorf("HashToken(%q) = %s, want %s", tc.token, got, tc.want)
		}
	}
}
