// `npm run bench`: Cloakroom against a bare oidc-provider on the same machine, in one run.
// Fresh PostgreSQL database, realms imported with the CLI, server started as users start it,
// load from autocannon; prints a table and writes bench/results/<timestamp>.json. Beside the
// rates the table shows CPU ms per request (server process + local PostgreSQL, bench/cpu.ts) and
// the hypervisor's steal during the run: on a shared VM the rates swing, the CPU cost does not.
// Env: BENCH_DATABASE_URL, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_CONNECTIONS,
// BENCH_LOGIN_CONCURRENCY (parallel browser-less logins), BENCH_ARGON2_SECONDS (raw argon2 baseline),
// BENCH_ADMIN_REALMS / BENCH_ADMIN_USERS / BENCH_ADMIN_CONNECTIONS (admin scale), BENCH_LDAP_ENTRIES (LDAP full
// sync), BENCH_ONLY (scenario name words). The LDAP scenarios need slapd (skipped with the reason without it).
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

import { digestSecret, generateAccessKey } from '../src/access-keys/access-keys.ts';
import { createSecretBox } from '../src/crypto/secret-box.ts';
import { adminScaleRequests, runAdminRequest, seedAdminScale } from './admin-scale.ts';
import {
  addBulkEntries, createBulkProvider, fullSync, LDAP_CLIENT, LDAP_REALM, LDAP_USER, ldapSkipReason, ldapUserImported, setUpLdapBench,
  type LdapBench,
} from './ldap.ts';
import { cpuUse, sampleCpu, type CpuUse } from './cpu.ts';
import { login, loginLoad, type LoginFlowOptions } from './login-flow.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// `npm run bench` builds first: the server is measured as `npm start` runs it (compiled JS).
const CLI = path.join(ROOT, 'dist/src/main.js');
const BARE = path.join(ROOT, 'bench', 'bare-provider.ts');
const ARGON2_BASELINE = path.join(ROOT, 'bench', 'argon2-baseline.ts');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

const settings = {
  adminUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  duration: positiveInt('BENCH_DURATION', 10),
  warmup: positiveInt('BENCH_WARMUP', 3),
  connections: positiveInt('BENCH_CONNECTIONS', 32),
  pipelining: 1,
  loginConcurrency: positiveInt('BENCH_LOGIN_CONCURRENCY', 16),
  argon2Seconds: positiveInt('BENCH_ARGON2_SECONDS', 5),
  adminRealms: positiveInt('BENCH_ADMIN_REALMS', 10_000),
  adminUsers: positiveInt('BENCH_ADMIN_USERS', 100_000),
  adminConnections: positiveInt('BENCH_ADMIN_CONNECTIONS', 4),
  ldapEntries: positiveInt('BENCH_LDAP_ENTRIES', 10_000),
};

const TARGETS = {
  clientCredentialsRatioPercent: 90,
  /** Access-key client credentials as a share of the bare oidc-provider client credentials. */
  accessKeyClientCredentialsRatioPercent: 90,
  introspectionReqPerSec: 2000,
  idleRss10RealmsMb: 150,
  readyMs: 1500,
  refreshRotationReqPerSec: 1000,
  /** Password grant req/s as a share of raw argon2id verifies/s measured in the same run. */
  passwordGrantToArgon2Percent: 80,
  loginFlowLoginsPerSec: 50,
  /** Admin lists, prefix searches and counts with 10,000 realms and 100,000 users. */
  adminP99Ms: 50,
};

const BENCH_ADMIN = { username: 'bench-admin', password: 'bench-admin-password' };

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
/** Every child spawned, so a failed run can show what the servers said. */
const children: Child[] = [];

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
  children.push(child);
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
  return {
    ...inherited, CLOAKROOM_DATABASE_URL: dbUrl, CLOAKROOM_MASTER_KEY: masterKey, CLOAKROOM_DATA_DIR: dataDir,
    KC_BOOTSTRAP_ADMIN_USERNAME: BENCH_ADMIN.username, KC_BOOTSTRAP_ADMIN_PASSWORD: BENCH_ADMIN.password,
  };
}

// A confidential client for the password and refresh_token grants, one for the browser login,
// and their user. The importer hashes the plain-text password with Cloakroom's default argon2id
// parameters (19 MiB, t=2, p=1), which are also the realm's, so no login rehashes it.
const USER = { username: 'bench-user', password: 'bench-password' };
const GRANT_CLIENT = { clientId: 'bench-app', secret: 'bench-app-secret' };
const WEB_CLIENT = { clientId: 'bench-web', secret: 'bench-web-secret', redirectUri: 'http://127.0.0.1/cb' };
/** An application user and its access key (issue 6); the key is stored after the import. */
const BOT = { username: 'bench-bot', key: generateAccessKey() };

