package events_test

import (
	"fmt"

	"github.com/hailsd/hail/events"
)

// A service name may hold dots, so the endpoint is always the last token.
func ExampleParser_Route() {
	var s events.Subjects
	service, endpoint, err := s.Parse().Route("hail.route.com.example.login.Login")
	fmt.Println(service, endpoint, err)

	_, _, err = s.Parse().Route("hail.route.echo.*")
	fmt.Println(err)
	// Output:
	// com.example.login Login <nil>
	// subject "hail.route.echo.*": invalid: endpoint name "*" contains wildcard '*'
}

func ExampleDecodeAnnounce() {
	_, err := events.DecodeAnnounce([]byte(`{"id":"0190f1b6-3c4d-7e8f-9a0b-1c2d3e4f5a6b","service":"Echo","endpoints":[{"name":"say"}]}`))
	fmt.Println(err)
	// Output:
	// announce: invalid: service name "Echo" contains upper case 'E'; service names are lower case
}
