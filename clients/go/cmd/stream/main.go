// Command stream is an example trainer of RolloutService.StreamRollouts: it appends the tasks of a JSONL file by key
// (t0, t1, ...), grants -credits groups, and after each delivered group acks it, announces policy version = step (the
// number of groups delivered so far) and grants one more credit; it half-closes once every task has had its credit.
// It writes one JSON object per server message on stdout (see package trainer for the line shapes) and exits 1 when
// the stream fails, 2 on bad usage.
//
//	stream -server 127.0.0.1:50051 -agent weather_simple_agent -input tasks.jsonl -num-repeats 4 -credits 2
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

var views = map[string]gymv1.RolloutView{
	"":         gymv1.RolloutView_ROLLOUT_VIEW_UNSPECIFIED,
	"basic":    gymv1.RolloutView_ROLLOUT_VIEW_BASIC,
	"full":     gymv1.RolloutView_ROLLOUT_VIEW_FULL,
	"training": gymv1.RolloutView_ROLLOUT_VIEW_TRAINING,
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var (
		c          trainer.Connection
		cfg        trainer.StreamConfig
		input      string
		view       string
		numRepeats int
		deadline   time.Duration
	)
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Server, "server", "127.0.0.1:50051", "gym-grpc server `host:port`")
	fs.StringVar(&cfg.Agent, "agent", "", "agent instance name (required)")
	fs.StringVar(&input, "input", "", "NeMo Gym JSONL task rows (required); line i is sent as task t<i>, Task{row_json}")
	fs.IntVar(&numRepeats, "num-repeats", 1, "rollouts per task (the group size)")
	fs.IntVar(&cfg.Credits, "credits", 2, "groups granted up front; one more after each delivered group")
	fs.StringVar(&view, "view", "", "rollout view: basic, full or training (default: the server's, full)")
	fs.BoolVar(&cfg.DropUniformGroups, "drop-uniform-groups", false, "let the server drop groups whose rewards are all equal")
	fs.DurationVar(&deadline, "deadline", 0, "deadline of the whole stream, e.g. 10m (0: none)")
	fs.StringVar(&c.Token, "token", os.Getenv("GYM_GRPC_TOKEN"), "bearer token (default: $GYM_GRPC_TOKEN)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM CA bundle to verify the server (enables TLS)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM client certificate for mutual TLS (enables TLS; needs -tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM client key for mutual TLS")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	v, knownView := views[view]
	if cfg.Agent == "" || input == "" || fs.NArg() > 0 || (c.TLSCert == "") != (c.TLSKey == "") || !knownView ||
		cfg.Credits < 1 || numRepeats < 0 {
		fmt.Fprintln(stderr, "stream: -agent and -input are required; -tls-cert and -tls-key go together; "+
			"-view is basic, full or training; -credits >= 1")
		fs.Usage()
		return 2
	}
	cfg.View, cfg.NumRepeats = v, int32(numRepeats)
	if err := stream(c, cfg, input, deadline, stdout); err != nil {
		fmt.Fprintf(stderr, "stream: %v\n", err)
		return 1
	}
	return 0
}

func stream(c trainer.Connection, cfg trainer.StreamConfig, input string, deadline time.Duration, stdout io.Writer) error {
	f, err := os.Open(input)
	if err != nil {
		return err
	}
	tasks, err := trainer.ReadTasks(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", input, err)
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(c.WithToken(ctx))
	defer cancel() // ends the call if Drive returns early
	call, err := gymv1.NewRolloutServiceClient(conn).StreamRollouts(ctx)
	if err == nil {
		_, err = trainer.Drive(call, tasks, cfg, stdout)
	}
	if err != nil {
		_ = json.NewEncoder(stdout).Encode(trainer.ErrorToLine(err))
	}
	return err
}
