package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
)

// Every curl line of the README's sh blocks aimed at the dev stack's
// ingress (127.0.0.1:8000), greeter (127.0.0.1:8090) or console
// (127.0.0.1:8080) works as shown:
// 2xx, or the status its comment names. (The agent API's lines need an
// agent with deploy/agent.yaml: TestAgentExample runs them.) The requests
// are made with Go's client from the line's curl flags, so no curl is
// needed.
func TestReadmeCurlCommands(t *testing.T) {
	lines, err := readmeLines("../README.md", "curl ")
	if err != nil {
		t.Fatal(err)
	}
	d := startDev(t)
	ran := 0
	for _, line := range lines {
		if !strings.Contains(line, "127.0.0.1:8000") && !strings.Contains(line, "127.0.0.1:8090") && !strings.Contains(line, "127.0.0.1:8080") {
			continue
		}
		if runCurlLine(t, line, strings.NewReplacer("127.0.0.1:8000", d.ingress, "127.0.0.1:8090", d.greeterAt, "127.0.0.1:8080", d.http), 0, 10*time.Second) {
			ran++
		}
	}
	if ran < 5 {
		t.Errorf("ran %d curl lines of the README; the ingress section has more", ran)
	}
}

// runCurlLine makes the request of a README curl line, its addresses
// replaced by addrs, until it answers as the line's comment says within
// timeout: 2xx with at least minBody bytes, or the status the comment
// names. It reports whether the line could be made into a request.
func runCurlLine(t *testing.T, line string, addrs *strings.Replacer, minBody int, timeout time.Duration) bool {
	t.Helper()
	cmd, comment, _ := strings.Cut(line, " #")
	args, err := shellWords(addrs.Replace(cmd))
	if err != nil {
		t.Errorf("%s: %v", line, err)
		return false
	}
	req, err := curlRequest(args[1:])
	if err != nil {
		t.Errorf("%s: %v", line, err)
		return false
	}
	want := 0
	if m := regexp.MustCompile(`^\s*(\d{3})\b`).FindStringSubmatch(comment); m != nil {
		want, _ = strconv.Atoi(m[1])
	}
	bustest.Eventually(t, timeout, func() error {
		resp, err := http.DefaultClient.Do(req())
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if (want == 0 && (resp.StatusCode/100 != 2 || len(body) < minBody)) || (want != 0 && resp.StatusCode != want) {
			return fmt.Errorf("%s: %d %q", line, resp.StatusCode, body)
		}
		return nil
	})
	return true
}

// curlRequest makes a request from curl's -X, -d, -H, -i and -s and a URL.
func curlRequest(args []string) (func() *http.Request, error) {
	method, body, url := "", "", ""
	hdr := http.Header{}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-i", "-si", "-is":
		case "-X", "-d", "-H":
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s without a value", a)
			}
			v := args[i+1]
			i++
			switch a {
			case "-X":
				method = v
			case "-d":
				body = v
			case "-H":
				k, val, ok := strings.Cut(v, ":")
				if !ok {
					return nil, fmt.Errorf("header %q", v)
				}
				hdr.Add(strings.TrimSpace(k), strings.TrimSpace(val))
			}
		default:
			if strings.HasPrefix(a, "-") {
				return nil, fmt.Errorf("curl flag %s is not understood here", a)
			}
			url = a
		}
	}
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
	}
	if url == "" {
		return nil, fmt.Errorf("no URL")
	}
	return func() *http.Request {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header = hdr.Clone()
		return req
	}, nil
}

// readmeLines are the lines starting with prefix in the README's sh code
// blocks.
func readmeLines(path, prefix string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	inSh := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
		case strings.HasPrefix(line, "```"):
			inSh = false
		case inSh && strings.HasPrefix(line, prefix):
			out = append(out, line)
		}
	}
	return out, sc.Err()
}
