import { describe, expect, it } from 'vitest';
import { keycloakRealmDefaults } from '../../src/realms/defaults.ts';
import type { ClientScopeRep, RealmDefaults, RoleRep } from '../../src/realms/defaults.ts';

const scopeByName = (d: RealmDefaults, name: string): ClientScopeRep => {
  const s = d.clientScopes.find((x) => x.name === name);
  if (!s) throw new Error(`no client scope ${name}`);
  return s;
};
const roleNames = (roles: RoleRep[] | undefined): string[] => (roles ?? []).map((r) => r.name).sort();

describe('keycloakRealmDefaults', () => {
  const d = keycloakRealmDefaults('acme');

  it('creates the OpenID Connect client scopes of a new realm, and no SAML ones', () => {
    expect(d.clientScopes.map((s) => s.name).sort()).toEqual([
      'acr', 'address', 'basic', 'email', 'microprofile-jwt', 'offline_access', 'phone', 'profile', 'roles',
      'service_account', 'web-origins',
    ]);
    expect(d.clientScopes.every((s) => s.protocol === 'openid-connect')).toBe(true);
  });

  it('lists the realm default and optional scopes', () => {
    expect(d.defaultDefaultClientScopes).toEqual(['profile', 'email', 'roles', 'web-origins', 'acr', 'basic']);
    expect(d.defaultOptionalClientScopes).toEqual(['offline_access', 'address', 'phone', 'microprofile-jwt']);
    // service_account exists but is attached only to clients with a service account.
    expect(d.defaultDefaultClientScopes).not.toContain('service_account');
    expect(d.defaultOptionalClientScopes).not.toContain('service_account');
  });

  it('gives the roles scope its three mappers with Keycloak claim names', () => {
    const roles = scopeByName(d, 'roles');
    expect(roles.protocolMappers.map((m) => m.name).sort()).toEqual(['audience resolve', 'client roles', 'realm roles']);
    const realm = roles.protocolMappers.find((m) => m.name === 'realm roles');
    expect(realm?.protocolMapper).toBe('oidc-usermodel-realm-role-mapper');
    expect(realm?.config).toMatchObject({ 'claim.name': 'realm_access.roles', multivalued: 'true', 'access.token.claim': 'true' });
    expect(realm?.config['id.token.claim']).toBeUndefined();
    const client = roles.protocolMappers.find((m) => m.name === 'client roles');
    expect(client?.protocolMapper).toBe('oidc-usermodel-client-role-mapper');
    expect(client?.config['claim.name']).toBe('resource_access.${client_id}.roles');
    expect(roles.protocolMappers.find((m) => m.name === 'audience resolve')?.protocolMapper).toBe('oidc-audience-resolve-mapper');
    expect(roles.attributes['include.in.token.scope']).toBe('false');
  });

  it('maps the profile, email and basic claims', () => {
    const profile = scopeByName(d, 'profile');
    expect(profile.protocolMappers).toHaveLength(14);
    expect(profile.attributes).toMatchObject({ 'consent.screen.text': '${profileScopeConsentText}', 'include.in.token.scope': 'true' });
    expect(profile.protocolMappers.find((m) => m.name === 'username')?.config['claim.name']).toBe('preferred_username');
    expect(profile.protocolMappers.find((m) => m.name === 'updated at')?.config['jsonType.label']).toBe('long');
    expect(profile.protocolMappers.find((m) => m.name === 'full name')?.protocolMapper).toBe('oidc-full-name-mapper');
    const verified = scopeByName(d, 'email').protocolMappers.find((m) => m.name === 'email verified');
    expect(verified?.protocolMapper).toBe('oidc-usermodel-property-mapper');
    const basic = scopeByName(d, 'basic').protocolMappers;
    expect(basic.find((m) => m.name === 'auth_time')?.config['user.session.note']).toBe('AUTH_TIME');
    expect(basic.find((m) => m.name === 'sub')?.protocolMapper).toBe('oidc-sub-mapper');
    expect(scopeByName(d, 'offline_access').protocolMappers).toEqual([]);
  });

  it('writes every mapper config and scope attribute value as a string', () => {
    const mappers = [...d.clientScopes.flatMap((s) => s.protocolMappers), ...d.clients.flatMap((c) => c.protocolMappers ?? [])];
    expect(mappers.length).toBeGreaterThan(30);
    for (const m of mappers) for (const v of Object.values(m.config)) expect(typeof v).toBe('string');
    for (const s of d.clientScopes) for (const v of Object.values(s.attributes)) expect(typeof v).toBe('string');
    for (const c of d.clients) for (const v of Object.values(c.attributes)) expect(typeof v).toBe('string');
  });

  it('makes realm-admin a composite of every other realm-management role', () => {
    const rm = d.roles.client['realm-management'] ?? [];
    const realmAdmin = rm.find((r) => r.name === 'realm-admin');
    const others = rm.filter((r) => r.name !== 'realm-admin').map((r) => r.name).sort();
    expect(others).toEqual(expect.arrayContaining([
      'create-client', 'impersonation', 'manage-authorization', 'manage-clients', 'manage-events',
      'manage-identity-providers', 'manage-realm', 'manage-users', 'query-clients', 'query-groups', 'query-realms',
      'query-users', 'view-authorization', 'view-clients', 'view-events', 'view-identity-providers', 'view-realm', 'view-users',
    ]));
    expect(realmAdmin?.composite).toBe(true);
    expect([...(realmAdmin?.composites?.client?.['realm-management'] ?? [])].sort()).toEqual(others);
    expect(rm.find((r) => r.name === 'view-users')?.composites?.client?.['realm-management']?.slice().sort()).toEqual(['query-groups', 'query-users']);
    expect(rm.find((r) => r.name === 'view-clients')?.composites?.client?.['realm-management']).toEqual(['query-clients']);
  });

  it('creates the account and broker roles with their composites', () => {
    expect(roleNames(d.roles.client.account)).toEqual([
      'delete-account', 'manage-account', 'manage-account-links', 'manage-consent', 'view-applications',
      'view-consent', 'view-groups', 'view-profile',
    ]);
    const account = d.roles.client.account ?? [];
    expect(account.find((r) => r.name === 'manage-account')?.composites).toEqual({ client: { account: ['manage-account-links'] } });
    expect(account.find((r) => r.name === 'manage-consent')?.composites).toEqual({ client: { account: ['view-consent'] } });
    expect(account.every((r) => r.clientRole && r.description === `\${role_${r.name}}`)).toBe(true);
    expect(roleNames(d.roles.client.broker)).toEqual(['read-token']);
  });

  it('composes the default role of offline_access, uma_authorization and two account roles', () => {
    expect(d.defaultRole.name).toBe('default-roles-acme');
    expect(d.defaultRole.composite).toBe(true);
    expect(d.defaultRole.composites?.realm?.slice().sort()).toEqual(['offline_access', 'uma_authorization']);
    expect(d.defaultRole.composites?.client?.account?.slice().sort()).toEqual(['manage-account', 'view-profile']);
    expect(roleNames(d.roles.realm)).toEqual(['default-roles-acme', 'manage-own-access-keys', 'offline_access', 'uma_authorization']);
    expect(d.roles.realm.find((r) => r.name === 'offline_access')?.description).toBe('${role_offline-access}');
    expect(d.roles.realm.find((r) => r.name === 'uma_authorization')?.description).toBe('${role_uma_authorization}');
  });

  it('creates the six built-in clients of a non-master realm', () => {
    expect(d.clients.map((c) => c.clientId).sort()).toEqual([
      'account', 'account-console', 'admin-cli', 'broker', 'realm-management', 'security-admin-console',
    ]);
    const byId = Object.fromEntries(d.clients.map((c) => [c.clientId, c]));
    expect(byId['admin-cli']).toMatchObject({ publicClient: true, standardFlowEnabled: false, directAccessGrantsEnabled: true });
    expect(byId['realm-management']).toMatchObject({ bearerOnly: true, publicClient: false });
    expect(byId['account-console']?.attributes['pkce.code.challenge.method']).toBe('S256');
    expect(byId['account-console']?.protocolMappers?.map((m) => m.name)).toEqual(['audience resolve']);
    expect(byId['security-admin-console']?.protocolMappers?.map((m) => m.name)).toEqual(['locale']);
    for (const c of d.clients) {
      expect(c.defaultClientScopes.slice().sort()).toEqual(['acr', 'basic', 'email', 'profile', 'roles', 'web-origins']);
      expect(c.optionalClientScopes.slice().sort()).toEqual(['address', 'microprofile-jwt', 'offline_access', 'phone']);
    }
  });

  it('substitutes the realm name into URLs and names', () => {
    const byId = Object.fromEntries(d.clients.map((c) => [c.clientId, c]));
    expect(byId.account).toMatchObject({ rootUrl: '${authBaseUrl}', baseUrl: '/realms/acme/account/', redirectUris: ['/realms/acme/account/*'] });
    expect(byId['security-admin-console']).toMatchObject({ baseUrl: '/admin/acme/console/', redirectUris: ['/admin/acme/console/*'], webOrigins: ['+'] });
    // Keycloak lower-cases the realm name in the default role only.
    const upper = keycloakRealmDefaults('Acme');
    expect(upper.defaultRole.name).toBe('default-roles-acme');
    expect(upper.clients.find((c) => c.clientId === 'account')?.baseUrl).toBe('/realms/Acme/account/');
  });

  it('keeps every scope and role reference resolvable', () => {
    const scopes = new Set(d.clientScopes.map((s) => s.name));
    for (const n of [...d.defaultDefaultClientScopes, ...d.defaultOptionalClientScopes]) expect(scopes.has(n)).toBe(true);
    for (const c of d.clients) for (const n of [...c.defaultClientScopes, ...c.optionalClientScopes]) expect(scopes.has(n)).toBe(true);
    const realmRoles = new Set(d.roles.realm.map((r) => r.name));
    const composites = [d.defaultRole, ...d.roles.realm, ...Object.values(d.roles.client).flat()].map((r) => r.composites);
    for (const c of composites) {
      for (const n of c?.realm ?? []) expect(realmRoles.has(n)).toBe(true);
      for (const [clientId, names] of Object.entries(c?.client ?? {})) {
        const own = new Set(roleNames(d.roles.client[clientId]));
        for (const n of names) expect(own.has(n)).toBe(true);
      }
    }
    expect(d.scopeMappings).toEqual([{ clientScope: 'offline_access', roles: ['offline_access'] }]);
    expect(roleNames(d.roles.client.account).filter((n) => ['manage-account', 'view-groups'].includes(n))).toHaveLength(2);
  });

  it('carries Keycloak realm settings', () => {
    expect(d.settings).toMatchObject({
      accessTokenLifespan: 300, ssoSessionIdleTimeout: 1800, ssoSessionMaxLifespan: 36000, sslRequired: 'external',
      bruteForceProtected: false, failureFactor: 30, maxDeltaTimeSeconds: 43200, bruteForceStrategy: 'MULTIPLE',
      otpPolicyType: 'totp', otpPolicyAlgorithm: 'HmacSHA1', otpPolicyDigits: 6, otpPolicyPeriod: 30,
      offlineSessionIdleTimeout: 2592000, revokeRefreshToken: false, defaultSignatureAlgorithm: 'RS256',
    });
    expect(d.settings.displayName).toBeUndefined();
  });

  it('models master: admin and create-realm roles, no realm-management, a 60 s token', () => {
    const m = keycloakRealmDefaults('master', { master: true });
    expect(roleNames(m.roles.realm)).toEqual(['admin', 'create-realm', 'default-roles-master', 'manage-own-access-keys', 'offline_access', 'uma_authorization']);
    expect(m.roles.realm.find((r) => r.name === 'admin')?.composites?.realm).toEqual(['create-realm']);
    expect(m.roles.client['realm-management']).toBeUndefined();
    expect(m.clients.map((c) => c.clientId)).not.toContain('realm-management');
    expect(m.clients).toHaveLength(5);
    expect(m.settings).toMatchObject({ accessTokenLifespan: 60, displayName: 'Keycloak' });
  });

  it('adds the organization scope only when asked', () => {
    const o = keycloakRealmDefaults('acme', { organizations: true });
    expect(scopeByName(o, 'organization').protocolMappers[0]?.protocolMapper).toBe('oidc-organization-membership-mapper');
    expect(o.defaultOptionalClientScopes).toContain('organization');
    expect(o.clients.every((c) => c.optionalClientScopes.includes('organization'))).toBe(true);
    expect(d.clientScopes.some((s) => s.name === 'organization')).toBe(false);
  });

  it('returns fresh objects on every call', () => {
    const a = keycloakRealmDefaults('acme');
    a.clientScopes[0]?.protocolMappers.splice(0);
    a.clients[0]?.defaultClientScopes.push('x');
    (a.settings.browserSecurityHeaders as Record<string, string>).xFrameOptions = 'DENY';
    a.defaultRole.composites?.realm?.push('x');
    expect(keycloakRealmDefaults('acme')).toEqual(d);
    expect(a.roles.realm.find((r) => r.name === 'default-roles-acme')?.composites?.realm).not.toContain('x');
  });
});
