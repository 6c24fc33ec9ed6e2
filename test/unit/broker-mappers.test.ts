// Identity provider mappers as pure functions: what each Keycloak mapper type makes of a brokered
// identity (claims, SAML attributes, upstream access token roles, username templates).
import { describe, expect, it } from 'vitest';

import { claimValue, evaluateMappers, usernameFromTemplate } from '../../src/broker/mappers.ts';
import type { IdentityProviderMapperModel } from '../../src/broker/identity-providers.ts';
import { BrokerError, type BrokeredIdentity } from '../../src/broker/types.ts';

const oidcIdentity: BrokeredIdentity = {
  alias: 'corp', id: 'sub-1', username: 'alice', email: 'Alice@Corp.example',
  claims: { sub: 'sub-1', preferred_username: 'alice', department: 'quality', groups: ['agents', 'night-shift'], 'dotted.name': 'x', address: { locality: 'Vienna' } },
  accessTokenClaims: { realm_access: { roles: ['quality-lead'] }, resource_access: { crm: { roles: ['reader'] } } },
};
const samlIdentity: BrokeredIdentity = {
  alias: 'adfs', id: 'alice@corp.example', nameId: 'alice@corp.example',
  attributes: { 'http://schemas.xmlsoap.org/claims/Group': ['CX Supervisors', 'CX Agents'], Role: ['CX Agents'], mail: ['alice@corp.example'] },
};
let n = 0;
const mapper = (type: string, config: Record<string, string>): IdentityProviderMapperModel => ({ id: `m${++n}`, name: `mapper ${n}`, type, config });

describe('claimValue', () => {
  it('follows dotted paths and honours escaped dots', () => {
    expect(claimValue(oidcIdentity.claims, 'address.locality')).toBe('Vienna');
    expect(claimValue(oidcIdentity.claims, 'dotted\\.name')).toBe('x');
    expect(claimValue(oidcIdentity.claims, 'address.missing')).toBeUndefined();
    expect(claimValue(oidcIdentity.claims, 'department.deeper')).toBeUndefined();
  });
});

describe('username templates', () => {
  it('substitutes ALIAS, CLAIM, NAMEID and ATTRIBUTE with transformers', () => {
    expect(usernameFromTemplate('${ALIAS}.${CLAIM.preferred_username}', oidcIdentity)).toBe('corp.alice');
    expect(usernameFromTemplate('${CLAIM.email | lowercase}', { ...oidcIdentity, claims: { email: 'A@B.C' } })).toBe('a@b.c');
    expect(usernameFromTemplate('${NAMEID | localpart}', samlIdentity)).toBe('alice');
    expect(usernameFromTemplate('${ATTRIBUTE.mail | uppercase}', samlIdentity)).toBe('ALICE@CORP.EXAMPLE');
  });
});

describe('evaluateMappers', () => {
  it('claim to role matches single values and arrays; hardcoded roles and groups always apply', () => {
    const outcome = evaluateMappers([
      mapper('oidc-role-idp-mapper', { claim: 'department', 'claim.value': 'quality', role: 'supervisor' }),
      mapper('oidc-role-idp-mapper', { claim: 'groups', 'claim.value': 'night-shift', role: 'night' }),
      mapper('oidc-role-idp-mapper', { claim: 'groups', 'claim.value': 'admins', role: 'admin' }),
      mapper('oidc-hardcoded-role-idp-mapper', { role: 'agent' }),
      mapper('oidc-hardcoded-group-idp-mapper', { group: '/brokered' }),
    ], oidcIdentity);
    expect(outcome.roles.map((r) => [r.spec, r.applies])).toEqual([['supervisor', true], ['night', true], ['admin', false], ['agent', true]]);
    expect(outcome.groups).toEqual([expect.objectContaining({ path: '/brokered', applies: true, hardcoded: true })]);
  });

  it('advanced claim to role needs every claim, with regular expressions when asked', () => {
    const claims = JSON.stringify([{ key: 'department', value: 'qual.*' }, { key: 'groups', value: 'night-.*' }]);
    const [regex] = evaluateMappers([mapper('oidc-advanced-role-idp-mapper', { claims, 'are.claim.values.regex': 'true', role: 'r' })], oidcIdentity).roles;
    const [literal] = evaluateMappers([mapper('oidc-advanced-role-idp-mapper', { claims, role: 'r' })], oidcIdentity).roles;
    expect(regex!.applies).toBe(true);
    expect(literal!.applies).toBe(false);
    expect(() => evaluateMappers([mapper('oidc-advanced-role-idp-mapper', { claims: 'not json', role: 'r' })], oidcIdentity)).toThrow(BrokerError);
  });

  it('external role to role reads the upstream access token (realm and client roles)', () => {
    const roles = evaluateMappers([
      mapper('keycloak-oidc-role-to-role-idp-mapper', { 'external.role': 'quality-lead', role: 'qa' }),
      mapper('keycloak-oidc-role-to-role-idp-mapper', { 'external.role': 'crm.reader', role: 'crm-reader' }),
      mapper('keycloak-oidc-role-to-role-idp-mapper', { 'external.role': 'crm.writer', role: 'crm-writer' }),
    ], oidcIdentity).roles;
    expect(roles.map((r) => r.applies)).toEqual([true, true, false]);
  });

  it('SAML attribute to role and attribute importer read attributes by name; the username template sets the username', () => {
    const outcome = evaluateMappers([
      mapper('saml-role-idp-mapper', { 'attribute.name': 'http://schemas.xmlsoap.org/claims/Group', 'attribute.value': 'CX Supervisors', role: 'supervisor' }),
      mapper('saml-role-idp-mapper', { 'attribute.friendly.name': 'Role', 'attribute.value': 'CX Admins', role: 'admin' }),
      mapper('saml-user-attribute-idp-mapper', { 'attribute.name': 'mail', 'user.attribute': 'email' }),
      mapper('saml-username-idp-mapper', { template: '${NAMEID | localpart}', target: 'LOCAL' }),
    ], samlIdentity);
    expect(outcome.roles.map((r) => [r.spec, r.applies])).toEqual([['supervisor', true], ['admin', false]]);
    expect(outcome.attributes.get('email')?.values).toEqual(['alice@corp.example']);
    expect(outcome.username).toBe('alice');
  });

  it('an attribute importer whose claim is missing asks for removal (used by FORCE)', () => {
    const outcome = evaluateMappers([mapper('oidc-user-attribute-idp-mapper', { claim: 'cost_center', 'user.attribute': 'costCenter' })], oidcIdentity);
    expect(outcome.attributes.get('costCenter')?.values).toBeNull();
  });
});
