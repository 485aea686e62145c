package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gymv1 "github.com/gym-grpc/gym-grpc/clients/go/gen/gym/v1"
)

func rollout(task, index int32, reward *float64, failure *rpcstatus.Status) *gymv1.CollectRolloutsResponse {
	r := &gymv1.Rollout{TaskIndex: task, RolloutIndex: index, GroupId: "g0", RolloutId: "r", Reward: reward, Failure: failure}
	if failure != nil {
		r.FailureKind = gymv1.FailureKind_FAILURE_KIND_INFRASTRUCTURE
	}
	return &gymv1.CollectRolloutsResponse{Event: &gymv1.CollectRolloutsResponse_Rollout{Rollout: r}}
}

// A stream with every event kind, a succeeded and a failed rollout.
func sampleStream() []*gymv1.CollectRolloutsResponse {
	return []*gymv1.CollectRolloutsResponse{
		{Event: &gymv1.CollectRolloutsResponse_Started{Started: &gymv1.CollectionStarted{
			CollectionId: "c", TotalTasks: 1, TotalRollouts: 2, NumRepeats: 2}}},
		rollout(0, 0, proto.Float64(1), nil),
		{Event: &gymv1.CollectRolloutsResponse_Heartbeat{Heartbeat: &gymv1.Heartbeat{Completed: 1, InFlight: 1}}},
		rollout(0, 1, nil, &rpcstatus.Status{Code: int32(codes.Unavailable), Message: "model down"}),
		{Event: &gymv1.CollectRolloutsResponse_GroupComplete{GroupComplete: &gymv1.GroupComplete{
			GroupId: "g0", TaskIndex: 0, Succeeded: 1, Failed: 1, MeanReward: proto.Float64(1)}}},
		{Event: &gymv1.CollectRolloutsResponse_Summary{Summary: &gymv1.CollectionSummary{
			Succeeded: 1, Failed: 1, DurationSeconds: 0.5,
			Metrics: map[string]*gymv1.MetricStats{"reward": {Count: 1, Mean: 1, Min: 1, Max: 1}}}}},
	}
}

func feed(events []*gymv1.CollectRolloutsResponse, end error) func() (*gymv1.CollectRolloutsResponse, error) {
	return func() (*gymv1.CollectRolloutsResponse, error) {
		if len(events) == 0 {
			return nil, end
		}
		ev := events[0]
		events = events[1:]
		return ev, nil
	}
}

func TestConsumeWritesOneLinePerEvent(t *testing.T) {
	var out bytes.Buffer
	summary, err := Consume(feed(sampleStream(), io.EOF), &out)
	if err != nil {
		t.Fatal(err)
	}
	if summary.GetSucceeded() != 1 || summary.GetFailed() != 1 {
		t.Fatalf("summary %v", summary)
	}
	want := []string{
		`{"event":"started","collection_id":"c","total_tasks":1,"total_rollouts":2,"num_repeats":2}`,
		`{"event":"rollout","task_index":0,"rollout_index":0,"group_id":"g0","rollout_id":"r","reward":1}`,
		`{"event":"heartbeat","completed":1,"in_flight":1}`,
		`{"event":"rollout","task_index":0,"rollout_index":1,"group_id":"g0","rollout_id":"r","reward":null,` +
			`"failure":{"kind":"FAILURE_KIND_INFRASTRUCTURE","code":14,"message":"model down"}}`,
		`{"event":"group_complete","task_index":0,"group_id":"g0","mean_reward":1,"succeeded":1,"failed":1}`,
		`{"event":"summary","succeeded":1,"failed":1,"skipped":0,"mean_reward":1,"duration_seconds":0.5}`,
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestNoSuccessMeansNullMeanReward(t *testing.T) {
	line, err := Line(&gymv1.CollectRolloutsResponse{Event: &gymv1.CollectRolloutsResponse_GroupComplete{
		GroupComplete: &gymv1.GroupComplete{GroupId: "g", Failed: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(line)
	if !strings.Contains(string(b), `"mean_reward":null`) {
		t.Fatalf("%s", b)
	}
	line, _ = Line(&gymv1.CollectRolloutsResponse{Event: &gymv1.CollectRolloutsResponse_Summary{
		Summary: &gymv1.CollectionSummary{Failed: 2}}})
	if b, _ := json.Marshal(line); !strings.Contains(string(b), `"mean_reward":null`) {
		t.Fatalf("%s", b)
	}
}

func TestStreamErrorIsReturned(t *testing.T) {
	boom := status.Error(codes.Unauthenticated, "missing token")
	var out bytes.Buffer
	_, err := Consume(feed(sampleStream()[:2], boom), &out)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err %v", err)
	}
	if got := ErrorToLine(err); got.Status != "UNAUTHENTICATED" || got.Code != 16 || got.Message != "missing token" {
		t.Fatalf("%+v", got)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d lines before the error", n)
	}
}

func TestStreamWithoutSummaryFails(t *testing.T) {
	_, err := Consume(feed(sampleStream()[:3], io.EOF), io.Discard)
	if !errors.Is(err, ErrNoSummary) {
		t.Fatalf("err %v", err)
	}
}

func TestUnknownEventIsSkipped(t *testing.T) {
	events := append([]*gymv1.CollectRolloutsResponse{{}}, sampleStream()...)
	var out bytes.Buffer
	if _, err := Consume(feed(events, io.EOF), &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Fatalf("%d lines", n)
	}
}

func TestReadTasks(t *testing.T) {
	tasks, err := ReadTasks(strings.NewReader("{\"a\": 1}\n\n  {\"b\": [2]}  \n{\"c\": 3}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 3 || tasks[0].GetRowJson() != `{"a": 1}` || tasks[1].GetRowJson() != `{"b": [2]}` {
		t.Fatalf("%v", tasks)
	}
	if _, err := ReadTasks(strings.NewReader("{\"a\": 1}\n[1]\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err %v", err)
	}
}

func TestCodeName(t *testing.T) {
	if CodeName(codes.OK) != "OK" || CodeName(codes.DeadlineExceeded) != "DEADLINE_EXCEEDED" || CodeName(99) != "CODE_99" {
		t.Fatal(CodeName(codes.DeadlineExceeded))
	}
}

func TestBatchedEventsComeOutOneAtATime(t *testing.T) {
	events := sampleStream()
	batched := []*gymv1.CollectRolloutsResponse{
		events[0],
		{Event: &gymv1.CollectRolloutsResponse_Batch{Batch: &gymv1.EventBatch{Events: events[1:3]}}},
		{Event: &gymv1.CollectRolloutsResponse_Batch{Batch: &gymv1.EventBatch{}}}, // empty: nothing to read
		{Event: &gymv1.CollectRolloutsResponse_Batch{Batch: &gymv1.EventBatch{Events: events[3:]}}},
	}
	var plain, unpacked bytes.Buffer
	if _, err := Consume(feed(events, io.EOF), &plain); err != nil {
		t.Fatal(err)
	}
	if _, err := Consume(Events(feed(batched, io.EOF)), &unpacked); err != nil {
		t.Fatal(err)
	}
	if plain.String() != unpacked.String() {
		t.Fatalf("batched stream wrote\n%s\nwant\n%s", unpacked.String(), plain.String())
	}
}
