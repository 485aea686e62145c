"""The wire contract's Python side: the domain types (types, rollouts, events, streams, training) and the codecs
(`codec/`: one module per message family), plus the typed clients of the services."""
