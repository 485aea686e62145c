"""The codecs: one module per message family, each with its pair of functions, JSON <-> gym.v1 protos (`*_to_proto`,
`*_to_json`: lossless, the shapes NeMo Gym users know), and where the family has a domain type, `encode` / `decode`
through that same JSON form — one encoding path.

A codec calls only the families below it, so a rollout goes down through protocol/ once:

    events (CollectRollouts)  stream (StreamRollouts)     requests and events
      rollout                                             records <-> Rollout protos; the domain Rollout
        task  training                                    task rows, verifier values; the training view
          response                                        a Responses-API response, usage
            params                                        request params, tools, tool choice
              items                                       input/output items, content parts
                fields                                    the lossless JSON field reader (`extra_json`)
    framing                                               messages ready together sent as one `batch` (both RPCs)

The server encodes a finished rollout with `events.EventEncoder` -> `rollout.encode` (params once per task) ->
`response.encode` -> `items`; `gym-grpc collect` writes its record with `events.record_event_from_proto` ->
`rollout.rollout_to_json` -> `response`/`params` -> `items` (no pydantic model is imported on that path); the Python
client decodes with `events.event_from_proto` -> `rollout.decode`.
"""
