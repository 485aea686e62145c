package trainer

// The trainer loop of the StreamRollouts example (cmd/stream): open a GROUP-delivery stream, append the tasks by key,
// grant credits, and after each delivered group ack it, announce the next policy version (version = step number, the
// count of groups delivered so far) and grant one more credit; half-close once every task has had its credit. Each
// server message becomes one JSON line. The TypeScript example (clients/typescript/src/stream.ts) writes the same
// lines.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	gymv1 "github.com/gym-grpc/gym-grpc/clients/go/gen/gym/v1"
)

// TasksPerMessage is how many tasks one StreamTasks message carries.
const TasksPerMessage = 256

// Stream is the trainer side of one StreamRollouts call; grpc.BidiStreamingClient satisfies it.
type Stream interface {
	Send(*gymv1.StreamRolloutsRequest) error
	Recv() (*gymv1.StreamRolloutsResponse, error)
	CloseSend() error
}

// StreamConfig is what the trainer asks for.
type StreamConfig struct {
	Agent             string
	NumRepeats        int32
	View              gymv1.RolloutView
	Credits           int // groups granted up front (the most groups running or undelivered at once), >= 1
	DropUniformGroups bool
}

// TaskKey is the key of the i-th task (0-based) of the input.
func TaskKey(i int) string { return fmt.Sprintf("t%d", i) }

// OpenedLine is written for the server's answer to open (the resume token is a secret and is not printed).
type OpenedLine struct {
	Event         string `json:"event"` // "opened"
	StreamID      string `json:"stream_id"`
	Resumed       bool   `json:"resumed"`
	PolicyVersion *int64 `json:"policy_version"`
}

// StreamRolloutLine is one rollout of a delivered group. Reward is null when it failed; the versions are null when
// its items carry none.
type StreamRolloutLine struct {
	RolloutIndex     int32        `json:"rollout_index"`
	Reward           *float64     `json:"reward"`
	MinPolicyVersion *int64       `json:"min_policy_version"`
	MaxPolicyVersion *int64       `json:"max_policy_version"`
	Failure          *FailureLine `json:"failure,omitempty"`
}

// StreamGroupLine is written for each delivered group. Step is its 1-based delivery number: the policy version the
// trainer announces right after it (while its request side is still open).
type StreamGroupLine struct {
	Event    string              `json:"event"` // "group"
	Step     int                 `json:"step"`
	GroupID  string              `json:"group_id"`
	TaskKey  string              `json:"task_key"`
	Restarts int32               `json:"restarts"`
	Rollouts []StreamRolloutLine `json:"rollouts"`
}

// DroppedLine is written for a group the server will not deliver.
type DroppedLine struct {
	Event            string    `json:"event"` // "dropped"
	GroupID          string    `json:"group_id"`
	TaskKey          string    `json:"task_key"`
	Reason           string    `json:"reason"` // a DropReason name, e.g. "DROP_REASON_UNIFORM"
	MinPolicyVersion *int64    `json:"min_policy_version"`
	MaxPolicyVersion *int64    `json:"max_policy_version"`
	CreditReturned   int32     `json:"credit_returned"`
	Rewards          []float64 `json:"rewards"`
	Message          string    `json:"message"`
}

// StreamHeartbeatLine is written when the server reports an idle-but-alive stream.
type StreamHeartbeatLine struct {
	Event            string `json:"event"` // "heartbeat"
	CreditsAvailable int32  `json:"credits_available"`
	GroupsRunning    int32  `json:"groups_running"`
	QueuedTasks      int32  `json:"queued_tasks"`
	PolicyVersion    *int64 `json:"policy_version"`
	RolloutsRunning  int32  `json:"rollouts_running"`
	Unacked          int32  `json:"unacked"`
}

// StreamSummaryLine is written for the last message. MeanReward is the "reward" metric's mean, null when none
// succeeded.
type StreamSummaryLine struct {
	Event             string   `json:"event"` // "summary"
	Succeeded         int32    `json:"succeeded"`
	Failed            int32    `json:"failed"`
	GroupsDelivered   int32    `json:"groups_delivered"`
	GroupsDropped     int32    `json:"groups_dropped"`
	GroupsRestarted   int32    `json:"groups_restarted"`
	TasksNotStarted   int32    `json:"tasks_not_started"`
	PeakGroupsRunning int32    `json:"peak_groups_running"`
	MeanReward        *float64 `json:"mean_reward"`
	DurationSeconds   float64  `json:"duration_seconds"`
}

