package instance_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hailsd/hail/bus"
	"github.com/hailsd/hail/bus/embedded"
	"github.com/hailsd/hail/discovery"
	"github.com/hailsd/hail/instance"
	"github.com/nats-io/nats.go"
)

// A Go service joins hail in four calls: New, Handle, Start and, when it
// stops, Shutdown. Here a discovery node and the NATS server run in the
// same process so the example is whole.
func Example() {
	dir, _ := os.MkdirTemp("", "hail-example-")
	defer os.RemoveAll(dir)
	srv, err := embedded.StartServer(embedded.ServerOptions{Name: "example", Port: -1, StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	kv, _ := bus.EnsureBuckets(ctx, nc, bus.BucketOptions{})
	node, _ := discovery.New(nc, kv, discovery.Config{})
	go node.Run(ctx)

	// The service.
	inst, err := instance.New(nc, instance.Config{Service: "greeter", Version: "1.0.0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	inst.Handle("hello", func(_ context.Context, m *nats.Msg) ([]byte, error) {
		return append([]byte("hello, "), m.Data...), nil
	})
	if err := inst.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer inst.Shutdown(context.Background())

	// A caller: any member of the queue group answers.
	reply, err := nc.Request("hail.svc.greeter.hello", []byte("world"), time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(reply.Data), reply.Header.Get("Hail-Instance") == inst.ID())
	// Output: hello, world true
}
