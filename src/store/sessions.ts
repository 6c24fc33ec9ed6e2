// User sessions and client sessions (see migrations/0002_sessions.ts). Expiry is kept as one
// timestamp per user session so "is it alive" is a single indexed comparison everywhere.
import { sql } from 'kysely';

import type { Db } from './db.ts';
import type { ClientSession, UserSession } from './schema.ts';

export type SessionKey = {
  realmId: string;
  id: string;
  offline: boolean;
  /**
   * The `iat` of the token presented for this session, when there is one: a session only counts
   * for tokens issued at or after its user's not-before (set by an admin's user logout).
   */
  tokenIssuedAt?: number;
};

/** Lifespans in seconds; 0 means "no limit" for `max`. */
export type SessionLifespans = { idle: number; max: number };

export type NewUserSession = SessionKey & {
  userId: string;
  loginUsername: string;
  ipAddress: string | null;
  rememberMe: boolean;
  authTime: number;
  lifespans: SessionLifespans;
};

/** `least(now + idle, started + max)` as SQL, for inserts and refreshes alike. */
function expirySql(lifespans: SessionLifespans, startedAt: ReturnType<typeof sql> | Date) {
  const idle = sql`now() + make_interval(secs => ${lifespans.idle})`;
  if (lifespans.max <= 0) return idle;
  return sql`least(${idle}, CAST(${startedAt} AS timestamptz) + make_interval(secs => ${lifespans.max}))`;
}

/** Creates the session, or renews it when the same SSO session logs in again (prompt=login). */
export async function saveUserSession(db: Db, s: NewUserSession): Promise<void> {
  const now = new Date();
  await db.insertInto('user_sessions').values({
    id: s.id, offline: s.offline, realm_id: s.realmId, user_id: s.userId, login_username: s.loginUsername,
    ip_address: s.ipAddress, remember_me: s.rememberMe, auth_time: s.authTime, started_at: now, last_refresh_at: now,
    expires_at: expirySql(s.lifespans, now) as never,
  }).onConflict((oc) => oc.columns(['id', 'offline']).doUpdateSet({
    user_id: s.userId, login_username: s.loginUsername, ip_address: s.ipAddress, remember_me: s.rememberMe,
    auth_time: s.authTime, last_refresh_at: now,
    expires_at: expirySql(s.lifespans, sql.ref('user_sessions.started_at') as never) as never,
  }).where('user_sessions.realm_id', '=', s.realmId)).execute();
}

const alive = sql<boolean>`(expires_at IS NULL OR expires_at > now())`;

/** The session's user has not revoked tokens issued at `issuedAt` (users.not_before, seconds). */
const notBeforeAllows = (issuedAt: number | undefined) => issuedAt === undefined
  ? sql<boolean>`true`
  : sql<boolean>`NOT EXISTS (SELECT 1 FROM users u WHERE u.id = user_sessions.user_id AND u.not_before > ${issuedAt})`;

export function findLiveUserSession(db: Db, key: SessionKey): Promise<UserSession | undefined> {
  return db.selectFrom('user_sessions').selectAll()
    .where('realm_id', '=', key.realmId).where('id', '=', key.id).where('offline', '=', key.offline)
    .where(alive).where(notBeforeAllows(key.tokenIssuedAt)).executeTakeFirst();
}

/**
 * Marks activity on a live session (SSO reuse, refresh) and pushes its idle expiry out.
 * Returns undefined when the session is gone or expired. `lifespans` picks the remember-me
 * variant per row.
 */
export async function touchUserSession(db: Db, key: SessionKey, lifespans: (rememberMe: boolean) => SessionLifespans): Promise<UserSession | undefined> {
  const normal = lifespans(false);
  const remembered = lifespans(true);
  const started = sql.ref('started_at');
  return db.updateTable('user_sessions')
    .set({
      last_refresh_at: sql`now()` as never,
      expires_at: sql`CASE WHEN remember_me THEN ${expirySql(remembered, started as never)} ELSE ${expirySql(normal, started as never)} END` as never,
    })
    .where('realm_id', '=', key.realmId).where('id', '=', key.id).where('offline', '=', key.offline)
    .where(alive).where(notBeforeAllows(key.tokenIssuedAt))
    .returningAll().executeTakeFirst();
}

/** Ends a session with its client sessions; returns the oidc-provider grants they held. */
export async function deleteUserSession(db: Db, key: SessionKey): Promise<string[]> {
  const grants = await db.selectFrom('client_sessions').select('grant_id')
    .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
    .execute();
  await db.deleteFrom('user_sessions')
    .where('realm_id', '=', key.realmId).where('id', '=', key.id).where('offline', '=', key.offline).execute();
  return grants.flatMap((g) => (g.grant_id ? [g.grant_id] : []));
}

export type ClientSessionStart = SessionKey & {
  clientUuid: string;
  grantId: string | null;
  scope: string;
  refreshJti: string;
};

