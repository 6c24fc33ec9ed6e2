// `npm run bench`: Cloakroom against a bare oidc-provider on the same machine, in one run.
// Fresh PostgreSQL database, realms imported with the CLI, server started as users start it,
// load from autocannon; prints a table and writes bench/results/<timestamp>.json.
// Env: BENCH_DATABASE_URL, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_CONNECTIONS.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import autocannon from 'autocannon';
import pg from 'pg';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// `npm run bench` builds first: the server is measured as `npm start` runs it (compiled JS).
const CLI = path.join(ROOT, 'dist/src/main.js');
const BARE = path.join(ROOT, 'bench', 'bare-provider.ts');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

const settings = {
  adminUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  duration: positiveInt('BENCH_DURATION', 10),
  warmup: positiveInt('BENCH_WARMUP', 3),
  connections: positiveInt('BENCH_CONNECTIONS', 32),
  pipelining: 1,
};

const TARGETS = {
  clientCredentialsRatioPercent: 90,
  introspectionReqPerSec: 2000,
  idleRss10RealmsMb: 150,
  readyMs: 1500,
};

const EXTRA_REALMS = Array.from({ length: 9 }, (_, i) => `bench-${i + 1}`);

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every resource registers its undo step; they run in reverse order, also on failure.

const cleanups: Array<{ name: string; run: () => Promise<void> }> = [];
let interrupted = false;

function onCleanup(name: string, run: () => Promise<void>): void {
  cleanups.push({ name, run });
}

async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const step = cleanups.pop()!;
    try {
      await step.run();
    } catch (error) {
      process.stderr.write(`bench: cleanup "${step.name}" failed: ${(error as Error).message}\n`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Small HTTP and process helpers.

type HttpResponse = { status: number; body: string };

/** One request on a fresh connection; node:http rather than fetch so polling stays cheap. */
function httpRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.end(options.body);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** VmRSS of a process in MB, or null where /proc is not available. */
function rssMb(pid: number): number | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb ? round(Number(kb) / 1024, 1) : null;
  } catch {
    return null;
  }
}

function round(value: number, digits = 0): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

type Child = {
  name: string;
  pid: number;
  spawnedAt: number;
  /** Last lines of stdout + stderr, for diagnosis and the results file. */
  output: string[];
  /** undefined while running; null when killed by a signal. */
  exitCode: number | null | undefined;
  exited: Promise<void>;
  stop(): Promise<void>;
};

const MAX_OUTPUT_LINES = 500;

function spawnChild(name: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const spawnedAt = performance.now();
  const proc: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const collect = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() !== '' && output.length < MAX_OUTPUT_LINES) output.push(line);
    }
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => proc.once('exit', (code) => {
    child.exitCode = code;
    resolve();
  }));
  const child: Child = {
    name,
    pid: proc.pid!,
    spawnedAt,
    output,
    exitCode: undefined,
    exited,
    async stop() {
      if (child.exitCode !== undefined) return;
      proc.kill('SIGTERM');
      const killTimer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killTimer);
    },
  };
  onCleanup(`stop ${name}`, () => child.stop());
  return child;
}

