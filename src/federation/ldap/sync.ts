// LDAP user sync (Keycloak's ImportSynchronization of the `ldap` provider): full sync and
// changed-users sync import or refresh the local user of every LDAP entry, a page at a time
// (paged search of batchSizeForSync entries; nothing beyond one page of entries is held), each
// entry through the same mapping and upsert as a first login. Keycloak's result counts: added
// (imported), updated (existing linked users refreshed), failed (mapping errors, entries whose
// username or e-mail belongs to another local user), removed.
//
// Departures from Keycloak 26, whose full sync never removes anything (its LDAPStorageProvider
// drops a stale imported user only when someone looks that user up): a full sync here removes the
// provider's imported users whose LDAP entry it did not see (users created after the sync started
// are spared, they may come from a login during the walk), or, with the provider's
// `cloakroom.removeMissingUsers` = "false", unlinks them (federation link and LDAP_ID/LDAP_ENTRY_DN
// dropped). Both count in `removed`. The LDAP ids seen during the walk are kept (strings only) to
// know which users are missing: about 100 bytes per entry.
//
// lastSync (epoch seconds in the component config, as Keycloak keeps it) is the start time of the
// last successful sync, written after it succeeded (Keycloak writes it before starting, so a failed
// run would skip changes); changed-users sync reads entries changed at or after it.
import { createHash } from 'node:crypto';

import { sql } from 'kysely';

import type { SecretBox } from '../../crypto/secret-box.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db, Store } from '../../store/db.ts';
import type { Realm } from '../../store/schema.ts';
import { emailAttribute, firstValue, ldapUuid, searchLdapEntries } from './directory.ts';
import { LDAP_ENTRY_DN, LDAP_ID, LdapImportConflictError, upsertFederatedUser } from './federation.ts';
import { ldapAttributesToRead, LdapMappingError, mapLdapUser } from './mappers.ts';
import { syncLdapMappersFromDirectory } from './mapper-sync.ts';
import { LdapUnavailableError, type LdapEntry, type LdapProviderConfig } from './types.ts';

export type SyncMode = 'full' | 'changed';

/** Keycloak's SynchronizationResult as its REST API serializes it. */
export type SyncResult = { ignored: boolean; added: number; updated: number; removed: number; failed: number; status: string };

type Counts = { added: number; updated: number; removed: number; failed: number };

/** Keycloak's SynchronizationResult.getStatus() for user syncs. */
export function userSyncStatus(counts: Counts): string {
  let status = `${counts.added} imported users, ${counts.updated} updated users`;
  if (counts.removed > 0) status += `, ${counts.removed} removed users`;
  if (counts.failed !== 0) status += `, ${counts.failed} users failed sync! See server log for more details`;
  return status;
}

export function syncResult(counts: Counts, status: (counts: Counts) => string = userSyncStatus): SyncResult {
  return { ignored: false, ...counts, status: status(counts) };
}

/** SynchronizationResult.ignored(): disabled provider, import off, or a sync of it already running. */
export function ignoredSyncResult(): SyncResult {
  return { ignored: true, added: 0, updated: 0, removed: 0, failed: 0, status: "Synchronization ignored as it's already in progress" };
}

// ---------------------------------------------------------------------------------------------
// Sync bookkeeping in the component config

/** Keycloak's UserStorageProviderModel.LAST_SYNC. */
export const LAST_SYNC = 'lastSync';
/** Beyond Keycloak: start of the last successful full sync, so periodic full syncs keep their period on every instance. */
export const LAST_FULL_SYNC = 'cloakroom.lastFullSync';

