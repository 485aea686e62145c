package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gymv1 "github.com/gym-grpc/gym-grpc/clients/go/gen/gym/v1"
)

// fakeStream is a small in-memory StreamRollouts server: it answers open, queues keyed tasks, starts one group per
// credit (in order, one at a time), stamps its rollouts with the version in force when it starts, drops the keys in
// `uniform` (returning the credit), and after the half-close sends the summary and EOF. Recv with nothing to do and
// the request side open is the trainer waiting forever: an error.
type fakeStream struct {
	sent      []string // "open", "tasks:t0,t1", "credit:1", "policy:1", "ack:g-t0", "batch[ack:g-t0 policy:1]", "close"
	batches   bool     // answer open with accepts_batches
	pending   []*gymv1.StreamRolloutsResponse
	queue     []string
	credits   int
	version   int64
	closed    bool
	uniform   map[string]bool
	delivered int32
	dropped   int32
	ended     bool
}

func (f *fakeStream) Send(m *gymv1.StreamRolloutsRequest) error {
	if f.closed {
		return errors.New("send after CloseSend")
	}
	if b := m.GetBatch(); b != nil {
		outer := f.sent
		f.sent = nil
		for _, inner := range b.GetMessages() {
			if err := f.Send(inner); err != nil {
				return err
			}
		}
		f.sent = append(outer, "batch["+strings.Join(f.sent, " ")+"]")
		return nil
	}
	switch e := m.GetMessage().(type) {
	case *gymv1.StreamRolloutsRequest_Open:
		f.sent = append(f.sent, "open")
		if e.Open.GetDelivery() != gymv1.DeliveryMode_DELIVERY_MODE_GROUP {
			return errors.New("not GROUP delivery")
		}
		f.version = e.Open.GetPolicyVersion()
		f.pending = append(f.pending, &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Opened{
			Opened: &gymv1.StreamOpened{StreamId: "s", PolicyVersion: e.Open.PolicyVersion, AcceptsBatches: f.batches}}})
	case *gymv1.StreamRolloutsRequest_Tasks:
		var keys []string
		for _, t := range e.Tasks.GetTasks() {
			keys = append(keys, t.GetTaskKey())
		}
		f.queue = append(f.queue, keys...)
		f.sent = append(f.sent, "tasks:"+strings.Join(keys, ","))
	case *gymv1.StreamRolloutsRequest_Credit:
		f.credits += int(e.Credit.GetGroups())
		f.sent = append(f.sent, fmt.Sprintf("credit:%d", e.Credit.GetGroups()))
	case *gymv1.StreamRolloutsRequest_Policy:
		f.version = e.Policy.GetVersion()
		f.sent = append(f.sent, fmt.Sprintf("policy:%d", f.version))
	case *gymv1.StreamRolloutsRequest_Ack:
		f.sent = append(f.sent, "ack:"+strings.Join(e.Ack.GetIds(), ","))
	}
	return nil
}

func (f *fakeStream) CloseSend() error {
	f.closed = true
	f.sent = append(f.sent, "close")
	return nil
}

func (f *fakeStream) Recv() (*gymv1.StreamRolloutsResponse, error) {
	if len(f.pending) > 0 {
		m := f.pending[0]
		f.pending = f.pending[1:]
		return m, nil
	}
	if f.credits > 0 && len(f.queue) > 0 {
		key := f.queue[0]
		f.queue = f.queue[1:]
		v := proto.Int64(f.version)
		if f.uniform[key] {
			f.dropped++
			return &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Dropped{Dropped: &gymv1.GroupDropped{
				GroupId: "g-" + key, TaskKey: key, Reason: gymv1.DropReason_DROP_REASON_UNIFORM, MinPolicyVersion: v,
				MaxPolicyVersion: v, CreditReturned: 1, Rewards: []float64{1, 1}}}}, nil
		}
		f.credits--
		f.delivered++
		rollouts := []*gymv1.Rollout{
			{RolloutIndex: 0, Reward: proto.Float64(1), MinPolicyVersion: v, MaxPolicyVersion: v},
			{RolloutIndex: 1, FailureKind: gymv1.FailureKind_FAILURE_KIND_TASK, MinPolicyVersion: v, MaxPolicyVersion: v,
				Failure: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "bad row"}},
		}
		return &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Group{Group: &gymv1.RolloutGroup{
			GroupId: "g-" + key, TaskKey: key, Rollouts: rollouts}}}, nil
	}
	if !f.closed {
		return nil, errors.New("fake: the trainer waits with the request side open and nothing to do")
	}
	if f.ended {
		return nil, io.EOF
	}
	f.ended = true
	return &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Summary{Summary: &gymv1.StreamSummary{
		Succeeded: f.delivered, Failed: f.delivered, GroupsDelivered: f.delivered, GroupsDropped: f.dropped,
		TasksNotStarted: int32(len(f.queue)),
		Metrics:         map[string]*gymv1.MetricStats{"reward": {Count: f.delivered, Mean: 1}}}}}, nil
}