function realmFiles(dir: string): string[] {
  const bench = {
    realm: 'bench',
    // Keycloak refresh-token rotation with no reuse: every refresh token is good for one refresh.
    // Only the refresh_token grant reads these; client_credentials issues no refresh token.
    revokeRefreshToken: true,
    refreshTokenMaxReuse: 0,
    clients: [
      { clientId: 'bench-cc', secret: 'bench-secret', serviceAccountsEnabled: true, standardFlowEnabled: false },
      { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
      { clientId: GRANT_CLIENT.clientId, secret: GRANT_CLIENT.secret, directAccessGrantsEnabled: true, standardFlowEnabled: false },
      { clientId: WEB_CLIENT.clientId, secret: WEB_CLIENT.secret, standardFlowEnabled: true, redirectUris: [WEB_CLIENT.redirectUri] },
    ],
    roles: { realm: [{ name: 'bench-integration' }] },
    users: [{
      username: USER.username, email: 'bench-user@example.com', emailVerified: true, firstName: 'Bench', lastName: 'User', enabled: true,
      credentials: [{ type: 'password', value: USER.password, temporary: false }],
    }, {
      username: BOT.username, enabled: true, realmRoles: ['default-roles-bench', 'bench-integration'],
    }],
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

/**
 * Realm JSON carries no access keys yet: the bench key goes straight into access_keys, its secret
 * digested under the server's master key as the Admin API would store it.
 */
async function storeBenchAccessKey(dbUrl: string, masterKey: string): Promise<void> {
  const box = createSecretBox(Buffer.from(masterKey, 'hex'));
  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  try {
    const result = await client.query(
      `INSERT INTO access_keys (id, realm_id, user_id, secret_digest, label)
       SELECT $1, r.id, u.id, $2, 'bench' FROM realms r JOIN users u ON u.realm_id = r.id WHERE r.name = 'bench' AND u.username = $3`,
      [BOT.key.id, digestSecret(box, BOT.key.secret), BOT.username],
    );
    if (result.rowCount !== 1) throw new Error(`bench access key: inserted ${result.rowCount} rows`);
  } finally {
    await client.end();
  }
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
// Step 5: scenarios. A fixed-request scenario checks its request works once, then hands it to
// autocannon; the others (refresh rotation, password grant's argon2 baseline, browser login) run
// their own load. New scenarios are one more entry in SCENARIOS.

type LoadRequest = { path: string; method: 'GET' | 'POST'; headers: Record<string, string>; body?: string };

type Targets = { cloakroom: Target; bare: Target; bareOpaque: Target };

/** What scenarios may use besides the servers. */
type Bench = { targets: Targets; env: NodeJS.ProcessEnv; dbUrl: string };

type Scenario = {
  name: string;
  run(bench: Bench): Promise<ScenarioResult | ScenarioResult[]>;
};

type ScenarioResult = {
  name: string;
  target: string;
  /** What `rate` counts per second: req (HTTP requests), logins, verifies, entries (LDAP entries synced). */
  unit: 'req' | 'logins' | 'verifies' | 'entries';
  rate: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Non-2xx responses, or failed logins / verifies. */
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  totalRequests: number;
  rssMb: number | null;
  /** CPU per request while the load ran (see bench/cpu.ts); absent where not measured. */
  cpu?: CpuUse;
  details?: Record<string, unknown>;
};

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

/** client_credentials with an access key id and secret as the client credentials. */
async function accessKeyClientCredentialsRequest(target: Target): Promise<LoadRequest> {
  const request: LoadRequest = {
    path: target.tokenPath,
    method: 'POST',
    headers: { 'content-type': FORM, authorization: basicAuth(BOT.key.id, BOT.key.secret) },
    body: 'grant_type=client_credentials',
  };
  const res = await send(target, request);
  const token = parseJson(res).access_token;
  if (res.status !== 200 || typeof token !== 'string') {
    throw new Error(`${target.name}: access-key client_credentials answered ${res.status}: ${res.body.slice(0, 300)}`);
  }
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { azp?: string; realm_access?: { roles?: string[] } };
  if (claims.azp !== BOT.key.id || !claims.realm_access?.roles?.includes('bench-integration')) {
    throw new Error(`${target.name}: access-key token lacks the key's azp or the user's roles: ${JSON.stringify(claims)}`);
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

function passwordGrantRequest(target: Target): LoadRequest {
  return {
    path: target.tokenPath,
    method: 'POST',
    headers: { 'content-type': FORM, authorization: basicAuth(GRANT_CLIENT.clientId, GRANT_CLIENT.secret) },
    body: new URLSearchParams({ grant_type: 'password', username: USER.username, password: USER.password, scope: 'openid' }).toString(),
  };
}

function refreshGrantHeaders(): Record<string, string> {
  return { 'content-type': FORM, authorization: basicAuth(GRANT_CLIENT.clientId, GRANT_CLIENT.secret) };
}

/** One password grant; returns its refresh token (each one starts a new user session). */
async function passwordGrantRefreshToken(target: Target): Promise<string> {
  const res = await send(target, passwordGrantRequest(target));
  const refreshToken = parseJson(res).refresh_token;
  if (res.status !== 200 || typeof refreshToken !== 'string') {
    throw new Error(`${target.name}: password grant answered ${res.status}: ${res.body.slice(0, 300)}`);
  }
  return refreshToken;
}

async function refresh(target: Target, refreshToken: string): Promise<HttpResponse> {
  return send(target, {
    path: target.tokenPath, method: 'POST', headers: refreshGrantHeaders(),
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
}

function statusCodeCounts(result: autocannon.Result): Record<string, number> {
  return Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, stat]) => [code, stat.count ?? 0]));
}

/** An autocannon run with the CPU it cost on this machine. */
type MeasuredLoad = { result: autocannon.Result; cpu: CpuUse };

async function measured(target: Target, run: () => Promise<autocannon.Result>): Promise<MeasuredLoad> {
  const before = sampleCpu(target.child.pid);
  const result = await run();
  return { result, cpu: cpuUse(before, sampleCpu(target.child.pid), result.requests.total) };
}

function autocannonRow(name: string, target: Target, { result, cpu }: MeasuredLoad, details?: Record<string, unknown>): ScenarioResult {
  return {
    name,
    target: target.name,
    unit: 'req',
    rate: round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: statusCodeCounts(result),
    totalRequests: result.requests.total,
    rssMb: rssMb(target.child.pid),
    cpu,
    ...(details ? { details } : {}),
  };
}

function load(target: Target, request: LoadRequest, seconds: number): Promise<MeasuredLoad> {
  return measured(target, () => autocannon({
    url: target.baseUrl + request.path,
    method: request.method,
    headers: request.headers,
    body: request.body,
    connections: settings.connections,
    pipelining: settings.pipelining,
    duration: seconds,
  }));
}

/** The same request over and over from every connection. */
function fixedRequestScenario(name: string, targetKey: keyof Targets, prepare: (target: Target) => Promise<LoadRequest>): Scenario {
  return {
    name,
    async run({ targets }) {
      const target = targets[targetKey];
      const request = await prepare(target);
      process.stderr.write(`bench: ${name}: warm-up ${settings.warmup} s, then ${settings.duration} s\n`);
      await load(target, request, settings.warmup);
      return autocannonRow(name, target, await load(target, request, settings.duration));
    },
  };
}

// --- refresh_token grant with rotation (revokeRefreshToken, refreshTokenMaxReuse 0) -----------

type RefreshChain = { token: string; refreshed: number; failed: number; firstError?: string };

/**
 * One autocannon run in which every connection refreshes its own token chain: each request
 * presents the refresh token of that connection's previous response. With pipelining 1 a
 * connection sends its next request only after onResponse has stored the successor.
 *
 * The chain lives in a per-connection closure installed by setupClient, not in autocannon's
 * `context`: autocannon resets `context` to initialContext whenever it wraps around to the first
 * entry of `requests`, which with a one-request list is before every request.
 */
function chainedRefreshLoad(target: Target, chains: RefreshChain[], seconds: number): Promise<MeasuredLoad> {
  let nextChain = 0;
  return measured(target, () => autocannon({
    url: target.baseUrl + target.tokenPath,
    connections: chains.length,
    pipelining: 1,
    duration: seconds,
    setupClient(client) {
      const chain = chains[nextChain++];
      if (!chain) throw new Error('more autocannon connections than refresh token chains');
      client.setRequests([{
        method: 'POST',
        path: target.tokenPath,
        headers: refreshGrantHeaders(),
        setupRequest(request) {
          request.body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: chain.token }).toString();
          return request;
        },
        onResponse(status, body) {
          let successor: unknown;
          try {
            successor = (JSON.parse(body) as Record<string, unknown>).refresh_token;
          } catch {
            successor = undefined;
          }
          if (status === 200 && typeof successor === 'string') {
            chain.token = successor;
            chain.refreshed++;
          } else {
            // The chain is broken from here on (the token was used); every later request of this
            // connection fails too, which the non-2xx count shows.
            chain.failed++;
            chain.firstError ??= `${status}: ${body.slice(0, 200)}`;
          }
        },
      }]);
    },
  }));
}

/** One fresh chain per connection, each from its own password grant (its own user session). */
async function freshChains(target: Target, count: number): Promise<RefreshChain[]> {
  const tokens: string[] = [];
  // A few at a time: each is an argon2 verify, and the threadpool has 4 threads by default.
  for (let i = 0; i < count; i += 8) {
    tokens.push(...await Promise.all(Array.from({ length: Math.min(8, count - i) }, () => passwordGrantRefreshToken(target))));
  }
  return tokens.map((token) => ({ token, refreshed: 0, failed: 0 }));
}

const refreshRotationScenario: Scenario = {
  name: 'cloakroom refresh_token (rotation)',
  async run({ targets }) {
    const target = targets.cloakroom;
    // Rotation must really be on: the successor works, the used token is refused.
    const first = await passwordGrantRefreshToken(target);
    const rotated = await refresh(target, first);
    const successor = parseJson(rotated).refresh_token;
    if (rotated.status !== 200 || typeof successor !== 'string' || successor === first) {
      throw new Error(`refresh answered ${rotated.status}: ${rotated.body.slice(0, 300)}`);
    }
    const reused = await refresh(target, first);
    if (reused.status !== 400 || parseJson(reused).error !== 'invalid_grant') {
      throw new Error(`reusing a rotated refresh token answered ${reused.status} (expected 400 invalid_grant): ${reused.body.slice(0, 300)}`);
    }

    // A run ends with requests in flight whose successors are lost, so every run starts new chains.
    process.stderr.write(`bench: ${this.name}: warm-up ${settings.warmup} s, then ${settings.duration} s (${settings.connections} token chains)\n`);
    const warmupChains = await freshChains(target, settings.connections);
    const warmup = await chainedRefreshLoad(target, warmupChains, settings.warmup);
    const chains = await freshChains(target, settings.connections);
    const result = await chainedRefreshLoad(target, chains, settings.duration);
    const broken = chains.filter((c) => c.failed > 0);
    return autocannonRow(this.name, target, result, {
      chains: chains.length,
      refreshesPerChain: { min: Math.min(...chains.map((c) => c.refreshed)), max: Math.max(...chains.map((c) => c.refreshed)) },
      brokenChains: broken.length,
      firstErrors: broken.slice(0, 3).map((c) => c.firstError),
      warmup: { reqPerSec: round(warmup.result.requests.average), non2xx: warmup.result.non2xx, errors: warmup.result.errors },
    });
  },
};

// --- password grant against raw argon2id ------------------------------------------------------

type Argon2Baseline = {
  verifiesPerSec: number; verifies: number; failures: number; seconds: number; concurrency: number; threadpoolSize: number;
  cpuMsPerVerify: number | null;
};

/** Raw argon2id verifies/s in a process of its own, with the server's environment (threadpool size). */
async function argon2Baseline(env: NodeJS.ProcessEnv): Promise<Argon2Baseline> {
  process.stderr.write(`bench: raw argon2id verify: ${settings.argon2Seconds} s, ${settings.connections} verifies in flight\n`);
  const child = spawnChild('argon2 baseline', [ARGON2_BASELINE, '--seconds', String(settings.argon2Seconds), '--concurrency', String(settings.connections)], env);
  await child.exited;
  const line = child.output.find((l) => l.startsWith('{'));
  if (child.exitCode !== 0 || !line) throw new Error(`argon2 baseline failed (code ${child.exitCode}):\n${child.output.join('\n')}`);
  return JSON.parse(line) as Argon2Baseline;
}

const ARGON2_ROW = 'raw argon2id verify (own process)';

/**
 * The password grant under the same load as the baseline (one argon2id verify per request, as
 * many in flight as connections). The baseline runs right before and right after the grant's load
 * and the row shows their mean: other work on the machine drifts, bracketing halves its effect.
 */
const passwordGrantScenario: Scenario = {
  name: 'cloakroom password grant',
  async run({ targets, dbUrl, env }) {
    const target = targets.cloakroom;
    await passwordGrantRefreshToken(target);
    // Same cost as the baseline only if the stored hash has the baseline's parameters.
    const credential = await storedPasswordParameters(dbUrl, USER.username);
    if (credential !== 'argon2 t=2 type=id memory=19456 parallelism=1') {
      throw new Error(`${USER.username}'s password hash is not argon2id m=19456 t=2 p=1: ${credential}`);
    }
    const request = passwordGrantRequest(target);
    process.stderr.write(`bench: ${this.name}: warm-up ${settings.warmup} s, then ${settings.duration} s\n`);
    await load(target, request, settings.warmup);
    const before = await argon2Baseline(env);
    const result = await load(target, request, settings.duration);
    const after = await argon2Baseline(env);
    const argon2Row: ScenarioResult = {
      name: ARGON2_ROW, target: 'bench/argon2-baseline.ts', unit: 'verifies', rate: round((before.verifiesPerSec + after.verifiesPerSec) / 2, 1),
      p50Ms: null, p99Ms: null, non2xx: before.failures + after.failures, errors: 0, timeouts: 0, statusCodes: {},
      totalRequests: before.verifies + after.verifies, rssMb: null, details: { before, after },
      cpu: {
        serverMsPerRequest: before.cpuMsPerVerify !== null && after.cpuMsPerVerify !== null ? round((before.cpuMsPerVerify + after.cpuMsPerVerify) / 2, 2) : null,
        databaseMsPerRequest: null, stealPercent: null, idlePercent: null,
      },
    };
    return [argon2Row, autocannonRow(this.name, target, result, { passwordHash: credential })];
  },
};

async function storedPasswordParameters(dbUrl: string, username: string): Promise<string> {
  const client = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ credential_data: unknown }>(
      `SELECT c.credential_data FROM credentials c JOIN users u ON u.id = c.user_id
        JOIN realms r ON r.id = u.realm_id WHERE r.name = 'bench' AND u.username = $1 AND c.type = 'password'`, [username]);
    if (rows.length !== 1) return `${rows.length} password credentials`;
    const raw = rows[0]!.credential_data;
    const data = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { algorithm?: string; hashIterations?: number; additionalParameters?: Record<string, string[]> };
    const param = (key: string) => data.additionalParameters?.[key]?.[0];
    return `${data.algorithm} t=${data.hashIterations} type=${param('type')} memory=${param('memory')} parallelism=${param('parallelism')}`;
  } finally {
    await client.end();
  }
}