// RejectedLine is written when the server rejected a trainer message (StreamError); the stream goes on.
type RejectedLine struct {
	Event        string `json:"event"` // "rejected"
	MessageIndex int64  `json:"message_index"`
	Code         int32  `json:"code"`
	Status       string `json:"status"`
	Message      string `json:"message"`
}

func optionalMean(metrics map[string]*gymv1.MetricStats) *float64 {
	if m, ok := metrics["reward"]; ok && m.GetCount() > 0 {
		v := m.GetMean()
		return &v
	}
	return nil
}

// StreamLine converts one server message to its output line; step is the delivery number a group gets. Unknown or
// empty messages (a newer contract) and single rollouts (ROLLOUT delivery, never asked for here) give an error.
func StreamLine(m *gymv1.StreamRolloutsResponse, step int) (any, error) {
	switch e := m.GetMessage().(type) {
	case *gymv1.StreamRolloutsResponse_Opened:
		return OpenedLine{"opened", e.Opened.GetStreamId(), e.Opened.GetResumed(), e.Opened.PolicyVersion}, nil
	case *gymv1.StreamRolloutsResponse_Group:
		g := e.Group
		rollouts := make([]StreamRolloutLine, 0, len(g.GetRollouts()))
		for _, r := range g.GetRollouts() {
			line := StreamRolloutLine{r.GetRolloutIndex(), r.Reward, r.MinPolicyVersion, r.MaxPolicyVersion, nil}
			if f := r.GetFailure(); f != nil {
				line.Failure = &FailureLine{Kind: r.GetFailureKind().String(), Code: f.GetCode(), Message: f.GetMessage()}
			}
			rollouts = append(rollouts, line)
		}
		return StreamGroupLine{"group", step, g.GetGroupId(), g.GetTaskKey(), g.GetRestarts(), rollouts}, nil
	case *gymv1.StreamRolloutsResponse_Dropped:
		d := e.Dropped
		return DroppedLine{
			"dropped", d.GetGroupId(), d.GetTaskKey(), d.GetReason().String(), d.MinPolicyVersion, d.MaxPolicyVersion,
			d.GetCreditReturned(), append([]float64{}, d.GetRewards()...), d.GetMessage(),
		}, nil
	case *gymv1.StreamRolloutsResponse_Heartbeat:
		h := e.Heartbeat
		return StreamHeartbeatLine{
			"heartbeat", h.GetCreditsAvailable(), h.GetGroupsRunning(), h.GetQueuedTasks(), h.PolicyVersion,
			h.GetRolloutsRunning(), h.GetUnacked(),
		}, nil
	case *gymv1.StreamRolloutsResponse_Summary:
		s := e.Summary
		return StreamSummaryLine{
			"summary", s.GetSucceeded(), s.GetFailed(), s.GetGroupsDelivered(), s.GetGroupsDropped(),
			s.GetGroupsRestarted(), s.GetTasksNotStarted(), s.GetPeakGroupsRunning(), optionalMean(s.GetMetrics()),
			s.GetDurationSeconds(),
		}, nil
	case *gymv1.StreamRolloutsResponse_Error:
		st := e.Error.GetStatus()
		return RejectedLine{"rejected", e.Error.GetMessageIndex(), st.GetCode(), CodeName(codes.Code(st.GetCode())), st.GetMessage()}, nil
	default:
		return nil, fmt.Errorf("unexpected or unknown message %T", e)
	}
}

