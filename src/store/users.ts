import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';

import { preparedStatement, runPrepared, type Db } from './db.ts';
import { roleRefColumns, roleRefsOf, type RoleRefRow, type UserRoleRefs } from './roles.ts';
import type { Database, User, UserTable } from './schema.ts';

// Every column of UserTable, named: prepared statements must not select `*` (a migration adding a
// column would change a cached plan's result type under running servers). The record type makes
// a column added to UserTable a compile error here until it is listed.
const USER_COLUMN_SET: Record<keyof UserTable, true> = {
  id: true, realm_id: true, username: true, email: true, email_verified: true, enabled: true, first_name: true, last_name: true,
  federation_link: true, service_account_client_id: true, application: true, attributes: true, required_actions: true,
  not_before: true, login_authenticator_id: true, created_at: true,
};
export const userColumns = (table: string): string => Object.keys(USER_COLUMN_SET).map((column) => `${table}.${column}`).join(', ');

// A login reads its user several times (authentication, the authorization resume, the code
// exchange), so these two are prepared (src/store/db.ts).
const USER_BY_ID = preparedStatement('user-by-id', `SELECT ${userColumns('users')} FROM users WHERE realm_id = $1 AND id = $2`);

export async function findUserById(db: Db, realmId: string, id: string): Promise<User | undefined> {
  const [user] = await runPrepared<User>(db, USER_BY_ID, [realmId, id]);
  return user;
}

/** A username match wins; an e-mail shared by several users (duplicateEmailsAllowed) names nobody. */
function chosenLoginUser<T extends { username: string }>(rows: T[], lower: string): T | undefined {
  return rows.find((u) => u.username.toLowerCase() === lower) ?? (rows.length === 1 ? rows[0] : undefined);
}

/** A user who may log in with `login` (see findUserForPasswordLogin), without the rest. */
export async function findUserByLogin(db: Db, realmId: string, login: string, allowEmail: boolean): Promise<User | undefined> {
  return (await findUserForPasswordLogin(db, realmId, login, allowEmail))?.user;
}

export type PasswordCredential = { id: string; secret_data: string; credential_data: unknown; has_otp: boolean | number };

/**
 * The users `login` names: username (case-insensitive) or, when the realm allows it, e-mail;
 * service accounts never log in interactively. With each one's password credential (null: none,
 * as findPasswordCredential reads it) and role ids: a login costs one round trip before the hash
 * check, and a successful one needs no further lookup before its tokens.
 */
const passwordLoginStatement = (allowEmail: boolean) => preparedStatement(`password-login-${allowEmail ? 'username-or-email' : 'username'}`, `
  SELECT ${userColumns('users')},
    (SELECT to_json(c) FROM (
      SELECT c.id, c.secret_data, c.credential_data,
        EXISTS (SELECT 1 FROM credentials otp WHERE otp.user_id = users.id AND otp.type = 'otp') AS has_otp
      FROM credentials c WHERE c.user_id = users.id AND c.type = 'password'
      ORDER BY c.priority, c.created_at DESC LIMIT 1) c) AS password_credential,
    (SELECT to_json(r) FROM (SELECT ${roleRefColumns('users.id', 'users.realm_id')}) r) AS role_refs
  FROM users
  WHERE realm_id = $1 AND service_account_client_id IS NULL
    AND (lower(username) = $2${allowEmail ? ' OR lower(email) = $2' : ''})
  LIMIT 3`);
const PASSWORD_LOGIN = { usernameOnly: passwordLoginStatement(false), usernameOrEmail: passwordLoginStatement(true) };

type PasswordLoginRow = User & { password_credential: PasswordCredential | null; role_refs: RoleRefRow };

export async function findUserForPasswordLogin(db: Db, realmId: string, login: string, allowEmail: boolean): Promise<{ user: User; password: PasswordCredential | null; roleRefs: UserRoleRefs } | undefined> {
  const lower = login.toLowerCase();
  const rows = await runPrepared<PasswordLoginRow>(db, allowEmail ? PASSWORD_LOGIN.usernameOrEmail : PASSWORD_LOGIN.usernameOnly, [realmId, lower]);
  const chosen = chosenLoginUser(rows, lower);
  if (!chosen) return undefined;
  const { password_credential: password, role_refs: roleRefs, ...user } = chosen;
  return { user, password, roleRefs: roleRefsOf(roleRefs) };
}