// --- browser-less authorization-code login ----------------------------------------------------

const loginFlowScenario: Scenario = {
  name: 'cloakroom login flow (auth code + PKCE)',
  async run({ targets }) {
    const target = targets.cloakroom;
    const options: LoginFlowOptions = {
      baseUrl: target.baseUrl, realm: 'bench', clientId: WEB_CLIENT.clientId, clientSecret: WEB_CLIENT.secret,
      redirectUri: WEB_CLIENT.redirectUri, username: USER.username, password: USER.password,
    };
    await login(options);
    const concurrency = settings.loginConcurrency;
    process.stderr.write(`bench: ${this.name}: warm-up ${settings.warmup} s, then ${settings.duration} s, ${concurrency} logins in parallel\n`);
    const warmup = await loginLoad(options, concurrency, settings.warmup);
    const before = sampleCpu(target.child.pid);
    // The bench's own CPU (it plays the browsers) shares the machine with the server.
    const clientBefore = process.cpuUsage();
    const result = await loginLoad(options, concurrency, settings.duration);
    const clientCpu = process.cpuUsage(clientBefore);
    const cpu = cpuUse(before, sampleCpu(target.child.pid), result.logins);
    return {
      name: this.name, target: target.name, unit: 'logins', rate: result.loginsPerSec, p50Ms: result.p50Ms, p99Ms: result.p99Ms,
      non2xx: result.failures, errors: 0, timeouts: 0, statusCodes: {}, totalRequests: result.logins + result.failures,
      rssMb: rssMb(target.child.pid),
      cpu,
      details: {
        ...result,
        requestsPerLogin: 6,
        benchClientCpuMsPerLogin: result.logins > 0 ? round((clientCpu.user + clientCpu.system) / 1000 / result.logins, 2) : null,
        warmup: { loginsPerSec: warmup.loginsPerSec, failures: warmup.failures, failureSamples: warmup.failureSamples },
      },
    };
  },
};

