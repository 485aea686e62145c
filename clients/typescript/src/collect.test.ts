import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { run } from "./collect";
import {
  type CollectRolloutsRequest,
  CollectRolloutsResponse,
  RolloutServiceService,
  type RolloutServiceServer,
} from "./gen/gym/v1/rollout";

// A fake RolloutService: one reward-1 rollout per task and repeat, after checking the bearer token.
let received: CollectRolloutsRequest | undefined;
const fake: RolloutServiceServer = {
  collectRollouts(call) {
    received = call.request;
    if (call.metadata.get("authorization")[0] !== "Bearer s3cret") {
      call.emit("error", { code: grpc.status.UNAUTHENTICATED, details: "missing or wrong bearer token" });
      return;
    }
    const source = call.request.source;
    const n = source?.$case === "tasks" ? source.value.tasks.length : 0;
    for (let taskIndex = 0; taskIndex < n; taskIndex++) {
      for (let rolloutIndex = 0; rolloutIndex < call.request.numRepeats; rolloutIndex++) {
        call.write(
          CollectRolloutsResponse.fromPartial({
            event: { $case: "rollout", value: { taskIndex, rolloutIndex, groupId: "g", reward: 1 } },
          }),
        );
      }
    }
    call.write(
      CollectRolloutsResponse.fromPartial({
        event: { $case: "summary", value: { succeeded: n * call.request.numRepeats } },
      }),
    );
    call.end();
  },
  streamRollouts(call) {
    call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "this fake serves CollectRollouts only" });
  },
};

const server = new grpc.Server();
let address = "";
let input = "";

before(async () => {
  server.addService(RolloutServiceService, fake);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
  input = join(mkdtempSync(join(tmpdir(), "collect-")), "tasks.jsonl");
  writeFileSync(input, '{"id": 1}\n{"id": 2}\n');
});

after(() => server.forceShutdown());

test("collect streams from a server and prints every rollout", async () => {
  let out = "";
  let err = "";
  const code = await run(
    ["-server", address, "-agent", "a", "-input", input, "-num-repeats", "3", "-max-in-flight", "4", "-deadline", "30s"],
    (t) => (out += t),
    (t) => (err += t),
    { GYM_GRPC_TOKEN: "s3cret" },
  );
  assert.equal(code, 0, err);
  assert.equal(received?.agent, "a");
  assert.equal(received?.maxInFlight, 4);
  assert.equal(received?.source?.$case === "tasks" && received.source.value.tasks[1].rowJson, '{"id": 2}');
  assert.equal(out.split('"event":"rollout"').length - 1, 6);
  assert.match(out, /\{"event":"summary","succeeded":6,/);
});

test("a stream error exits 1 with an error line", async () => {
  let out = "";
  const code = await run(["-server", address, "-agent", "a", "-input", input, "-token", "wrong"], (t) => (out += t), () => {}, {});
  assert.equal(code, 1);
  assert.match(out, /"status":"UNAUTHENTICATED"/);
});

test("bad usage exits 2", async () => {
  assert.equal(await run(["-agent", "a"], () => {}, () => {}, {}), 2);
});
