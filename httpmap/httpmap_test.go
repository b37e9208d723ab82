package httpmap

import (
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestHeadersBothWays(t *testing.T) {
	in := http.Header{
		"Hail-Key": {"user-42"}, "X-User": {"ann"}, "Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"},
		"Keep-Alive": {"timeout=5"}, "Nats-Service-Error-Code": {"500"}, "Content-Length": {"3"}, "Accept": {"a", "b"},
	}
	got := IngressHeaders(in)
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Nats-Service-Error-Code", "Content-Length"} {
		if _, ok := got[k]; ok {
			t.Errorf("ingress kept %s", k)
		}
	}
	if got.Get("Hail-Key") != "user-42" || got.Get("X-User") != "ann" || len(got["Accept"]) != 2 {
		t.Errorf("ingress headers %v", got)
	}

	req := nats.Header{"hail-method": {"PUT"}, "Hail-Path": {"/x"}, "Nats-Msg-Id": {"1"}, "X-User": {"ann"}, "Transfer-Encoding": {"chunked"}}
	hh := BridgeHeaders(req)
	if len(hh) != 1 || hh.Get("X-User") != "ann" {
		t.Errorf("bridge headers %v", hh)
	}

	resp := http.Header{"Content-Type": {"text/plain"}, "Nats-Service-Error-Code": {"200"}, "Hail-Status": {"200"}, "Content-Length": {"9"}}
	rh := ReplyHeaders(resp, 404)
	if rh.Get("Content-Type") != "text/plain" || rh.Get(HeaderStatus) != "404" || rh.Get("Nats-Service-Error-Code") != "" || rh.Get("Content-Length") != "" {
		t.Errorf("reply headers %v", rh)
	}

	back := ResponseHeaders(nats.Header{"Hail-Status": {"404"}, "Hail-Instance": {"id"}, "Nats-Service-Error": {"x"}, "Content-Type": {"text/plain"}})
	if back.Get("Hail-Status") != "" || back.Get("Nats-Service-Error") != "" || back.Get("Hail-Instance") != "id" || back.Get("Content-Type") != "text/plain" {
		t.Errorf("response headers %v", back)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		h    nats.Header
		want int
	}{
		{nil, 200},
		{nats.Header{"Hail-Status": {"201"}}, 201},
		{nats.Header{"hail-status": {"418"}}, 418},
		{nats.Header{"Nats-Service-Error-Code": {"503"}}, 503},
		{nats.Header{"Hail-Status": {"404"}, "Nats-Service-Error-Code": {"404"}}, 404},
		{nats.Header{"Hail-Status": {"nope"}}, 200},
	}
	for _, tt := range tests {
		if got := Status(&nats.Msg{Header: tt.h}); got != tt.want {
			t.Errorf("Status(%v) = %d, want %d", tt.h, got, tt.want)
		}
	}
}