// --- Admin API at scale (runs last: it adds 10,000 realms and 100,000 users) ------------------

async function masterAdminToken(target: Target): Promise<string> {
  const res = await send(target, {
    path: '/realms/master/protocol/openid-connect/token', method: 'POST', headers: { 'content-type': FORM },
    body: new URLSearchParams({ grant_type: 'password', client_id: 'admin-cli', ...BENCH_ADMIN }).toString(),
  });
  const token = parseJson(res).access_token;
  if (res.status !== 200 || typeof token !== 'string') throw new Error(`admin token: ${res.status} ${res.body.slice(0, 300)}`);
  return token;
}

const adminScaleScenario: Scenario = {
  name: 'admin scale',
  async run({ targets, dbUrl }) {
    const target = targets.cloakroom;
    const seeded = await seedAdminScale(dbUrl, 'bench', 'bench', { realms: settings.adminRealms, users: settings.adminUsers });
    process.stderr.write(`bench: admin scale: seeded ${settings.adminRealms} realms and ${settings.adminUsers} users in ${seeded.seconds} s\n`);
    const rows: ScenarioResult[] = [];
    for (const request of adminScaleRequests('bench', settings.adminUsers)) {
      // Master access tokens live 60 s: a fresh one per scenario.
      const token = await masterAdminToken(target);
      const probe = await httpRequest(target.baseUrl + request.path(), { headers: { authorization: `Bearer ${token}` } });
      if (probe.status !== 200) throw new Error(`${request.name}: ${probe.status} ${probe.body.slice(0, 300)}`);
      process.stderr.write(`bench: ${request.name}: warm-up ${settings.warmup} s, then ${settings.duration} s, ${settings.adminConnections} connections\n`);
      const row = await runAdminRequest(target.baseUrl, token, request, {
        realms: settings.adminRealms, users: settings.adminUsers, connections: settings.adminConnections, duration: settings.duration, warmup: settings.warmup,
      });
      rows.push({
        name: row.name, target: target.name, unit: 'req', rate: row.rate, p50Ms: row.p50Ms, p99Ms: row.p99Ms, non2xx: row.non2xx,
        errors: row.errors, timeouts: 0, statusCodes: {}, totalRequests: row.totalRequests, rssMb: rssMb(target.child.pid),
        details: { realms: settings.adminRealms, users: settings.adminUsers, connections: settings.adminConnections, responseBytes: probe.body.length },
      });
    }
    return rows;
  },
};

