// Starting and stopping a Cloakroom instance: storage, migrations, bootstrap, HTTP listener,
// background jobs, graceful shutdown. Tests start it exactly as `cloakroom start` does.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import { createApp } from './app.ts';
import type { Config } from './config.ts';
import { createSecretBox, loadOrCreateKeyFile, type SecretBox } from './crypto/secret-box.ts';
import { recordEvent } from './events/events.ts';
import { closeFinesseAgents, setFinesseLogger } from './federation/finesse/client.ts';
import { closeLdapPools } from './federation/ldap/client.ts';
import { startLdapSyncScheduler } from './federation/ldap/sync-scheduler.ts';
import { startFinesseSyncScheduler } from './federation/finesse/sync-scheduler.ts';
import { setLdapLogger } from './federation/ldap/log.ts';
import { configurePasswordBlacklists } from './login/password-blacklists.ts';
import { createPageRenderer, pageSecurityHeaders } from './login/pages.ts';
import { Mailer } from './mail/mailer.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { deleteExpiredBrokerState } from './broker/broker-requests.ts';
import { deleteExpiredActionTokens } from './login/action-tokens.ts';
import { deleteExpiredOtpSteps } from './login/otp.ts';
import { deleteExpiredPayloads } from './oidc/adapter.ts';
import type { ProviderHooks } from './oidc/provider.ts';
import { bootstrap } from './realms/bootstrap.ts';
import { RealmRegistry } from './realms/registry.ts';
import { migrateToLatest, openStore, type Store } from './store/db.ts';
import { deleteRetiredKeys } from './store/keys.ts';
import { deleteExpiredSessions } from './store/sessions.ts';

export type RunningServer = {
  url: string;
  port: number;
  store: Store;
  box: SecretBox;
  registry: RealmRegistry;
  logger: Logger;
  close(): Promise<void>;
};

const CLEANUP_LOCK = 0x636c6f616b02n;
const CLEANUP_INTERVAL_MS = 10 * 60 * 1000;

export function secretBoxFor(config: Config): SecretBox {
  return createSecretBox(config.masterKey ?? loadOrCreateKeyFile(config.dataDir));
}

export function pgliteDir(config: Config): string {
  return path.join(config.dataDir, 'pglite');
}

