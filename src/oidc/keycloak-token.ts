// Builds the Keycloak-shaped content of a token: which client scopes are granted, the subject
// (user, effective roles, groups) and the claims the protocol mappers produce from it.
import type { ClientModel, ClientScopeModel, RealmContext } from '../realms/context.ts';
import { roleScopeIds, userGroupPaths, type EffectiveRole } from '../store/roles.ts';
import type { User } from '../store/schema.ts';
import { findUserById } from '../store/users.ts';
import { audienceClaim, mapClaims, type MapperModel, type TokenKind, type TokenSubject } from './protocol-mappers.ts';

/** The client's default scopes plus the optional ones the request asked for. */
export function grantedScopes(client: ClientModel, requested: string | undefined): ClientScopeModel[] {
  const asked = new Set((requested ?? '').split(' ').filter(Boolean));
  return [...client.defaultScopes, ...client.optionalScopes.filter((s) => asked.has(s.name))];
}

/** The `scope` claim: openid when asked for, then granted scopes that show in the token. */
export function scopeString(scopes: ClientScopeModel[], requested: string | undefined): string {
  const openid = (requested ?? '').split(' ').includes('openid');
  return [...(openid ? ['openid'] : []), ...scopes.filter((s) => s.includeInTokenScope).map((s) => s.name)].join(' ');
}

export function mappersFor(client: ClientModel, scopes: ClientScopeModel[]): MapperModel[] {
  return [...scopes.flatMap((s) => client.scopeMappers.get(s.id) ?? []), ...client.ownMappers];
}

export type SubjectBase = Omit<TokenSubject, 'sessionNotes' | 'acr'>;

/** Loads what the mappers need about a user for tokens issued to `client` with `scopes`. */
export async function loadSubject(realm: RealmContext, client: ClientModel, userId: string, scopes: ClientScopeModel[], mappers: MapperModel[]): Promise<SubjectBase | undefined> {
  const user = await findUserById(realm.db, realm.id, userId);
  if (!user || !user.enabled) return undefined;
  return subjectOf(realm, client, user, await realm.effectiveUserRoles(userId), scopes, mappers);
}

/** The subject of an enabled user whose effective roles are already loaded. */
export async function subjectOf(realm: RealmContext, client: ClientModel, user: User, effectiveRoles: readonly EffectiveRole[], scopes: ClientScopeModel[], mappers: MapperModel[]): Promise<SubjectBase> {
  let roles = effectiveRoles;
  if (!client.row.full_scope_allowed) {
    const allowed = await roleScopeIds(realm.db, client.id, scopes.map((s) => s.id));
    roles = roles.filter((r) => allowed.has(r.id));
  }
  const needsGroups = mappers.some((m) => m.protocolMapper === 'oidc-group-membership-mapper');
  const clientRoles: Record<string, string[]> = {};
  for (const role of roles) {
    if (role.clientId !== null) (clientRoles[role.clientId] ??= []).push(role.name);
  }
  return {
    user: {
      id: user.id,
      username: user.username,
      email: user.email,
      emailVerified: user.email_verified,
      firstName: user.first_name,
      lastName: user.last_name,
      createdTimestamp: user.created_at.getTime(),
      attributes: user.attributes,
    },
    realmRoles: roles.filter((r) => r.clientId === null).map((r) => r.name),
    clientRoles,
    groups: needsGroups ? await userGroupPaths(realm.db, user.id) : [],
    clientId: client.clientId,
    webOrigins: client.row.web_origins,
    redirectUris: client.row.redirect_uris,
  };
}

/** Mapper claims of one token kind plus Keycloak's `aud`. */
export function tokenClaims(subject: TokenSubject, mappers: MapperModel[], kind: TokenKind): Record<string, unknown> {
  const { claims, audiences } = mapClaims(mappers, subject, kind);
  const aud = audienceClaim(audiences);
  return aud === undefined ? claims : { ...claims, aud };
}
