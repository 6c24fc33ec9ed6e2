// Who is calling the Admin API and what they may do, as Keycloak decides it: a bearer token issued
// by the `master` realm or by the realm being managed, and the caller's current role mappings (read
// from the database, not from the token: revoking a role takes effect at once).
//  - master user with the realm role `admin`: everything in every realm; `create-realm`: new realms.
//  - master user with roles of the master client `<realm>-realm` (Keycloak's per-realm admin
//    clients, present after importing a Keycloak master realm): those roles in <realm>.
//  - user of realm R with roles of R's `realm-management` client: those roles in R.
import type { JWTPayload } from 'jose';

import { sessionBehindTokenAlive, verifyRealmToken } from '../oidc/introspection.ts';
import type { RealmContext } from '../realms/context.ts';
import type { RealmRegistry } from '../realms/registry.ts';
import type { Db } from '../store/db.ts';
import type { EffectiveRole } from '../store/roles.ts';

export const MANAGEMENT_ROLES = [
  'realm-admin', 'create-client', 'impersonation', 'manage-authorization', 'manage-clients', 'manage-events',
  'manage-identity-providers', 'manage-realm', 'manage-users', 'query-clients', 'query-groups', 'query-realms',
  'query-users', 'view-authorization', 'view-clients', 'view-events', 'view-identity-providers', 'view-realm', 'view-users',
] as const;
export type ManagementRole = (typeof MANAGEMENT_ROLES)[number];

/**
 * Roles that grant another one without being a composite of it: Keycloak's permission checks treat
 * manage-X as allowing view-X and view-X as allowing query-X (AdminPermissions.canView...).
 */
const IMPLIED_BY: Partial<Record<ManagementRole, ManagementRole[]>> = {
  'view-users': ['manage-users'],
  'query-users': ['view-users', 'manage-users'],
  'query-groups': ['view-users', 'manage-users'],
  'view-clients': ['manage-clients'],
  'query-clients': ['view-clients', 'manage-clients'],
  'view-realm': ['manage-realm'],
  'query-realms': ['view-realm', 'manage-realm'],
  'view-identity-providers': ['manage-identity-providers'],
  'view-events': ['manage-events'],
  'view-authorization': ['manage-authorization'],
  'create-client': ['manage-clients'],
};

export class AdminAuthError extends Error {
  readonly status: 401 | 403;
  constructor(status: 401 | 403, message: string) {
    super(message);
    this.status = status;
  }
}

export type AdminIdentity = {
  /** The realm that issued the token. */
  realmId: string;
  realmName: string;
  userId: string;
  /** azp of the token (clientId, not uuid). */
  clientId: string | undefined;
  username: string | undefined;
};

export class AdminAuth {
  readonly identity: AdminIdentity;
  readonly #roles: readonly EffectiveRole[];

  constructor(identity: AdminIdentity, roles: readonly EffectiveRole[]) {
    this.identity = identity;
    this.#roles = roles;
  }

  get isMaster(): boolean {
    return this.identity.realmName === 'master';
  }

  /** The master realm's `admin` role: every permission everywhere. */
  get isSuperAdmin(): boolean {
    return this.isMaster && this.#roles.some((r) => r.clientId === null && r.name === 'admin');
  }

  get canCreateRealm(): boolean {
    return this.isMaster && this.#roles.some((r) => r.clientId === null && (r.name === 'admin' || r.name === 'create-realm'));
  }

  /** The client whose roles carry management permissions for `realm`, for this caller. */
  #managementClient(realm: { id: string; name: string }): string | undefined {
    if (this.isMaster) return `${realm.name}-realm`;
    return this.identity.realmId === realm.id ? 'realm-management' : undefined;
  }

  #hasRole(client: string, role: string): boolean {
    return this.#roles.some((r) => r.clientId === client && r.name === role);
  }

  /** Whether the caller holds `role` (directly, by composite or by implication) in `realm`. */
  can(realm: { id: string; name: string }, role: ManagementRole): boolean {
    if (this.isSuperAdmin) return true;
    const client = this.#managementClient(realm);
    if (!client) return false;
    if (this.#hasRole(client, 'realm-admin') || this.#hasRole(client, role)) return true;
    return (IMPLIED_BY[role] ?? []).some((other) => this.#hasRole(client, other));
  }

  /** Any management role at all in `realm`: what Keycloak needs to show the realm in the list. */
  canAccess(realm: { id: string; name: string }): boolean {
    if (this.isSuperAdmin) return true;
    const client = this.#managementClient(realm);
    return client !== undefined && this.#roles.some((r) => r.clientId === client && (MANAGEMENT_ROLES as readonly string[]).includes(r.name));
  }

  require(realm: { id: string; name: string }, ...anyOf: ManagementRole[]): void {
    if (!anyOf.some((role) => this.can(realm, role))) throw new AdminAuthError(403, 'HTTP 403 Forbidden');
  }
}

/** The realm name in an issuer `.../realms/{name}`. */
function issuerRealm(iss: unknown): string | undefined {
  if (typeof iss !== 'string') return undefined;
  const match = /\/realms\/([^/]+)$/.exec(iss);
  if (!match) return undefined;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return undefined;
  }
}

function unverifiedClaims(token: string): JWTPayload | undefined {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as JWTPayload;
  } catch {
    return undefined;
  }
}

/**
 * Verifies the bearer token (signature, issuer at this origin, expiry, realm not-before, live
 * session) and loads the caller's roles. Throws AdminAuthError(401) for anything else.
 */
export async function authenticateAdmin(db: Db, registry: RealmRegistry, issuerFor: (realm: RealmContext) => string, authorization: string | undefined): Promise<AdminAuth> {
  const [scheme, token] = (authorization ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) throw new AdminAuthError(401, 'HTTP 401 Unauthorized');
  const realmName = issuerRealm(unverifiedClaims(token)?.iss);
  const realm = realmName ? await registry.get(realmName) : undefined;
  if (!realm) throw new AdminAuthError(401, 'HTTP 401 Unauthorized');
  const claims = await verifyRealmToken(realm, issuerFor(realm), token);
  if (!claims || claims.typ !== 'Bearer' || typeof claims.sub !== 'string') throw new AdminAuthError(401, 'HTTP 401 Unauthorized');
  if (!(await sessionBehindTokenAlive(realm, claims))) throw new AdminAuthError(401, 'HTTP 401 Unauthorized');
  const user = await db.selectFrom('users').select(['id', 'enabled', 'username'])
    .where('realm_id', '=', realm.id).where('id', '=', claims.sub).executeTakeFirst();
  if (!user?.enabled) throw new AdminAuthError(401, 'HTTP 401 Unauthorized');
  const roles = await realm.effectiveUserRoles(user.id);
  return new AdminAuth({
    realmId: realm.id, realmName: realm.name, userId: user.id, username: user.username,
    clientId: typeof claims.azp === 'string' ? claims.azp : undefined,
  }, roles);
}
