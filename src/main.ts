// CLI: cloakroom start | migrate | import | export | keys rotate
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

import { Command, InvalidArgumentError } from 'commander';
import { sql } from 'kysely';

import { ConfigError, loadConfig, type Config } from './config.ts';
import { SIGNING_ALGS, type SigningAlg } from './crypto/signing-keys.ts';
import { configurePasswordBlacklists } from './login/password-blacklists.ts';
import { createLogger } from './observability/logger.ts';
import { RealmNotFoundError, exportRealm } from './realms/export.ts';
import { ImportError, RealmExistsError, importRealmIn, parseRealmRepresentation, type RealmImportRepresentation } from './realms/import.ts';
import { rotateRealmKey } from './realms/keys.ts';
import { REALM_CHANGED_CHANNEL } from './realms/registry.ts';
import { parseRealmSettings } from './realms/settings.ts';
import { claimEmbeddedDatabase, openMigratedStore, secretBoxFor, startServer } from './server.ts';
import type { Store } from './store/db.ts';
import { findRealmByName } from './store/realms.ts';

/** A user mistake: one readable line on stderr, exit code 1, no stack trace. */
class UsageError extends Error {}

function config(): Config {
  const cfg = loadConfig(process.env);
  // import validates password policies, which may name blacklist files.
  configurePasswordBlacklists(cfg.passwordBlacklistsDir);
  return cfg;
}

/** Runs a one-shot command against the database (claiming the embedded one if that is in use). */
async function withStore<T>(cfg: Config, fn: (store: Store) => Promise<T>): Promise<T> {
  const release = cfg.databaseUrl ? () => {} : claimEmbeddedDatabase(cfg);
  try {
    const store = await openMigratedStore(cfg);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    release();
  }
}

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
}

type RealmFile = { file: string; rep: RealmImportRepresentation };

/** Keycloak's users files (`--users different_files`): `<realm>-users-<n>.json`, `<realm>-federated-users-<n>.json`. */
const USERS_FILE = /-(?:federated-)?users-\d+\.json$/;

/**
 * Reads and validates realm files before anything touches the database, so a broken file leaves
 * the database alone. A file holds one realm or an array of realms; users files of a realm (as a
 * Keycloak directory export writes them) are merged into that realm.
 */
function loadRealmFiles(files: string[]): RealmFile[] {
  const realms: RealmFile[] = [];
  const usersFiles: Array<{ file: string; json: unknown }> = [];
  for (const file of files) {
    const json = readJsonFile(file);
    if (USERS_FILE.test(path.basename(file))) {
      usersFiles.push({ file, json });
      continue;
    }
    for (const item of Array.isArray(json) ? json : [json]) {
      try {
        realms.push({ file, rep: parseRealmRepresentation(item) });
      } catch (error) {
        if (error instanceof ImportError) throw new UsageError(`${file}: ${error.message}`);
        throw error;
      }
    }
  }
  for (const { file, json } of usersFiles) {
    const { realm, users } = (json ?? {}) as { realm?: unknown; users?: unknown };
    const target = realms.find((r) => r.rep.realm === realm);
    if (!target) throw new UsageError(`${file}: no realm file defines realm "${String(realm)}"`);
    if (!Array.isArray(users)) throw new UsageError(`${file}: "users" must be an array`);
    try {
      target.rep = parseRealmRepresentation({ ...target.rep, users: [...(target.rep.users ?? []), ...users] });
    } catch (error) {
      if (error instanceof ImportError) throw new UsageError(`${file}: ${error.message}`);
      throw error;
    }
  }
  return realms;
}

/** Imports realms; existing realms are skipped (Keycloak's --import-realm behaviour) or fail. */
async function importRealms(cfg: Config, store: Store, realms: RealmFile[], onExisting: 'skip' | 'fail'): Promise<void> {
  const box = secretBoxFor(cfg);
  let imported = 0;
  for (const { file, rep } of realms) {
    try {
      const result = await store.db.transaction().execute((trx) => importRealmIn(trx, box, rep));
      await store.notify(REALM_CHANGED_CHANNEL, result.realmId);
      // Generated secrets are shown once, here; secrets given in the file are not echoed.
      const given = new Set((rep.clients ?? []).filter((c) => c.secret).map((c) => c.clientId));
      const generated = Object.fromEntries(Object.entries(result.clientSecrets)
        .filter(([clientId]) => !given.has(clientId) && !['broker', 'realm-management'].includes(clientId)));
      process.stdout.write(`${JSON.stringify({ imported: result.realm, file, generatedClientSecrets: generated })}\n`);
      imported++;
    } catch (error) {
      if (error instanceof RealmExistsError && onExisting === 'skip') {
        process.stdout.write(`${JSON.stringify({ skipped: rep.realm, reason: 'realm exists' })}\n`);
        continue;
      }
      if (error instanceof RealmExistsError || error instanceof ImportError) throw new UsageError(`${file}: ${error.message}`);
      throw error;
    }
  }
  // Statistics for what was just bulk-loaded, so the first tokens are planned with them rather
  // than with the planner's guesses for empty tables (autovacuum would catch up only later).
  if (imported > 0) await sql`ANALYZE`.execute(store.db);
}

