package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hailsd/hail/credentials"
)

// secureInit writes what a secured region needs into a directory (package
// credentials): a private CA, a server certificate for the hosts, an
// auth.conf with one user per role, and one <user>.env per user.
//
//	go run ./services/nats secure init --dir DIR --services echo,greeter [--hosts 127.0.0.1,localhost,nats-1] [--scoped-only] [--keep]
func secureInit(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("secure init", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", "", "directory to write into (created)")
	services := fs.String("services", "", "the services, comma-separated: one svc-<service> user each")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "names and IPs the server certificate is for, comma-separated")
	scopedOnly := fs.Bool("scoped-only", false, "give svc-<service> users only their service's scoped subjects (every instance must announce scoped)")
	keep := fs.Bool("keep", false, "leave a complete set already in --dir as it is (a restart keeps its passwords)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("secure init: --dir is required")
	}
	o := credentials.Options{Services: list(*services), Hosts: list(*hosts), ScopedOnly: *scopedOnly}
	write := func() (*credentials.Dir, bool, error) {
		d, err := credentials.Write(*dir, o)
		return d, false, err
	}
	if *keep {
		write = func() (*credentials.Dir, bool, error) { return credentials.Ensure(*dir, o) }
	}
	d, kept, err := write()
	if err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	if kept {
		fmt.Fprintf(out, "kept the credentials in %s\n", *dir)
		return nil
	}
	names := make([]string, len(d.Users))
	for i, u := range d.Users {
		names[i] = u.Name + ".env"
	}
	fmt.Fprintf(out, "wrote %s: ca.pem, ca-key.pem, server.pem, server-key.pem, auth.conf, console.token, console.tokens, %s (and a .password each)\n", *dir, strings.Join(names, ", "))
	fmt.Fprintf(out, "run the server with: --tls-cert %[1]s/server.pem --tls-key %[1]s/server-key.pem --auth-file %[1]s/auth.conf\n", *dir)
	return nil
}

// list splits a comma-separated flag, dropping empty items.
func list(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