/** A client joins a session (code to token, password grant): rotation starts over with this token. */
export async function startClientSession(db: Db, s: ClientSessionStart): Promise<void> {
  const now = new Date();
  const values = {
    grant_id: s.grantId, scope: s.scope, last_refresh_at: now,
    current_refresh_jti: s.refreshJti, refresh_use_count: 0, latest_refresh_jti: s.refreshJti,
    rotated_from_jti: null, rotated_at: null, successor_sealed: null,
  };
  await db.insertInto('client_sessions').values({
    user_session_id: s.id, offline: s.offline, client_id: s.clientUuid, realm_id: s.realmId, started_at: now, ...values,
  }).onConflict((oc) => oc.columns(['user_session_id', 'offline', 'client_id']).doUpdateSet(values)).execute();
}

export function findClientSession(db: Db, key: SessionKey, clientUuid: string): Promise<ClientSession | undefined> {
  return db.selectFrom('client_sessions').selectAll()
    .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
    .where('client_id', '=', clientUuid).executeTakeFirst();
}

export async function deleteClientSession(db: Db, key: SessionKey, clientUuid: string): Promise<boolean> {
  const rows = await db.deleteFrom('client_sessions')
    .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
    .where('client_id', '=', clientUuid).returning('grant_id').execute();
  return rows.length > 0;
}

export type RefreshUse = {
  key: SessionKey;
  clientUuid: string;
  /** jti of the presented refresh token and of the one about to be issued. */
  jti: string;
  newJti: string;
  /** Realm revokeRefreshToken / refreshTokenMaxReuse / Cloakroom's grace window in seconds. */
  rotate: boolean;
  maxReuse: number;
  graceSeconds: number;
  /** The successor token, sealed, kept for repeats inside the grace window. */
  successorSealed: string | null;
};

export type RefreshUseResult =
  | { ok: true; repeatOf?: string }
  | { ok: false; reason: 'no_client_session' | 'stale_token' | 'reuse_exceeded' };

/**
 * Records one use of a refresh token, atomically (concurrent uses serialize on the row lock and
 * re-check the conditions). With rotation (Keycloak's algorithm): the current token may be used
 * 1 + maxReuse times; the newest issued token becomes current on its first use; any other token
 * is stale. A failed use ends the client session (Keycloak detaches it), except a repeat of the
 * last rotated token inside the grace window, which gets the same successor back.
 */
export async function useRefreshToken(db: Db, use: RefreshUse): Promise<RefreshUseResult> {
  const { key } = use;
  const row = () => db.updateTable('client_sessions')
    .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
    .where('client_id', '=', use.clientUuid);

  if (!use.rotate) {
    const touched = await row().set({ last_refresh_at: sql`now()` as never }).returning('client_id').executeTakeFirst();
    return touched ? { ok: true } : { ok: false, reason: 'no_client_session' };
  }

  const rotated = await row()
    .set({
      refresh_use_count: sql`CASE WHEN current_refresh_jti = ${use.jti} THEN refresh_use_count + 1 ELSE 1 END` as never,
      current_refresh_jti: use.jti,
      latest_refresh_jti: use.newJti,
      rotated_from_jti: use.jti,
      rotated_at: sql`now()` as never,
      successor_sealed: use.graceSeconds > 0 ? use.successorSealed : null,
      last_refresh_at: sql`now()` as never,
    })
    .where((eb) => eb.or([
      eb.and([eb('current_refresh_jti', '=', use.jti), eb('refresh_use_count', '<=', use.maxReuse)]),
      eb.and([eb('current_refresh_jti', 'is distinct from', use.jti), eb('latest_refresh_jti', '=', use.jti)]),
    ]))
    .returning('client_id').executeTakeFirst();
  if (rotated) return { ok: true };

  if (use.graceSeconds > 0) {
    const repeat = await row()
      .set({ last_refresh_at: sql`now()` as never })
      .where('rotated_from_jti', '=', use.jti)
      .where('successor_sealed', 'is not', null)
      .where(sql<boolean>`rotated_at > now() - make_interval(secs => ${use.graceSeconds})`)
      .returning('successor_sealed').executeTakeFirst();
    if (repeat?.successor_sealed) return { ok: true, repeatOf: repeat.successor_sealed };
  }

  const ended = await db.deleteFrom('client_sessions')
    .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
    .where('client_id', '=', use.clientUuid)
    .returning('current_refresh_jti').executeTakeFirst();
  if (!ended) return { ok: false, reason: 'no_client_session' };
  return { ok: false, reason: ended.current_refresh_jti === use.jti ? 'reuse_exceeded' : 'stale_token' };
}

/** Deletes sessions past their expiry (which already includes the idle grace). */
export async function deleteExpiredSessions(db: Db, graceSeconds = 0): Promise<number> {
  const rows = await db.deleteFrom('user_sessions')
    .where(sql<boolean>`expires_at < now() - make_interval(secs => ${graceSeconds})`)
    .returning('id').execute();
  return rows.length;
}