// --- LDAP federation (issue 7): login through an LDAP provider, full sync of generated entries --

let ldapBench: Promise<LdapBench> | undefined;

/** The slapd, realm and login provider both LDAP scenarios use, set up once. */
function ldapSetUp(target: Target): Promise<LdapBench> {
  ldapBench ??= (async () => {
    const bench = await setUpLdapBench(target.baseUrl, await masterAdminToken(target));
    onCleanup('destroy slapd', () => bench.slapd.destroy());
    return bench;
  })();
  return ldapBench;
}

function ldapSkipped(name: string): boolean {
  const reason = ldapSkipReason();
  if (reason) process.stdout.write(`skipped "${name}": ${reason}\n`);
  return reason !== undefined;
}

/** Password grant of a user imported from LDAP: every login binds to the directory (no local hash). */
const ldapLoginScenario: Scenario = {
  name: 'ldap login (password grant, federated user)',
  async run({ targets }) {
    if (ldapSkipped(this.name)) return [];
    const target = targets.cloakroom;
    await ldapSetUp(target);
    const request: LoadRequest = {
      path: `/realms/${LDAP_REALM}/protocol/openid-connect/token`,
      method: 'POST',
      headers: { 'content-type': FORM, authorization: basicAuth(LDAP_CLIENT.clientId, LDAP_CLIENT.secret) },
      body: new URLSearchParams({ grant_type: 'password', username: LDAP_USER.username, password: LDAP_USER.password }).toString(),
    };
    // The first login imports the user; the measured ones are logins of an imported user.
    const first = await send(target, request);
    if (first.status !== 200 || typeof parseJson(first).access_token !== 'string') {
      throw new Error(`LDAP password grant answered ${first.status}: ${first.body.slice(0, 300)}`);
    }
    if (!await ldapUserImported(target.baseUrl, await masterAdminToken(target))) throw new Error('the LDAP user was not imported by its first login');
    process.stderr.write(`bench: ${this.name}: warm-up ${settings.warmup} s, then ${settings.duration} s\n`);
    await load(target, request, settings.warmup);
    return autocannonRow(this.name, target, await load(target, request, settings.duration), { directory: 'slapd (OpenLDAP), simple bind per login' });
  },
};

