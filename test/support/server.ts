// Starts a real Cloakroom server on a random loopback port with its own database: a fresh
// PostgreSQL database when DATABASE_URL is set, an in-memory PGlite otherwise.
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import pg from 'pg';
import { inject } from 'vitest';

import { loadConfig, type Config } from '../../src/config.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { importRealm, type ImportResult } from '../../src/realms/import.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { migrateToLatest, openStore, type Store } from '../../src/store/db.ts';

export type TestDatabase = { url: string | undefined; drop(): Promise<void> };

/** Admin URL of the PostgreSQL server tests may create databases on, if any. */
export function postgresAdminUrl(): string | undefined {
  return process.env.DATABASE_URL || undefined;
}

/** A fresh, uniquely named PostgreSQL database (dropped by drop()), or none for PGlite. */
export async function createTestDatabase(adminUrl = postgresAdminUrl()): Promise<TestDatabase> {
  if (!adminUrl) return { url: undefined, drop: async () => {} };
  const name = `cloakroom_test_${crypto.randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

let image: Promise<Blob | undefined> | undefined;
/** The migrated PGlite image of this run, read once per test file. */
function migratedImage(): Promise<Blob | undefined> {
  const imagePath = inject('pgliteImagePath');
  image ??= imagePath ? fs.readFile(imagePath).then((bytes) => new Blob([bytes])) : Promise.resolve(undefined);
  return image;
}

/**
 * A migrated store on the test database: PostgreSQL at `url`, or an in-memory PGlite started from
 * the migrated image test/support/pglite-image.ts made for this run.
 */
export async function openTestStore(url: string | undefined): Promise<Store> {
  if (url) {
    const store = await openStore({ databaseUrl: url, pgliteDir: 'memory://' });
    await migrateToLatest(store.db);
    return store;
  }
  const store = await openStore({ databaseUrl: undefined, pgliteDir: 'memory://', pgliteImage: await migratedImage() });
  // Nothing to do when started from the image; a no-op check of the applied list.
  await migrateToLatest(store.db);
  return store;
}

export type TestServer = RunningServer & {
  config: Config;
  database: TestDatabase;
  /** Imports a Keycloak realm representation and tells the running server about it. */
  importRealm(rep: unknown): Promise<ImportResult>;
  stop(): Promise<void>;
};

export type TestServerOptions = {
  env?: Record<string, string>;
  /** Reuse an existing database (several instances on one database). */
  database?: TestDatabase;
  /** Leave the database in place on stop (the caller drops it). */
  keepDatabase?: boolean;
};

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const database = options.database ?? await createTestDatabase();
  const config = loadConfig({
    CLOAKROOM_HTTP_HOST: '127.0.0.1',
    CLOAKROOM_HTTP_PORT: '0',
    CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64'),
    CLOAKROOM_DATA_DIR: path.join(os.tmpdir(), `cloakroom-test-${process.pid}`),
    CLOAKROOM_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(database.url ? { CLOAKROOM_DATABASE_URL: database.url } : {}),
    ...options.env,
  });
  let store: Store | undefined;
  if (!database.url) store = await openTestStore(undefined);
  const server = await startServer(config, { logger: createLogger(config.logLevel), ...(store ? { store } : {}) });
  return {
    ...server,
    config,
    database,
    async importRealm(rep) {
      const result = await importRealm(server.store.db, server.box, rep);
      await server.registry.realmChanged(result.realmId);
      return result;
    },
    async stop() {
      await server.close();
      if (store) await store.close();
      if (!options.keepDatabase && !options.database) await database.drop();
    },
  };
}

/** application/x-www-form-urlencoded POST. */
export async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
}

export const basicAuth = (id: string, secret: string): string =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
