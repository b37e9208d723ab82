package embedded_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hailsd/hail/bus/bustest"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/credentials"
)

// Servers with TLS and a CA form their cluster over routes that verify
// each other's certificates; a would-be route without one signed by the
// CA is refused.
func TestRoutesNeedACertificate(t *testing.T) {
	d, err := credentials.Write(t.TempDir(), credentials.Options{Hosts: []string{"127.0.0.1"}, HashCost: credentials.MinHashCost})
	if err != nil {
		t.Fatal(err)
	}
	sec := embedded.Security{Cert: d.File(credentials.ServerCertFile), Key: d.File(credentials.ServerKeyFile), CA: d.File(credentials.CAFile)}
	configure, err := sec.Configure()
	if err != nil {
		t.Fatal(err)
	}
	ports := []int{bustest.FreePort(t), bustest.FreePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
	}
	var servers []interface{ NumRoutes() int }
	for i, p := range ports {
		s, err := embedded.StartServer(embedded.ServerOptions{Name: fmt.Sprintf("s%d", i), Port: -1, StoreDir: t.TempDir(), Configure: configure,
			Cluster: embedded.ClusterOptions{Name: "hail", Host: "127.0.0.1", Port: p, Routes: routes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	bustest.Eventually(t, 15*time.Second, func() error {
		for i, s := range servers {
			if s.NumRoutes() < 1 {
				return fmt.Errorf("server %d has no route", i)
			}
		}
		return nil
	})

	pem, err := os.ReadFile(d.File(credentials.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	// Without a client certificate: refused. With the server's own (one
	// the CA signed, for client auth too): let in, so the refusal is the
	// certificate's doing.
	attempt := func(certs []tls.Certificate) error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// A route's TLS handshake comes first, before the server's INFO.
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: certs})
		if err := tc.Handshake(); err != nil {
			return err
		}
		info, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(info, "INFO ") {
			return fmt.Errorf("the route port said %q", info)
		}
		return nil
	}
	own, err := tls.LoadX509KeyPair(d.File(credentials.ServerCertFile), d.File(credentials.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := attempt([]tls.Certificate{own}); err != nil {
		t.Fatalf("a route with a certificate the CA signed: %v", err)
	}
	err = attempt(nil)
	if err == nil {
		t.Fatal("a route without a client certificate was let in")
	}
}
