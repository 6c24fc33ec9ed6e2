// Keycloak's OIDC protocol mappers as pure functions: one test group per mapper type, with the
// claim shapes Keycloak produces (OIDCAttributeMapperHelper and the individual mapper classes).
import { describe, expect, it } from 'vitest';

import {
  audienceClaim, mapClaims, mapperApplies, splitClaimPath, type MapperModel, type TokenKind, type TokenSubject,
} from '../../src/oidc/protocol-mappers.ts';

const ALL = { 'access.token.claim': 'true', 'id.token.claim': 'true', 'userinfo.token.claim': 'true', 'introspection.token.claim': 'true' };

function subject(overrides: Partial<TokenSubject> = {}): TokenSubject {
  return {
    user: {
      id: '8f4c1a2e-0000-4000-8000-000000000001',
      username: 'jdoe',
      email: 'jdoe@example.com',
      emailVerified: true,
      firstName: 'John',
      lastName: 'Doe',
      createdTimestamp: 1_700_000_000_000,
      attributes: {
        department: ['sales'],
        skills: ['voice', 'chat', 'email'],
        agentLevel: ['42'],
        supervisor: ['TRUE'],
        profileJson: ['{"tier":"gold","queues":[1,2]}'],
        badJson: ['{nope'],
        street: ['1 Main St'],
        locality: ['Springfield'],
        region: ['IL'],
        postal_code: ['62701'],
        country: ['US'],
        streetLine: ['2 Side St'],
      },
    },
    realmRoles: ['agent', 'offline_access'],
    clientRoles: { cim: ['cim-reader'], account: ['view-profile', 'manage-account'], 'my.app': ['app-user'], empty: [] },
    groups: ['/contact-center/agents', '/sales'],
    clientId: 'cim',
    webOrigins: [],
    redirectUris: [],
    sessionNotes: { AUTH_TIME: '1700000123', clientHost: '10.0.0.1', client_id: 'cim' },
    acr: '1',
    ...overrides,
  };
}

const mapper = (protocolMapper: string, config: Record<string, string>, name = protocolMapper): MapperModel => ({ name, protocolMapper, config });

function claimsOf(mappers: MapperModel | MapperModel[], s: TokenSubject = subject(), kind: TokenKind = 'access'): Record<string, unknown> {
  return mapClaims(Array.isArray(mappers) ? mappers : [mappers], s, kind).claims;
}

const attribute = (attr: string, claim: string, extra: Record<string, string> = {}): MapperModel =>
  mapper('oidc-usermodel-attribute-mapper', { ...ALL, 'user.attribute': attr, 'claim.name': claim, ...extra });

describe('user attribute mapper', () => {
  it('maps a single value as a string', () => {
    expect(claimsOf(attribute('department', 'dept', { 'jsonType.label': 'String' }))).toEqual({ dept: 'sales' });
  });

  it('takes the first value when not multivalued, every value as an array when multivalued', () => {
    expect(claimsOf(attribute('skills', 'skill'))).toEqual({ skill: 'voice' });
    expect(claimsOf(attribute('skills', 'skills', { multivalued: 'true' }))).toEqual({ skills: ['voice', 'chat', 'email'] });
    // Multivalued with a single value is still an array.
    expect(claimsOf(attribute('department', 'depts', { multivalued: 'true' }))).toEqual({ depts: ['sales'] });
  });

  it('converts to long, boolean and JSON', () => {
    expect(claimsOf(attribute('agentLevel', 'level', { 'jsonType.label': 'long' }))).toEqual({ level: 42 });
    expect(claimsOf(attribute('agentLevel', 'level', { 'jsonType.label': 'int' }))).toEqual({ level: 42 });
    expect(claimsOf(attribute('supervisor', 'sup', { 'jsonType.label': 'boolean' }))).toEqual({ sup: true });
    expect(claimsOf(attribute('department', 'sup', { 'jsonType.label': 'boolean' }))).toEqual({ sup: false });
    expect(claimsOf(attribute('profileJson', 'profile', { 'jsonType.label': 'JSON' }))).toEqual({ profile: { tier: 'gold', queues: [1, 2] } });
    expect(claimsOf(attribute('skills', 'skills', { 'jsonType.label': 'String', multivalued: 'true' }))).toEqual({ skills: ['voice', 'chat', 'email'] });
  });

  it('drops values that do not convert', () => {
    expect(claimsOf(attribute('department', 'level', { 'jsonType.label': 'long' }))).toEqual({});
    expect(claimsOf(attribute('badJson', 'profile', { 'jsonType.label': 'JSON' }))).toEqual({});
  });

  it('adds nothing for a missing attribute or a missing claim name', () => {
    expect(claimsOf(attribute('nickname', 'nickname'))).toEqual({});
    expect(claimsOf(mapper('oidc-usermodel-attribute-mapper', { ...ALL, 'user.attribute': 'department' }))).toEqual({});
  });

  it('exposes username, email, firstName and lastName as built-in attributes', () => {
    expect(claimsOf([
      attribute('username', 'preferred_username'), attribute('email', 'email'),
      attribute('firstName', 'given_name'), attribute('lastName', 'family_name'),
    ])).toEqual({ preferred_username: 'jdoe', email: 'jdoe@example.com', given_name: 'John', family_name: 'Doe' });
    const noEmail = subject();
    noEmail.user.email = null;
    expect(claimsOf(attribute('email', 'email'), noEmail)).toEqual({});
  });

  it('nests dotted claim names', () => {
    expect(claimsOf([attribute('department', 'org.dept'), attribute('agentLevel', 'org.level', { 'jsonType.label': 'long' })]))
      .toEqual({ org: { dept: 'sales', level: 42 } });
  });
});

