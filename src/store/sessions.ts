// User sessions and client sessions (see migrations/0002_sessions.ts). Expiry is kept as one
// timestamp per user session so "is it alive" is a single indexed comparison everywhere.
import { sql } from 'kysely';

import { preparedStatement, runPrepared, type Db } from './db.ts';
import { roleRefColumns, roleRefsOf, type RoleRefRow, type UserRoleRefs } from './roles.ts';
import type { ClientSession, User, UserSession, UserSessionTable } from './schema.ts';
import { userColumns } from './users.ts';

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

// Every user_sessions column, named for the prepared statements (see userColumns in users.ts).
const SESSION_COLUMN_SET: Record<keyof UserSessionTable, true> = {
  id: true, offline: true, realm_id: true, user_id: true, login_username: true, ip_address: true, remember_me: true,
  auth_time: true, started_at: true, last_refresh_at: true, expires_at: true,
};
const SESSION_COLUMN_NAMES = Object.keys(SESSION_COLUMN_SET);
const SESSION_COLUMNS = SESSION_COLUMN_NAMES.join(', ');

/**
 * A session's expiry, `least(now + idle, started + max)`, over lifespan parameters ($idle, $max
 * in seconds; max 0 = no limit): for inserts, renewals and refreshes alike.
 */
const expiryFor = (idle: string, max: string, startedAt = 'started_at') =>
  `CASE WHEN ${max}::int > 0 THEN least(now() + make_interval(secs => ${idle}::int), ${startedAt} + make_interval(secs => ${max}::int)) ELSE now() + make_interval(secs => ${idle}::int) END`;

// A (re)started client session: rotation starts over with the new refresh token's id.
const clientSessionUpsert = (sessionId: string, offline: string, clientUuid: string, realmId: string, grantId: string, scope: string, jti: string) => `
  INSERT INTO client_sessions (user_session_id, offline, client_id, realm_id, started_at, grant_id, scope, last_refresh_at,
    current_refresh_jti, refresh_use_count, latest_refresh_jti, rotated_from_jti, rotated_at, successor_sealed)
  VALUES (${sessionId}, ${offline}, ${clientUuid}, ${realmId}, now(), ${grantId}, ${scope}, now(), ${jti}, 0, ${jti}, NULL, NULL, NULL)
  ON CONFLICT (user_session_id, offline, client_id) DO UPDATE SET grant_id = excluded.grant_id, scope = excluded.scope,
    last_refresh_at = excluded.last_refresh_at, current_refresh_jti = excluded.current_refresh_jti, refresh_use_count = 0,
    latest_refresh_jti = excluded.latest_refresh_jti, rotated_from_jti = NULL, rotated_at = NULL, successor_sealed = NULL`;

/**
 * Parameters: $1 id, $2 offline, $3 realm, $4 user, $5 login username, $6 ip address, $7 remember
 * me, $8 auth time, $9/$10 idle/max lifespan. A renewal (same id) only takes a session of the same
 * realm, and keeps its start.
 */
const userSessionUpsert = `
  INSERT INTO user_sessions (id, offline, realm_id, user_id, login_username, ip_address, remember_me, auth_time, started_at, last_refresh_at, expires_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now(), ${expiryFor('$9', '$10', 'now()')})
  ON CONFLICT (id, offline) DO UPDATE SET user_id = excluded.user_id, login_username = excluded.login_username,
    ip_address = excluded.ip_address, remember_me = excluded.remember_me, auth_time = excluded.auth_time,
    last_refresh_at = excluded.last_refresh_at, expires_at = ${expiryFor('$9', '$10', 'user_sessions.started_at')}
  WHERE user_sessions.realm_id = excluded.realm_id
  RETURNING ${SESSION_COLUMNS}`;

const SAVE_USER_SESSION = preparedStatement('user-session-save', userSessionUpsert);

// With a client: $11 client uuid, $12 grant id, $13 scope, $14 refresh token id. The session id
// comes from the saved row: when the upsert saved nothing (an id of another realm's session) it
// is NULL and the whole statement fails rather than join that session.
const SAVE_USER_SESSION_WITH_CLIENT = preparedStatement('user-session-save-with-client', `
  WITH saved AS (${userSessionUpsert}),
  joined AS (${clientSessionUpsert('(SELECT id FROM saved)', '$2', '$11', '$3', '$12', '$13', '$14')})
  SELECT * FROM saved`);

const START_CLIENT_SESSION = preparedStatement('client-session-start', clientSessionUpsert('$1', '$2', '$3', '$4', '$5', '$6', '$7'));