/** A full sync of generated entries through the Admin API: entries/s, wall time, server RSS. */
const ldapFullSyncScenario: Scenario = {
  name: `ldap full sync (${settings.ldapEntries.toLocaleString('en-US')} entries)`,
  async run({ targets }) {
    if (ldapSkipped(this.name)) return [];
    const target = targets.cloakroom;
    const bench = await ldapSetUp(target);
    const loadSeconds = await addBulkEntries(bench.slapd, settings.ldapEntries);
    process.stderr.write(`bench: ${this.name}: ${settings.ldapEntries} entries loaded into slapd in ${round(loadSeconds, 1)} s\n`);
    const token = await masterAdminToken(target);
    const providerId = await createBulkProvider(target.baseUrl, token, bench);

    const rssBefore = rssMb(target.child.pid);
    let peakRss = rssBefore ?? 0;
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMb(target.child.pid) ?? 0); }, 250);
    let first;
    let second;
    try {
      process.stderr.write(`bench: ${this.name}: first full sync (imports every entry)\n`);
      first = await fullSync(target.baseUrl, token, providerId);
      const rssAfterFirst = rssMb(target.child.pid);
      // Steady state: nothing new, every entry refreshed (what a periodic full sync costs).
      process.stderr.write(`bench: ${this.name}: second full sync (every entry already imported)\n`);
      second = { ...await fullSync(target.baseUrl, await masterAdminToken(target), providerId), rssAfterMb: rssAfterFirst };
    } finally {
      clearInterval(sampler);
    }
    const { result, seconds } = first;
    if (result.added !== settings.ldapEntries || result.failed !== 0) throw new Error(`full sync: ${JSON.stringify(result)}`);
    const rssAfter = rssMb(target.child.pid);
    return {
      name: this.name, target: target.name, unit: 'entries', rate: round(result.added / seconds), p50Ms: null, p99Ms: null,
      non2xx: result.failed, errors: 0, timeouts: 0, statusCodes: {}, totalRequests: result.added, rssMb: rssAfter,
      details: {
        entries: settings.ldapEntries, wallSeconds: round(seconds, 1), result, rssBeforeMb: rssBefore, rssAfterFirstSyncMb: second.rssAfterMb,
        rssAfterMb: rssAfter, peakRssMb: round(peakRss, 1), slapdLoadSeconds: round(loadSeconds, 1),
        secondSync: { wallSeconds: round(second.seconds, 1), entriesPerSec: round(second.result.updated / second.seconds), result: second.result },
      },
    };
  },
};