/** Opens the configured database and brings its schema up to date. */
export async function openMigratedStore(config: Config): Promise<Store> {
  const store = await openStore({ databaseUrl: config.databaseUrl, pgliteDir: pgliteDir(config), poolSize: config.dbPoolSize });
  try {
    await migrateToLatest(store.db);
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/** PGlite is one process's database: a pid file keeps a second process (CLI or server) out. */
function claimEmbeddedDatabase(config: Config): () => void {
  const file = path.join(config.dataDir, 'cloakroom.pid');
  fs.mkdirSync(config.dataDir, { recursive: true });
  if (fs.existsSync(file)) {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    let alive = false;
    try {
      if (pid > 0 && pid !== process.pid) {
        process.kill(pid, 0);
        alive = true;
      }
    } catch { /* stale pid file */ }
    if (alive) throw new Error(`the embedded database in ${config.dataDir} is in use by process ${pid}; stop it first (or use PostgreSQL)`);
  }
  fs.writeFileSync(file, String(process.pid));
  return () => fs.rmSync(file, { force: true });
}

export { claimEmbeddedDatabase };

/** A wrong master key would turn every request into a decryption failure: refuse to start instead. */
async function assertMasterKeyOpensSecrets(store: Store, box: SecretBox): Promise<void> {
  const sample = await store.db.selectFrom('signing_keys').select('private_jwk_sealed').limit(1).executeTakeFirst();
  if (!sample) return;
  try {
    box.open(sample.private_jwk_sealed);
  } catch {
    throw new Error('the master key (CLOAKROOM_MASTER_KEY, or master.key in the data directory) does not open the secrets stored in this database');
  }
}

export async function startServer(config: Config, options: { logger?: Logger; store?: Store } = {}): Promise<RunningServer> {
  const started = Date.now();
  const logger = options.logger ?? createLogger(config.logLevel);
  configurePasswordBlacklists(config.passwordBlacklistsDir);
  const releaseEmbedded = !config.databaseUrl && !options.store ? claimEmbeddedDatabase(config) : () => {};
  let store: Store;
  try {
    store = options.store ?? await openMigratedStore(config);
  } catch (error) {
    releaseEmbedded();
    throw error;
  }
  try {
    return await listen(config, logger, store, options, releaseEmbedded, started);
  } catch (error) {
    // A failed start leaves nothing behind: pool closed, embedded database released.
    if (!options.store) await store.close().catch(() => {});
    releaseEmbedded();
    throw error;
  }
}

async function listen(config: Config, logger: Logger, store: Store, options: { store?: Store }, releaseEmbedded: () => void, started: number): Promise<RunningServer> {
  if (options.store) await migrateToLatest(store.db);
  const box = secretBoxFor(config);
  const metrics: Metrics = createMetrics();

  await assertMasterKeyOpensSecrets(store, box);
  // LDAP federation logs its warnings (import conflicts, skipped mappers) here.
  setLdapLogger(logger);
  setFinesseLogger(logger);
  const { masterCreated, adminCreated } = await bootstrap(store.db, box, config.bootstrapAdmin);
  if (masterCreated) logger.info('created the master realm');
  if (adminCreated) logger.info({ username: config.bootstrapAdmin?.username }, 'created the bootstrap admin user in master');

  const viewsDir = findViewsDir();
  const pages = createPageRenderer(viewsDir);
  const mailer = new Mailer({ viewsDir, logger });
  const hooks: ProviderHooks = {
    onTokenIssued(realm, grantType, clientId, ipAddress) {
      metrics.tokensIssued.inc({ realm: realm.name, grant_type: grantType });
      if (grantType === 'client_credentials') recordEvent(store.db, realm, logger, { type: 'CLIENT_LOGIN', clientId, ipAddress });
    },
    onGrantError(realm, grantType, clientId, error, ipAddress) {
      if (grantType === 'client_credentials') {
        recordEvent(store.db, realm, logger, { type: 'CLIENT_LOGIN_ERROR', clientId, error: (error as { error?: string }).error ?? 'server_error', ipAddress });
      }
      if (grantType === 'authorization_code') {
        recordEvent(store.db, realm, logger, { type: 'CODE_TO_TOKEN_ERROR', clientId, error: (error as { error?: string }).error ?? 'server_error', ipAddress, details: { reason: (error as { error_description?: string }).error_description } });
      }
    },
    event(realm, event) {
      recordEvent(store.db, realm, logger, event);
    },
    onServerError(realm, error) {
      logger.error({ err: error, realm: realm.name }, 'oidc-provider server error');
    },
    async errorPage(realm, ctx, error) {
      // Errors the authorization endpoint cannot redirect (unknown client, bad redirect URI): a page, like Keycloak's.
      const html = await pages.render(realm.settings.loginTheme || 'default', 'error', {
        realmName: realm.name, ...(realm.realm.display_name ? { realmDisplayName: realm.realm.display_name } : {}),
        locale: realm.settings.defaultLocale || 'en', resourcesUrl: `${config.relativePath}/resources/login/${realm.settings.loginTheme || 'default'}`,
        message: { type: 'error', text: error.error_description ? `${error.error_description} (${error.error})` : error.error },
      });
      ctx.type = 'html';
      ctx.set(pageSecurityHeaders());
      ctx.body = html;
    },
  };
  const registry = new RealmRegistry(store, box, hooks, logger, config.realmCacheSize);
  await registry.start();

  let ready = false;
  const app = createApp({
    config, store, box, registry, logger, metrics, isReady: () => ready, pages, mailer, viewsDir,
    event: (realm, event) => recordEvent(store.db, realm, logger, event),
  });
  const server = http.createServer(app.callback());
  server.keepAliveTimeout = 65_000; // longer than common load balancer idle timeouts
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? 'localhost' : config.http.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}${config.relativePath}`;

  // Jobs that must run on one instance at a time take an advisory lock; the others skip the round.
  const cleanup = setInterval(() => {
    void store.tryWithLock(CLEANUP_LOCK, async () => {
      const payloads = await deleteExpiredPayloads(store.db);
      const sessions = await deleteExpiredSessions(store.db);
      const realms = await deleteRetiredKeys(store.db);
      const loginState = await deleteExpiredActionTokens(store.db) + await deleteExpiredOtpSteps(store.db) + await deleteExpiredBrokerState(store.db);
      for (const realmId of realms) await registry.realmChanged(realmId);
      if (payloads > 0 || sessions > 0 || realms.length > 0 || loginState > 0) {
        logger.info({ payloads, sessions, keyRealms: realms.length, loginState }, 'removed expired state');
      }
    }).catch((err) => logger.warn({ err }, 'cleanup job failed'));
  }, CLEANUP_INTERVAL_MS);
  cleanup.unref();
  // Periodic LDAP syncs (fullSyncPeriod / changedSyncPeriod), one instance per provider and run.
  const ldapSync = startLdapSyncScheduler({ store, box, logger, metrics: metrics.registry });
  // Periodic Finesse provisioning (syncPeriod), one instance per provider and run.
  const finesseSync = startFinesseSyncScheduler({ store, box, logger, metrics: metrics.registry });

  ready = true;
  logger.info({ url, ms: Date.now() - started, database: store.kind }, 'Cloakroom ready');

  let closing: Promise<void> | undefined;
  return {
    url, port, store, box, registry, logger,
    close() {
      closing ??= (async () => {
        ready = false;
        clearInterval(cleanup);
        // Stop accepting, let in-flight requests finish, then drop idle keep-alive sockets.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timer = setTimeout(() => server.closeAllConnections(), 10_000);
        await closed;
        clearTimeout(timer);
        registry.clear();
        await ldapSync.stop();
        await finesseSync.stop();
        await closeLdapPools();
        await closeFinesseAgents();
        if (!options.store) await store.close();
        releaseEmbedded();
        logger.info('Cloakroom stopped');
      })();
      return closing;
    },
  };
}

/** views/ beside src/ (sources) or beside dist/ (compiled build). */
function findViewsDir(): string {
  const here = path.dirname(new URL(import.meta.url).pathname);
  for (const candidate of [path.resolve(here, '..', 'views'), path.resolve(here, '..', '..', 'views')]) {
    if (fs.existsSync(path.join(candidate, 'default', 'login'))) return candidate;
  }
  throw new Error('views/ directory not found');
}