func tasksOf(n int) []*gymv1.Task {
	tasks := make([]*gymv1.Task, n)
	for i := range tasks {
		tasks[i] = &gymv1.Task{RowJson: fmt.Sprintf(`{"i": %d}`, i)}
	}
	return tasks
}

func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, text := range strings.Split(strings.TrimSpace(out), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(text), &line); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		lines = append(lines, line)
	}
	return lines
}

func TestDriveWithOneCreditAnnouncesEachStepBeforeTheNextGroupStarts(t *testing.T) {
	f := &fakeStream{}
	var out bytes.Buffer
	summary, err := Drive(f, tasksOf(3), StreamConfig{Agent: "a", NumRepeats: 2, Credits: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := "open tasks:t0,t1,t2 credit:1 ack:g-t0 policy:1 credit:1 ack:g-t1 policy:2 credit:1 close"
	if got := strings.Join(f.sent, " "); got != want {
		t.Fatalf("sent %s\nwant %s", got, want)
	}
	if summary.GetGroupsDelivered() != 3 {
		t.Fatalf("summary %v", summary)
	}
	lines := decodeLines(t, out.String())
	if len(lines) != 5 || lines[0]["event"] != "opened" || lines[4]["event"] != "summary" {
		t.Fatalf("lines %v", lines)
	}
	for step := 1; step <= 3; step++ {
		g := lines[step]
		r := g["rollouts"].([]any)
		ok, failed := r[0].(map[string]any), r[1].(map[string]any)
		// Task t(step-1) started after version step-1 was announced and was delivered before version step was.
		v := float64(step - 1)
		if g["step"] != float64(step) || g["task_key"] != fmt.Sprintf("t%d", step-1) || ok["min_policy_version"] != v ||
			ok["max_policy_version"] != v || ok["reward"] != 1.0 || failed["reward"] != nil {
			t.Fatalf("group line %d: %v", step, g)
		}
		if f := failed["failure"].(map[string]any); f["kind"] != "FAILURE_KIND_TASK" || f["code"] != 3.0 {
			t.Fatalf("failure %v", f)
		}
	}
	if !strings.Contains(out.String(), `{"event":"summary","succeeded":3,"failed":3,"groups_delivered":3,`) {
		t.Fatal(out.String())
	}
}

func TestDriveSendsWhatAnswersAGroupAsOneBatchWhenTheServerTakesBatches(t *testing.T) {
	f := &fakeStream{batches: true}
	var out bytes.Buffer
	summary, err := Drive(f, tasksOf(3), StreamConfig{Agent: "a", NumRepeats: 2, Credits: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	// The same messages in the same order as one by one (the test above), each group's answer in one message.
	want := "open tasks:t0,t1,t2 credit:1 batch[ack:g-t0 policy:1 credit:1] batch[ack:g-t1 policy:2 credit:1] close"
	if got := strings.Join(f.sent, " "); got != want {
		t.Fatalf("sent %s\nwant %s", got, want)
	}
	if summary.GetGroupsDelivered() != 3 {
		t.Fatalf("summary %v", summary)
	}
}

func TestDriveHalfClosesWhenDropsSettledEveryTask(t *testing.T) {
	// Both credits come back from drops: the trainer never grants a credit per task, yet every task settles.
	f := &fakeStream{uniform: map[string]bool{"t0": true, "t1": true}}
	var out bytes.Buffer
	summary, err := Drive(f, tasksOf(3), StreamConfig{Agent: "a", Credits: 1, DropUniformGroups: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.sent, " "); got != "open tasks:t0,t1,t2 credit:1 ack:g-t2 policy:1 close" {
		t.Fatalf("sent %s", got)
	}
	if summary.GetGroupsDropped() != 2 || summary.GetGroupsDelivered() != 1 {
		t.Fatalf("summary %v", summary)
	}
	want := `{"event":"dropped","group_id":"g-t0","task_key":"t0","reason":"DROP_REASON_UNIFORM","min_policy_version":0,` +
		`"max_policy_version":0,"credit_returned":1,"rewards":[1,1],"message":""}`
	if !strings.Contains(out.String(), want) {
		t.Fatal(out.String())
	}
}

func TestDriveSendsTasksInBatchesAndClosesAfterTheLastGrant(t *testing.T) {
	f := &fakeStream{}
	n := TasksPerMessage + 1
	var out bytes.Buffer
	if _, err := Drive(f, tasksOf(n), StreamConfig{Agent: "a", Credits: n + 5}, &out); err != nil {
		t.Fatal(err)
	}
	// Every credit up front (capped at the task count), so the half-close comes right after it.
	if f.sent[3] != fmt.Sprintf("credit:%d", n) || f.sent[4] != "close" || !strings.HasPrefix(f.sent[2], "tasks:t256") {
		t.Fatalf("sent %v", f.sent[:5])
	}
	if got := strings.Count(out.String(), `"event":"group"`); got != n {
		t.Fatalf("%d groups", got)
	}
}

// callEnds is a stream whose server sends `after` once the opened answer is read, then ends with `err`.
type callEnds struct {
	fakeStream
	after []*gymv1.StreamRolloutsResponse
	err   error
}

func (c *callEnds) Recv() (*gymv1.StreamRolloutsResponse, error) {
	if len(c.pending) > 0 {
		return c.fakeStream.Recv()
	}
	if len(c.after) > 0 {
		m := c.after[0]
		c.after = c.after[1:]
		return m, nil
	}
	return nil, c.err
}

func TestDriveReturnsTheStreamErrorAndPrintsRejections(t *testing.T) {
	rejected := &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Error{Error: &gymv1.StreamError{
		MessageIndex: 2, Status: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "duplicate key"}}}}
	c := &callEnds{after: []*gymv1.StreamRolloutsResponse{rejected}, err: status.Error(codes.Unavailable, "gone")}
	var out bytes.Buffer
	_, err := Drive(c, tasksOf(1), StreamConfig{Agent: "a", Credits: 1}, &out)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v", err)
	}
	want := `{"event":"rejected","message_index":2,"code":3,"status":"INVALID_ARGUMENT","message":"duplicate key"}`
	if !strings.Contains(out.String(), want) {
		t.Fatal(out.String())
	}
	if _, err := Drive(&fakeStream{}, nil, StreamConfig{Agent: "a"}, &out); err == nil {
		t.Fatal("credits 0 accepted")
	}
}

func TestBatchedStreamMessagesComeOutOneAtATime(t *testing.T) {
	group := func(id string) *gymv1.StreamRolloutsResponse {
		return &gymv1.StreamRolloutsResponse{Message: &gymv1.StreamRolloutsResponse_Group{Group: &gymv1.RolloutGroup{GroupId: id}}}
	}
	wire := []*gymv1.StreamRolloutsResponse{
		group("a"),
		{Message: &gymv1.StreamRolloutsResponse_Batch{Batch: &gymv1.StreamBatch{
			Messages: []*gymv1.StreamRolloutsResponse{group("b"), group("c")}}}},
		group("d"),
	}
	recv := Messages(func() (*gymv1.StreamRolloutsResponse, error) {
		if len(wire) == 0 {
			return nil, io.EOF
		}
		m := wire[0]
		wire = wire[1:]
		return m, nil
	})
	var got []string
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetGroup().GetGroupId())
	}
	if strings.Join(got, ",") != "a,b,c,d" {
		t.Fatalf("got %v", got)
	}
}
