import assert from "node:assert/strict";
import { test } from "node:test";

import { status as Status } from "@grpc/grpc-js";

import { CollectRolloutsResponse, FailureKind, StreamRolloutsResponse } from "./gen/gym/v1/rollout";
import {
  consume,
  errorLine,
  events,
  lineFor,
  messages,
  NoSummaryError,
  parseDuration,
  parseFlags,
  readTasks,
  UsageError,
} from "./trainer";

const ev = CollectRolloutsResponse.fromPartial;

function rollout(rolloutIndex: number, reward: number | undefined, failed: boolean): CollectRolloutsResponse {
  return ev({
    event: {
      $case: "rollout",
      value: {
        taskIndex: 0,
        rolloutIndex,
        groupId: "g0",
        rolloutId: "r",
        reward,
        failure: failed ? { code: Status.UNAVAILABLE, message: "model down" } : undefined,
        failureKind: failed ? FailureKind.FAILURE_KIND_INFRASTRUCTURE : FailureKind.FAILURE_KIND_UNSPECIFIED,
      },
    },
  });
}

/** A stream with every event kind, a succeeded and a failed rollout (the same as the Go unit test's). */
function sampleStream(): CollectRolloutsResponse[] {
  return [
    ev({ event: { $case: "started", value: { collectionId: "c", totalTasks: 1, totalRollouts: 2, numRepeats: 2 } } }),
    rollout(0, 1, false),
    ev({ event: { $case: "heartbeat", value: { completed: 1, inFlight: 1 } } }),
    rollout(1, undefined, true),
    ev({
      event: {
        $case: "groupComplete",
        value: { groupId: "g0", taskIndex: 0, succeeded: 1, failed: 1, meanReward: 1 },
      },
    }),
    ev({
      event: {
        $case: "summary",
        value: {
          succeeded: 1,
          failed: 1,
          durationSeconds: 0.5,
          metrics: { reward: { count: 1, mean: 1, std: 0, min: 1, max: 1 } },
        },
      },
    }),
  ];
}

async function* stream(events: CollectRolloutsResponse[], end?: Error): AsyncGenerator<CollectRolloutsResponse> {
  for (const e of events) yield e;
  if (end !== undefined) throw end;
}

test("one JSON line per event, the same lines as the Go client", async () => {
  let out = "";
  const summary = await consume(stream(sampleStream()), (text) => (out += text));
  assert.equal(summary.succeeded, 1);
  assert.deepEqual(out.trimEnd().split("\n"), [
    `{"event":"started","collection_id":"c","total_tasks":1,"total_rollouts":2,"num_repeats":2}`,
    `{"event":"rollout","task_index":0,"rollout_index":0,"group_id":"g0","rollout_id":"r","reward":1}`,
    `{"event":"heartbeat","completed":1,"in_flight":1}`,
    `{"event":"rollout","task_index":0,"rollout_index":1,"group_id":"g0","rollout_id":"r","reward":null,` +
      `"failure":{"kind":"FAILURE_KIND_INFRASTRUCTURE","code":14,"message":"model down"}}`,
    `{"event":"group_complete","task_index":0,"group_id":"g0","mean_reward":1,"succeeded":1,"failed":1}`,
    `{"event":"summary","succeeded":1,"failed":1,"skipped":0,"mean_reward":1,"duration_seconds":0.5}`,
  ]);
});

test("no succeeded rollout means a null mean reward", () => {
  const group = lineFor(ev({ event: { $case: "groupComplete", value: { groupId: "g", failed: 2 } } }));
  assert.equal(JSON.stringify(group), `{"event":"group_complete","task_index":0,"group_id":"g","mean_reward":null,"succeeded":0,"failed":2}`);
  const summary = lineFor(ev({ event: { $case: "summary", value: { failed: 2 } } }));
  assert.equal(summary?.event === "summary" && summary.mean_reward, null);
});

test("a stream error is raised and described", async () => {
  const boom = Object.assign(new Error("16 UNAUTHENTICATED: missing token"), {
    code: Status.UNAUTHENTICATED,
    details: "missing token",
  });
  let out = "";
  await assert.rejects(consume(stream(sampleStream().slice(0, 2), boom), (t) => (out += t)), boom);
  assert.equal(out.split("\n").length - 1, 2);
  assert.deepEqual(errorLine(boom), { event: "error", code: 16, status: "UNAUTHENTICATED", message: "missing token" });
  assert.equal(errorLine(new Error("x")).status, "UNKNOWN");
});

test("a stream that ends without a summary is an error", async () => {
  await assert.rejects(consume(stream(sampleStream().slice(0, 3)), () => {}), NoSummaryError);
});

test("an empty (unknown) event is skipped", async () => {
  let out = "";
  await consume(stream([ev({}), ...sampleStream()]), (t) => (out += t));
  assert.equal(out.split("\n").length - 1, 6);
});

test("readTasks sends each JSONL row verbatim", () => {
  const tasks = readTasks('{"a": 1}\n\n  {"b": [2]}  \n{"c": 3}');
  assert.deepEqual(
    tasks.map((t) => t.rowJson),
    ['{"a": 1}', '{"b": [2]}', '{"c": 3}'],
  );
  assert.throws(() => readTasks('{"a": 1}\n[1]\n'), /line 2/);
});

test("flags and durations as Go spells them", () => {
  const o = parseFlags(["-agent", "a", "--input=t.jsonl", "-num-repeats", "2", "-deadline", "1m30s"], { GYM_GRPC_TOKEN: "t" });
  assert.equal(o.server, "127.0.0.1:50051");
  assert.equal(o.numRepeats, 2);
  assert.equal(o.deadlineMs, 90_000);
  assert.equal(o.token, "t");
  assert.equal(parseFlags(["-agent", "a", "-input", "x", "-token", "u"], { GYM_GRPC_TOKEN: "t" }).token, "u");
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("0"), 0);
  assert.throws(() => parseDuration("10"), /invalid duration/);
  assert.throws(() => parseFlags(["-agent", "a"], {}), UsageError);
  assert.throws(() => parseFlags(["-agent", "a", "-input", "x", "-bogus", "1"], {}), UsageError);
  assert.throws(() => parseFlags(["-agent", "a", "-input", "x", "-tls-cert", "c"], {}), UsageError);
});

async function* from<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

test("a batched CollectRollouts stream writes the same lines as one event per message", async () => {
  const plain = sampleStream();
  const batch = (items: CollectRolloutsResponse[]): CollectRolloutsResponse =>
    ev({ event: { $case: "batch", value: { events: items } } });
  const wire = [plain[0], batch(plain.slice(1, 3)), batch([]), batch(plain.slice(3))];
  const one: string[] = [];
  const other: string[] = [];
  await consume(from(plain), (t) => one.push(t));
  await consume(events(from(wire)), (t) => other.push(t));
  assert.deepEqual(other, one);
});

test("a batched StreamRollouts call yields its messages one at a time, in order", async () => {
  const group = (groupId: string): StreamRolloutsResponse =>
    StreamRolloutsResponse.fromPartial({ message: { $case: "group", value: { groupId } } });
  const wire = [
    group("a"),
    StreamRolloutsResponse.fromPartial({ message: { $case: "batch", value: { messages: [group("b"), group("c")] } } }),
    group("d"),
  ];
  const ids: string[] = [];
  for await (const m of messages(from(wire))) {
    if (m.message?.$case === "group") ids.push(m.message.value.groupId);
  }
  assert.deepEqual(ids, ["a", "b", "c", "d"]);
});
