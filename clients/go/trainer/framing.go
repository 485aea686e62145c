package trainer

import gymv1 "github.com/gym-grpc/gym-grpc/clients/go/gen/gym/v1"

// PerMessage is what the example trainers ask the server for: CollectRollouts' max_events_per_message and
// StreamRollouts' open.max_messages_per_batch. Messages that are ready at the same moment then travel together in
// one `batch` message (gRPC's cost is per message); Events and Messages unpack them.
const PerMessage = 64

// Events wraps the Recv of a CollectRollouts stream: a `batch` message comes out as its events, one per call, in
// order; every other message as itself.
func Events(recv func() (*gymv1.CollectRolloutsResponse, error)) func() (*gymv1.CollectRolloutsResponse, error) {
	return unbatch(recv, func(m *gymv1.CollectRolloutsResponse) ([]*gymv1.CollectRolloutsResponse, bool) {
		b := m.GetBatch()
		return b.GetEvents(), b != nil
	})
}

// Messages wraps the Recv of a StreamRollouts call the same way.
func Messages(recv func() (*gymv1.StreamRolloutsResponse, error)) func() (*gymv1.StreamRolloutsResponse, error) {
	return unbatch(recv, func(m *gymv1.StreamRolloutsResponse) ([]*gymv1.StreamRolloutsResponse, bool) {
		b := m.GetBatch()
		return b.GetMessages(), b != nil
	})
}

func unbatch[M any](recv func() (M, error), inner func(M) ([]M, bool)) func() (M, error) {
	var pending []M
	return func() (M, error) {
		for len(pending) == 0 {
			m, err := recv()
			if err != nil {
				return m, err
			}
			batch, isBatch := inner(m)
			if !isBatch {
				return m, nil
			}
			pending = batch // an empty batch carries nothing: read on
		}
		m := pending[0]
		pending = pending[1:]
		return m, nil
	}
}
