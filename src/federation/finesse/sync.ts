// Bulk provisioning from Cisco Finesse: with the provider's admin credentials, read
// /finesse/api/Teams and /finesse/api/Users, keep one group per team under teamsGroupPath (the
// team id in the group attribute `finesse.teamId`, so a renamed team keeps its group and members)
// and create or update every user as a first login would (upsertFinesseUser), before anyone
// signs in. Both lists are read before anything is written, so Finesse being down changes nothing.
// This sync never deletes users or groups: a user gone from Finesse keeps its local account (its
// next login asks Finesse and gets "unknown user"), a team gone keeps its group.
//
// One sync per provider at a time on any instance (advisory lock from the provider's internal
// id); a sync asked for meanwhile is "ignored", as Keycloak answers for user storage. The start of
// the last successful sync is kept in the provider's config (`cloakroom.lastSync`, epoch seconds)
// for the periodic scheduler.
import { createHash } from 'node:crypto';

import { sql } from 'kysely';

import { newId } from '../../crypto/random.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db, Store } from '../../store/db.ts';
import type { Realm } from '../../store/schema.ts';
import { listFinesseTeams, listFinesseUsers } from './client.ts';
import type { FinesseProviderConfig } from './config.ts';
import type { FinesseTeam } from './xml.ts';
import { ensureFinesseTeamsParent, FINESSE_TEAM_ID, upsertFinesseUserDetailed } from './users.ts';

export type FinesseSyncResult = {
  /** True when the sync did not run (one of this provider was already running). */
  ignored: boolean;
  /** Users created. */
  added: number;
  /** Users already linked to the provider, refreshed (changed or not, as Keycloak counts). */
  updated: number;
  /** Users that could not be created or updated (logged; the sync went on). */
  failed: number;
  /** Finesse teams that have their group after the sync. */
  teams: number;
  status: string;
};

/** The provider cannot sync as configured (no admin credentials): the caller's mistake, not Finesse's. */
export class FinesseSyncConfigError extends Error {}

/** Beyond Keycloak: start of the last successful sync (epoch seconds) in the provider's config. */
export const FINESSE_LAST_SYNC = 'cloakroom.lastSync';

type Counts = { added: number; updated: number; failed: number; teams: number };

function status(counts: Counts): string {
  let text = `${counts.added} imported users, ${counts.updated} updated users, ${counts.teams} teams`;
  if (counts.failed !== 0) text += `, ${counts.failed} users failed sync! See server log for more details`;
  return text;
}

export function ignoredFinesseSyncResult(): FinesseSyncResult {
  return { ignored: true, added: 0, updated: 0, failed: 0, teams: 0, status: "Synchronization ignored as it's already in progress" };
}

/** Advisory lock key of a provider's sync. */
export function finesseSyncLockKey(internalId: string): bigint {
  return createHash('sha256').update(`cloakroom:finesse-sync:${internalId}`).digest().readBigInt64BE(0);
}