/** The user's password credential, and whether an OTP device exists (one round trip for a login). */
export function findPasswordCredential(db: Db, userId: string): Promise<PasswordCredential | undefined> {
  return db.selectFrom('credentials').select(['id', 'secret_data', 'credential_data'])
    .select((eb) => eb.exists(eb.selectFrom('credentials as otp').select('otp.id').where('otp.user_id', '=', userId).where('otp.type', '=', 'otp')).as('has_otp'))
    .where('user_id', '=', userId).where('type', '=', 'password')
    .orderBy('priority').orderBy('created_at', 'desc').limit(1).executeTakeFirst();
}

export async function replacePasswordHash(db: Db, credentialId: string, secretData: string, credentialData: string): Promise<void> {
  await db.updateTable('credentials').set({ secret_data: secretData, credential_data: credentialData })
    .where('id', '=', credentialId).execute();
}

/** `%`, `_` and `\` matched literally in a LIKE pattern (PostgreSQL's default escape is `\`). */
export const escapeLike = (value: string): string => value.replace(/[\\%_]/g, '\\$&');

/** The user columns Keycloak's `search` and field filters look at, lower-cased as the prefix indexes are. */
const SEARCH_COLUMNS = ['users.username', 'users.email', 'users.first_name', 'users.last_name'] as const;
export type UserSearchField = 'username' | 'email' | 'first_name' | 'last_name';

/** Keycloak's user search criteria (UsersResource.getUsers / JpaUserProvider). */
export type UserSearch = {
  /**
   * Keycloak's `search`: whitespace-separated terms that must all match one of username, e-mail,
   * first or last name. A term is a prefix (`foo`, `foo*`), a pattern with `*` wildcards
   * (`*foo*` for infix) or, quoted (`"foo"`), an exact value.
   */
  search?: string;
  /** Contains (case-insensitive), or equals when `exact`. */
  fields?: Partial<Record<UserSearchField, string>>;
  /** User attributes: one value of the attribute contains (equals when `exact`) the given one. */
  attributes?: Record<string, string>;
  exact?: boolean;
  enabled?: boolean;
  emailVerified?: boolean;
  idpAlias?: string;
  idpUserId?: string;
  includeServiceAccounts: boolean;
};

function searchTermMatches(eb: ExpressionBuilder<Database, 'users'>, term: string): Expression<SqlBool> {
  const value = term.toLowerCase();
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    const exact = value.slice(1, -1);
    return eb.or(SEARCH_COLUMNS.map((column) => eb(eb.fn<string>('lower', [column]), '=', exact)));
  }
  // Prefix by default, so `lower(col) LIKE 'abc%'` can use the text_pattern_ops indexes.
  const pattern = escapeLike(value).replaceAll('*', '%') + (value.endsWith('*') ? '' : '%');
  return eb.or(SEARCH_COLUMNS.map((column) => eb(eb.fn<string>('lower', [column]), 'like', pattern)));
}

/** A WHERE condition selecting a realm's users by Keycloak's search criteria. */
export function userSearchCondition(realmId: string, criteria: UserSearch) {
  return (eb: ExpressionBuilder<Database, 'users'>): Expression<SqlBool> => {
    const conditions: Expression<SqlBool>[] = [eb('users.realm_id', '=', realmId)];
    if (!criteria.includeServiceAccounts) conditions.push(eb('users.service_account_client_id', 'is', null));
    if (criteria.search !== undefined) {
      for (const term of criteria.search.trim().split(/\s+/)) conditions.push(searchTermMatches(eb, term));
    }
    for (const [field, value] of Object.entries(criteria.fields ?? {})) {
      const column = eb.fn<string>('lower', [`users.${field as UserSearchField}`]);
      conditions.push(criteria.exact ? eb(column, '=', value.toLowerCase()) : eb(column, 'like', `%${escapeLike(value.toLowerCase())}%`));
    }
    for (const [name, value] of Object.entries(criteria.attributes ?? {})) {
      const match = criteria.exact ? sql`= ${value.toLowerCase()}` : sql`LIKE ${`%${escapeLike(value.toLowerCase())}%`}`;
      conditions.push(sql<SqlBool>`EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(users.attributes -> ${name}) = 'array' THEN users.attributes -> ${name} ELSE '[]'::jsonb END) AS attribute(value) WHERE lower(attribute.value) ${match})`);
    }
    if (criteria.enabled !== undefined) conditions.push(eb('users.enabled', '=', criteria.enabled));
    if (criteria.emailVerified !== undefined) conditions.push(eb('users.email_verified', '=', criteria.emailVerified));
    if (criteria.idpAlias !== undefined || criteria.idpUserId !== undefined) {
      let link = eb.selectFrom('federated_identities').select('federated_identities.user_id')
        .whereRef('federated_identities.user_id', '=', 'users.id');
      if (criteria.idpAlias !== undefined) link = link.where('federated_identities.identity_provider', '=', criteria.idpAlias);
      if (criteria.idpUserId !== undefined) link = link.where('federated_identities.external_user_id', '=', criteria.idpUserId);
      conditions.push(eb.exists(link));
    }
    return eb.and(conditions);
  };
}

