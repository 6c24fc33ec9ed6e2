// The `cloakroom` command as an operator runs it: real child processes (`node bin/cloakroom.js`),
// each test with its own data directory. Embedded PGlite by default; the database-agnostic tests
// use a fresh PostgreSQL database instead when DATABASE_URL is set.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, describe, expect, it } from 'vitest';

import { parseStoredPassword, verifyPassword } from '../../src/crypto/passwords.ts';
import { openStore, type Store } from '../../src/store/db.ts';
import { richRealm } from '../fixtures/rich-realm.ts';
import { basicAuth, createTestDatabase, postForm, postgresAdminUrl } from '../support/server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/cloakroom.js');
const TOKEN = '/protocol/openid-connect/token';
const CERTS = '/protocol/openid-connect/certs';
const usePostgres = postgresAdminUrl() !== undefined;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cloakroom-cli-${label}-`));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Environment for the child: only what a test gives it (no DATABASE_URL leaking in from ours). */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: os.tmpdir(),
    KC_HTTP_HOST: '127.0.0.1', KC_HTTP_PORT: '0',
    ...env,
  };
}

type Result = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** Runs `cloakroom <args>` to completion. */
function run(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cloakroom ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

type Running = {
  child: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  logLines(): Array<Record<string, unknown>>;
  exited: Promise<Result>;
  /** Sends the signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Result>;
  /** stop(), asserting a clean exit (code 0). */
  stopped(signal?: NodeJS.Signals): Promise<void>;
};

/** `cloakroom start ...` until its "Cloakroom ready" log line; the URL comes from that line. */
function start(env: Record<string, string>, args: string[] = [], timeoutMs = 60_000): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'start', ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<Result>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  const parseLines = (): Array<Record<string, unknown>> => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return {};
    }
  });
  const running: Omit<Running, 'url'> = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    logLines: parseLines,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    async stopped(signal = 'SIGTERM') {
      const result = await running.stop(signal);
      expect(result.code, `exit (signal ${result.signal})\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`).toBe(0);
    },
  };
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cloakroom start not ready in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    let seen = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (seen) return;
      const ready = parseLines().find((l) => l.msg === 'Cloakroom ready');
      if (ready) {
        seen = true;
        // Ready = answering HTTP. (The log line alone comes a moment before the signal
        // handlers exist; the test 'SIGTERM while starting' covers that window.)
        const url = String(ready.url);
        void waitForHealth(url).then(() => {
          clearTimeout(timer);
          resolve({ ...running, url });
        }, reject);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    void exited.then((result) => {
      clearTimeout(timer);
      reject(new Error(`cloakroom start exited with ${result.code} before it was ready\n${result.stdout}\n${result.stderr}`));
    });
  });
}

async function waitForHealth(url: string): Promise<void> {
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/health/ready`).then(async (r) => { await r.arrayBuffer(); return r.status === 200; }, () => false);
    if (ok) return;
    if (i > 100) throw new Error(`${url}/health/ready never answered 200`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

type Backend = {
  kind: 'pglite' | 'postgres';
  dataDir: string;
  env: Record<string, string>;
  /** A store on the same database, for checks; only while no embedded server holds it. */
  open(): Promise<Store>;
};

/** A fresh embedded data directory. */
function embedded(label: string): Backend {
  const dataDir = tempDir(label);
  return {
    kind: 'pglite', dataDir, env: { CLOAKROOM_DATA_DIR: dataDir },
    open: () => openStore({ databaseUrl: undefined, pgliteDir: path.join(dataDir, 'pglite') }),
  };
}

let template: Promise<string> | undefined;
/**
 * An embedded data directory whose database is already created and migrated: a copy of one
 * made once per file (PGlite's initdb costs seconds; the fresh path has its own tests).
 */
async function migratedEmbedded(label: string): Promise<Backend> {
  template ??= (async () => {
    const dir = tempDir('template');
    const result = await run(['migrate'], { CLOAKROOM_DATA_DIR: dir });
    if (result.code !== 0) throw new Error(`template migrate failed: ${result.stderr}`);
    return dir;
  })();
  const source = await template;
  const backend = embedded(label);
  fs.cpSync(path.join(source, 'pglite'), path.join(backend.dataDir, 'pglite'), { recursive: true });
  return backend;
}

/** PostgreSQL when DATABASE_URL is set (a fresh database), embedded otherwise. */
async function anyBackend(label: string, { fresh = false } = {}): Promise<Backend> {
  if (!usePostgres) return fresh ? embedded(label) : migratedEmbedded(label);
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  const dataDir = tempDir(label);
  return {
    kind: 'postgres', dataDir, env: { CLOAKROOM_DATA_DIR: dataDir, CLOAKROOM_DATABASE_URL: database.url! },
    open: () => openStore({ databaseUrl: database.url, pgliteDir: 'memory://' }),
  };
}

/** A port that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function writeJson(file: string, value: unknown): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

/** JSON lines a one-shot command printed on stdout. */
const jsonLines = (stdout: string): Array<Record<string, unknown>> =>
  stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);