/** Epoch seconds stored under `key` in the component config (0 when absent). */
export async function readSyncStamp(db: Db, providerId: string, key: string): Promise<number> {
  const row = await db.selectFrom('components').select(sql<string | null>`config -> ${key} ->> 0`.as('stamp')).where('id', '=', providerId).executeTakeFirst();
  const value = Number.parseInt(row?.stamp ?? '', 10);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

async function writeSyncStamps(db: Db, providerId: string, stamps: Record<string, number>): Promise<void> {
  const patch = JSON.stringify(Object.fromEntries(Object.entries(stamps).map(([key, value]) => [key, [String(value)]])));
  await db.updateTable('components').set({ config: sql`config || ${patch}::jsonb` }).where('id', '=', providerId).execute();
}

// ---------------------------------------------------------------------------------------------
// One instance at a time

/** Advisory lock key of a provider's sync (Keycloak's cluster task key "<id>::sync"). */
export function ldapSyncLockKey(providerId: string): bigint {
  const digest = createHash('sha256').update(`cloakroom:ldap-sync:${providerId}`).digest();
  return digest.readBigInt64BE(0);
}

/**
 * Runs a sync of the provider unless one is already running on any instance (the advisory lock
 * of the provider is taken): then Keycloak's "ignored" result.
 */
export async function syncUsersExclusive(
  store: Pick<Store, 'db' | 'tryWithLock'>, box: SecretBox, realm: Realm, config: LdapProviderConfig, mode: SyncMode, logger: Logger,
): Promise<SyncResult> {
  const result = await store.tryWithLock(ldapSyncLockKey(config.id), () => syncUsers(store.db, box, realm, config, mode, logger));
  if (result === undefined) logger.debug({ realm: realm.name, provider: config.name, mode }, 'LDAP sync ignored: already in progress');
  return result ?? ignoredSyncResult();
}

// ---------------------------------------------------------------------------------------------
// The sync

/** Entries mapped (directory round trips for membership mappers) this many at a time. */
const MAP_CONCURRENCY = 2;
/** Local users examined per query when looking for the ones LDAP no longer has. */
const SWEEP_BATCH = 1000;

/**
 * Full or changed-users sync of one provider (no locking: see syncUsersExclusive). Disabled
 * providers and providers without import are ignored, as in Keycloak. Throws
 * LdapUnavailableError when the directory cannot be reached, and the signal's reason when it is
 * aborted between pages (pages already imported stay; nothing is removed, lastSync stays).
 */
export async function syncUsers(
  db: Db, _box: SecretBox, realm: Realm, config: LdapProviderConfig, mode: SyncMode, logger: Logger, options: { signal?: AbortSignal } = {},
): Promise<SyncResult> {
  if (!config.enabled || !config.importEnabled) return ignoredSyncResult();
  const startedAt = Math.floor(Date.now() / 1000);
  const lastSync = mode === 'changed' ? await readSyncStamp(db, config.id, LAST_SYNC) : 0;
  logger.info({ realm: realm.name, provider: config.name, mode, ...(mode === 'changed' ? { lastSync } : {}) },
    mode === 'full' ? 'Sync all users from LDAP to local store' : 'Sync changed users from LDAP to local store');

  // Keycloak's syncMappers: group and role mappers bring their LDAP groups and roles in first.
  await syncLdapMappersFromDirectory(db, realm, config, logger);

  const counts: Counts = { added: 0, updated: 0, removed: 0, failed: 0 };
  const seen = mode === 'full' ? new Set<string>() : undefined;
  await searchLdapEntries(config, {
    pageSize: config.batchSizeForSync,
    attributes: ldapAttributesToRead(config),
    ...(lastSync > 0 ? { changedSince: new Date(lastSync * 1000) } : {}),
  }, async (entries) => {
    options.signal?.throwIfAborted();
    await importPage(db, realm, config, entries, counts, seen, logger);
  });
  options.signal?.throwIfAborted();

  if (seen) counts.removed = await sweepMissingUsers(db, realm, config, seen, new Date(startedAt * 1000), logger);
  await writeSyncStamps(db, config.id, mode === 'full' ? { [LAST_SYNC]: startedAt, [LAST_FULL_SYNC]: startedAt } : { [LAST_SYNC]: startedAt });
  const result = syncResult(counts);
  logger.info({ realm: realm.name, provider: config.name, mode, ...counts }, `${mode === 'full' ? 'Sync all users' : 'Sync changed users'} finished: ${result.status}`);
  return result;
}

/** Maps and upserts one page of entries; failures of single entries are counted, not thrown. */
async function importPage(db: Db, realm: Realm, config: LdapProviderConfig, entries: LdapEntry[], counts: Counts, seen: Set<string> | undefined, logger: Logger): Promise<void> {
  for (const entry of entries) {
    const id = ldapUuid(config, entry);
    if (id !== undefined) seen?.add(id);
  }
  // Entries sharing a username or e-mail with another one of the page go one at a time after the
  // others: two parallel imports could both pass the "is this name or address taken" check.
  const keyCount = new Map<string, number>();
  const keysOf = (entry: LdapEntry): string[] => [config.usernameLDAPAttribute, emailAttribute(config)]
    .map((attribute, i) => `${i}:${firstValue(entry, attribute)?.toLowerCase() ?? ''}`).filter((key) => !key.endsWith(':'));
  for (const entry of entries) for (const key of keysOf(entry)) keyCount.set(key, (keyCount.get(key) ?? 0) + 1);
  const clashes = (entry: LdapEntry): boolean => keysOf(entry).some((key) => keyCount.get(key)! > 1);
  const importOne = async (entry: LdapEntry): Promise<void> => {
    try {
      const mapped = await mapLdapUser(config, entry);
      const { created } = await upsertFederatedUser(db, realm, config, mapped);
      if (created) counts.added++;
      else counts.updated++;
    } catch (error) {
      // The directory went away: the sync stops here (Keycloak's query fails the whole sync).
      if (error instanceof LdapUnavailableError) throw error;
      counts.failed++;
      const reason = error instanceof Error ? error.message : String(error);
      if (error instanceof LdapMappingError || error instanceof LdapImportConflictError) {
        logger.warn({ realm: realm.name, provider: config.name, dn: entry.dn, reason }, 'LDAP entry not synced');
      } else {
        logger.error({ err: error, realm: realm.name, provider: config.name, dn: entry.dn }, 'Failed during import user from LDAP');
      }
    }
  };
  await forEachLimit(entries.filter((e) => !clashes(e)), MAP_CONCURRENCY, importOne);
  for (const entry of entries.filter(clashes)) await importOne(entry);
}

/** Runs fn over items with at most `limit` calls in flight; the first failure stops and is thrown. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Removes (or unlinks, per `removeMissingUsers`) the provider's users whose LDAP_ID the full sync
 * did not see, walking them in id order a batch at a time. Users created since `before` are kept.
 */
async function sweepMissingUsers(db: Db, realm: Realm, config: LdapProviderConfig, seen: Set<string>, before: Date, logger: Logger): Promise<number> {
  let removed = 0;
  let after: string | undefined;
  for (;;) {
    let query = db.selectFrom('users').select(['id', sql<string | null>`attributes #>> '{LDAP_ID,0}'`.as('ldap_id')])
      .where('realm_id', '=', realm.id).where('federation_link', '=', config.id).where('created_at', '<', before)
      .orderBy('id').limit(SWEEP_BATCH);
    if (after !== undefined) query = query.where('id', '>', after);
    const rows = await query.execute();
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    // A linked user without LDAP_ID was not imported by a sync or login: left alone.
    const missing = rows.filter((r) => r.ldap_id !== null && !seen.has(r.ldap_id)).map((r) => r.id);
    if (missing.length === 0) continue;
    removed += config.removeMissingUsers
      ? await deleteUsers(db, realm.id, missing, config.id)
      : await unlinkMissingUsers(db, realm.id, missing, config.id);
  }
  if (removed > 0) {
    logger.info({ realm: realm.name, provider: config.name, removed, unlinked: !config.removeMissingUsers },
      config.removeMissingUsers ? 'Removed users no longer in LDAP' : 'Unlinked users no longer in LDAP');
  }
  return removed;
}

/** Deletes users (their sessions, credentials, memberships go with them) and their oidc-provider grants. */
async function deleteUsers(db: Db, realmId: string, ids: string[], providerId: string): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const grants = await trx.selectFrom('client_sessions').select('grant_id').where('realm_id', '=', realmId).where('grant_id', 'is not', null)
      .where('user_session_id', 'in', (eb) => eb.selectFrom('user_sessions').select('id').where('realm_id', '=', realmId).where('user_id', 'in', ids))
      .execute();
    const grantIds = grants.flatMap((g) => (g.grant_id ? [g.grant_id] : []));
    if (grantIds.length > 0) await trx.deleteFrom('oidc_payloads').where('realm_id', '=', realmId).where('grant_id', 'in', grantIds).execute();
    // The federation link is checked again: a user unlinked meanwhile is no longer the provider's.
    const deleted = await trx.deleteFrom('users').where('realm_id', '=', realmId).where('federation_link', '=', providerId)
      .where('id', 'in', ids).executeTakeFirst();
    return Number(deleted.numDeletedRows);
  });
}