const SCENARIOS: Scenario[] = [
  fixedRequestScenario('cloakroom client_credentials', 'cloakroom', clientCredentialsRequest),
  fixedRequestScenario('access-key client_credentials', 'cloakroom', accessKeyClientCredentialsRequest),
  fixedRequestScenario('bare client_credentials', 'bare', clientCredentialsRequest),
  fixedRequestScenario('cloakroom introspection', 'cloakroom', introspectionRequest),
  fixedRequestScenario('bare introspection (opaque token)', 'bareOpaque', introspectionRequest),
  refreshRotationScenario,
  passwordGrantScenario,
  loginFlowScenario,
  ldapLoginScenario,
  ldapFullSyncScenario,
  adminScaleScenario,
];

// ---------------------------------------------------------------------------------------------
// Step 7: verdicts, table, results file.

/** pass null: a figure reported for information, without a target. */
type Verdict = { name: string; line: string; value: number | null; target: string; pass: boolean | null };

function verdicts(rows: ScenarioResult[], idleRss: number | null, ready: { firstMs: number; secondMs: number }): Verdict[] {
  const row = (name: string) => rows.find((r) => r.name === name);
  const cc = row('cloakroom client_credentials');
  const bareCc = row('bare client_credentials');
  const ratio = cc && bareCc && bareCc.rate > 0 ? round((cc.rate / bareCc.rate) * 100) : null;
  const accessKeyCc = row('access-key client_credentials');
  const accessKeyRatio = accessKeyCc && bareCc && bareCc.rate > 0 ? round((accessKeyCc.rate / bareCc.rate) * 100) : null;
  const introspection = row('cloakroom introspection')?.rate ?? null;
  const mark = (pass: boolean) => (pass ? 'PASS' : 'FAIL');
  const list: Verdict[] = [];

  const ratioPass = ratio !== null && ratio >= TARGETS.clientCredentialsRatioPercent;
  list.push({ name: 'clientCredentialsRatioPercent', value: ratio, target: `>= ${TARGETS.clientCredentialsRatioPercent} %`, pass: ratioPass,
    line: `client_credentials ratio to bare: ${ratio ?? '?'} % (target ≥ ${TARGETS.clientCredentialsRatioPercent} %) ${mark(ratioPass)}` });

  const accessKeyPass = accessKeyRatio !== null && accessKeyRatio >= TARGETS.accessKeyClientCredentialsRatioPercent && accessKeyCc!.non2xx + accessKeyCc!.errors === 0;
  list.push({ name: 'accessKeyClientCredentialsRatioPercent', value: accessKeyRatio, target: `>= ${TARGETS.accessKeyClientCredentialsRatioPercent} %, 0 failed`, pass: accessKeyPass,
    line: `access-key client_credentials ratio to bare: ${accessKeyRatio ?? '?'} % (${accessKeyCc?.rate ?? '?'} vs ${bareCc?.rate ?? '?'} req/s, ${accessKeyCc ? accessKeyCc.non2xx + accessKeyCc.errors : '?'} failed; target ≥ ${TARGETS.accessKeyClientCredentialsRatioPercent} %) ${mark(accessKeyPass)}` });

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

  // Rotation only counts when every refresh in the chains worked.
  const refresh = row(refreshRotationScenario.name);
  const refreshRate = refresh?.rate ?? null;
  const refreshFailed = refresh ? refresh.non2xx + refresh.errors : null;
  const refreshPass = refreshRate !== null && refreshRate >= TARGETS.refreshRotationReqPerSec && refreshFailed === 0;
  list.push({ name: 'refreshRotationReqPerSec', value: refreshRate, target: `>= ${TARGETS.refreshRotationReqPerSec}, 0 non-2xx/errors`, pass: refreshPass,
    line: `refresh_token with rotation: ${refreshRate ?? '?'} req/s, ${refreshFailed ?? '?'} non-2xx/errors (target ≥ ${TARGETS.refreshRotationReqPerSec}, 0 failed) ${mark(refreshPass)}` });

  const password = row(passwordGrantScenario.name);
  const argon2 = row(ARGON2_ROW);
  const passwordRatio = password && argon2 && argon2.rate > 0 ? round((password.rate / argon2.rate) * 100) : null;
  const passwordPass = passwordRatio !== null && passwordRatio >= TARGETS.passwordGrantToArgon2Percent && password!.non2xx + password!.errors === 0;
  list.push({ name: 'passwordGrantToArgon2Percent', value: passwordRatio, target: `>= ${TARGETS.passwordGrantToArgon2Percent} %`, pass: passwordPass,
    line: `password grant: ${password?.rate ?? '?'} req/s vs raw argon2id ${argon2?.rate ?? '?'} verifies/s (${argon2Range(argon2)}) = ${passwordRatio ?? '?'} % (target ≥ ${TARGETS.passwordGrantToArgon2Percent} %, 0 failed) ${mark(passwordPass)}` });

  const logins = row(loginFlowScenario.name);
  const loginPass = logins !== undefined && logins.rate >= TARGETS.loginFlowLoginsPerSec && logins.non2xx === 0;
  list.push({ name: 'loginFlowLoginsPerSec', value: logins?.rate ?? null, target: `>= ${TARGETS.loginFlowLoginsPerSec}, 0 failed`, pass: loginPass,
    line: `login flow: ${logins?.rate ?? '?'} logins/s, p50 ${logins?.p50Ms ?? '?'} ms, p99 ${logins?.p99Ms ?? '?'} ms, ${logins?.non2xx ?? '?'} failed, bench client ${logins?.details?.benchClientCpuMsPerLogin ?? '?'} ms CPU per login (target ≥ ${TARGETS.loginFlowLoginsPerSec}, 0 failed) ${mark(loginPass)}` });

  // LDAP (issue 7): reported, no target.
  const ldapLogin = row(ldapLoginScenario.name);
  if (ldapLogin) {
    list.push({ name: 'ldapLoginReqPerSec', value: ldapLogin.rate, target: 'none (information)', pass: null,
      line: `ldap login (password grant through an LDAP-federated user): ${ldapLogin.rate} req/s, p99 ${ldapLogin.p99Ms} ms, ${ldapLogin.non2xx + ldapLogin.errors} failed (information, no target)` });
  }
  const ldapSync = row(ldapFullSyncScenario.name);
  if (ldapSync) {
    const d = ldapSync.details as { entries: number; wallSeconds: number; rssBeforeMb: number | null; rssAfterMb: number | null; peakRssMb: number; secondSync: { wallSeconds: number; entriesPerSec: number } };
    list.push({ name: 'ldapFullSyncEntriesPerSec', value: ldapSync.rate, target: 'none (information)', pass: null,
      line: `ldap full sync of ${d.entries} entries: ${ldapSync.rate} entries/s, ${d.wallSeconds} s wall; again with all imported: ${d.secondSync.entriesPerSec} entries/s, ${d.secondSync.wallSeconds} s; server RSS ${d.rssBeforeMb} MB before, ${d.rssAfterMb} MB after, peak ${d.peakRssMb} MB (information, no target)` });
  }

  for (const admin of rows.filter((r) => r.name.startsWith('admin: '))) {
    const pass = admin.p99Ms !== null && admin.p99Ms < TARGETS.adminP99Ms && admin.non2xx + admin.errors === 0;
    list.push({ name: admin.name, value: admin.p99Ms, target: `p99 < ${TARGETS.adminP99Ms} ms, 0 failed`, pass,
      line: `${admin.name}: p99 ${admin.p99Ms} ms, ${admin.rate} req/s, ${admin.non2xx + admin.errors} failed (target p99 < ${TARGETS.adminP99Ms} ms) ${mark(pass)}` });
  }
  return list;
}

