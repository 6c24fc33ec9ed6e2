// CLI: cloakroom start | migrate | import | keys rotate
import fs from 'node:fs';
import path from 'node:path';

import { Command, InvalidArgumentError } from 'commander';

import { ConfigError, loadConfig, type Config } from './config.ts';
import { SIGNING_ALGS, type SigningAlg } from './crypto/signing-keys.ts';
import { createLogger } from './observability/logger.ts';
import { ImportError, RealmExistsError, importRealm } from './realms/import.ts';
import { rotateRealmKey } from './realms/keys.ts';
import { REALM_CHANGED_CHANNEL } from './realms/registry.ts';
import { parseRealmSettings } from './realms/settings.ts';
import { claimEmbeddedDatabase, openMigratedStore, secretBoxFor, startServer } from './server.ts';
import type { Store } from './store/db.ts';
import { findRealmByName } from './store/realms.ts';

/** A user mistake: one readable line on stderr, exit code 1, no stack trace. */
class UsageError extends Error {}

function config(): Config {
  return loadConfig(process.env);
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

/** Imports realm files; existing realms are skipped (Keycloak's --import-realm behaviour) or fail. */
async function importFiles(cfg: Config, store: Store, files: string[], onExisting: 'skip' | 'fail'): Promise<void> {
  const box = secretBoxFor(cfg);
  for (const file of files) {
    const json = readJsonFile(file);
    for (const rep of Array.isArray(json) ? json : [json]) {
      try {
        const result = await importRealm(store.db, box, rep);
        await store.notify(REALM_CHANGED_CHANNEL, result.realmId);
        // Generated secrets are shown once, here; secrets given in the file are not echoed.
        const given = new Set(((rep as { clients?: Array<{ clientId?: string; secret?: string }> }).clients ?? [])
          .filter((c) => c.secret).map((c) => c.clientId));
        const generated = Object.fromEntries(Object.entries(result.clientSecrets)
          .filter(([clientId]) => !given.has(clientId) && !['broker', 'realm-management'].includes(clientId)));
        process.stdout.write(`${JSON.stringify({ imported: result.realm, file, generatedClientSecrets: generated })}\n`);
      } catch (error) {
        if (error instanceof RealmExistsError && onExisting === 'skip') {
          process.stdout.write(`${JSON.stringify({ skipped: (rep as { realm?: string }).realm, reason: 'realm exists' })}\n`);
          continue;
        }
        if (error instanceof RealmExistsError || error instanceof ImportError) throw new UsageError(`${file}: ${error.message}`);
        throw error;
      }
    }
  }
}

function importDirFiles(cfg: Config): string[] {
  const dir = path.join(cfg.dataDir, 'import');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => path.join(dir, f));
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
      if (files.length > 0) await withStore(cfg, (store) => importFiles(cfg, store, files, 'skip'));
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
  .requiredOption('--file <path...>', 'realm JSON file(s); a file may hold one realm or an array of realms')
  .option('--override <mode>', 'what to do when a realm exists: fail | skip', 'fail')
  .action(async (opts: { file: string[]; override: string }) => {
    if (opts.override !== 'fail' && opts.override !== 'skip') throw new UsageError('--override must be "fail" or "skip"');
    const cfg = config();
    await withStore(cfg, (store) => importFiles(cfg, store, opts.file, opts.override as 'fail' | 'skip'));
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