const expectNoStack = (text: string): void => {
  expect(text).not.toMatch(/^\s+at /m);
  expect(text).not.toContain('"stack"');
};

const pidFile = (backend: Backend): string => path.join(backend.dataDir, 'cloakroom.pid');

async function clientCredentials(url: string, realm: string, clientId: string, secret: string): Promise<string> {
  const res = await postForm(`${url}/realms/${realm}${TOKEN}`, { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) });
  const body = await res.json() as { access_token?: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.access_token!;
}

const serviceRealm = (realm: string, secret?: string): Record<string, unknown> => ({
  realm,
  clients: [{ clientId: 'svc', ...(secret ? { secret } : {}), serviceAccountsEnabled: true, standardFlowEnabled: false }],
});

describe.concurrent('invalid configuration', () => {
  it('stops with exit 1 and one readable line per problem, no stack trace', async ({ expect }) => {
    const dataDir = tempDir('badconfig');
    const result = await run(['start'], {
      CLOAKROOM_DATA_DIR: dataDir, KC_HTTP_PORT: 'notaport', KC_PROXY_HEADERS: 'maybe', CLOAKROOM_MASTER_KEY: 'short',
    });
    expect(result.code).toBe(1);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines, result.stderr).toHaveLength(3);
    for (const line of lines) expect(line).toMatch(/^cloakroom: invalid configuration: /);
    expect(result.stderr).toContain('KC_HTTP_PORT');
    expect(result.stderr).toContain('KC_PROXY_HEADERS');
    expect(result.stderr).toContain('CLOAKROOM_MASTER_KEY');
    expectNoStack(result.stderr);
    expect(result.stdout).toBe('');
    // Nothing was started: no database, no pid file.
    expect(fs.existsSync(path.join(dataDir, 'pglite'))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'cloakroom.pid'))).toBe(false);
  });

  it('refuses KC_DB other than postgres', async ({ expect }) => {
    const result = await run(['migrate'], { CLOAKROOM_DATA_DIR: tempDir('kcdb'), KC_DB: 'mysql' });
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: invalid configuration: KC_DB=.*mysql.*postgres/)]);
    expectNoStack(result.stderr);
  });

  it('refuses a bootstrap admin username without a password', async ({ expect }) => {
    const result = await run(['start'], { CLOAKROOM_DATA_DIR: tempDir('admin'), KC_BOOTSTRAP_ADMIN_USERNAME: 'admin' });
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: invalid configuration: KC_BOOTSTRAP_ADMIN_USERNAME.*KC_BOOTSTRAP_ADMIN_PASSWORD/)]);
    expectNoStack(result.stderr);
  });

  it('does not echo secret values in configuration errors', async ({ expect }) => {
    // A real key of the wrong length (truncated when copied) and a URL carrying a password.
    const almostKey = Buffer.from('0123456789abcdef0123456789abcde').toString('base64');
    const result = await run(['migrate'], {
      CLOAKROOM_DATA_DIR: tempDir('secretconfig'), CLOAKROOM_MASTER_KEY: almostKey, KC_DB_URL: 'jdbc:mysql://app:hunter2-db-pass@db.internal/keycloak',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CLOAKROOM_MASTER_KEY');
    expect(result.stderr).toContain('KC_DB_URL');
    expect(result.stderr).not.toContain(almostKey);
    expect(result.stderr).not.toContain('hunter2-db-pass');
  });

  it('answers an unknown command with exit 1 and usage help', async ({ expect }) => {
    const result = await run(['frobnicate'], { CLOAKROOM_DATA_DIR: tempDir('unknowncmd') });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unknown command/i);
    expectNoStack(result.stderr);
  });
});