/** "before X, after Y" for the bracketing argon2 baseline runs. */
function argon2Range(row: ScenarioResult | undefined): string {
  const details = row?.details as { before?: Argon2Baseline; after?: Argon2Baseline } | undefined;
  return `mean of ${details?.before?.verifiesPerSec ?? '?'} before and ${details?.after?.verifiesPerSec ?? '?'} after the grant's run`;
}

function table(rows: ScenarioResult[]): string {
  const header = ['scenario', 'per s', 'unit', 'p50 ms', 'p99 ms', 'non-2xx/failed', 'errors', 'server RSS MB', 'CPU ms/req server+db', 'steal %'];
  const cpuCell = (cpu: CpuUse | undefined) => cpu?.serverMsPerRequest == null ? '-'
    : cpu.databaseMsPerRequest === null ? String(cpu.serverMsPerRequest) : `${cpu.serverMsPerRequest}+${cpu.databaseMsPerRequest}`;
  const body = rows.map((r) => [
    r.name, String(r.rate), r.unit, String(r.p50Ms ?? '-'), String(r.p99Ms ?? '-'), String(r.non2xx), String(r.errors), String(r.rssMb ?? '-'),
    cpuCell(r.cpu), String(r.cpu?.stealPercent ?? '-'),
  ]);
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
  await storeBenchAccessKey(db.url, env.CLOAKROOM_MASTER_KEY!);
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
  // BENCH_ONLY=admin,refresh runs only the scenarios whose name contains one of the words.
  const only = (process.env.BENCH_ONLY ?? '').split(',').map((w) => w.trim()).filter(Boolean);
  const chosen = only.length > 0 ? SCENARIOS.filter((s) => only.some((w) => s.name.includes(w))) : SCENARIOS;
  for (const scenario of chosen) rows.push(...[await scenario.run({ targets, env, dbUrl: db.url })].flat());

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
  if (!interrupted) {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    for (const child of children.filter((c) => c.name === 'cloakroom' && c.output.length > 0)) {
      process.stderr.write(`\ncloakroom (pid ${child.pid}) output, last 20 lines:\n${child.output.slice(-20).join('\n')}\n`);
    }
  }
  process.exitCode = 1;
} finally {
  await cleanupAll();
}