/** Polls url every 10 ms until it answers 200; returns ms since the child was spawned. */
async function waitFor200(child: Child, url: string, timeoutMs = 60_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== undefined) {
      throw new Error(`${child.name} exited (code ${child.exitCode}) before ${url} answered 200:\n${child.output.slice(-20).join('\n')}`);
    }
    const status = await httpRequest(url).then((res) => res.status, () => 0);
    if (status === 200) return round(performance.now() - child.spawnedAt);
    await sleep(10);
  }
  throw new Error(`${child.name}: ${url} did not answer 200 within ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------------
// Step 1: a fresh database.

function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withAdminClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: settings.adminUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`PostgreSQL is not reachable at ${redact(settings.adminUrl)} (set BENCH_DATABASE_URL): ${(error as Error).message}`);
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function createDatabase(): Promise<{ name: string; url: string }> {
  const name = `cloakroom_bench_${randomBytes(4).toString('hex')}`;
  await withAdminClient((client) => client.query(`CREATE DATABASE "${name}"`));
  onCleanup(`drop database ${name}`, async () => {
    await withAdminClient((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  });
  return { name, url: databaseUrl(settings.adminUrl, name) };
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

// ---------------------------------------------------------------------------------------------
// Step 2: realms, imported with the CLI as users do.

function cloakroomEnv(dbUrl: string, masterKey: string, dataDir: string): NodeJS.ProcessEnv {
  // Inherited Cloakroom/Keycloak settings would make the run depend on the caller's shell.
  const inherited = Object.fromEntries(Object.entries(process.env)
    .filter(([key]) => !/^(CLOAKROOM_|KC_|KEYCLOAK_)/.test(key) && key !== 'DATABASE_URL'));
  return { ...inherited, CLOAKROOM_DATABASE_URL: dbUrl, CLOAKROOM_MASTER_KEY: masterKey, CLOAKROOM_DATA_DIR: dataDir };
}

function realmFiles(dir: string): string[] {
  const bench = {
    realm: 'bench',
    clients: [
      { clientId: 'bench-cc', secret: 'bench-secret', serviceAccountsEnabled: true, standardFlowEnabled: false },
      { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
    ],
  };
  const extra = EXTRA_REALMS.map((realm) => ({
    realm,
    clients: [{ clientId: 'app', secret: 'app-secret', serviceAccountsEnabled: true, standardFlowEnabled: false }],
  }));
  const files = [path.join(dir, 'bench-realm.json'), path.join(dir, 'extra-realms.json')];
  fs.writeFileSync(files[0]!, JSON.stringify(bench));
  fs.writeFileSync(files[1]!, JSON.stringify(extra));
  return files;
}

async function importRealms(env: NodeJS.ProcessEnv, files: string[]): Promise<number> {
  const child = spawnChild('cloakroom import', [CLI, 'import', '--file', ...files], env);
  await child.exited;
  if (child.exitCode !== 0) throw new Error(`cloakroom import failed (code ${child.exitCode}):\n${child.output.join('\n')}`);
  return child.output.filter((line) => line.includes('"imported"')).length;
}

// ---------------------------------------------------------------------------------------------
// Steps 3 and 4: server start, ready time, idle memory.

type Target = {
  name: string;
  child: Child;
  baseUrl: string;
  tokenPath: string;
  introspectionPath: string;
};

async function startCloakroom(env: NodeJS.ProcessEnv): Promise<{ target: Target; readyMs: number }> {
  const port = await freePort();
  const child = spawnChild('cloakroom', [CLI, 'start'], { ...env, KC_HTTP_PORT: String(port), KC_HTTP_HOST: '127.0.0.1', CLOAKROOM_LOG_LEVEL: 'warn' });
  const baseUrl = `http://127.0.0.1:${port}`;
  const readyMs = await waitFor200(child, `${baseUrl}/health/ready`);
  const protocol = '/realms/bench/protocol/openid-connect';
  return {
    target: { name: 'cloakroom', child, baseUrl, tokenPath: `${protocol}/token`, introspectionPath: `${protocol}/token/introspect` },
    readyMs,
  };
}

/** Builds every realm's provider (discovery + JWKS), lets the server settle, reads its RSS. */
async function idleRssWithRealms(target: Target, realms: string[]): Promise<number | null> {
  for (const realm of realms) {
    for (const suffix of ['.well-known/openid-configuration', 'protocol/openid-connect/certs']) {
      const res = await httpRequest(`${target.baseUrl}/realms/${realm}/${suffix}`);
      if (res.status !== 200) throw new Error(`GET /realms/${realm}/${suffix} answered ${res.status}: ${res.body.slice(0, 200)}`);
    }
  }
  await sleep(2_000);
  return rssMb(target.child.pid);
}

// ---------------------------------------------------------------------------------------------
// Step 6: the bare oidc-provider baselines.

async function startBare(name: string, format: 'jwt' | 'opaque'): Promise<Target> {
  const port = await freePort();
  const child = spawnChild(name, [BARE, '--port', String(port), '--format', format], process.env);
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitFor200(child, `${baseUrl}/.well-known/openid-configuration`);
  return { name, child, baseUrl, tokenPath: '/token', introspectionPath: '/token/introspection' };
}

// ---------------------------------------------------------------------------------------------
// Step 5: scenarios. A scenario checks its request works once, then hands it to autocannon.
// New scenarios (refresh, password, auth code, access keys) are one more entry in SCENARIOS.

type LoadRequest = { path: string; method: 'GET' | 'POST'; headers: Record<string, string>; body?: string };

type Scenario = {
  name: string;
  target: keyof Targets;
  /** Verifies the request answers as expected and returns it for the load run. */
  prepare(target: Target): Promise<LoadRequest>;
};

type Targets = { cloakroom: Target; bare: Target; bareOpaque: Target };

const FORM = 'application/x-www-form-urlencoded';

async function send(target: Target, request: LoadRequest): Promise<HttpResponse> {
  return httpRequest(target.baseUrl + request.path, request);
}

