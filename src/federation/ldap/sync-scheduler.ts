// Periodic LDAP sync (Keycloak's UserStorageSyncManager timers): every provider with
// fullSyncPeriod or changedSyncPeriod > 0 is synced when its period has passed since the last
// sync of that kind. Instances share the schedule through the database: the stamps live in the
// component config (lastSync, cloakroom.lastFullSync) and each run holds the provider's advisory
// lock and re-reads the stamps under it, so of several instances exactly one runs each due sync.
//
// Instead of one timer per provider, one scan looks at all providers, runs what is due and sleeps
// until the next due time (1 s to 60 s); a realm change (a component created or edited anywhere)
// brings the next scan forward to a second later. A failed sync is retried after its period.
import { Counter, type Registry } from 'prom-client';

import type { SecretBox } from '../../crypto/secret-box.ts';
import { MAX_WAIT_MS, MIN_WAIT_MS, startPeriodicScan } from '../../jobs/periodic-scan.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Store } from '../../store/db.ts';
import type { Component } from '../../store/schema.ts';
import { LDAP_MAPPER_PROVIDER_TYPE, ldapProviderConfig, USER_STORAGE_PROVIDER_TYPE } from './config.ts';
import { LAST_FULL_SYNC, LAST_SYNC, ldapSyncLockKey, syncUsers, type SyncMode } from './sync.ts';


export type LdapSyncScheduler = {
  /** Scans now (tests, or after a change the caller knows of). */
  poke(): void;
  /** Stops scanning; a running sync stops after its current page. */
  stop(): Promise<void>;
};

type Due = { mode: SyncMode; nextAt: number };

const first = (config: Record<string, string[]>, key: string): string | undefined => config[key]?.[0]?.trim();

function period(config: Record<string, string[]>, key: string): number {
  const value = Number.parseInt(first(config, key) ?? '', 10);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

function stamp(config: Record<string, string[]>, key: string): number {
  const value = Number.parseInt(first(config, key) ?? '', 10);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * What is due for a provider at `now` (epoch seconds): a full sync when fullSyncPeriod has passed
 * since the last full one, else a changed-users sync when changedSyncPeriod has passed since the
 * last sync of either kind; `nextAt` is when the next one will be due.
 */
export function dueSync(config: Record<string, string[]>, now: number): { due: SyncMode | undefined; nextAt: number | undefined } {
  if (first(config, 'enabled')?.toLowerCase() === 'false' || first(config, 'importEnabled')?.toLowerCase() === 'false') {
    return { due: undefined, nextAt: undefined };
  }
  const full = period(config, 'fullSyncPeriod');
  const changed = period(config, 'changedSyncPeriod');
  const candidates: Due[] = [];
  if (full > 0) candidates.push({ mode: 'full', nextAt: stamp(config, LAST_FULL_SYNC) + full });
  if (changed > 0) candidates.push({ mode: 'changed', nextAt: stamp(config, LAST_SYNC) + changed });
  if (candidates.length === 0) return { due: undefined, nextAt: undefined };
  const dueNow = candidates.filter((c) => c.nextAt <= now);
  // A due full sync covers the changed users too.
  const due = dueNow.find((c) => c.mode === 'full')?.mode ?? dueNow[0]?.mode;
  return { due, nextAt: Math.min(...candidates.map((c) => c.nextAt)) };
}

export function startLdapSyncScheduler(deps: { store: Store; box: SecretBox; logger: Logger; metrics?: Registry }): LdapSyncScheduler {
  const { store, box, logger } = deps;
  const db = store.db;
  const runs = new Counter({
    name: 'cloakroom_ldap_periodic_syncs_total', help: 'Periodic LDAP syncs run by this instance, by mode and outcome',
    labelNames: ['realm', 'mode', 'outcome'], registers: deps.metrics ? [deps.metrics] : [],
  });
  const abort = new AbortController();
  /** Providers whose last periodic sync failed here: not before this time (ms). */
  const retryAt = new Map<string, number>();

  /** Runs what is due; returns how long to sleep. */
  async function scan(): Promise<number> {
    const providers = await db.selectFrom('components').selectAll()
      .where('provider_type', '=', USER_STORAGE_PROVIDER_TYPE).where('provider_id', '=', 'ldap').execute();
    let wait = MAX_WAIT_MS;
    for (const component of providers) {
      if (abort.signal.aborted) break;
      const now = Math.floor(Date.now() / 1000);
      const { due, nextAt } = dueSync(component.config, now);
      if (nextAt === undefined) continue;
      const blockedUntil = retryAt.get(component.id) ?? 0;
      if (due && blockedUntil <= Date.now()) {
        const ran = await runDue(component);
        // After a run, look again at once: the next due time comes from the stamps it just moved.
        // Another instance holds the provider: look again shortly (it will have moved the stamps).
        wait = Math.min(wait, ran ? MIN_WAIT_MS : 5 * MIN_WAIT_MS);
        continue;
      }
      const nextMs = Math.max(nextAt * 1000, blockedUntil) - Date.now();
      wait = Math.min(wait, nextMs);
    }
    return wait;
  }

  /** The due sync of one provider under its lock; false when another instance holds the lock. */
  async function runDue(component: Component): Promise<boolean> {
    const outcome = await store.tryWithLock(ldapSyncLockKey(component.id), async () => {
      // Under the lock, from the database: another instance may have just run it.
      const fresh = await db.selectFrom('components').selectAll().where('id', '=', component.id).executeTakeFirst();
      if (!fresh) return true;
      const { due } = dueSync(fresh.config, Math.floor(Date.now() / 1000));
      if (!due) return true;
      const realm = await db.selectFrom('realms').selectAll().where('id', '=', fresh.realm_id).executeTakeFirst();
      if (!realm) return true;
      const mappers = await db.selectFrom('components').selectAll().where('parent_id', '=', fresh.id)
        .where('provider_type', '=', LDAP_MAPPER_PROVIDER_TYPE).execute();
      const config = ldapProviderConfig(fresh, mappers, box);
      try {
        await syncUsers(db, box, realm, config, due, logger, { signal: abort.signal });
        runs.inc({ realm: realm.name, mode: due, outcome: 'success' });
        retryAt.delete(fresh.id);
      } catch (err) {
        if (abort.signal.aborted) return true;
        runs.inc({ realm: realm.name, mode: due, outcome: 'failure' });
        const periodSeconds = due === 'full' ? config.fullSyncPeriod : config.changedSyncPeriod;
        retryAt.set(fresh.id, Date.now() + Math.max(MIN_WAIT_MS, periodSeconds * 1000));
        logger.warn({ err, realm: realm.name, provider: config.name, mode: due }, 'Periodic LDAP sync failed');
      }
      return true;
    });
    return outcome !== undefined;
  }

  return startPeriodicScan({ store, logger, name: 'LDAP sync', abort, scan });
}
