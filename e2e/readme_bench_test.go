package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every benchmark command the README (and the Taskfile) shows names a
// benchmark that exists in the package it names: a figure with a command
// beside it has code behind it.
func TestReadmeBenchCommands(t *testing.T) {
	var cmds []string
	for _, file := range []string{"../README.md", "../Taskfile.yml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, benchCommands(string(data))...)
	}
	if len(cmds) < 8 {
		t.Fatalf("found %d benchmark commands in the README and Taskfile, want every one: %q", len(cmds), cmds)
	}
	for _, cmd := range cmds {
		args, err := shellWords(cmd)
		if err != nil {
			t.Errorf("%s: %v", cmd, err)
			continue
		}
		dir, bench, pkgs := "..", "", []string(nil)
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case a == "-C" && i+1 < len(args):
				dir = filepath.Join(dir, args[i+1])
				i++
			case a == "-bench" && i+1 < len(args):
				bench = args[i+1]
				i++
			case strings.HasPrefix(a, "./"):
				pkgs = append(pkgs, a)
			}
		}
		if bench == "" || len(pkgs) == 0 {
			t.Errorf("%s: want -bench <regexp> and a package", cmd)
			continue
		}
		// go test matches the part before the first / against the top
		// level benchmarks' names.
		top, _, _ := strings.Cut(bench, "/")
		re, err := regexp.Compile(top)
		if err != nil {
			t.Errorf("%s: -bench %s: %v", cmd, bench, err)
			continue
		}
		for _, pkg := range pkgs {
			names, err := benchmarks(filepath.Join(dir, pkg))
			if err != nil {
				t.Errorf("%s: %v", cmd, err)
				continue
			}
			found := false
			for _, n := range names {
				found = found || re.MatchString(n)
			}
			if !found {
				t.Errorf("%s: no benchmark in %s matches %q (it has %v)", cmd, pkg, top, names)
			}
		}
	}
}

// benchCommand is a go test command with -bench, up to a comment, a
// backquote or the line's end.
var benchCommand = regexp.MustCompile("go (-C \\S+ )?test [^#`\n]*-bench [^#`\n]*")

func benchCommands(text string) []string {
	var out []string
	for _, m := range benchCommand.FindAllString(text, -1) {
		out = append(out, strings.TrimSpace(m))
	}
	return out
}

// benchmarks are the names of the Benchmark functions in the _test.go
// files of a package directory, or of every package under it for a
// pattern ending in /... .
func benchmarks(pattern string) ([]string, error) {
	root, recursive := strings.CutSuffix(pattern, "/...")
	var names []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Benchmark") {
				names = append(names, fn.Name.Name)
			}
		}
		return nil
	})
	return names, err
}