/** The *.json files of a directory, by name. */
function jsonFilesIn(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    throw new UsageError(`cannot read directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return names.filter((f) => f.endsWith('.json')).sort().map((f) => path.join(dir, f));
}

function importDirFiles(cfg: Config): string[] {
  const dir = path.join(cfg.dataDir, 'import');
  return fs.existsSync(dir) ? jsonFilesIn(dir) : [];
}

/** Waits for a full stream buffer to drain (large exports). */
async function write(out: NodeJS.WritableStream, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/**
 * Writes a realm export as indented JSON. Users are written one at a time, so a realm with
 * 100,000 users never needs its whole document as one string.
 */
async function writeRealmJson(out: NodeJS.WritableStream, rep: Record<string, unknown>): Promise<void> {
  const users = rep.users as unknown[] | undefined;
  if (!users || users.length === 0) return write(out, `${JSON.stringify(rep, null, 2)}\n`);
  const marker = '\n  "users": "__cloakroom_users__"';
  const text = JSON.stringify(rep, function (this: unknown, key, value) {
    return this === rep && key === 'users' ? '__cloakroom_users__' : value;
  }, 2);
  const at = text.indexOf(marker);
  await write(out, `${text.slice(0, at)}\n  "users": [\n`);
  let chunk = '';
  for (let i = 0; i < users.length; i++) {
    chunk += `${JSON.stringify(users[i], null, 2).replace(/^/gm, '    ')}${i < users.length - 1 ? ',' : ''}\n`;
    if (chunk.length > 65536) {
      await write(out, chunk);
      chunk = '';
    }
  }
  if (chunk) await write(out, chunk);
  await write(out, `  ]${text.slice(at + marker.length)}\n`);
}

/** Keycloak's `--users` strategies that put the users into the realm's own file. */
function exportUsers(strategy: string | boolean | undefined): boolean {
  if (strategy === undefined || strategy === 'skip') return false;
  if (strategy === true || strategy === 'realm_file' || strategy === 'same_file') return true;
  throw new UsageError(`--users ${String(strategy)} is not supported (use realm_file, same_file or skip)`);
}

const program = new Command()
  .name('cloakroom')
  .description('Keycloak-compatible OpenID Connect / OAuth 2.0 authorization server')
  .showHelpAfterError();

program.command('start')
  .description('apply migrations, then serve (embedded PGlite under ./data unless a database URL is set)')
  .option('--import-realm', 'import every realm JSON in <data dir>/import first, skipping realms that exist')
  .action(async (opts: { importRealm?: boolean }) => {
    const cfg = config();
    if (opts.importRealm) {
      const files = importDirFiles(cfg);
      const realms = loadRealmFiles(files);
      if (realms.length > 0) await withStore(cfg, (store) => importRealms(cfg, store, realms, 'skip'));
    }
    // Handlers go in before starting, so a signal during start-up still ends in a clean stop.
    let stopSignal: string | undefined;
    let stop: (signal: string) => void = (signal) => { stopSignal ??= signal; };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    const server = await startServer(cfg);
    let stopping = false;
    stop = (signal) => {
      if (stopping) return;
      stopping = true;
      server.logger.info({ signal }, 'shutting down');
      server.close().then(() => process.exit(0), (err) => {
        server.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
    };
    if (stopSignal) stop(stopSignal);
  });

program.command('migrate')
  .description('apply pending database migrations and exit')
  .action(async () => {
    const cfg = config();
    await withStore(cfg, async (store) => {
      process.stdout.write(`${JSON.stringify({ migrated: true, database: store.kind })}\n`);
    });
  });

program.command('import')
  .description('create realms from Keycloak realm export JSON files (run while the server is stopped when using the embedded database)')
  .option('--file <path...>', 'realm JSON file(s); a file may hold one realm or an array of realms')
  .option('--dir <path>', 'a directory of realm JSON files (every *.json; Keycloak <realm>-users-<n>.json files join their realm)')
  .option('--override <mode>', 'what to do when a realm exists: fail | skip', 'fail')
  .action(async (opts: { file?: string[]; dir?: string; override: string }) => {
    if (opts.override !== 'fail' && opts.override !== 'skip') throw new UsageError('--override must be "fail" or "skip"');
    if ((opts.file === undefined) === (opts.dir === undefined)) throw new UsageError('give either --file or --dir');
    const cfg = config();
    const files = opts.file ?? jsonFilesIn(opts.dir!);
    if (files.length === 0) throw new UsageError(`no *.json files in ${opts.dir}`);
    const realms = loadRealmFiles(files);
    await withStore(cfg, (store) => importRealms(cfg, store, realms, opts.override as 'fail' | 'skip'));
  });

program.command('export')
  .description('write a realm as Keycloak realm export JSON to stdout, --file or --dir (run while the server is stopped when using the embedded database)')
  .requiredOption('--realm <name>', 'realm name')
  .option('--users [strategy]', 'include users with their credentials: realm_file | same_file (both: in the realm file) | skip')
  .option('--file <path>', 'write to this file')
  .option('--dir <path>', 'write <dir>/<realm>-realm.json, as Keycloak does')
  .action(async (opts: { realm: string; users?: string | boolean; file?: string; dir?: string }) => {
    if (opts.file !== undefined && opts.dir !== undefined) throw new UsageError('give --file or --dir, not both');
    const users = exportUsers(opts.users);
    const cfg = config();
    const rep = await withStore(cfg, async (store) => {
      try {
        return await exportRealm(store.db, secretBoxFor(cfg), opts.realm, { users, secrets: 'open' });
      } catch (error) {
        if (error instanceof RealmNotFoundError) throw new UsageError(error.message);
        throw error;
      }
    });
    const file = opts.dir !== undefined ? path.join(opts.dir, `${opts.realm}-realm.json`) : opts.file;
    if (file === undefined) {
      await writeRealmJson(process.stdout, rep);
      return;
    }
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    // Written next to the target and renamed: a failed export never leaves half a file behind.
    const partial = `${file}.partial`;
    const out = fs.createWriteStream(partial, { mode: 0o600 });
    try {
      await writeRealmJson(out, rep);
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
      fs.renameSync(partial, file);
    } catch (error) {
      out.destroy();
      fs.rmSync(partial, { force: true });
      throw new UsageError(`cannot write ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    process.stdout.write(`${JSON.stringify({ exported: opts.realm, file, users: users ? (rep.users ?? []).length : undefined })}\n`);
  });

