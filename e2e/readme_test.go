package e2e

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// readmeLine is one line of a README sh block, with the section it is in
// and the block's number in that section (0 first).
type readmeLine struct {
	section string // the nearest heading above, without its #s
	block   int
	cmd     string // the command, without its comment
	comment string // what the comment says it prints or does, trimmed
}

// readmeShLines are the lines of the README's sh blocks that start with
// prefix, in the README's order.
func readmeShLines(path, prefix string) ([]readmeLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []readmeLine
	inSh, section, block := false, "", -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#") && !inSh:
			section, block = strings.TrimSpace(strings.TrimLeft(line, "#")), -1
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			block++
		case strings.HasPrefix(line, "```"):
			inSh = false
		case inSh && strings.HasPrefix(line, prefix):
			cmd, comment := splitComment(line)
			out = append(out, readmeLine{section: section, block: block, cmd: cmd, comment: comment})
		}
	}
	return out, sc.Err()
}

// splitComment cuts a shell line at its comment: the first " #" outside
// quotes.
func splitComment(line string) (cmd, comment string) {
	var quote byte
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && i > 0 && (line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		}
	}
	return strings.TrimSpace(line), ""
}

var (
	uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRe = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
)

// normalise replaces what changes from run to run (ids, times) with
// <id> and <time>, as the README writes them.
func normalise(s string) string {
	return timeRe.ReplaceAllString(uuidRe.ReplaceAllString(s, "<id>"), "<time>")
}

// literalOutput says whether a README comment shows the output itself
// (JSON) rather than describing it.
func literalOutput(comment string) bool {
	return strings.HasPrefix(comment, "{") || strings.HasPrefix(comment, "[")
}

// matchGolden checks out against a README comment that shows it: equal
// once normalised, each "..." in the comment standing for anything.
func matchGolden(comment, out string) error {
	parts := strings.Split(comment, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re, err := regexp.Compile(`^` + strings.Join(parts, `.*`) + `$`)
	if err != nil {
		return err
	}
	if got := normalise(strings.TrimSpace(out)); !re.MatchString(got) {
		return fmt.Errorf("prints\n\t%s\nthe README shows\n\t%s", got, comment)
	}
	return nil
}

// natsReply splits what `nats request` printed into its headers and body:
// the CLI prefixes its own lines (and the headers) with a time of day.
func natsReply(out string) (headers map[string]string, body string) {
	headers = map[string]string{}
	var rest []string
	for _, line := range strings.Split(out, "\n") {
		if m := cliLine.FindStringSubmatch(line); m != nil {
			if k, v, ok := strings.Cut(m[1], ": "); ok {
				headers[k] = v
			}
			continue
		}
		rest = append(rest, line)
	}
	return headers, strings.TrimSpace(strings.Join(rest, "\n"))
}

var cliLine = regexp.MustCompile(`^\d\d:\d\d:\d\d (.*)$`)