describe('user property mapper', () => {
  const property = (prop: string, claim: string, jsonType?: string): MapperModel =>
    mapper('oidc-usermodel-property-mapper', { ...ALL, 'user.attribute': prop, 'claim.name': claim, ...(jsonType ? { 'jsonType.label': jsonType } : {}) });

  it('maps user model properties with their JSON type', () => {
    expect(claimsOf([
      property('emailVerified', 'email_verified', 'boolean'),
      property('username', 'user', 'String'),
      property('id', 'uid'),
      property('createdTimestamp', 'created', 'long'),
    ])).toEqual({ email_verified: true, user: 'jdoe', uid: subject().user.id, created: 1_700_000_000_000 });
  });

  it('stringifies without a JSON type, as Keycloak does', () => {
    expect(claimsOf(property('emailVerified', 'ev'))).toEqual({ ev: 'true' });
  });

  it('adds nothing for an unknown or empty property', () => {
    const noEmail = subject();
    noEmail.user.email = null;
    expect(claimsOf([property('email', 'email'), property('favouriteColour', 'colour')], noEmail)).toEqual({});
  });
});

describe('full name mapper', () => {
  const fullName = mapper('oidc-full-name-mapper', ALL);
  it('joins first and last name', () => {
    expect(claimsOf(fullName)).toEqual({ name: 'John Doe' });
  });
  it('uses whichever part exists, and nothing without either', () => {
    const onlyLast = subject();
    onlyLast.user.firstName = null;
    expect(claimsOf(fullName, onlyLast)).toEqual({ name: 'Doe' });
    const none = subject();
    none.user.firstName = null;
    none.user.lastName = '';
    expect(claimsOf(fullName, none)).toEqual({});
  });
});

describe('hardcoded claim mapper', () => {
  const hardcoded = (claim: string, value: string, jsonType?: string): MapperModel =>
    mapper('oidc-hardcoded-claim-mapper', { ...ALL, 'claim.name': claim, 'claim.value': value, ...(jsonType ? { 'jsonType.label': jsonType } : {}) });

  it('nests a.b.c', () => {
    expect(claimsOf(hardcoded('a.b.c', 'deep'))).toEqual({ a: { b: { c: 'deep' } } });
  });

  it('keeps an escaped dot literal (a\\.b)', () => {
    expect(claimsOf(hardcoded('a\\.b', 'flat'))).toEqual({ 'a.b': 'flat' });
    expect(claimsOf(hardcoded('x.a\\.b.c', 'mixed'))).toEqual({ x: { 'a.b': { c: 'mixed' } } });
    expect(splitClaimPath('tenant\\.id.value')).toEqual(['tenant.id', 'value']);
  });

  it('merges several mappers into one nested object and converts types', () => {
    expect(claimsOf([hardcoded('ef.tenant', 'acme'), hardcoded('ef.seats', '25', 'long'), hardcoded('ef.trial', 'false', 'boolean'),
      hardcoded('ef.meta', '{"v":2}', 'JSON')]))
      .toEqual({ ef: { tenant: 'acme', seats: 25, trial: false, meta: { v: 2 } } });
  });
});