function parseJson(res: HttpResponse): Record<string, unknown> {
  try {
    return JSON.parse(res.body) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function clientCredentialsRequest(target: Target): Promise<LoadRequest> {
  const request: LoadRequest = {
    path: target.tokenPath,
    method: 'POST',
    headers: { 'content-type': FORM, authorization: basicAuth('bench-cc', 'bench-secret') },
    body: 'grant_type=client_credentials',
  };
  const res = await send(target, request);
  if (res.status !== 200 || typeof parseJson(res).access_token !== 'string') {
    throw new Error(`${target.name}: client_credentials answered ${res.status}: ${res.body.slice(0, 300)}`);
  }
  return request;
}

async function introspectionRequest(target: Target): Promise<LoadRequest> {
  const tokenRes = await send(target, await clientCredentialsRequest(target));
  const token = parseJson(tokenRes).access_token as string;
  const request: LoadRequest = {
    path: target.introspectionPath,
    method: 'POST',
    headers: { 'content-type': FORM, authorization: basicAuth('gateway', 'gateway-secret') },
    body: new URLSearchParams({ token }).toString(),
  };
  const res = await send(target, request);
  if (res.status !== 200 || parseJson(res).active !== true) {
    throw new Error(`${target.name}: introspection answered ${res.status}: ${res.body.slice(0, 300)}`);
  }
  return request;
}

const SCENARIOS: Scenario[] = [
  { name: 'cloakroom client_credentials', target: 'cloakroom', prepare: clientCredentialsRequest },
  { name: 'bare client_credentials', target: 'bare', prepare: clientCredentialsRequest },
  { name: 'cloakroom introspection', target: 'cloakroom', prepare: introspectionRequest },
  { name: 'bare introspection (opaque token)', target: 'bareOpaque', prepare: introspectionRequest },
];

type ScenarioResult = {
  name: string;
  target: string;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  totalRequests: number;
  rssMb: number | null;
};

function load(target: Target, request: LoadRequest, seconds: number): Promise<autocannon.Result> {
  return autocannon({
    url: target.baseUrl + request.path,
    method: request.method,
    headers: request.headers,
    body: request.body,
    connections: settings.connections,
    pipelining: settings.pipelining,
    duration: seconds,
  });
}

async function runScenario(scenario: Scenario, targets: Targets): Promise<ScenarioResult> {
  const target = targets[scenario.target];
  const request = await scenario.prepare(target);
  process.stderr.write(`bench: ${scenario.name}: warm-up ${settings.warmup} s, then ${settings.duration} s\n`);
  await load(target, request, settings.warmup);
  const result = await load(target, request, settings.duration);
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, stat]) => [code, stat.count ?? 0]));
  return {
    name: scenario.name,
    target: target.name,
    reqPerSec: round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    totalRequests: result.requests.total,
    rssMb: rssMb(target.child.pid),
  };
}

// ---------------------------------------------------------------------------------------------
// Step 7: verdicts, table, results file.

type Verdict = { name: string; line: string; value: number | null; target: string; pass: boolean };

function verdicts(rows: ScenarioResult[], idleRss: number | null, ready: { firstMs: number; secondMs: number }): Verdict[] {
  const row = (name: string) => rows.find((r) => r.name === name);
  const cc = row('cloakroom client_credentials');
  const bareCc = row('bare client_credentials');
  const ratio = cc && bareCc && bareCc.reqPerSec > 0 ? round((cc.reqPerSec / bareCc.reqPerSec) * 100) : null;
  const introspection = row('cloakroom introspection')?.reqPerSec ?? null;
  const mark = (pass: boolean) => (pass ? 'PASS' : 'FAIL');
  const list: Verdict[] = [];

  const ratioPass = ratio !== null && ratio >= TARGETS.clientCredentialsRatioPercent;
  list.push({ name: 'clientCredentialsRatioPercent', value: ratio, target: `>= ${TARGETS.clientCredentialsRatioPercent} %`, pass: ratioPass,
    line: `client_credentials ratio to bare: ${ratio ?? '?'} % (target ≥ ${TARGETS.clientCredentialsRatioPercent} %) ${mark(ratioPass)}` });

  const introPass = introspection !== null && introspection >= TARGETS.introspectionReqPerSec;
  list.push({ name: 'introspectionReqPerSec', value: introspection, target: `>= ${TARGETS.introspectionReqPerSec}`, pass: introPass,
    line: `introspection: ${introspection ?? '?'} req/s (target ≥ ${TARGETS.introspectionReqPerSec}) ${mark(introPass)}` });

  const rssPass = idleRss !== null && idleRss < TARGETS.idleRss10RealmsMb;
  list.push({ name: 'idleRss10RealmsMb', value: idleRss, target: `< ${TARGETS.idleRss10RealmsMb} MB`, pass: rssPass,
    line: `idle RSS with 10 realms: ${idleRss ?? '?'} MB (target < ${TARGETS.idleRss10RealmsMb}) ${mark(rssPass)}` });

  // The first start also creates the master realm (bootstrap), so the second start is the
  // plain "existing database" case the target is about; both are printed.
  const readyPass = ready.secondMs < TARGETS.readyMs;
  list.push({ name: 'readyMsExistingDatabase', value: ready.secondMs, target: `< ${TARGETS.readyMs} ms`, pass: readyPass,
    line: `ready on existing database: ${ready.secondMs} ms (second start; first start, which also created the master realm: ${ready.firstMs} ms) (target < ${TARGETS.readyMs}) ${mark(readyPass)}` });
  return list;
}

