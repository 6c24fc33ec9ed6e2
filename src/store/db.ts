// The Kysely instance over real PostgreSQL (pg) or embedded PGlite, plus the two Postgres
// features the rest of the server relies on beyond SQL: LISTEN/NOTIFY and advisory locks.
import fs from 'node:fs';
import path from 'node:path';

import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';

import { migrations } from '../../migrations/index.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export type Store = {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** Delivers NOTIFYs on a channel, from this instance and every other one on the database. */
  listen(channel: string, handler: (payload: string) => void): Promise<void>;
  notify(channel: string, payload: string): Promise<void>;
  /** Runs fn while holding a session-level advisory lock; returns undefined if another holder has it. */
  tryWithLock<T>(key: bigint, fn: () => Promise<T>): Promise<T | undefined>;
  ping(): Promise<void>;
  close(): Promise<void>;
};

export type StoreOptions = {
  databaseUrl: string | undefined;
  /** Directory for PGlite files; 'memory://' keeps the database in memory (tests). */
  pgliteDir: string;
  /**
   * The starting contents of an in-memory PGlite database, as PGlite's dumpDataDir() writes
   * them: loading one takes a fraction of a second where a fresh database runs initdb (seconds).
   */
  pgliteImage?: Blob;
  poolSize?: number;
};

// int8 -> number: the counts and epochs we read fit comfortably in a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/**
 * Hot statements (the refresh grant's) run as named prepared statements on PostgreSQL: parsed and
 * planned once per connection, where an unnamed statement is planned on every call (the refresh
 * statement spent longer in the planner than executing). Their texts name their columns, so a
 * migration that adds columns leaves the cached plans' result types valid. PGlite runs them as
 * plain statements.
 */
export type PreparedStatement = { readonly name: string; readonly text: string };

const preparedNames = new Map<string, string>();

export function preparedStatement(name: string, text: string): PreparedStatement {
  if (preparedNames.has(text) && preparedNames.get(text) !== name) throw new Error(`statement ${name} repeats ${preparedNames.get(text)}`);
  preparedNames.set(text, name);
  return { name, text };
}

export async function runPrepared<R>(db: Db, statement: PreparedStatement, parameters: readonly unknown[]): Promise<R[]> {
  const { rows } = await db.executeQuery<R>(CompiledQuery.raw(statement.text, [...parameters]));
  return rows;
}

/** pg client that sends registered statement texts under their name (Kysely passes plain text). */
class PreparingClient extends pg.Client {
  // pg's query() is heavily overloaded; this only adds a name to (text, values) calls.
  override query(...args: unknown[]): never {
    const [text, values, callback] = args;
    const name = typeof text === 'string' ? preparedNames.get(text) : undefined;
    const query = super.query as (...a: unknown[]) => never;
    return name ? query.call(this, { name, text, values }, callback) : query.apply(this, args);
  }
}

export async function openStore(options: StoreOptions): Promise<Store> {
  return options.databaseUrl ? openPostgres(options.databaseUrl, options.poolSize ?? 10) : openPglite(options.pgliteDir, options.pgliteImage);
}

async function openPostgres(url: string, poolSize: number): Promise<Store> {
  // JIT off: the planner overestimates the recursive role query (~470k rows for a handful) and
  // JIT-compiles it on every token, ~20 ms of database CPU each; our queries are all small.
  const pool = new pg.Pool({ connectionString: url, max: poolSize, idleTimeoutMillis: 30_000, options: '-c jit=off', Client: PreparingClient });
  // An idle client losing its server (restart, failover) must not crash the process.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

  let listener: pg.Client | undefined;
  const handlers = new Map<string, Array<(payload: string) => void>>();

  async function listen(channel: string, handler: (payload: string) => void): Promise<void> {
    if (!listener) {
      listener = new pg.Client({ connectionString: url });
      listener.on('error', () => {});
      listener.on('notification', (message) => {
        for (const h of handlers.get(message.channel) ?? []) h(message.payload ?? '');
      });
      await listener.connect();
    }
    const list = handlers.get(channel);
    if (list) {
      list.push(handler);
      return;
    }
    handlers.set(channel, [handler]);
    await listener.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  }

  return {
    db,
    kind: 'postgres',
    listen,
    async notify(channel, payload) {
      await sql`SELECT pg_notify(${channel}, ${payload})`.execute(db);
    },
    async tryWithLock(key, fn) {
      const client = await pool.connect();
      try {
        const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key.toString()]);
        if (!rows[0]?.locked) return undefined;
        try {
          return await fn();
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [key.toString()]);
        }
      } finally {
        client.release();
      }
    },
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async close() {
      await listener?.end().catch(() => {});
      await db.destroy();
    },
  };
}

async function openPglite(dir: string, image: Blob | undefined): Promise<Store> {
  const inMemory = dir === 'memory://';
  if (image && !inMemory) throw new Error('a PGlite image only starts an in-memory database');
  if (!inMemory) fs.mkdirSync(path.dirname(dir), { recursive: true });
  // Loaded only when used: a server on PostgreSQL never pays PGlite's memory.
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([import('@electric-sql/pglite'), import('kysely-pglite-dialect')]);
  const pglite = inMemory ? await PGlite.create(image ? { loadDataDir: image } : {}) : await PGlite.create(dir);
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  // One embedded database belongs to one process, so a lock only has to exclude this process's
  // own concurrent jobs: an in-process set does that without tying up the single connection.
  const held = new Set<bigint>();
  return {
    db,
    kind: 'pglite',
    async listen(channel, handler) {
      await pglite.listen(channel, handler);
    },
    async notify(channel, payload) {
      await sql`SELECT pg_notify(${channel}, ${payload})`.execute(db);
    },
    async tryWithLock(key, fn) {
      if (held.has(key)) return undefined;
      held.add(key);
      try {
        return await fn();
      } finally {
        held.delete(key);
      }
    },
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async close() {
      await db.destroy();
    },
  };
}

/**
 * Applies pending migrations. Kysely's migrator takes a transaction-level advisory lock and
 * re-reads the applied list under it, so instances starting together migrate exactly once.
 */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