/** Unlinks users whose entry is gone: no federation link, no LDAP_ID / LDAP_ENTRY_DN (they point at nothing). */
async function unlinkMissingUsers(db: Db, realmId: string, ids: string[], providerId: string): Promise<number> {
  const updated = await db.updateTable('users')
    .set({ federation_link: null, attributes: sql<Record<string, string[]>>`attributes - ${LDAP_ID} - ${LDAP_ENTRY_DN}` })
    .where('realm_id', '=', realmId).where('federation_link', '=', providerId).where('id', 'in', ids).executeTakeFirst();
  return Number(updated.numUpdatedRows);
}

// ---------------------------------------------------------------------------------------------
// remove-imported-users and unlink-users (UserStorageProviderResource)

/** Keycloak's removeImportedUsers: every local user imported from the provider is deleted. Returns how many. */
export async function removeImportedUsers(db: Db, realmId: string, providerId: string): Promise<number> {
  let removed = 0;
  for (;;) {
    const rows = await db.selectFrom('users').select('id').where('realm_id', '=', realmId).where('federation_link', '=', providerId)
      .limit(SWEEP_BATCH).execute();
    if (rows.length === 0) return removed;
    removed += await deleteUsers(db, realmId, rows.map((r) => r.id), providerId);
  }
}

/**
 * Keycloak's unlinkUsers: the provider's users become local users (federation link cleared; their
 * attributes, LDAP_ID included, stay as Keycloak leaves them). Returns how many.
 */
export async function unlinkUsers(db: Db, realmId: string, providerId: string): Promise<number> {
  const updated = await db.updateTable('users').set({ federation_link: null })
    .where('realm_id', '=', realmId).where('federation_link', '=', providerId).executeTakeFirst();
  return Number(updated.numUpdatedRows);
}