/** Matches beyond this many are paged by walking the username index instead (see listUsers). */
const NARROW_SEARCH_LIMIT = 2000;

/**
 * A page of users matching `criteria`, ordered by username. PostgreSQL's estimate for a prefix
 * that falls inside one histogram bucket is ~1 % of the realm, so with LIMIT it often walks the
 * whole username index filtering row by row (100 ms at 100,000 users) when ten rows match. So a
 * filtered page first collects up to NARROW_SEARCH_LIMIT matches through the prefix indexes
 * (a materialized CTE the planner cannot fold) and sorts them; only a broad search that reaches
 * the cap falls back to the index walk, which finds a page of a broad match at once.
 */
export async function listUsers(db: Db, realmId: string, criteria: UserSearch, page: { first: number; max: number | undefined }): Promise<User[]> {
  const condition = userSearchCondition(realmId, criteria);
  const filtered = criteria.search !== undefined || Object.keys(criteria.fields ?? {}).length > 0 || Object.keys(criteria.attributes ?? {}).length > 0
    || criteria.idpAlias !== undefined || criteria.idpUserId !== undefined;
  const walk = () => {
    let query = db.selectFrom('users').selectAll().where(condition).orderBy((eb) => eb.fn('lower', ['users.username'])).offset(page.first);
    if (page.max !== undefined) query = query.limit(page.max);
    return query.execute();
  };
  if (!filtered) return walk();
  let query = db.with((cte) => cte('matches').materialized(), (qb) => qb.selectFrom('users').selectAll().where(condition).limit(NARROW_SEARCH_LIMIT + 1))
    .selectFrom('matches').selectAll()
    .select(sql<number>`(SELECT count(*) FROM matches)::int`.as('match_count'))
    .orderBy(sql`lower(matches.username)`).offset(page.first);
  if (page.max !== undefined) query = query.limit(page.max);
  const rows = await query.execute();
  // Past the cap, or a page beyond the collected matches: the walk decides.
  if ((rows[0]?.match_count ?? 0) > NARROW_SEARCH_LIMIT || (rows.length === 0 && page.first > 0)) return walk();
  return rows.map(({ match_count: _count, ...user }) => user);
}

/**
 * Whether realm contexts cache this user's token subject (roles, groups, attributes): service
 * accounts and users holding access keys. Changes to such a user must drop the realm's context.
 */
export async function tokenSubjectCached(db: Db, user: { id: string; service_account_client_id: string | null }): Promise<boolean> {
  if (user.service_account_client_id) return true;
  const key = await db.selectFrom('access_keys').select('id').where('user_id', '=', user.id).limit(1).executeTakeFirst();
  return key !== undefined;
}

/** Criteria that select every user but service accounts: GET /users/count without filters. */
export function isEveryPerson(criteria: UserSearch): boolean {
  return !criteria.includeServiceAccounts && criteria.search === undefined
    && Object.keys(criteria.fields ?? {}).length === 0 && Object.keys(criteria.attributes ?? {}).length === 0
    && criteria.enabled === undefined && criteria.emailVerified === undefined
    && criteria.idpAlias === undefined && criteria.idpUserId === undefined;
}

/** A realm's users without service accounts, from the counter the users triggers keep (migration 0003). */
export async function countRealmPeople(db: Db, realmId: string): Promise<number> {
  const row = await db.selectFrom('realm_user_counts').select('people').where('realm_id', '=', realmId).executeTakeFirst();
  return Number(row?.people ?? 0);
}

/** Whether another user of the realm has this username (case-insensitive, as Keycloak keeps them). */
export function usernameTaken(db: Db, realmId: string, username: string, exceptId?: string): Promise<boolean> {
  return loginValueTaken(db, realmId, 'username', username, exceptId);
}

/** Whether another user of the realm has this e-mail address (case-insensitive). */
export function emailTaken(db: Db, realmId: string, email: string, exceptId?: string): Promise<boolean> {
  return loginValueTaken(db, realmId, 'email', email, exceptId);
}

async function loginValueTaken(db: Db, realmId: string, column: 'username' | 'email', value: string, exceptId?: string): Promise<boolean> {
  let query = db.selectFrom('users').select('id').where('realm_id', '=', realmId)
    .where((eb) => eb(eb.fn('lower', [column]), '=', value.toLowerCase()));
  if (exceptId) query = query.where('id', '!=', exceptId);
  return (await query.limit(1).executeTakeFirst()) !== undefined;
}