describe('realm role mapper', () => {
  const realmRoles = (extra: Record<string, string> = {}): MapperModel =>
    mapper('oidc-usermodel-realm-role-mapper', { 'access.token.claim': 'true', 'introspection.token.claim': 'true', multivalued: 'true', ...extra });

  it('defaults to realm_access.roles', () => {
    expect(claimsOf(realmRoles({ 'claim.name': 'realm_access.roles' }))).toEqual({ realm_access: { roles: ['agent', 'offline_access'] } });
    expect(claimsOf(realmRoles())).toEqual({ realm_access: { roles: ['agent', 'offline_access'] } });
  });

  it('applies the role prefix and a custom claim', () => {
    expect(claimsOf(realmRoles({ 'claim.name': 'groups', 'usermodel.realmRoleMapping.rolePrefix': 'ROLE_' })))
      .toEqual({ groups: ['ROLE_agent', 'ROLE_offline_access'] });
  });

  it('adds nothing without roles', () => {
    expect(claimsOf(realmRoles(), subject({ realmRoles: [] }))).toEqual({});
  });

  it('merges two mappers into one list without duplicates', () => {
    expect(claimsOf([realmRoles({ 'claim.name': 'roles' }), realmRoles({ 'claim.name': 'roles', 'usermodel.realmRoleMapping.rolePrefix': 'x-' })]))
      .toEqual({ roles: ['agent', 'offline_access', 'x-agent', 'x-offline_access'] });
  });
});

describe('client role mapper', () => {
  const clientRoles = (extra: Record<string, string> = {}): MapperModel =>
    mapper('oidc-usermodel-client-role-mapper', { 'access.token.claim': 'true', multivalued: 'true', 'claim.name': 'resource_access.${client_id}.roles', ...extra });

  it('maps every client with roles under resource_access.${client_id}.roles, dots in client ids kept', () => {
    expect(claimsOf(clientRoles())).toEqual({
      resource_access: {
        cim: { roles: ['cim-reader'] },
        account: { roles: ['view-profile', 'manage-account'] },
        'my.app': { roles: ['app-user'] },
      },
    });
  });

  it('limits to one client and prefixes', () => {
    expect(claimsOf(clientRoles({ 'usermodel.clientRoleMapping.clientId': 'my.app', 'usermodel.clientRoleMapping.rolePrefix': 'app:' })))
      .toEqual({ resource_access: { 'my.app': { roles: ['app:app-user'] } } });
  });

  it('uses a flat custom claim name', () => {
    expect(claimsOf(clientRoles({ 'claim.name': 'cim_roles', 'usermodel.clientRoleMapping.clientId': 'cim' }))).toEqual({ cim_roles: ['cim-reader'] });
  });

  it('defaults the claim name when empty', () => {
    expect(claimsOf(clientRoles({ 'claim.name': '', 'usermodel.clientRoleMapping.clientId': 'cim' })))
      .toEqual({ resource_access: { cim: { roles: ['cim-reader'] } } });
  });
});

describe('group membership mapper', () => {
  const groups = (fullPath: string | undefined, claim = 'groups'): MapperModel =>
    mapper('oidc-group-membership-mapper', { ...ALL, 'claim.name': claim, ...(fullPath === undefined ? {} : { 'full.path': fullPath }) });

  it('gives full paths with full.path=true', () => {
    expect(claimsOf(groups('true'))).toEqual({ groups: ['/contact-center/agents', '/sales'] });
  });

  it('gives group names with full.path=false', () => {
    expect(claimsOf(groups('false'))).toEqual({ groups: ['agents', 'sales'] });
  });

  it('gives group names when full.path is absent (Keycloak: only "true" means full path)', () => {
    // GroupMembershipMapper.useFullPath: "true".equals(config.get("full.path")).
    expect(claimsOf(groups(undefined))).toEqual({ groups: ['agents', 'sales'] });
  });

  it('nests a dotted claim name and adds nothing without groups', () => {
    expect(claimsOf(groups('true', 'ef.groups'))).toEqual({ ef: { groups: ['/contact-center/agents', '/sales'] } });
    expect(claimsOf(groups('true'), subject({ groups: [] }))).toEqual({});
  });
});

