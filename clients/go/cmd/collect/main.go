// Command collect is an example trainer: it streams RolloutService.CollectRollouts and writes one JSON object per
// event on stdout (see package trainer for the line shapes). It exits 1 when the stream fails, 2 on bad usage.
//
//	collect -server 127.0.0.1:50051 -agent weather_simple_agent -input tasks.jsonl -num-repeats 4
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	gymv1 "github.com/gym-grpc/gym-grpc/clients/go/gen/gym/v1"
	"github.com/gym-grpc/gym-grpc/clients/go/trainer"
)

type options struct {
	server, agent, input, token string
	numRepeats, maxInFlight     int
	deadline                    time.Duration
	tlsCA, tlsCert, tlsKey      string
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("collect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "127.0.0.1:50051", "gym-grpc server `host:port`")
	fs.StringVar(&o.agent, "agent", "", "agent instance name (required)")
	fs.StringVar(&o.input, "input", "", "NeMo Gym JSONL task rows (required); each line is sent as Task{row_json}")
	fs.IntVar(&o.numRepeats, "num-repeats", 1, "rollouts per task (the group size)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 0, "rollouts running at once (0: the server default)")
	fs.DurationVar(&o.deadline, "deadline", 0, "deadline of the whole stream, e.g. 10m (0: none)")
	fs.StringVar(&o.token, "token", os.Getenv("GYM_GRPC_TOKEN"), "bearer token (default: $GYM_GRPC_TOKEN)")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA bundle to verify the server (enables TLS)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS (enables TLS; needs -tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM client key for mutual TLS")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.agent == "" || o.input == "" || fs.NArg() > 0 || (o.tlsCert == "") != (o.tlsKey == "") {
		fmt.Fprintln(stderr, "collect: -agent and -input are required; -tls-cert and -tls-key go together")
		fs.Usage()
		return 2
	}
	if err := collect(o, stdout); err != nil {
		fmt.Fprintf(stderr, "collect: %v\n", err)
		return 1
	}
	return 0
}

func collect(o options, stdout io.Writer) error {
	f, err := os.Open(o.input)
	if err != nil {
		return err
	}
	tasks, err := trainer.ReadTasks(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", o.input, err)
	}
	connection := trainer.Connection{Server: o.server, Token: o.token, TLSCA: o.tlsCA, TLSCert: o.tlsCert, TLSKey: o.tlsKey}
	conn, err := connection.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.deadline)
		defer cancel()
	}
	ctx = connection.WithToken(ctx)
	request := &gymv1.CollectRolloutsRequest{
		Agent:               o.agent,
		Source:              &gymv1.CollectRolloutsRequest_Tasks{Tasks: &gymv1.TaskList{Tasks: tasks}},
		NumRepeats:          int32(o.numRepeats),
		MaxInFlight:         int32(o.maxInFlight),
		MaxEventsPerMessage: trainer.PerMessage,
	}
	stream, err := gymv1.NewRolloutServiceClient(conn).CollectRollouts(ctx, request)
	if err == nil {
		_, err = trainer.Consume(trainer.Events(stream.Recv), stdout)
	}
	if err != nil {
		_ = json.NewEncoder(stdout).Encode(trainer.ErrorToLine(err))
	}
	return err
}
