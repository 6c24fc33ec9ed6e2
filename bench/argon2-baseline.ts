// Raw argon2id verifies per second on this machine, as the server would run them: @node-rs/argon2
// on the libuv threadpool (its default size unless UV_THREADPOOL_SIZE is set, as for the server),
// with as many verifies in flight as the password-grant load gives the server.
// Spawned by bench/run.ts as its own process so nothing else shares its threadpool; prints one
// JSON line on stdout. Usage: node bench/argon2-baseline.ts [--seconds 5] [--concurrency 32]
import { parseArgs } from 'node:util';

import { hash, verify } from '@node-rs/argon2';

// Cloakroom's default (src/crypto/passwords.ts DEFAULT_ARGON2): argon2id, 19 MiB, t=2, p=1.
// `Algorithm.Argon2id` is a const enum, unusable under type stripping: 2 is argon2id.
const PARAMS = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 } as const;
const PASSWORD = 'bench-password';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '32' },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
if (!(seconds > 0) || !Number.isInteger(concurrency) || concurrency < 1) {
  throw new Error(`bad arguments: --seconds ${values.seconds} --concurrency ${values.concurrency}`);
}

const phc = await hash(PASSWORD, PARAMS);
// Warm the threadpool (thread start, first allocations) before timing.
await Promise.all(Array.from({ length: concurrency }, () => verify(phc, PASSWORD)));

let verifies = 0;
let failures = 0;
const cpuAtStart = process.cpuUsage();
const start = performance.now();
const deadline = start + seconds * 1000;

async function worker(): Promise<void> {
  while (performance.now() < deadline) {
    if (await verify(phc, PASSWORD)) verifies++;
    else failures++;
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
const elapsedS = (performance.now() - start) / 1000;
const cpu = process.cpuUsage(cpuAtStart);

process.stdout.write(`${JSON.stringify({
  verifiesPerSec: Math.round((verifies / elapsedS) * 10) / 10,
  verifies,
  failures,
  seconds: Math.round(elapsedS * 100) / 100,
  concurrency,
  // CPU time of the whole process (every thread) per verify: the cost the grant's row compares to.
  cpuMsPerVerify: verifies > 0 ? Math.round(((cpu.user + cpu.system) / 1000 / verifies) * 100) / 100 : null,
  threadpoolSize: process.env.UV_THREADPOOL_SIZE ? Number(process.env.UV_THREADPOOL_SIZE) : 4,
  params: { type: 'argon2id', memoryKiB: PARAMS.memoryCost, iterations: PARAMS.timeCost, parallelism: PARAMS.parallelism },
})}\n`);
