package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hailsd/hail/credentials"
)

// defaultSecureDir is secure init's --dir: the repository's .gitignore
// ignores it (and the default store_dir), so a set made in a checkout,
// the CA's key and every password, is never committed by accident.
const defaultSecureDir = "secure"

// secureInit writes what a secured region needs into a directory (package
// credentials): a private CA, a server certificate for the hosts, an
// auth.conf with one user per role, and one <user>.env per user; by
// default a bootstrap secret per service and the auth callout's issuer
// (PROTOCOL v1.6) rather than v1.2's shared service users, which
// --shared-service-users writes instead.
//
//	go run ./services/nats secure init [--dir secure] --services echo,greeter [--hosts 127.0.0.1,localhost,nats-1] [--shared-service-users [--unscoped-services greeter]] [--keep]
func secureInit(args []string, out io.Writer) error {
	a, err := parseSecureInit(args, out)
	if err != nil {
		return err
	}
	write := func() (*credentials.Dir, bool, error) {
		d, err := credentials.Write(a.dir, a.options)
		return d, false, err
	}
	if a.keep {
		if err := a.keepKind(); err != nil {
			return fmt.Errorf("secure init: %w", err)
		}
		write = func() (*credentials.Dir, bool, error) { return credentials.Ensure(a.dir, a.options) }
	}
	d, kept, err := write()
	if err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	if err := writeLeafPassword(a.dir, kept); err != nil {
		return fmt.Errorf("secure init: %w", err)
	}
	kind := credentials.SharedUsers
	if a.options.Identities {
		kind = credentials.IdentitySet
	}
	if a.keep && !a.kindGiven && !a.options.Identities {
		// Said, because a bare --keep would write identities into an
		// empty directory: the operator learns why this one has none.
		fmt.Fprintf(out, "%s holds shared service users, which --keep keeps; for identities (secure init's default), write a set into another --dir\n", a.dir)
	}
	if kept {
		fmt.Fprintf(out, "kept the credentials in %s (%s)\n", a.dir, kind)
		return nil
	}
	names := make([]string, len(d.Users))
	for i, u := range d.Users {
		names[i] = u.Name + ".env"
	}
	fmt.Fprintf(out, "wrote %s (%s): ca.pem, ca-key.pem, server.pem, server-key.pem, auth.conf, console.token, console.tokens, leaf.password (the regions' links' user: copy it and ca.pem to every region), %s (and a .password each)\n", a.dir, kind, strings.Join(names, ", "))
	if a.options.Identities {
		secrets := make([]string, len(a.options.Services))
		for i, s := range a.options.Services {
			secrets[i] = credentials.SecretFile(s)
		}
		fmt.Fprintf(out, "and for identities: %s, %s\n", credentials.CalloutIssuerFile, strings.Join(secrets, ", "))
	}
	fmt.Fprintf(out, "run the server with: --tls-cert %[1]s/server.pem --tls-key %[1]s/server-key.pem --tls-ca %[1]s/ca.pem --auth-file %[1]s/auth.conf\n", a.dir)
	return nil
}

// initArgs are what secure init's flags ask for.
type initArgs struct {
	dir  string
	keep bool
	// kindGiven: --identities or --shared-service-users was given, not
	// left to the default.
	kindGiven bool
	options   credentials.Options
}

// keepKind makes a's kind the kind of the set a.dir holds, which --keep
// keeps as it is: a set written before identities were the default (or
// with --shared-service-users) stays one of shared service users when
// the command that keeps it names no kind, as compose's and every
// script's written before did, rather than a new set with identities
// being written over it, a new CA and passwords with it. A kind named
// that differs from the set's is refused, not written over the set.
func (a *initArgs) keepKind() error {
	has, err := credentials.KindOf(a.dir)
	if err != nil {
		return err
	}
	want := credentials.SharedUsers
	if a.options.Identities {
		want = credentials.IdentitySet
	}
	switch {
	case has == credentials.NoSet || has == want:
	case !a.kindGiven:
		a.options.Identities = has == credentials.IdentitySet
	case has == credentials.SharedUsers:
		return fmt.Errorf("%s holds shared service users, which --keep keeps as they are: keep them with --shared-service-users (or no kind flag), or write a set with identities into another --dir", a.dir)
	default:
		return fmt.Errorf("%s holds identities, which --keep keeps as they are: keep them with --identities (or no kind flag), or write a set with shared service users into another --dir", a.dir)
	}
	return nil
}

func parseSecureInit(args []string, out io.Writer) (initArgs, error) {
	fs := flag.NewFlagSet("secure init", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", defaultSecureDir, "directory to write into (created, mode 0700)")
	services := fs.String("services", "", "the services, comma-separated: a bootstrap secret each (svc-<service>.secret), or with --shared-service-users one svc-<service> user each, which may hear only its service's scoped subjects")
	unscoped := fs.String("unscoped-services", "", "with --shared-service-users: services (of --services), comma-separated, whose instances announce unscoped: their users hear the unscoped subjects of every service instead")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "names and IPs the server certificate is for, comma-separated")
	scopedOnly := fs.Bool("scoped-only", false, "no service unscoped: the default, kept so that existing commands run")
	cost := fs.Int("hash-cost", 11, "bcrypt's cost for the passwords in auth.conf: the server pays it on every connection, and answers nothing until it is paid")
	identities := fs.Bool("identities", false, "every instance its own identity (PROTOCOL v1.6): a bootstrap secret per service (svc-<service>.secret) instead of shared svc-<service> users, the admin role, and an auth.conf whose auth callout this server runs; the default, kept so that existing commands run")
	shared := fs.Bool("shared-service-users", false, "v1.2's shared svc-<service> users (svc-<service>.env and .password, bcrypt-hashed in auth.conf) instead of identities, for instances that cannot connect as their own: every instance of a service may then act as any other")
	keep := fs.Bool("keep", false, "keep a complete set already in --dir (its CA, passwords, console token, and with identities its secrets and callout issuer), writing its auth.conf and .env files again from the role table; a set keeps its kind, identities or shared service users, when neither flag names one")
	if err := fs.Parse(args); err != nil {
		return initArgs{}, err
	}
	if *dir == "" {
		return initArgs{}, fmt.Errorf("secure init: --dir is empty")
	}
	if *identities && *shared {
		return initArgs{}, fmt.Errorf("secure init: --identities and --shared-service-users contradict each other (identities replace the shared users)")
	}
	if *unscoped != "" && !*shared {
		return initArgs{}, fmt.Errorf("secure init: --unscoped-services needs --shared-service-users (an identity's subjects are scoped)")
	}
	if *scopedOnly && *unscoped != "" {
		return initArgs{}, fmt.Errorf("secure init: --scoped-only and --unscoped-services contradict each other")
	}
	return initArgs{dir: *dir, keep: *keep, kindGiven: *identities || *shared,
		options: credentials.Options{Services: list(*services), Hosts: list(*hosts), Unscoped: list(*unscoped), HashCost: *cost, Identities: !*shared}}, nil
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
