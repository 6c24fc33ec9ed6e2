// Login authenticators in realm JSON (Cloakroom's `loginAuthenticators` realm field and the
// `loginAuthenticator` name on users and groups): a realm set up through the Admin API is exported,
// imported into another server's database and exported again unchanged; the assignments still
// apply there. Bad files are refused whole; partial import resolves names; plain realms export
// without the field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportRealm } from '../../src/realms/export.ts';
import { ImportError, importRealm } from '../../src/realms/import.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';

type Json = Record<string, any>;
const json = (value: unknown): Json => JSON.parse(JSON.stringify(value)) as Json;

let source: AdminBench;
let target: AdminBench;
beforeAll(async () => {
  [source, target] = await Promise.all([startAdminBench(), startAdminBench()]);
}, 60_000);
afterAll(async () => { await Promise.all([source?.stop(), target?.stop()]); });

const REALM = 'authn-export';

async function call(bench: AdminBench, path: string, method = 'GET', body?: unknown): Promise<Response> {
  return bench.api(path, { method, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
}
async function read(bench: AdminBench, path: string): Promise<any> {
  const response = await call(bench, path);
  expect(response.status, path).toBe(200);
  return response.json();
}
async function expectStatus(response: Promise<Response>, status: number): Promise<Response> {
  const answer = await response;
  expect(answer.status, await answer.clone().text()).toBe(status);
  return answer;
}
const exportOf = async (bench: AdminBench, realm: string): Promise<Json> =>
  json(await exportRealm(bench.server.store.db, bench.server.box, realm, { users: true, secrets: 'open' }));

describe('login authenticators in realm export and import', () => {
  let first: Json;
  let aliceId: string;
  let adminsId: string;

  it('exports the authenticators, the default\'s extras and the assignments of users and subgroups', async () => {
    await source.admin.realms.create({ realm: REALM, enabled: true, passwordPolicy: 'length(8)', failureFactor: 9, bruteForceProtected: true });
    const strict = await expectStatus(call(source, `/${REALM}/login-authenticators`, 'POST',
      { name: 'strict', mfa: 'hotp', passwordPolicy: 'length(12)', bruteForceProtected: true, failureFactor: 3 }), 201);
    expect(strict.headers.get('location')).toMatch(/\/login-authenticators\/[0-9a-f-]{36}$/);
    await expectStatus(call(source, `/${REALM}/login-authenticators`, 'POST',
      { name: 'Relaxed', description: 'Contractors', allowedIpRanges: ['192.0.2.0/24'], otpPolicyDigits: 8 }), 201);
    // The default renamed, and a named one taking its old name: the import must create them in that order.
    const [def] = await read(source, `/${REALM}/login-authenticators`);
    expect(def).toMatchObject({ name: 'default', default: true });
    await expectStatus(call(source, `/${REALM}/login-authenticators/${def.id}`, 'PUT',
      { name: 'standard', description: 'Everyone else', mfa: 'totp', allowedIpRanges: ['10.0.0.0/8', '2001:db8::/32'] }), 204);
    await expectStatus(call(source, `/${REALM}/login-authenticators`, 'POST', { name: 'default', preset: 'cxone' }), 201);

    aliceId = await source.admin.users.create({ realm: REALM, username: 'alice', enabled: true }).then((r) => r.id);
    await source.admin.users.create({ realm: REALM, username: 'bob', enabled: true });
    await expectStatus(call(source, `/${REALM}/users/${aliceId}/login-authenticator`, 'PUT', { name: 'strict' }), 204);
    const staff = await source.admin.groups.create({ realm: REALM, name: 'staff' });
    adminsId = (await source.admin.groups.createChildGroup({ realm: REALM, id: staff.id }, { name: 'admins' })).id;
    await expectStatus(call(source, `/${REALM}/groups/${adminsId}/login-authenticator`, 'PUT', { name: 'relaxed' }), 204);

    first = await exportOf(source, REALM);
    expect(first.loginAuthenticators).toEqual([
      { name: 'standard', description: 'Everyone else', default: true, mfa: 'totp', allowedIpRanges: ['10.0.0.0/8', '2001:db8::/32'] },
      expect.objectContaining({ name: 'default', passwordPolicy: 'length(6) and lowerCase(1) and upperCase(1) and digits(1)', failureFactor: 6, waitIncrementSeconds: 1800 }),
      expect.objectContaining({ name: 'Relaxed', description: 'Contractors', allowedIpRanges: ['192.0.2.0/24'], otpPolicyDigits: 8, passwordPolicy: '' }),
      {
        name: 'strict', passwordPolicy: 'length(12)', bruteForceProtected: true, permanentLockout: false, maxTemporaryLockouts: 0,
        bruteForceStrategy: 'MULTIPLE', failureFactor: 3, waitIncrementSeconds: 60, quickLoginCheckMilliSeconds: 1000,
        minimumQuickLoginWaitSeconds: 60, maxFailureWaitSeconds: 900, maxDeltaTimeSeconds: 43200, otpPolicyType: 'totp',
        otpPolicyAlgorithm: 'HmacSHA1', otpPolicyDigits: 6, otpPolicyLookAheadWindow: 1, otpPolicyPeriod: 30, otpPolicyInitialCounter: 0,
        otpPolicyCodeReusable: false, mfa: 'hotp', allowedIpRanges: [],
      },
    ]);
    // Named ones carry no `default`; the default's Keycloak fields stay the realm's own.
    expect(first.loginAuthenticators[1]).not.toHaveProperty('default');
    expect(first).toMatchObject({ passwordPolicy: 'length(8)', failureFactor: 9, bruteForceProtected: true });
    expect(first.loginAuthenticators[0]).not.toHaveProperty('passwordPolicy');
    expect(first.users.find((u: Json) => u.username === 'alice')).toMatchObject({ loginAuthenticator: 'strict' });
    expect(first.users.find((u: Json) => u.username === 'bob')).not.toHaveProperty('loginAuthenticator');
    const [staffRep] = first.groups;
    expect(staffRep).not.toHaveProperty('loginAuthenticator');
    expect(staffRep.subGroups).toEqual([expect.objectContaining({ name: 'admins', loginAuthenticator: 'Relaxed' })]);
  });

  it('imports them into an empty database: same authenticators, same assignments, same export', async () => {
    await target.server.importRealm(first);
    const list = await read(target, `/${REALM}/login-authenticators`);
    expect(list.map((a: Json) => [a.name, a.default])).toEqual([['standard', true], ['default', false], ['Relaxed', false], ['strict', false]]);
    expect(list[0]).toMatchObject({
      description: 'Everyone else', mfa: 'totp', allowedIpRanges: ['10.0.0.0/8', '2001:db8::/32'], passwordPolicy: 'length(8)', failureFactor: 9,
    });
    expect(list[3]).toMatchObject({ mfa: 'hotp', passwordPolicy: 'length(12)', bruteForceProtected: true, failureFactor: 3 });
    expect(await read(target, `/${REALM}/users/${aliceId}/login-authenticator`)).toMatchObject({ name: 'strict', source: 'user' });
    expect(await read(target, `/${REALM}/groups/${adminsId}/login-authenticator`)).toMatchObject({ name: 'Relaxed', allowedIpRanges: ['192.0.2.0/24'] });

    expect(await exportOf(target, REALM)).toEqual(first);
  });

  it('puts them in the Admin API\'s partial export too', async () => {
    const response = await expectStatus(call(source, `/${REALM}/partial-export?exportGroupsAndRoles=true&exportClients=true`, 'POST'), 200);
    const partial = await response.json() as Json;
    expect(partial.loginAuthenticators).toEqual(first.loginAuthenticators);
    expect(partial.groups[0].subGroups[0]).toMatchObject({ name: 'admins', loginAuthenticator: 'Relaxed' });
  });

  it('leaves the field out of plain realms, even once the default row exists', async () => {
    await source.admin.realms.create({ realm: 'authn-plain', enabled: true });
    await read(source, '/authn-plain/login-authenticators');
    await source.admin.users.create({ realm: 'authn-plain', username: 'carol', enabled: true });
    const plain = await exportOf(source, 'authn-plain');
    expect(plain).not.toHaveProperty('loginAuthenticators');
    expect(plain.users[0]).not.toHaveProperty('loginAuthenticator');
    // Assigned to someone, the untouched default is written out (the user's name must resolve).
    const [def] = await read(source, '/authn-plain/login-authenticators');
    await expectStatus(call(source, `/authn-plain/users/${plain.users[0].id}/login-authenticator`, 'PUT', { id: def.id }), 204);
    const assigned = await exportOf(source, 'authn-plain');
    expect(assigned.loginAuthenticators).toEqual([expect.objectContaining({ name: 'default', default: true, mfa: 'none', allowedIpRanges: [] })]);
    expect(assigned.users[0].loginAuthenticator).toBe('default');
  });

  it('ignores Keycloak fields on the default entry: the realm\'s own fields are its settings', async () => {
    // Through POST /admin/realms, which parses the file twice (before and inside the import).
    await expectStatus(call(target, '', 'POST', {
      realm: 'authn-default-fields', passwordPolicy: 'length(7)',
      loginAuthenticators: [{ name: 'base', default: true, passwordPolicy: 'length(30)', failureFactor: 1, mfa: 'any' }],
      users: [{ username: 'dan', loginAuthenticator: 'BASE' }],
    }), 201);
    const [def] = await read(target, '/authn-default-fields/login-authenticators');
    expect(def).toMatchObject({ name: 'base', default: true, passwordPolicy: 'length(7)', failureFactor: 30, mfa: 'any' });
    const rep = await exportOf(target, 'authn-default-fields');
    expect(rep.loginAuthenticators).toEqual([{ name: 'base', default: true, mfa: 'any', allowedIpRanges: [] }]);
    expect(rep.users[0].loginAuthenticator).toBe('base');
  });
});

describe('refused login authenticator input', () => {
  const refused = async (body: Json, message: RegExp): Promise<void> => {
    const response = await call(source, '', 'POST', body);
    const text = await response.text();
    expect(response.status, text).toBe(400);
    expect((JSON.parse(text) as { errorMessage: string }).errorMessage).toMatch(message);
    expect(await source.server.store.db.selectFrom('realms').select('id').where('name', '=', body.realm).executeTakeFirst()).toBeUndefined();
  };
  const named = (name: string, extra: Json = {}): Json => ({ name, ...extra });

  it('refuses a bad file whole, with a message naming the authenticator, user or group', async () => {
    await refused({ realm: 'authn-bad1', loginAuthenticators: [named('strict', { passwordPolicy: 'length(twelve)' })] },
      /login authenticator "strict": passwordPolicy: Invalid config for length: Not a valid number/);
    await refused({ realm: 'authn-bad2', loginAuthenticators: [named('strict', { passwordPolicy: 'noSuchPolicy' })] },
      /login authenticator "strict": passwordPolicy: Password policy not found/);
    await refused({ realm: 'authn-bad3', loginAuthenticators: [named('odd', { failureFactor: 'three', mfa: 'sms', allowedIpRanges: ['10.0.0.0/99'] })] },
      /login authenticator "odd": failureFactor: expected number.*login authenticator "odd": mfa: .*login authenticator "odd": allowedIpRanges.0: not an IP address/);
    await refused({ realm: 'authn-bad4', loginAuthenticators: [named('Strict'), named('strict')] }, /login authenticator "strict" is listed twice/);
    await refused({ realm: 'authn-bad5', loginAuthenticators: [named('a', { default: true }), named('b', { default: true })] },
      /only one login authenticator can be the default \("a", "b" are\)/);
    // Name references are checked while writing: the authenticators already written go with the rest.
    await refused({
      realm: 'authn-bad6', loginAuthenticators: [named('authn-bad6-only')], users: [{ username: 'erin', loginAuthenticator: 'nope' }],
    }, /user "erin": login authenticator "nope" does not exist/);
    await refused({
      realm: 'authn-bad7', loginAuthenticators: [named('authn-bad7-only')],
      groups: [{ name: 'top', subGroups: [{ name: 'sub', loginAuthenticator: 'ghost' }] }],
    }, /group "\/top\/sub": login authenticator "ghost" does not exist/);
    const left = await source.server.store.db.selectFrom('login_authenticators').select('id')
      .where('name', 'in', ['authn-bad6-only', 'authn-bad7-only']).execute();
    expect(left).toEqual([]);
    await expect(importRealm(source.server.store.db, source.server.box, { realm: 'authn-bad8', users: [{ username: 'x', loginAuthenticator: 'y' }] }))
      .rejects.toThrow(ImportError);
  });
});

describe('partial import with login authenticator names', () => {
  const PARTIAL = 'authn-partial';

  it('resolves names of existing authenticators (any case), and refuses unknown ones changing nothing', async () => {
    await target.admin.realms.create({ realm: PARTIAL, enabled: true });
    await expectStatus(call(target, `/${PARTIAL}/login-authenticators`, 'POST', { name: 'Strict', mfa: 'totp' }), 201);
    const done = await expectStatus(call(target, `/${PARTIAL}/partialImport`, 'POST', {
      ifResourceExists: 'FAIL',
      users: [{ username: 'fay', loginAuthenticator: 'strict' }, { username: 'gus', loginAuthenticator: 'default' }],
      groups: [{ name: 'ops', subGroups: [{ name: 'night', loginAuthenticator: 'STRICT' }] }],
    }), 200);
    const results = (await done.json() as { results: Json[] }).results;
    const idOf = (name: string): string => results.find((r) => r.resourceName === name)!.id;
    expect(await read(target, `/${PARTIAL}/users/${idOf('fay')}/login-authenticator`)).toMatchObject({ name: 'Strict', source: 'user' });
    expect(await read(target, `/${PARTIAL}/users/${idOf('gus')}/login-authenticator`)).toMatchObject({ name: 'default', source: 'user' });
    const [night] = await target.admin.groups.listSubGroups({ realm: PARTIAL, parentId: idOf('ops') });
    expect(night).toMatchObject({ name: 'night' });
    expect(await read(target, `/${PARTIAL}/groups/${night!.id}/login-authenticator`)).toMatchObject({ name: 'Strict' });

    for (const body of [
      { users: [{ username: 'hal' }, { username: 'ida', loginAuthenticator: 'lenient' }] },
      { groups: [{ name: 'dev', subGroups: [{ name: 'day', loginAuthenticator: 'lenient' }] }] },
    ]) {
      const response = await expectStatus(call(target, `/${PARTIAL}/partialImport`, 'POST', body), 400);
      expect((await response.json() as Json).errorMessage).toMatch(/(user "ida"|group "\/dev\/day"): login authenticator "lenient" does not exist/);
    }
    expect(await target.admin.users.find({ realm: PARTIAL, username: 'hal', exact: true })).toEqual([]);
    expect(await target.admin.groups.find({ realm: PARTIAL, search: 'dev' })).toEqual([]);
  });
});
