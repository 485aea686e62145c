/**
 * An example trainer: streams RolloutService.CollectRollouts and writes one JSON object per event on stdout (see
 * trainer.ts for the line shapes, the same as the Go client's). Exits 1 when the stream fails, 2 on bad usage.
 *
 *   node dist/collect.js -server 127.0.0.1:50051 -agent weather_simple_agent -input tasks.jsonl -num-repeats 4
 */
import { readFileSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { CollectRolloutsRequest, RolloutServiceClient } from "./gen/gym/v1/rollout";
import { consume, errorLine, events, type Options, parseFlags, PER_MESSAGE, readTasks, UsageError } from "./trainer";

export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024; // the server's default max_message_bytes: a FULL rollout carries token data

/** Plaintext, or TLS when a CA or a client certificate is given (mutual TLS with the certificate). */
export function credentials(o: Pick<Options, "tlsCa" | "tlsCert" | "tlsKey">): grpc.ChannelCredentials {
  if (!o.tlsCa && !o.tlsCert) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    o.tlsCa ? readFileSync(o.tlsCa) : null,
    o.tlsKey ? readFileSync(o.tlsKey) : null,
    o.tlsCert ? readFileSync(o.tlsCert) : null,
  );
}

export async function collect(o: Options, write: (text: string) => void): Promise<void> {
  const tasks = readTasks(readFileSync(o.input, "utf8"));
  const client = new RolloutServiceClient(o.server, credentials(o), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  const metadata = new grpc.Metadata();
  if (o.token) metadata.set("authorization", `Bearer ${o.token}`);
  const request = CollectRolloutsRequest.fromPartial({
    agent: o.agent,
    source: { $case: "tasks", value: { tasks } },
    numRepeats: o.numRepeats,
    maxInFlight: o.maxInFlight,
    maxEventsPerMessage: PER_MESSAGE,
  });
  const call = client.collectRollouts(request, metadata, o.deadlineMs > 0 ? { deadline: Date.now() + o.deadlineMs } : {});
  const interrupt = (): void => call.cancel();
  process.once("SIGINT", interrupt);
  try {
    await consume(events(call), write);
  } catch (err) {
    write(JSON.stringify(errorLine(err)) + "\n");
    throw err;
  } finally {
    process.removeListener("SIGINT", interrupt);
    client.close();
  }
}

/** Runs the command; resolves to the exit code. */
export async function run(
  argv: string[],
  stdout: (text: string) => void,
  stderr: (text: string) => void,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let options: Options;
  try {
    options = parseFlags(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    stderr(`collect: ${err.message}\nflags: -server host:port -agent NAME -input tasks.jsonl [-num-repeats N] ` +
      `[-max-in-flight N] [-deadline 10m] [-token T | $GYM_GRPC_TOKEN] [-tls-ca ca.pem] [-tls-cert c.pem -tls-key k.pem]\n`);
    return 2;
  }
  try {
    await collect(options, stdout);
    return 0;
  } catch (err) {
    stderr(`collect: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  void run(
    process.argv.slice(2),
    (text) => process.stdout.write(text),
    (text) => process.stderr.write(text),
  ).then((code) => {
    process.exitCode = code; // not process.exit(): stdout is a pipe and may still be draining
  });
}