/**
 * Creates the session, or renews it when the same SSO session logs in again (prompt=login). With
 * `client`, the same statement (one round trip, one commit) starts that client's session in it.
 */
export async function saveUserSession(db: Db, s: NewUserSession, client?: ClientSessionValues): Promise<UserSession> {
  const session = [s.id, s.offline, s.realmId, s.userId, s.loginUsername, s.ipAddress, s.rememberMe, s.authTime, s.lifespans.idle, s.lifespans.max];
  const [saved] = client
    ? await runPrepared<UserSession>(db, SAVE_USER_SESSION_WITH_CLIENT, [...session, client.clientUuid, client.grantId, client.scope, client.refreshJti])
    : await runPrepared<UserSession>(db, SAVE_USER_SESSION, session);
  if (!saved) throw new Error(`user session ${s.id} belongs to another realm`);
  return saved;
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

// $8: the presented token's iat, or NULL when there is none (then users.not_before cannot refuse).
const TOUCH_USER_SESSION = preparedStatement('user-session-touch', `
  UPDATE user_sessions SET last_refresh_at = now(),
    expires_at = CASE WHEN remember_me THEN ${expiryFor('$6', '$7')} ELSE ${expiryFor('$4', '$5')} END
  WHERE realm_id = $1 AND id = $2 AND offline = $3 AND (expires_at IS NULL OR expires_at > now())
    AND NOT EXISTS (SELECT 1 FROM users nb WHERE nb.id = user_sessions.user_id AND nb.not_before > $8::bigint)
  RETURNING ${SESSION_COLUMNS}`);

/**
 * Marks activity on a live session (SSO reuse, refresh) and pushes its idle expiry out.
 * Returns undefined when the session is gone or expired. `lifespans` picks the remember-me
 * variant per row.
 */
export async function touchUserSession(db: Db, key: SessionKey, lifespans: (rememberMe: boolean) => SessionLifespans): Promise<UserSession | undefined> {
  const normal = lifespans(false);
  const remembered = lifespans(true);
  const [session] = await runPrepared<UserSession>(db, TOUCH_USER_SESSION, [
    key.realmId, key.id, key.offline, normal.idle, normal.max, remembered.idle, remembered.max, key.tokenIssuedAt ?? null,
  ]);
  return session;
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

/** What a client's session in a user session starts with. */
export type ClientSessionValues = {
  clientUuid: string;
  grantId: string | null;
  scope: string;
  refreshJti: string;
};

export type ClientSessionStart = SessionKey & ClientSessionValues;

/** A client joins a session (code to token, password grant): rotation starts over with this token. */
export async function startClientSession(db: Db, s: ClientSessionStart): Promise<void> {
  await runPrepared(db, START_CLIENT_SESSION, [s.id, s.offline, s.clientUuid, s.realmId, s.grantId, s.scope, s.refreshJti]);
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
  /** Realm refreshTokenMaxReuse / Cloakroom's grace window in seconds. */
  maxReuse: number;
  graceSeconds: number;
  /** The successor token, sealed, kept for repeats inside the grace window. */
  successorSealed: string | null;
};

export type RefreshUseResult =
  | { ok: true; repeatOf?: string }
  | { ok: false; reason: 'no_client_session' | 'stale_token' | 'reuse_exceeded' };

/**
 * Keycloak's rotation as SQL over the client session row, for the parameters holding the
 * presented jti, the new jti, refreshTokenMaxReuse and the sealed successor: the current token may
 * be used 1 + maxReuse times; the newest issued token becomes current on its first use; any other
 * token is stale. Concurrent uses serialize on the row lock and re-check the condition.
 */
const rotationSet = (jti: string, newJti: string, sealed: string) => `refresh_use_count = CASE WHEN current_refresh_jti = ${jti} THEN refresh_use_count + 1 ELSE 1 END,
        current_refresh_jti = ${jti}, latest_refresh_jti = ${newJti}, rotated_from_jti = ${jti}, rotated_at = now(),
        successor_sealed = ${sealed}, last_refresh_at = now()`;
const rotationCondition = (jti: string, maxReuse: string) => `((current_refresh_jti = ${jti} AND refresh_use_count <= ${maxReuse}::int)
        OR (current_refresh_jti IS DISTINCT FROM ${jti} AND latest_refresh_jti = ${jti}))`;

const ROTATE_WITH_SUCCESSOR = preparedStatement('client-session-rotate', `
  UPDATE client_sessions SET ${rotationSet('$5', '$6', '$8')}
  WHERE realm_id = $1 AND user_session_id = $2 AND offline = $3 AND client_id = $4 AND ${rotationCondition('$5', '$7')}
  RETURNING client_id`);

/**
 * One rotated use of a refresh token that keeps the sealed successor for the grace window (the
 * refresh statement rotates without it). A failed use goes on to refuseRefreshToken.
 */
export async function useRefreshToken(db: Db, use: RefreshUse): Promise<RefreshUseResult> {
  const { key } = use;
  const rotated = await runPrepared(db, ROTATE_WITH_SUCCESSOR, [
    key.realmId, key.id, key.offline, use.clientUuid, use.jti, use.newJti, use.maxReuse, use.successorSealed,
  ]);
  if (rotated.length > 0) return { ok: true };
  return refuseRefreshToken(db, use);
}

/**
 * A rotated refresh token that failed its use: a repeat of the last rotated token inside the grace
 * window gets the sealed successor; anything else ends the client session (Keycloak detaches it)
 * and says why.
 */
export async function refuseRefreshToken(db: Db, use: Pick<RefreshUse, 'key' | 'clientUuid' | 'jti' | 'graceSeconds'>): Promise<RefreshUseResult> {
  const { key } = use;
  if (use.graceSeconds > 0) {
    const repeat = await db.updateTable('client_sessions')
      .set({ last_refresh_at: sql`now()` as never })
      .where('realm_id', '=', key.realmId).where('user_session_id', '=', key.id).where('offline', '=', key.offline)
      .where('client_id', '=', use.clientUuid)
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

// --- The refresh grant's statement ------------------------------------------------------------

/**
 * What the refresh grant does to the client session in the same statement: only mark activity
 * (no rotation), rotate without a grace window, or nothing (with a grace window the sealed
 * successor must be stored with the rotation, so useRefreshToken does it after signing).
 */
export type RefreshClientSessionUse =
  | { kind: 'touch' }
  | { kind: 'rotate'; jti: string; newJti: string; maxReuse: number }
  | { kind: 'later' };

export type SessionRefresh = {
  key: SessionKey & { tokenIssuedAt: number };
  userId: string;
  clientUuid: string;
  lifespans: (rememberMe: boolean) => SessionLifespans;
  clientSession: RefreshClientSessionUse;
};

export type RefreshedSession = {
  session: UserSession;
  /** The enabled user with their direct role and group ids; undefined when disabled or gone. */
  subject: { user: User; roleRefs: UserRoleRefs } | undefined;
  /** Whether the client session took this use (undefined: left for useRefreshToken). */
  clientSessionUsed: boolean | undefined;
};


const CLIENT_SESSION_SET: Record<RefreshClientSessionUse['kind'], string | undefined> = {
  touch: 'SET last_refresh_at = now()',
  rotate: `SET ${rotationSet('$11', '$12', 'NULL')}`,
  later: undefined,
};
const CLIENT_SESSION_CONDITION: Record<RefreshClientSessionUse['kind'], string> = {
  touch: '',
  rotate: `AND ${rotationCondition('$11', '$13')}`,
  later: '',
};

/**
 * The whole database side of a refresh in one statement (one round trip, one commit): touch the
 * live user session (pushing its idle expiry out), load its enabled user with their direct role
 * and group ids and the realm's role graph version (src/realms/role-graph.ts), and use the client session (see RefreshClientSessionUse) only when all of that held.
 * Parameters: $1 realm, $2 session id, $3 offline, $4 user, $5 token iat, $6/$7 idle/max,
 * $8/$9 the remember-me idle/max; with a client session use $10 client uuid, then for rotation
 * $11 jti, $12 new jti, $13 max reuse.
 */
function sessionRefreshStatement(kind: RefreshClientSessionUse['kind']) {
  const set = CLIENT_SESSION_SET[kind];
  const clientSession = set === undefined ? '' : `,
    client_session AS (
      UPDATE client_sessions ${set}
      WHERE realm_id = $1 AND user_session_id = $2 AND offline = $3 AND client_id = $10
        AND EXISTS (SELECT 1 FROM subject) ${CLIENT_SESSION_CONDITION[kind]}
      RETURNING client_id
    )`;
  return preparedStatement(`session-refresh-${kind}`, `
    WITH
    session AS (
      UPDATE user_sessions SET last_refresh_at = now(),
        expires_at = CASE WHEN remember_me THEN ${expiryFor('$8', '$9')} ELSE ${expiryFor('$6', '$7')} END
      WHERE realm_id = $1 AND id = $2 AND offline = $3 AND user_id = $4
        AND (expires_at IS NULL OR expires_at > now())
        AND NOT EXISTS (SELECT 1 FROM users nb WHERE nb.id = user_sessions.user_id AND nb.not_before > $5::bigint)
      RETURNING ${SESSION_COLUMNS}
    ),
    subject AS (
      SELECT ${userColumns('users')} FROM users WHERE realm_id = $1 AND id = $4 AND enabled AND EXISTS (SELECT 1 FROM session)
    )${clientSession}
    SELECT s.*,
      (SELECT row_to_json(subject) FROM subject) AS subject,
      ${set === undefined ? 'NULL::boolean' : 'EXISTS (SELECT 1 FROM client_session)'} AS client_session_used,
      ${roleRefColumns('$4', '$1')}
    FROM session s`);
}

const SESSION_REFRESH = {
  touch: sessionRefreshStatement('touch'),
  rotate: sessionRefreshStatement('rotate'),
  later: sessionRefreshStatement('later'),
};

type SessionRefreshRow = UserSession & RoleRefRow & {
  subject: SessionSubjectJson | null;
  client_session_used: boolean | null;
};

/** Undefined when the session is gone, expired, revoked for this token or not the user's. */
export async function refreshUserSession(db: Db, r: SessionRefresh): Promise<RefreshedSession | undefined> {
  const normal = r.lifespans(false);
  const remembered = r.lifespans(true);
  const use = r.clientSession;
  const parameters: unknown[] = [
    r.key.realmId, r.key.id, r.key.offline, r.userId, r.key.tokenIssuedAt,
    normal.idle, normal.max, remembered.idle, remembered.max,
    ...(use.kind === 'later' ? [] : [r.clientUuid]),
    ...(use.kind === 'rotate' ? [use.jti, use.newJti, use.maxReuse] : []),
  ];
  const [row] = await runPrepared<SessionRefreshRow>(db, SESSION_REFRESH[use.kind], parameters);
  if (!row) return undefined;
  const { subject, client_session_used: clientSessionUsed, role_ids, group_ids, role_graph_version, ...session } = row;
  return { session, subject: sessionSubject(subject, { role_ids, group_ids, role_graph_version }), clientSessionUsed: clientSessionUsed ?? undefined };
}

/** The user of a session row (row_to_json: created_at comes as text) with their role refs. */
function sessionSubject(user: SessionSubjectJson | null, refs: RoleRefRow): RefreshedSession['subject'] {
  return user ? { user: { ...user, created_at: new Date(user.created_at) }, roleRefs: roleRefsOf(refs) } : undefined;
}

type SessionSubjectJson = Omit<User, 'created_at'> & { created_at: string };

/**
 * A live online session with its enabled user and role refs, in one statement: what the
 * authorization-code exchange builds its tokens from.
 */
const LIVE_SESSION_WITH_SUBJECT = preparedStatement('live-session-with-subject', `
  SELECT ${SESSION_COLUMN_NAMES.map((column) => `s.${column}`).join(', ')},
    (SELECT row_to_json(u) FROM (SELECT ${userColumns('users')} FROM users WHERE realm_id = $1 AND id = s.user_id AND enabled) u) AS subject,
    ${roleRefColumns('s.user_id', '$1')}
  FROM user_sessions s
  WHERE s.realm_id = $1 AND s.id = $2 AND NOT s.offline AND (s.expires_at IS NULL OR s.expires_at > now())`);

export async function findLiveSessionWithSubject(db: Db, realmId: string, sessionId: string): Promise<Omit<RefreshedSession, 'clientSessionUsed'> | undefined> {
  const [row] = await runPrepared<SessionWithSubjectRow>(db, LIVE_SESSION_WITH_SUBJECT, [realmId, sessionId]);
  if (!row) return undefined;
  const { subject, role_ids, group_ids, role_graph_version, ...session } = row;
  return { session, subject: sessionSubject(subject, { role_ids, group_ids, role_graph_version }) };
}

type SessionWithSubjectRow = UserSession & RoleRefRow & { subject: SessionSubjectJson | null };

/** Deletes sessions past their expiry (which already includes the idle grace). */
export async function deleteExpiredSessions(db: Db, graceSeconds = 0): Promise<number> {
  const rows = await db.deleteFrom('user_sessions')
    .where(sql<boolean>`expires_at < now() - make_interval(secs => ${graceSeconds})`)
    .returning('id').execute();
  return rows.length;
}