describe.concurrent('migrate and import', () => {
  it('migrates a fresh data directory and exits 0, twice', async ({ expect }) => {
    const backend = await anyBackend('migrate', { fresh: true });
    const first = await run(['migrate'], backend.env);
    expect(first.code, first.stderr).toBe(0);
    expect(jsonLines(first.stdout)).toEqual([{ migrated: true, database: backend.kind }]);
    if (backend.kind === 'pglite') {
      expect(fs.existsSync(path.join(backend.dataDir, 'pglite'))).toBe(true);
      expect(fs.existsSync(pidFile(backend))).toBe(false);
    }
    const again = await run(['migrate'], backend.env);
    expect(again.code, again.stderr).toBe(0);
  }, 120_000);

  it('imports a realm file, prints generated secrets only, then refuses a second import', async ({ expect }) => {
    const backend = await anyBackend('import');
    const file = writeJson(path.join(backend.dataDir, 'realm.json'), {
      realm: 'imported',
      clients: [
        { clientId: 'generated', serviceAccountsEnabled: true, standardFlowEnabled: false },
        { clientId: 'given', secret: 'given-secret-value', serviceAccountsEnabled: true, standardFlowEnabled: false },
        { clientId: 'spa', publicClient: true, redirectUris: ['http://localhost:3000/*'] },
      ],
    });
    const first = await run(['import', '--file', file], backend.env);
    expect(first.code, first.stderr).toBe(0);
    const [line] = jsonLines(first.stdout);
    expect(line).toMatchObject({ imported: 'imported', file });
    const secrets = line!.generatedClientSecrets as Record<string, string>;
    expect(Object.keys(secrets)).toEqual(['generated']);
    expect(secrets.generated).toMatch(/^[\w-]{20,}$/);
    expect(first.stdout).not.toContain('given-secret-value');

    // The printed secret is the one stored (sealed).
    const store = await backend.open();
    try {
      const row = await store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
        .select('clients.secret_sealed').where('realms.name', '=', 'imported').where('clients.client_id', '=', 'generated')
        .executeTakeFirstOrThrow();
      expect(row.secret_sealed).toMatch(/^v1\./);
      expect(row.secret_sealed).not.toContain(secrets.generated);
    } finally {
      await store.close();
    }

    const again = await run(['import', '--file', file], backend.env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^cloakroom: .*Conflict detected/);
    expect(again.stderr.trimEnd().split('\n')).toHaveLength(1);
    expectNoStack(again.stderr);

    const skipped = await run(['import', '--file', file, '--override', 'skip'], backend.env);
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(jsonLines(skipped.stdout)).toEqual([{ skipped: 'imported', reason: 'realm exists' }]);
  }, 120_000);

  it('refuses a malformed JSON file, a missing file and an invalid realm with a readable message', async ({ expect }) => {
    const backend = await anyBackend('badimport');
    const broken = path.join(backend.dataDir, 'broken.json');
    fs.writeFileSync(broken, '{"realm": "x", "clients": [');
    let result = await run(['import', '--file', broken], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: .*broken\.json is not valid JSON/)]);

    result = await run(['import', '--file', path.join(backend.dataDir, 'missing.json')], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^cloakroom: cannot read .*missing\.json: ENOENT/);
    expectNoStack(result.stderr);

    const invalid = writeJson(path.join(backend.dataDir, 'invalid.json'), { realm: 42, clients: 'nope' });
    result = await run(['import', '--file', invalid], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^cloakroom: .*invalid\.json: /);
    expectNoStack(result.stderr);

    result = await run(['import', '--file', broken, '--override', 'sometimes'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--override');
  }, 120_000);

  it('imports a file holding an array of realms in one run', async ({ expect }) => {
    const backend = await anyBackend('multiimport');
    const file = writeJson(path.join(backend.dataDir, 'realms.json'), [serviceRealm('one', 'one-secret'), serviceRealm('two', 'two-secret')]);
    const result = await run(['import', '--file', file], backend.env);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout).map((l) => l.imported)).toEqual(['one', 'two']);
  }, 120_000);
});

