// Periodic Finesse provisioning: every enabled `finesse` identity provider with syncPeriod > 0
// and admin credentials is synced when syncPeriod seconds have passed since its last successful
// sync (`cloakroom.lastSync` in its config, so every instance shares the schedule; a manual sync
// counts too). Each run holds the provider's advisory lock and re-reads the stamp under it, so
// of several instances exactly one runs each due sync. Shaped like the LDAP scheduler: one scan
// of all providers runs what is due and sleeps until the next due time (1 s to 60 s); a realm
// change (a provider created or edited anywhere) brings the scan forward. A failed sync (Finesse
// down) is retried a period later, at the soonest.
import { Counter, type Registry } from 'prom-client';

import type { SecretBox } from '../../crypto/secret-box.ts';
import { MAX_WAIT_MS, MIN_WAIT_MS, startPeriodicScan } from '../../jobs/periodic-scan.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Store } from '../../store/db.ts';
import type { IdentityProvider } from '../../store/schema.ts';
import { finesseProviderConfig } from './config.ts';
import { finesseSyncLockKey, finesseSyncStamp, syncFinesse } from './sync.ts';


export type FinesseSyncScheduler = {
  /** Scans now. */
  poke(): void;
  /** Stops scanning; a running sync stops before its next user. */
  stop(): Promise<void>;
};

/** syncPeriod in seconds (0 = no periodic sync). */
function syncPeriod(config: Record<string, string>): number {
  const value = Number.parseInt(config.syncPeriod?.trim() ?? '', 10);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * When the provider's next periodic sync is due (epoch seconds), or undefined when it has none:
 * disabled, syncPeriod <= 0, or no admin username (the password is sealed apart; a provider
 * without one fails its sync, logged, and is retried a period later).
 */
export function nextFinesseSync(row: Pick<IdentityProvider, 'enabled' | 'config'>): number | undefined {
  const period = syncPeriod(row.config);
  if (!row.enabled || period === 0 || !row.config.finesseAdminUsername?.trim()) return undefined;
  return finesseSyncStamp(row.config) + period;
}

export function startFinesseSyncScheduler(deps: { store: Store; box: SecretBox; logger: Logger; metrics?: Registry }): FinesseSyncScheduler {
  const { store, box, logger } = deps;
  const db = store.db;
  const runs = new Counter({
    name: 'cloakroom_finesse_periodic_syncs_total', help: 'Periodic Finesse provisioning syncs run by this instance, by outcome',
    labelNames: ['realm', 'outcome'], registers: deps.metrics ? [deps.metrics] : [],
  });
  const abort = new AbortController();
  /** Providers whose last periodic sync failed here: not before this time (ms). */
  const retryAt = new Map<string, number>();

  /** Runs what is due; returns how long to sleep. */
  async function scan(): Promise<number> {
    const providers = await db.selectFrom('identity_providers').selectAll().where('provider_id', '=', 'finesse').where('enabled', '=', true).execute();
    let wait = MAX_WAIT_MS;
    for (const row of providers) {
      if (abort.signal.aborted) break;
      const nextAt = nextFinesseSync(row);
      if (nextAt === undefined) continue;
      const blockedUntil = retryAt.get(row.internal_id) ?? 0;
      if (nextAt * 1000 <= Date.now() && blockedUntil <= Date.now()) {
        const ran = await runDue(row.internal_id);
        // Run (or failed, then retried) here: due again a period from now at the latest. Another
        // instance holds the provider: look again shortly (it will have moved the stamp).
        wait = Math.min(wait, ran ? syncPeriod(row.config) * 1000 : 5 * MIN_WAIT_MS);
        continue;
      }
      wait = Math.min(wait, Math.max(nextAt * 1000, blockedUntil) - Date.now());
    }
    return wait;
  }

  /** The due sync of one provider under its lock; false when another instance holds the lock. */
  async function runDue(internalId: string): Promise<boolean> {
    const outcome = await store.tryWithLock(finesseSyncLockKey(internalId), async () => {
      // Under the lock, from the database: another instance may have just run it.
      const fresh = await db.selectFrom('identity_providers').selectAll().where('internal_id', '=', internalId).executeTakeFirst();
      if (!fresh || fresh.provider_id !== 'finesse') return true;
      const nextAt = nextFinesseSync(fresh);
      if (nextAt === undefined || nextAt * 1000 > Date.now()) return true;
      const realm = await db.selectFrom('realms').selectAll().where('id', '=', fresh.realm_id).executeTakeFirst();
      if (!realm) return true;
      try {
        const config = finesseProviderConfig(fresh, box);
        await syncFinesse(db, realm, config, logger, { signal: abort.signal });
        runs.inc({ realm: realm.name, outcome: 'success' });
        retryAt.delete(internalId);
      } catch (err) {
        if (abort.signal.aborted) return true;
        runs.inc({ realm: realm.name, outcome: 'failure' });
        retryAt.set(internalId, Date.now() + Math.max(MIN_WAIT_MS, syncPeriod(fresh.config) * 1000));
        logger.warn({ err, realm: realm.name, provider: fresh.alias }, 'Periodic Finesse sync failed');
      }
      return true;
    });
    return outcome !== undefined;
  }

  return startPeriodicScan({ store, logger, name: 'Finesse sync', abort, scan });
}