/** The provider's last successful sync (epoch seconds, 0 when never). */
export function finesseSyncStamp(config: Record<string, string>): number {
  const value = Number.parseInt(config[FINESSE_LAST_SYNC] ?? '', 10);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

async function writeSyncStamp(db: Db, internalId: string, seconds: number): Promise<void> {
  const patch = JSON.stringify({ [FINESSE_LAST_SYNC]: String(seconds) });
  await db.updateTable('identity_providers').set({ config: sql`config || ${patch}::jsonb` }).where('internal_id', '=', internalId).execute();
}

/** Runs the sync unless one of this provider runs on any instance: then the "ignored" result. */
export async function syncFinesseExclusive(
  store: Pick<Store, 'db' | 'tryWithLock'>, realm: Realm, config: FinesseProviderConfig, logger: Logger,
): Promise<FinesseSyncResult> {
  const result = await store.tryWithLock(finesseSyncLockKey(config.internalId), () => syncFinesse(store.db, realm, config, logger));
  if (result === undefined) logger.debug({ realm: realm.name, provider: config.alias }, 'Finesse sync ignored: already in progress');
  return result ?? ignoredFinesseSyncResult();
}

/**
 * Creates or updates the team groups and users of one provider (no locking: see
 * syncFinesseExclusive). Throws FinesseSyncConfigError without admin credentials, and the
 * client's FinesseUnavailableError / FinesseResponseError when the lists cannot be read (then
 * nothing was written).
 */
export async function syncFinesse(
  db: Db, realm: Realm, config: FinesseProviderConfig, logger: Logger, options: { signal?: AbortSignal } = {},
): Promise<FinesseSyncResult> {
  if (!config.adminUsername || !config.adminPassword) {
    throw new FinesseSyncConfigError(`Identity provider ${config.alias} has no Finesse admin credentials (finesseAdminUsername, finesseAdminPassword) to sync with`);
  }
  const startedAt = Math.floor(Date.now() / 1000);
  logger.info({ realm: realm.name, provider: config.alias }, 'Sync users and teams from Finesse');
  // Both lists first: an outage (or a broken answer) in either leaves everything as it was.
  const [teams, users] = await Promise.all([listFinesseTeams(config), listFinesseUsers(config)]);
  options.signal?.throwIfAborted();

  const counts: Counts = { added: 0, updated: 0, failed: 0, teams: 0 };
  counts.teams = await syncTeamGroups(db, realm, config, teams, logger);

  for (const user of users) {
    options.signal?.throwIfAborted();
    try {
      const upserted = await upsertFinesseUserDetailed(db, realm, config, user, { create: true });
      if (!upserted) {
        // Logged by the upsert: a local user without the link holds the username.
        counts.failed += 1;
        continue;
      }
      if (upserted.created) counts.added += 1;
      else counts.updated += 1;
    } catch (err) {
      counts.failed += 1;
      logger.warn({ err, realm: realm.name, provider: config.alias, loginId: user.loginId }, 'Finesse sync: user failed');
    }
  }

  await writeSyncStamp(db, config.internalId, startedAt);
  const result: FinesseSyncResult = { ignored: false, ...counts, status: status(counts) };
  logger.info({ realm: realm.name, provider: config.alias, ...counts }, `Finesse sync finished: ${result.status}`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Team groups

type TeamGroup = { id: string; name: string; teamId: string | undefined; attributes: Record<string, string[]> };

/**
 * One group per Finesse team under teamsGroupPath, found by its team id: a renamed team's group
 * is renamed (members and roles stay). Renames run through temporary names so teams that swap
 * names do not collide. A team without a group adopts a same-named group that belongs to no team
 * (e.g. made by hand, or by a login before this sync) or gets a new one. A name held by a group of
 * another team, or by a group that is no team's, is left alone (logged). One transaction.
 * Returns how many teams have their group.
 */
async function syncTeamGroups(db: Db, realm: Realm, config: FinesseProviderConfig, teams: FinesseTeam[], logger: Logger): Promise<number> {
  const wanted = new Map<string, string>();
  for (const team of teams) {
    const name = team.name.trim();
    if (team.id && name) wanted.set(team.id, name);
  }
  const run = (): Promise<number> => db.transaction().execute(async (trx) => {
    const parent = await ensureFinesseTeamsParent(trx, realm.id, config);
    const rows = await trx.selectFrom('groups').select(['id', 'name', 'attributes']).where('realm_id', '=', realm.id).where('parent_id', '=', parent).execute();
    const groups: TeamGroup[] = rows.map((r) => ({ id: r.id, name: r.name, attributes: r.attributes, teamId: r.attributes[FINESSE_TEAM_ID]?.[0] }));
    const byTeam = new Map(groups.flatMap((g) => (g.teamId && wanted.has(g.teamId) ? [[g.teamId, g] as const] : [])));
    const byName = new Map(groups.map((g) => [g.name, g]));
    const rename = async (group: TeamGroup, name: string): Promise<void> => {
      await trx.updateTable('groups').set({ name }).where('id', '=', group.id).execute();
      byName.delete(group.name);
      group.name = name;
      byName.set(name, group);
    };

    // Renamed teams: out of the way first (a temporary name nobody uses), then to their new name.
    const renamed = [...byTeam].filter(([teamId, group]) => group.name !== wanted.get(teamId));
    const previous = new Map(renamed.map(([, group]) => [group.id, group.name]));
    for (const [, group] of renamed) await rename(group, `${group.name} #finesse-${newId()}`);
    for (const [teamId, group] of renamed) {
      const name = wanted.get(teamId)!;
      if (byName.has(name)) {
        logger.warn({ realm: realm.name, provider: config.alias, teamId, name }, 'Finesse sync: team not renamed, another group has its new name');
        await rename(group, previous.get(group.id)!);
      } else {
        await rename(group, name);
      }
    }

    // Teams without a group yet.
    for (const [teamId, name] of wanted) {
      if (byTeam.has(teamId)) continue;
      const sameName = byName.get(name);
      if (sameName && !sameName.teamId) {
        const attributes = { ...sameName.attributes, [FINESSE_TEAM_ID]: [teamId] };
        await trx.updateTable('groups').set({ attributes: JSON.stringify(attributes) }).where('id', '=', sameName.id).execute();
        sameName.teamId = teamId;
        sameName.attributes = attributes;
        byTeam.set(teamId, sameName);
      } else if (sameName) {
        logger.warn({ realm: realm.name, provider: config.alias, teamId, name, otherTeamId: sameName.teamId }, 'Finesse sync: no group for a team, its name belongs to another team\'s group');
      } else {
        const group: TeamGroup = { id: newId(), name, teamId, attributes: { [FINESSE_TEAM_ID]: [teamId] } };
        await trx.insertInto('groups').values({
          id: group.id, realm_id: realm.id, parent_id: parent, name, description: null, attributes: JSON.stringify(group.attributes),
        }).execute();
        byName.set(name, group);
        byTeam.set(teamId, group);
      }
    }
    return byTeam.size;
  });
  try {
    return await run();
  } catch (error) {
    // A login creating a team group at the same moment: once more, now seeing it.
    if ((error as { code?: string }).code !== '23505') throw error;
    return run();
  }
}