describe('allowed origins mapper', () => {
  const origins = mapper('oidc-allowed-origins-mapper', { 'access.token.claim': 'true', 'introspection.token.claim': 'true' });

  it('expands + to the origins of the redirect URIs', () => {
    const s = subject({
      webOrigins: ['+', 'https://extra.example.com'],
      redirectUris: ['https://app.example.com/callback/*', 'https://app.example.com/other', 'http://localhost:3000/*', '/relative/*'],
    });
    expect(new Set(claimsOf(origins, s)['allowed-origins'] as string[]))
      .toEqual(new Set(['https://app.example.com', 'http://localhost:3000', 'https://extra.example.com']));
  });

  it('keeps *', () => {
    expect(claimsOf(origins, subject({ webOrigins: ['*'] }))).toEqual({ 'allowed-origins': ['*'] });
  });

  it('adds nothing without web origins', () => {
    expect(claimsOf(origins, subject({ webOrigins: [], redirectUris: ['https://app.example.com/*'] }))).toEqual({});
    expect(claimsOf(origins, subject({ webOrigins: ['+'], redirectUris: [] }))).toEqual({});
  });
});

describe('acr, sub and session note mappers', () => {
  it('sets acr from the authentication', () => {
    expect(claimsOf(mapper('oidc-acr-mapper', ALL), subject({ acr: '0' }))).toEqual({ acr: '0' });
  });

  it('sets sub to the user id', () => {
    expect(claimsOf(mapper('oidc-sub-mapper', { 'access.token.claim': 'true' }))).toEqual({ sub: subject().user.id });
  });

  it('maps auth_time as a long and other notes as strings', () => {
    const note = (n: string, claim: string, jsonType: string): MapperModel =>
      mapper('oidc-usersessionmodel-note-mapper', { 'access.token.claim': 'true', 'user.session.note': n, 'claim.name': claim, 'jsonType.label': jsonType });
    expect(claimsOf([note('AUTH_TIME', 'auth_time', 'long'), note('clientHost', 'clientHost', 'String'), note('missing', 'gone', 'String')]))
      .toEqual({ auth_time: 1700000123, clientHost: '10.0.0.1' });
  });
});

describe('address mapper', () => {
  const defaultAddressConfig = {
    ...ALL,
    'user.attribute.formatted': 'formatted', 'user.attribute.country': 'country', 'user.attribute.postal_code': 'postal_code',
    'user.attribute.street': 'street', 'user.attribute.region': 'region', 'user.attribute.locality': 'locality',
  };

  it('maps the address attributes to the OIDC address claim', () => {
    expect(claimsOf(mapper('oidc-address-mapper', defaultAddressConfig))).toEqual({
      address: { street_address: '1 Main St', locality: 'Springfield', region: 'IL', postal_code: '62701', country: 'US' },
    });
  });

  it('reads the attribute names from the mapper config (user.attribute.<claim>)', () => {
    // AddressMapper.getUserModelAttributeValue: config "user.attribute.street" names the attribute.
    const custom = { ...defaultAddressConfig, 'user.attribute.street': 'streetLine' };
    expect((claimsOf(mapper('oidc-address-mapper', custom)).address as Record<string, string>).street_address).toBe('2 Side St');
  });

  it('emits an empty address object for a user without address attributes, as Keycloak does', () => {
    // AddressMapper always puts an AddressClaimSet; Keycloak serializes it without its null fields: {}.
    const bare = subject();
    bare.user.attributes = {};
    expect(claimsOf(mapper('oidc-address-mapper', defaultAddressConfig), bare)).toEqual({ address: {} });
  });
});