describe.concurrent('export and import --dir', () => {
  it('exports a realm to stdout, --file and --dir; import --dir of the export into another database gives it back', async ({ expect }) => {
    const source = await anyBackend('export');
    const file = writeJson(path.join(source.dataDir, 'rich.json'), richRealm());
    expect((await run(['import', '--file', file], source.env)).code).toBe(0);

    const toStdout = await run(['export', '--realm', 'rich', '--users'], source.env);
    expect(toStdout.code, toStdout.stderr).toBe(0);
    const exported = JSON.parse(toStdout.stdout) as Record<string, any>;
    expect(exported).toMatchObject({ realm: 'rich', identityProviders: expect.any(Array), components: expect.any(Object) });
    expect(exported.users.map((u: { username: string }) => u.username)).toContain('frank');
    expect(toStdout.stdout).toContain('portal-secret-value');

    const target = path.join(source.dataDir, 'out', 'rich.json');
    const toFile = await run(['export', '--realm', 'rich', '--users', 'realm_file', '--file', target], source.env);
    expect(toFile.code, toFile.stderr).toBe(0);
    expect(jsonLines(toFile.stdout)).toEqual([{ exported: 'rich', file: target, users: 7 }]);
    expect(JSON.parse(fs.readFileSync(target, 'utf8'))).toEqual(exported);
    if (process.platform !== 'win32') expect(fs.statSync(target).mode & 0o077).toBe(0);

    // --dir without --users: Keycloak's file name, everything but the users.
    const dir = path.join(source.dataDir, 'export-dir');
    const toDir = await run(['export', '--realm', 'rich', '--dir', dir], source.env);
    expect(toDir.code, toDir.stderr).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(['rich-realm.json']);
    const { users: _users, ...withoutUsers } = exported;
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'rich-realm.json'), 'utf8'))).toEqual(withoutUsers);

    const copy = await anyBackend('export-copy');
    const imported = await run(['import', '--dir', dir], copy.env);
    expect(imported.code, imported.stderr).toBe(0);
    expect(jsonLines(imported.stdout)).toEqual([{ imported: 'rich', file: path.join(dir, 'rich-realm.json'), generatedClientSecrets: {} }]);
    const again = await run(['export', '--realm', 'rich'], copy.env);
    expect(JSON.parse(again.stdout)).toEqual(withoutUsers);
  }, 120_000);

  it('import --dir takes every *.json file and joins Keycloak users files to their realm', async ({ expect }) => {
    const backend = await anyBackend('importdir');
    const dir = path.join(backend.dataDir, 'realms');
    writeJson(path.join(dir, 'alpha-realm.json'), { realm: 'alpha', users: [{ username: 'first' }] });
    writeJson(path.join(dir, 'alpha-users-0.json'), { realm: 'alpha', users: [{ username: 'second', credentials: [{ type: 'password', value: 'Second-Pass-1' }] }] });
    writeJson(path.join(dir, 'beta.json'), serviceRealm('beta', 'beta-secret'));
    fs.writeFileSync(path.join(dir, 'README.txt'), 'not a realm');
    const result = await run(['import', '--dir', dir], backend.env);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonLines(result.stdout).map((l) => l.imported)).toEqual(['alpha', 'beta']);
    const alpha = JSON.parse((await run(['export', '--realm', 'alpha', '--users'], backend.env)).stdout) as { users: Array<{ username: string }> };
    expect(alpha.users.map((u) => u.username)).toEqual(['first', 'second']);

    const skipped = await run(['import', '--dir', dir, '--override', 'skip'], backend.env);
    expect(jsonLines(skipped.stdout)).toEqual([{ skipped: 'alpha', reason: 'realm exists' }, { skipped: 'beta', reason: 'realm exists' }]);
  }, 120_000);

  it('validates every file before opening the database', async ({ expect }) => {
    const backend = embedded('validate');
    const good = writeJson(path.join(backend.dataDir, 'good.json'), serviceRealm('good', 'good-secret'));
    const bad = writeJson(path.join(backend.dataDir, 'bad.json'), { realm: 'bad', users: [{ username: 'u', credentials: [{ type: 'password', secretData: '{}', credentialData: '{}' }] }] });
    let result = await run(['import', '--file', good, bad], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: .*bad\.json: user "u": password credential: /)]);
    expectNoStack(result.stderr);
    // The database was never opened, so not even created; the good realm was not imported.
    expect(fs.existsSync(path.join(backend.dataDir, 'pglite'))).toBe(false);

    const dir = path.join(backend.dataDir, 'dir');
    writeJson(path.join(dir, 'good-realm.json'), serviceRealm('good', 'good-secret'));
    writeJson(path.join(dir, 'orphan-users-0.json'), { realm: 'orphan', users: [] });
    result = await run(['import', '--dir', dir], backend.env);
    expect(result.stderr.trimEnd()).toMatch(/^cloakroom: .*orphan-users-0\.json: no realm file defines realm "orphan"$/);
    expect(fs.existsSync(path.join(backend.dataDir, 'pglite'))).toBe(false);

    result = await run(['import', '--dir', path.join(backend.dataDir, 'missing')], backend.env);
    expect(result.stderr).toMatch(/^cloakroom: cannot read directory .*missing: ENOENT/);
    result = await run(['import'], backend.env);
    expect(result.stderr.trimEnd()).toBe('cloakroom: give either --file or --dir');
    expect(fs.existsSync(path.join(backend.dataDir, 'pglite'))).toBe(false);
  }, 120_000);

  it('refuses an unknown realm, an unsupported --users strategy and --file with --dir', async ({ expect }) => {
    const backend = await anyBackend('exportbad');
    let result = await run(['export', '--realm', 'nope'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd()).toBe('cloakroom: realm "nope" does not exist');
    result = await run(['export', '--realm', 'master', '--users', 'different_files'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/--users different_files is not supported/);
    result = await run(['export', '--realm', 'master', '--file', 'a.json', '--dir', 'b'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd()).toBe('cloakroom: give --file or --dir, not both');
    expectNoStack(result.stderr);
  }, 120_000);
});

describe.concurrent('start', () => {
  it('quick start: import, start, token verified against certs; SIGTERM finishes the request in flight and exits 0', async ({ expect }) => {
    const backend = await anyBackend('quickstart', { fresh: true });
    const file = writeJson(path.join(backend.dataDir, 'realm.json'), serviceRealm('quick'));
    const imported = await run(['import', '--file', file], backend.env);
    expect(imported.code, imported.stderr).toBe(0);
    const secret = (jsonLines(imported.stdout)[0]!.generatedClientSecrets as Record<string, string>).svc!;

    const server = await start({ ...backend.env, CLOAKROOM_LOG_LEVEL: 'debug' });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    if (backend.kind === 'pglite') expect(fs.readFileSync(pidFile(backend), 'utf8').trim()).toBe(String(server.child.pid));

    // The README's quick start, with openid-client and jose.
    const realmUrl = `${server.url}/realms/quick`;
    const config = await oidc.discovery(new URL(realmUrl), 'svc', undefined, oidc.ClientSecretBasic(secret), { execute: [oidc.allowInsecureRequests] });
    const tokens = await oidc.clientCredentialsGrant(config);
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${realmUrl}${CERTS}`)), { issuer: realmUrl });
    expect(payload).toMatchObject({ azp: 'svc', preferred_username: 'service-account-svc', typ: 'Bearer' });
    // A wrong secret, for the log check below.
    expect((await postForm(`${realmUrl}${TOKEN}`, { grant_type: 'client_credentials', client_id: 'svc', client_secret: 'wrong-secret-xyz' })).status).toBe(401);

    // A token request whose body is still arriving when SIGTERM comes.
    const body = new URLSearchParams({ grant_type: 'client_credentials' }).toString();
    const { port } = new URL(server.url);
    let responded!: (value: { status: number; text: string }) => void;
    const response = new Promise<{ status: number; text: string }>((resolve) => { responded = resolve; });
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: `/realms/quick${TOKEN}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length), authorization: basicAuth('svc', secret) },
    }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => { text += chunk.toString(); });
      res.on('end', () => responded({ status: res.statusCode!, text }));
    });
    req.on('error', (error) => responded({ status: 0, text: String(error) }));
    req.write(body.slice(0, 5));
    await new Promise((resolve) => setTimeout(resolve, 500));
    server.child.kill('SIGTERM');
    // Draining: new connections are soon refused while the process stays up for the request.
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await fetch(`${server.url}/health/live`).then(async (r) => { await r.arrayBuffer(); return false; }, () => true);
      if (!refused) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(refused).toBe(true);
    expect(server.child.exitCode).toBeNull();
    req.end(body.slice(5));
    const inFlight = await response;
    expect(inFlight.status, inFlight.text).toBe(200);
    expect(JSON.parse(inFlight.text)).toHaveProperty('access_token');

    const exit = await server.exited;
    expect(exit.code, exit.stderr).toBe(0);
    expect(server.logLines().map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'Cloakroom stopped']));
    if (backend.kind === 'pglite') expect(fs.existsSync(pidFile(backend))).toBe(false);

    // Debug logging was on, and no secret reached the log.
    expect(server.logLines().some((l) => l.msg === 'request')).toBe(true);
    const log = server.stdout() + server.stderr();
    expect(log).not.toContain(secret);
    expect(log).not.toContain('wrong-secret-xyz');
    expect(log).not.toContain(basicAuth('svc', secret).slice('Basic '.length));
    expect(log).not.toContain(tokens.access_token);
  }, 120_000);

  it('SIGTERM while starting up stops cleanly: exit 0, pid file removed, database reusable', async ({ expect }) => {
    const backend = await migratedEmbedded('earlysigterm');
    const child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env: childEnv(backend.env), stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    // The pid file is claimed first; the embedded database takes a while to open after that.
    for (let i = 0; i < 3000 && !fs.existsSync(pidFile(backend)) && child.exitCode === null; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fs.existsSync(pidFile(backend))).toBe(true);
    child.kill('SIGTERM');
    const exit = await exited;
    expect(exit, stdout).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(pidFile(backend))).toBe(false);
    // Whatever it was doing, the next start works.
    const server = await start(backend.env);
    await server.stopped();
  }, 120_000);

  it('a failed start (port in use, wrong master key) exits 1 with one readable line and leaves no pid file', async ({ expect }) => {
    const backend = await migratedEmbedded('failedstart');
    const file = writeJson(path.join(backend.dataDir, 'realm.json'), serviceRealm('keyed', 'keyed-secret'));
    expect((await run(['import', '--file', file], backend.env)).code).toBe(0);

    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const port = (blocker.address() as net.AddressInfo).port;
      const busy = await run(['start'], { ...backend.env, KC_HTTP_PORT: String(port) });
      expect(busy.code).toBe(1);
      expect(busy.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: .*EADDRINUSE.*\d+/)]);
      expect(fs.existsSync(pidFile(backend)), 'pid file after a failed start').toBe(false);
    } finally {
      blocker.close();
    }

    const wrongKey = await run(['start'], { ...backend.env, CLOAKROOM_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^cloakroom: the master key .* does not open the secrets/)]);
    expect(fs.existsSync(pidFile(backend)), 'pid file after a failed start').toBe(false);
  }, 120_000);

  it('refuses a second process on the same embedded database while the first runs', async ({ expect }) => {
    const backend = await migratedEmbedded('inuse');
    const file = writeJson(path.join(backend.dataDir, 'realm.json'), serviceRealm('busy', 'busy-secret'));
    expect((await run(['import', '--file', file], backend.env)).code).toBe(0);
    const server = await start(backend.env);
    const [second, importing, rotating] = await Promise.all([
      run(['start'], backend.env),
      run(['import', '--file', file, '--override', 'skip'], backend.env),
      run(['keys', 'rotate', '--realm', 'busy'], backend.env),
    ]);
    for (const result of [second, importing, rotating]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/embedded database .* is in use by process \d+/);
      expectNoStack(result.stderr);
    }
    expect(second.stderr).toContain(String(server.child.pid));
    // The first one is unharmed and still owns the pid file.
    expect(fs.readFileSync(pidFile(backend), 'utf8').trim()).toBe(String(server.child.pid));
    await clientCredentials(server.url, 'busy', 'svc', 'busy-secret');
    const exit = await server.stop('SIGINT');
    expect(exit.code).toBe(0);
    expect(fs.existsSync(pidFile(backend))).toBe(false);
  }, 120_000);

  it('starts over a stale pid file left by a dead process', async ({ expect }) => {
    const backend = await migratedEmbedded('stalepid');
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('close', resolve));
    fs.writeFileSync(pidFile(backend), String(dead.pid));
    const server = await start(backend.env);
    expect(fs.readFileSync(pidFile(backend), 'utf8').trim()).toBe(String(server.child.pid));
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);
    await server.stopped();
  }, 120_000);

  it('start --import-realm serves the realms in <data dir>/import, and skips them on the next start', async ({ expect }) => {
    const backend = await anyBackend('importrealm');
    writeJson(path.join(backend.dataDir, 'import', 'a-realm.json'), serviceRealm('from-dir', 'dir-secret'));
    fs.writeFileSync(path.join(backend.dataDir, 'import', 'notes.txt'), 'not a realm');
    let server = await start(backend.env, ['--import-realm']);
    expect(server.stdout()).toContain('"imported":"from-dir"');
    const discovery = await fetch(`${server.url}/realms/from-dir/.well-known/openid-configuration`);
    expect(discovery.status).toBe(200);
    await clientCredentials(server.url, 'from-dir', 'svc', 'dir-secret');
    await server.stopped();

    server = await start(backend.env, ['--import-realm']);
    expect(server.stdout()).toContain('"skipped":"from-dir"');
    await clientCredentials(server.url, 'from-dir', 'svc', 'dir-secret');
    await server.stopped();
  }, 120_000);

  it('creates the bootstrap admin once', async ({ expect }) => {
    const backend = await anyBackend('bootstrap');
    const env = { ...backend.env, KC_BOOTSTRAP_ADMIN_USERNAME: 'admin', KC_BOOTSTRAP_ADMIN_PASSWORD: 'Bootstrap-Pw-4711' };
    let server = await start(env);
    expect(server.logLines().map((l) => l.msg)).toContain('created the bootstrap admin user in master');
    await server.stopped();

    server = await start(env);
    expect(server.logLines().map((l) => l.msg)).not.toContain('created the bootstrap admin user in master');
    await server.stopped();
    expect(server.stdout()).not.toContain('Bootstrap-Pw-4711');

    const store = await backend.open();
    try {
      const master = await store.db.selectFrom('realms').select('id').where('name', '=', 'master').executeTakeFirstOrThrow();
      const admins = await store.db.selectFrom('user_roles')
        .innerJoin('roles', 'roles.id', 'user_roles.role_id')
        .innerJoin('users', 'users.id', 'user_roles.user_id')
        .select(['users.id', 'users.username', 'users.enabled'])
        .where('roles.realm_id', '=', master.id).where('roles.client_id', 'is', null).where('roles.name', '=', 'admin')
        .execute();
      expect(admins).toEqual([expect.objectContaining({ username: 'admin', enabled: true })]);
      const users = await store.db.selectFrom('users').select('username').where('realm_id', '=', master.id).where('username', '=', 'admin').execute();
      expect(users).toHaveLength(1);
      const credential = await store.db.selectFrom('credentials').select(['secret_data', 'credential_data', 'type'])
        .where('user_id', '=', admins[0]!.id).executeTakeFirstOrThrow();
      expect(credential.type).toBe('password');
      expect(credential.secret_data).not.toContain('Bootstrap-Pw-4711');
      expect(await verifyPassword('Bootstrap-Pw-4711', parseStoredPassword(credential.secret_data, credential.credential_data as object))).toBe(true);
    } finally {
      await store.close();
    }
  }, 120_000);
});