function table(rows: ScenarioResult[]): string {
  const header = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'server RSS MB'];
  const body = rows.map((r) => [r.name, String(r.reqPerSec), String(r.p50Ms), String(r.p99Ms), String(r.non2xx), String(r.errors), String(r.rssMb ?? '?')]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [format(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(format)].join('\n');
}

function writeResults(result: Record<string, unknown>): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${new Date().toISOString().replace(/:/g, '-')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return path.relative(ROOT, file);
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    totalMemMb: Math.round(os.totalmem() / 1024 / 1024),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    // Other work on the machine skews every figure; this makes a noisy run recognisable.
    loadAverage1mAtStart: round(os.loadavg()[0]!, 2),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const date = new Date().toISOString();
  const machineInfo = machine();
  const db = await createDatabase();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-bench-'));
  onCleanup('remove temp dir', async () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const env = cloakroomEnv(db.url, randomBytes(32).toString('hex'), dataDir);
  process.stderr.write(`bench: database ${db.name}, data dir ${dataDir}\n`);

  const imported = await importRealms(env, realmFiles(dataDir));
  process.stderr.write(`bench: imported ${imported} realms with the CLI\n`);

  const first = await startCloakroom(env);
  await first.target.child.stop();
  if (first.target.child.exitCode !== 0) process.stdout.write(`note: cloakroom exited with code ${first.target.child.exitCode} on SIGTERM\n`);
  const { target: cloakroom, readyMs } = await startCloakroom(env);
  const ready = { firstMs: first.readyMs, secondMs: readyMs };
  process.stderr.write(`bench: cloakroom ready in ${ready.firstMs} ms (first start), ${ready.secondMs} ms (second start)\n`);

  const rssAfterReady = rssMb(cloakroom.child.pid);
  const idleRss = await idleRssWithRealms(cloakroom, ['bench', ...EXTRA_REALMS]);
  process.stderr.write(`bench: RSS ${rssAfterReady} MB when ready, ${idleRss} MB idle with 10 realms built\n`);

  const targets: Targets = {
    cloakroom,
    bare: await startBare('bare oidc-provider (jwt)', 'jwt'),
    bareOpaque: await startBare('bare oidc-provider (opaque)', 'opaque'),
  };

  const rows: ScenarioResult[] = [];
  for (const scenario of SCENARIOS) rows.push(await runScenario(scenario, targets));

  const list = verdicts(rows, idleRss, ready);
  process.stdout.write(`\n${table(rows)}\n\n${list.map((v) => v.line).join('\n')}\n`);
  process.stdout.write(`\nmachine: ${machineInfo.cpus} CPUs, node ${machineInfo.node}, load average at start ${machineInfo.loadAverage1mAtStart}\n`);

  const serverOutput = first.target.child.output.concat(cloakroom.child.output);
  if (serverOutput.length > 0) {
    process.stdout.write(`\ncloakroom server output (${serverOutput.length} lines, log level warn):\n${serverOutput.slice(0, 20).join('\n')}\n`);
  }
  if (cloakroom.child.exitCode !== undefined) process.stdout.write(`\ncloakroom exited during the run (code ${cloakroom.child.exitCode})\n`);

  const file = writeResults({
    date,
    machine: machineInfo,
    settings: { ...settings, adminUrl: redact(settings.adminUrl), database: db.name },
    readyMs: ready,
    rssAfterReadyMb: rssAfterReady,
    idleRss10RealmsMb: idleRss,
    scenarios: rows,
    targets: list.map(({ line: _line, ...v }) => v),
    serverOutput,
  });
  process.stdout.write(`\nresults: ${file}\n`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`bench: ${signal}, cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  // After a signal the failure is only the cleanup pulling the servers away: not worth printing.
  if (!interrupted) process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