describe('audience mappers', () => {
  it('adds an included client audience or a custom audience', () => {
    const client = mapper('oidc-audience-mapper', { 'included.client.audience': 'billing', 'access.token.claim': 'true' });
    const custom = mapper('oidc-audience-mapper', { 'included.custom.audience': 'https://api.example.com', 'access.token.claim': 'true' });
    const result = mapClaims([client, custom], subject(), 'access');
    expect(result.audiences.sort()).toEqual(['billing', 'https://api.example.com']);
    expect(result.claims).toEqual({});
  });

  it('respects the token kind flags of an audience mapper', () => {
    const idOnly = mapper('oidc-audience-mapper', { 'included.client.audience': 'billing', 'id.token.claim': 'true', 'access.token.claim': 'false' });
    expect(mapClaims([idOnly], subject(), 'access').audiences).toEqual([]);
    expect(mapClaims([idOnly], subject(), 'id').audiences).toEqual(['billing']);
  });

  it('resolves audiences from client roles, not the token\'s own client nor clients without roles', () => {
    const resolve = mapper('oidc-audience-resolve-mapper', {});
    const { audiences } = mapClaims([resolve], subject(), 'access');
    expect(audiences.sort()).toEqual(['account', 'my.app']);
    expect(mapClaims([resolve], subject(), 'introspection').audiences.sort()).toEqual(['account', 'my.app']);
    // Never in the ID token or userinfo, whatever the config says.
    expect(mapClaims([mapper('oidc-audience-resolve-mapper', ALL)], subject(), 'id').audiences).toEqual([]);
    expect(mapClaims([mapper('oidc-audience-resolve-mapper', ALL)], subject(), 'userinfo').audiences).toEqual([]);
  });

  it('runs audience resolve after the other mappers and merges with explicit audiences', () => {
    const ordered = [
      mapper('oidc-audience-resolve-mapper', {}),
      mapper('oidc-audience-mapper', { 'included.client.audience': 'account', 'access.token.claim': 'true' }),
    ];
    expect(mapClaims(ordered, subject(), 'access').audiences).toEqual(['account', 'my.app']);
  });
});

describe('mapperApplies', () => {
  it('follows each token kind\'s flag', () => {
    const config = { 'access.token.claim': 'true', 'id.token.claim': 'false', 'userinfo.token.claim': 'true', 'introspection.token.claim': 'false' };
    expect(mapperApplies(config, 'access')).toBe(true);
    expect(mapperApplies(config, 'id')).toBe(false);
    expect(mapperApplies(config, 'userinfo')).toBe(true);
    expect(mapperApplies(config, 'introspection')).toBe(false);
    expect(mapperApplies({}, 'access')).toBe(false);
    expect(mapperApplies({ 'access.token.claim': 'TRUE' }, 'access')).toBe(false);
  });

  it('lets introspection fall back to access.token.claim when unset', () => {
    expect(mapperApplies({ 'access.token.claim': 'true' }, 'introspection')).toBe(true);
    expect(mapperApplies({ 'access.token.claim': 'false' }, 'introspection')).toBe(false);
    expect(mapperApplies({ 'access.token.claim': 'true', 'introspection.token.claim': 'false' }, 'introspection')).toBe(false);
  });

  it('lets userinfo fall back to id.token.claim when unset (Keycloak includeInUserInfo)', () => {
    // OIDCAttributeMapperHelper.includeInUserInfo: an unset userinfo.token.claim follows id.token.claim.
    expect(mapperApplies({ 'id.token.claim': 'true' }, 'userinfo')).toBe(true);
    expect(mapperApplies({ 'id.token.claim': 'true', 'userinfo.token.claim': 'false' }, 'userinfo')).toBe(false);
    expect(mapperApplies({ 'access.token.claim': 'true' }, 'userinfo')).toBe(false);
  });

  it('decides which claims each kind of token gets', () => {
    const accessOnly = attribute('department', 'dept', { 'id.token.claim': 'false', 'userinfo.token.claim': 'false', 'introspection.token.claim': 'false' });
    expect(claimsOf(accessOnly, subject(), 'access')).toEqual({ dept: 'sales' });
    expect(claimsOf(accessOnly, subject(), 'id')).toEqual({});
    expect(claimsOf(accessOnly, subject(), 'userinfo')).toEqual({});
    expect(claimsOf(accessOnly, subject(), 'introspection')).toEqual({});
  });
});

describe('audienceClaim', () => {
  it('is undefined when empty, a string when single, an array otherwise (deduplicated)', () => {
    expect(audienceClaim([])).toBeUndefined();
    expect(audienceClaim(['account'])).toBe('account');
    expect(audienceClaim(['account', 'account'])).toBe('account');
    expect(audienceClaim(new Set(['a', 'b']))).toEqual(['a', 'b']);
    expect(audienceClaim(['a', 'b', 'a'])).toEqual(['a', 'b']);
  });
});

describe('unknown mapper types', () => {
  it('are ignored without disturbing the others', () => {
    const result = mapClaims([
      mapper('oidc-script-based-protocol-mapper', { ...ALL, 'claim.name': 'evil', script: 'token.setOtherClaims("x", 1)' }),
      attribute('department', 'dept'),
    ], subject(), 'access');
    expect(result).toEqual({ claims: { dept: 'sales' }, audiences: [] });
  });
});