describe.concurrent('keys rotate', () => {
  it('rotates a realm key offline: both keys published after restart, new kid used, old tokens still verify', async ({ expect }) => {
    const backend = await anyBackend('rotate');
    const file = writeJson(path.join(backend.dataDir, 'realm.json'), serviceRealm('rot', 'rot-secret'));
    expect((await run(['import', '--file', file], backend.env)).code).toBe(0);

    // Same port before and after the restart, so the issuer (and the old token's iss) stays valid.
    const env = { ...backend.env, KC_HTTP_PORT: String(await freePort()) };
    let server = await start(env);
    const oldToken = await clientCredentials(server.url, 'rot', 'svc', 'rot-secret');
    const oldKid = decodeProtectedHeader(oldToken).kid;
    await server.stopped();

    const rotated = await run(['keys', 'rotate', '--realm', 'rot'], backend.env);
    expect(rotated.code, rotated.stderr).toBe(0);
    const [line] = jsonLines(rotated.stdout);
    expect(line).toMatchObject({ realm: 'rot', alg: 'RS256', retiredKeys: 1 });
    const newKid = line!.activeKid as string;
    expect(newKid).toMatch(/^[\w-]{20,}$/);
    expect(newKid).not.toBe(oldKid);

    server = await start(env);
    const realmUrl = `${server.url}/realms/rot`;
    const { keys } = await (await fetch(`${realmUrl}${CERTS}`)).json() as { keys: Array<{ kid: string; alg: string }> };
    expect(keys.map((k) => k.kid).sort()).toEqual([oldKid, newKid].sort());
    const newToken = await clientCredentials(server.url, 'rot', 'svc', 'rot-secret');
    expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
    const jwks = createRemoteJWKSet(new URL(`${realmUrl}${CERTS}`));
    await expect(jwtVerify(oldToken, jwks, { issuer: realmUrl })).resolves.toBeTruthy();
    await expect(jwtVerify(newToken, jwks, { issuer: realmUrl })).resolves.toBeTruthy();
    // Introspection accepts both too.
    for (const token of [oldToken, newToken]) {
      const res = await postForm(`${realmUrl}/protocol/openid-connect/token/introspect`, { token }, { authorization: basicAuth('svc', 'rot-secret') });
      expect(await res.json()).toMatchObject({ active: true });
    }
    await server.stopped();
  }, 120_000);

  it.skipIf(!usePostgres)('PostgreSQL: import and rotate while the server runs reach it without a restart', async ({ expect }) => {
    const backend = await anyBackend('live');
    const file = writeJson(path.join(backend.dataDir, 'live.json'), serviceRealm('live', 'live-secret'));
    expect((await run(['import', '--file', file], backend.env)).code).toBe(0);
    const server = await start(backend.env);
    try {
      const before = decodeProtectedHeader(await clientCredentials(server.url, 'live', 'svc', 'live-secret')).kid;
      const rotated = await run(['keys', 'rotate', '--realm', 'live'], backend.env);
      expect(rotated.code, rotated.stderr).toBe(0);
      const newKid = jsonLines(rotated.stdout)[0]!.activeKid;
      expect(newKid).not.toBe(before);
      // LISTEN/NOTIFY evicts the running server's cached realm.
      let kid: string | undefined;
      for (let i = 0; i < 40 && kid !== newKid; i++) {
        kid = decodeProtectedHeader(await clientCredentials(server.url, 'live', 'svc', 'live-secret')).kid;
        if (kid !== newKid) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(kid).toBe(newKid);

      const later = writeJson(path.join(backend.dataDir, 'later.json'), serviceRealm('later', 'later-secret'));
      expect((await run(['import', '--file', later], backend.env)).code).toBe(0);
      await clientCredentials(server.url, 'later', 'svc', 'later-secret');
    } finally {
      await server.stopped();
    }
  }, 120_000);

  it('refuses an unknown realm and an unknown algorithm', async ({ expect }) => {
    const backend = await anyBackend('rotatebad');
    let result = await run(['keys', 'rotate', '--realm', 'nope'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd()).toBe('cloakroom: realm "nope" does not exist');
    result = await run(['keys', 'rotate', '--realm', 'master', '--alg', 'HS256'], backend.env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/must be one of/);
    expectNoStack(result.stderr);
  }, 120_000);
});