// Drive runs the trainer loop over an opened call until the server ends it, writing one JSON line per server message
// to w. It returns the summary, or an error: the stream's own, a write error, ErrNoSummary when the stream closed
// early. A send that finds the stream already ended is not an error by itself: Recv then reports why it ended.
func Drive(s Stream, tasks []*gymv1.Task, c StreamConfig, w io.Writer) (*gymv1.StreamSummary, error) {
	if c.Credits < 1 {
		return nil, errors.New("credits must be at least 1")
	}
	send := func(m *gymv1.StreamRolloutsRequest) error {
		if err := s.Send(m); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	open := &gymv1.StreamOpen{
		Agent: c.Agent, NumRepeats: c.NumRepeats, View: c.View, Delivery: gymv1.DeliveryMode_DELIVERY_MODE_GROUP,
		DropUniformGroups: c.DropUniformGroups, PolicyVersion: proto.Int64(0), MaxMessagesPerBatch: PerMessage,
	}
	if err := send(&gymv1.StreamRolloutsRequest{Message: &gymv1.StreamRolloutsRequest_Open{Open: open}}); err != nil {
		return nil, err
	}
	enc := json.NewEncoder(w)
	recv := Messages(s.Recv)
	first, err := recv()
	if err != nil {
		return nil, err
	}
	if first.GetOpened() == nil {
		return nil, fmt.Errorf("the server answered open with %T", first.GetMessage())
	}
	line, _ := StreamLine(first, 0)
	if err := enc.Encode(line); err != nil {
		return nil, fmt.Errorf("writing output: %w", err)
	}
	for start := 0; start < len(tasks); start += TasksPerMessage {
		batch := &gymv1.StreamTasks{}
		for i := start; i < min(start+TasksPerMessage, len(tasks)); i++ {
			batch.Tasks = append(batch.Tasks, &gymv1.KeyedTask{TaskKey: TaskKey(i), Task: tasks[i]})
		}
		if err := send(&gymv1.StreamRolloutsRequest{Message: &gymv1.StreamRolloutsRequest_Tasks{Tasks: batch}}); err != nil {
			return nil, err
		}
	}
	// What answers a group (its ack, the new version, a credit) goes as one message when the server takes batches.
	together := first.GetOpened().GetAcceptsBatches()
	granted, step, settled, closed := 0, 0, 0, false
	credit := func(n int) *gymv1.StreamRolloutsRequest {
		n = min(n, len(tasks)-granted)
		if n <= 0 {
			return nil
		}
		granted += n
		return &gymv1.StreamRolloutsRequest{Message: &gymv1.StreamRolloutsRequest_Credit{
			Credit: &gymv1.StreamCredit{Groups: int32(n)}}}
	}
	// Half-close once every task has had its credit (the server then finishes what it admitted), or once every task
	// is settled (delivered or dropped: drops return credits, so fewer grants may have been needed).
	closeIfDone := func() error {
		if closed || (granted < len(tasks) && settled < len(tasks)) {
			return nil
		}
		closed = true
		return s.CloseSend()
	}
	if m := credit(c.Credits); m != nil {
		if err := send(m); err != nil {
			return nil, err
		}
	}
	if err := closeIfDone(); err != nil {
		return nil, err
	}
	var summary *gymv1.StreamSummary
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			if summary == nil {
				return nil, ErrNoSummary
			}
			return summary, nil
		}
		if err != nil {
			return summary, err
		}
		if m.GetGroup() != nil {
			step++
		}
		line, err := StreamLine(m, step)
		if err != nil {
			continue
		}
		if err := enc.Encode(line); err != nil {
			return summary, fmt.Errorf("writing output: %w", err)
		}
		switch {
		case m.GetGroup() != nil:
			settled++
			if !closed {
				more := 0 // no credit once every task is settled
				if settled < len(tasks) {
					more = 1
				}
				if err := sendAll(send, together, trainStep(m.GetGroup().GetGroupId(), step, credit(more))); err != nil {
					return summary, err
				}
			}
		case m.GetDropped() != nil:
			settled++
		case m.GetSummary() != nil:
			summary = m.GetSummary()
		}
		if err := closeIfDone(); err != nil {
			return summary, err
		}
	}
}

// trainStep is what the trainer sends after training on a group: ack it, announce the new version, grant a credit
// (nil: none).
func trainStep(groupID string, step int, credit *gymv1.StreamRolloutsRequest) []*gymv1.StreamRolloutsRequest {
	out := []*gymv1.StreamRolloutsRequest{
		{Message: &gymv1.StreamRolloutsRequest_Ack{Ack: &gymv1.StreamAck{Ids: []string{groupID}}}},
		{Message: &gymv1.StreamRolloutsRequest_Policy{Policy: &gymv1.StreamPolicy{Version: int64(step)}}},
	}
	if credit != nil {
		out = append(out, credit)
	}
	return out
}

// sendAll sends messages in order: as one `batch` when together (the server said `opened.accepts_batches`: it applies
// them exactly as if sent one by one, in one gRPC message), else one by one.
func sendAll(send func(*gymv1.StreamRolloutsRequest) error, together bool, messages []*gymv1.StreamRolloutsRequest) error {
	if together && len(messages) > 1 {
		return send(&gymv1.StreamRolloutsRequest{Message: &gymv1.StreamRolloutsRequest_Batch{
			Batch: &gymv1.StreamRequestBatch{Messages: messages}}})
	}
	for _, m := range messages {
		if err := send(m); err != nil {
			return err
		}
	}
	return nil
}