const keys = program.command('keys').description('manage realm signing keys');
keys.command('rotate')
  .description('make a new active signing key; the old one stays published until the tokens it signed expire')
  .requiredOption('--realm <name>', 'realm name')
  .option('--alg <alg>', `key algorithm (${SIGNING_ALGS.join(', ')}); default: the realm's defaultSignatureAlgorithm`, (value: string) => {
    if (!(SIGNING_ALGS as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${SIGNING_ALGS.join(', ')}`);
    return value;
  })
  .action(async (opts: { realm: string; alg?: SigningAlg }) => {
    const cfg = config();
    await withStore(cfg, async (store) => {
      const realm = await findRealmByName(store.db, opts.realm);
      if (!realm) throw new UsageError(`realm "${opts.realm}" does not exist`);
      const settings = parseRealmSettings(realm.settings);
      const alg = opts.alg ?? settings.defaultSignatureAlgorithm;
      // Old key stays published for the longest access/ID token lifetime, plus clock skew.
      const clientLifespans = await store.db.selectFrom('clients').select('attributes').where('realm_id', '=', realm.id).execute();
      const longest = Math.max(settings.accessTokenLifespan, settings.accessTokenLifespanForImplicitFlow,
        ...clientLifespans.map((c) => Number.parseInt(c.attributes['access.token.lifespan'] ?? '0', 10) || 0));
      const result = await rotateRealmKey(store.db, secretBoxFor(cfg), realm.id, alg, longest + 300);
      await store.notify(REALM_CHANGED_CHANNEL, realm.id);
      process.stdout.write(`${JSON.stringify({ realm: realm.name, alg, activeKid: result.kid, retiredKeys: result.demoted, publishedForSeconds: longest + 300 })}\n`);
    });
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof ConfigError) {
    for (const problem of error.problems) process.stderr.write(`cloakroom: invalid configuration: ${problem}\n`);
  } else if (error instanceof UsageError) {
    process.stderr.write(`cloakroom: ${error.message}\n`);
  } else {
    // One readable line; the stack only when asked for.
    if (process.env.CLOAKROOM_LOG_LEVEL === 'debug') createLogger('debug').error({ err: error }, 'cloakroom failed');
    process.stderr.write(`cloakroom: ${(error as Error).message}\n`);
  }
  process.exit(1);
}
