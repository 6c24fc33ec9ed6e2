// LDAP connections and directory lookups against a real slapd: finding users by username and
// e-mail (and nothing for injection attempts), user binds, ldaps and StartTLS with the test CA,
// bounded failures (refused port, a server that never answers, a stopped or hung directory) and
// recovery without restarting Cloakroom, paged searches, provider loading from the database, and
// POST /admin/realms/{realm}/testLDAPConnection through the official admin client.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createSecretBox } from '../../src/crypto/secret-box.ts';
import { closeLdapPools, ldapBind, ldapBindResult, LdapConnectionError, withLdap } from '../../src/federation/ldap/client.ts';
import { ldapProviderConfig, loadLdapProviders, realmLdapProviders } from '../../src/federation/ldap/config.ts';
import { findLdapEntry, findLdapEntryByDn, firstValue, ldapUuid, searchLdapEntries } from '../../src/federation/ldap/directory.ts';
import { LdapUnavailableError, type LdapEntry, type LdapProviderConfig } from '../../src/federation/ldap/types.ts';
import { COMPONENT_SECRET_KEYS, sealSecrets } from '../../src/store/sealed-config.ts';
import type { Component } from '../../src/store/schema.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { groupLdif, ouLdif, personDn, personLdif, slapdAvailable, startSlapd, type Slapd } from '../support/slapd.ts';

const box = createSecretBox(randomBytes(32));
const PASSWORD = 'Correct-horse-1';
const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const BULK = 2500;

/** A provider as Cloakroom reads it from its component (fresh id: its own connection pool). */
function provider(slapd: Slapd, config: Record<string, string> = {}, id: string = randomUUID()): LdapProviderConfig {
  const raw = {
    connectionUrl: slapd.url, usersDn: slapd.peopleDn, bindDn: slapd.adminDn, bindCredential: slapd.adminPassword,
    editMode: 'READ_ONLY', connectionTimeout: '2000', readTimeout: '3000', ...config,
  };
  const { config: plain, sealed } = sealSecrets(box, Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, [v]])), COMPONENT_SECRET_KEYS);
  const component: Component = {
    id, realm_id: 'realm', parent_id: 'realm', name: 'test-ldap', provider_id: 'ldap', provider_type: USER_STORAGE, sub_type: null,
    config: plain as Component['config'], secrets_sealed: sealed,
  };
  return ldapProviderConfig(component, [], box);
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A TCP server that accepts connections and never says a word. */
async function blackHole(): Promise<{ url: string; ldapsUrl: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `ldap://127.0.0.1:${port}`,
    ldapsUrl: `ldaps://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A CA certificate that signed nothing of slapd's. */
async function otherCa(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cloakroom-other-ca-'));
  try {
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'), '-days', '1', '-subj', '/CN=Other Test CA']);
    return await readFile(path.join(dir, 'ca.pem'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Waits until every thread of a SIGSTOPped process is stopped (signals arrive asynchronously). */
async function stoppedProcess(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => []);
    const stats = await Promise.all(tasks.map((task) => readFile(`/proc/${pid}/task/${task}/stat`, 'utf8').catch(() => '')));
    // Field 3, after the parenthesized command name: T = stopped.
    if (stats.length > 0 && stats.every((stat) => /\) [Tt] /.test(stat))) return;
    await sleep(5);
  }
  throw new Error(`process ${pid} did not stop`);
}

/** The error a promise rejects with, and how long it took. */
async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
  throw new Error('expected a failure');
}

const run = slapdAvailable('ldap connection tests');

describe.skipIf(!run)('LDAP connections and lookups', () => {
  let slapd: Slapd;
  let config: LdapProviderConfig;
  const weirdUid = 'we*ird(1)\\x';

  beforeAll(async () => {
    slapd = await startSlapd();
    await slapd.add([
      personLdif({ uid: 'jdoe', cn: 'John Doe', sn: 'Doe', givenName: 'John', mail: 'jdoe@example.org', password: PASSWORD, attributes: { employeeType: 'staff' } }),
      personLdif({ uid: 'asmith', cn: 'Anna Smith', sn: 'Smith', mail: 'anna@example.org', password: PASSWORD, attributes: { employeeType: 'contractor' } }),
      personLdif({ uid: weirdUid, cn: 'Weird', sn: 'Name', password: PASSWORD }),
      groupLdif({ cn: 'admins', members: [personDn('jdoe')] }),
    ]);
    config = provider(slapd);
  }, 60_000);
  afterAll(async () => {
    await closeLdapPools();
    await slapd?.destroy();
  });

  it('finds a user by username, with lower-cased attributes and its entryUUID', async () => {
    const entry = await findLdapEntry(config, 'jdoe', { byEmail: false });
    expect(entry?.dn).toBe(personDn('jdoe'));
    expect(firstValue(entry!, 'mail')).toBe('jdoe@example.org');
    expect(entry!.attributes.get('givenname')).toEqual(['John']);
    expect(entry!.attributes.get('memberof')).toEqual([`cn=admins,${slapd.groupsDn}`]);
    expect(entry!.attributes.has('objectclass')).toBe(true);
    expect(ldapUuid(config, entry!)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await findLdapEntry(config, 'JDOE', { byEmail: false })).toMatchObject({ dn: personDn('jdoe') }); // uid matches case-insensitively
    expect(await findLdapEntry(config, 'nobody', { byEmail: false })).toBeUndefined();
  });

  it('finds a user by e-mail only when asked to and the login is an address', async () => {
    expect((await findLdapEntry(config, 'anna@example.org', { byEmail: true }))?.dn).toBe(personDn('asmith'));
    expect(await findLdapEntry(config, 'anna@example.org', { byEmail: false })).toBeUndefined();
    expect((await findLdapEntry(config, 'asmith', { byEmail: true }))?.dn).toBe(personDn('asmith'));
  });

  it('finds nothing for injection attempts, and special characters match only literally', async () => {
    for (const login of ['*', ')(uid=*', '*)(|(uid=*', 'jdoe)(|(uid=*', 'jd*', '*doe', '\\', '\\2a', 'jdoe\u0000', '\u0000', 'jdoe\u0000)(uid=*', '*)(objectClass=*']) {
      expect(await findLdapEntry(config, login, { byEmail: true }), JSON.stringify(login)).toBeUndefined();
    }
    const weird = await findLdapEntry(config, weirdUid, { byEmail: false });
    expect(weird && firstValue(weird, 'uid')).toBe(weirdUid);
    expect(await findLdapEntry(config, 'we*', { byEmail: false })).toBeUndefined();
  });

  it('ANDs the custom filter in, and an injection cannot widen it', async () => {
    const staff = provider(slapd, { customUserSearchFilter: '(employeeType=staff)' });
    expect(await findLdapEntry(staff, 'jdoe', { byEmail: false })).toBeDefined();
    expect(await findLdapEntry(staff, 'asmith', { byEmail: false })).toBeUndefined();
    expect(await findLdapEntry(staff, 'asmith)(employeeType=*', { byEmail: false })).toBeUndefined();
    const broken = provider(slapd, { customUserSearchFilter: '(&(employeeType=staff)' });
    await expect(findLdapEntry(broken, 'jdoe', { byEmail: false })).rejects.toThrow(/customUserSearchFilter .* is invalid/);
  });

  it('looks users up by DN, within the user filter', async () => {
    expect((await findLdapEntryByDn(config, personDn('asmith')))?.dn).toBe(personDn('asmith'));
    expect(await findLdapEntryByDn(config, personDn('ghost'))).toBeUndefined();
    expect(await findLdapEntryByDn(config, `cn=admins,${slapd.groupsDn}`)).toBeUndefined(); // not a person
    expect(await findLdapEntryByDn(provider(slapd, { customUserSearchFilter: '(employeeType=staff)' }), personDn('asmith'))).toBeUndefined();
  });

  it('binds as the user: right password yes, wrong or empty no', async () => {
    expect(await ldapBind(config, personDn('jdoe'), PASSWORD)).toBe(true);
    expect(await ldapBind(config, personDn('jdoe'), 'wrong')).toBe(false);
    expect(await ldapBind(config, personDn('jdoe'), '')).toBe(false); // never an anonymous bind
    expect(await ldapBind(config, personDn('ghost'), PASSWORD)).toBe(false);
    expect(await ldapBind(config, personDn(weirdUid), PASSWORD)).toBe(true);
    expect(await ldapBindResult(config, personDn('jdoe'), 'wrong')).toMatchObject({ ok: false, code: 49 });
  });

  it('serves concurrent lookups from a bounded pool', async () => {
    const pooled = provider(slapd);
    const logins = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'jdoe' : 'asmith'));
    const found = await Promise.all(logins.map((login) => findLdapEntry(pooled, login, { byEmail: false })));
    expect(found.map((e) => firstValue(e!, 'uid'))).toEqual(logins);
  });

  it('connects with ldaps and with StartTLS when the CA bundle is configured, and refuses without it', async () => {
    const ldaps = provider(slapd, { connectionUrl: slapd.ldapsUrl, 'cloakroom.tlsCaBundle': slapd.caPem });
    expect((await findLdapEntry(ldaps, 'jdoe', { byEmail: false }))?.dn).toBe(personDn('jdoe'));
    expect(await ldapBind(ldaps, personDn('jdoe'), PASSWORD)).toBe(true);
    const startTls = provider(slapd, { startTls: 'true', 'cloakroom.tlsCaBundle': slapd.caPem });
    expect((await findLdapEntry(startTls, 'jdoe', { byEmail: false }))?.dn).toBe(personDn('jdoe'));
    expect(await ldapBind(startTls, personDn('jdoe'), PASSWORD)).toBe(true);
    // The pooled connection is bound as the service account (LDAP "Who am I?").
    expect(await withLdap(startTls, async (client) => (await client.exop('1.3.6.1.4.1.4203.1.11.3')).value)).toBe(`dn:${slapd.adminDn}`);

    for (const untrusted of [provider(slapd, { connectionUrl: slapd.ldapsUrl }), provider(slapd, { startTls: 'true' })]) {
      const { error } = await failure(findLdapEntry(untrusted, 'jdoe', { byEmail: false }));
      expect(error).toBeInstanceOf(LdapUnavailableError);
      expect(error).toMatchObject({ kind: 'tls', providerId: untrusted.id });
      const bind = await failure(ldapBind(untrusted, personDn('jdoe'), PASSWORD));
      expect(bind.error).toMatchObject({ kind: 'tls' });
    }
    // A CA that did not sign the server's certificate is no better.
    const wrongCa = provider(slapd, { connectionUrl: slapd.ldapsUrl, 'cloakroom.tlsCaBundle': await otherCa() });
    expect((await failure(findLdapEntry(wrongCa, 'jdoe', { byEmail: false }))).error).toMatchObject({ kind: 'tls' });
  });

  it('fails fast on a closed port, and tries the next URL', async () => {
    const port = await closedPort();
    const refused = provider(slapd, { connectionUrl: `ldap://127.0.0.1:${port}`, connectionTimeout: '500', readTimeout: '1000' });
    const { error } = await failure(findLdapEntry(refused, 'jdoe', { byEmail: false }));
    expect(error).toBeInstanceOf(LdapUnavailableError);
    expect(error).toMatchObject({ kind: 'refused' });
    expect((error as Error).message).toMatch(/connection refused/);
    expect((await failure(ldapBind(refused, personDn('jdoe'), PASSWORD))).error).toMatchObject({ kind: 'refused' });

    const fallback = provider(slapd, { connectionUrl: `ldap://127.0.0.1:${port} ${slapd.url}` });
    expect((await findLdapEntry(fallback, 'jdoe', { byEmail: false }))?.dn).toBe(personDn('jdoe'));
    expect(await ldapBind(fallback, personDn('jdoe'), PASSWORD)).toBe(true);
  });

  it('gives up on a server that accepts and never answers within the configured timeouts', async () => {
    const hole = await blackHole();
    try {
      const timeouts = { connectionTimeout: '300', readTimeout: '600' };
      const bound = 3 * (300 + 600);
      for (const settings of [{ connectionUrl: hole.url }, { connectionUrl: hole.url, startTls: 'true' }, { connectionUrl: hole.ldapsUrl }] as Record<string, string>[]) {
        const silent = provider(slapd, { ...settings, ...timeouts });
        const lookup = await failure(findLdapEntry(silent, 'jdoe', { byEmail: false }));
        expect(lookup.error, JSON.stringify(settings)).toBeInstanceOf(LdapUnavailableError);
        expect(lookup.ms, JSON.stringify(settings)).toBeLessThan(bound);
        const bind = await failure(ldapBind(silent, personDn('jdoe'), PASSWORD));
        expect(bind.error).toBeInstanceOf(LdapUnavailableError);
        expect(bind.ms).toBeLessThan(bound);
      }
      const ldaps = await failure(findLdapEntry(provider(slapd, { connectionUrl: hole.ldapsUrl, ...timeouts }), 'jdoe', { byEmail: false }));
      expect(ldaps.error).toMatchObject({ kind: 'connect-timeout' });
      const plain = await failure(findLdapEntry(provider(slapd, { connectionUrl: hole.url, ...timeouts }), 'jdoe', { byEmail: false }));
      expect(plain.error).toMatchObject({ kind: 'read-timeout' });
    } finally {
      await hole.close();
    }
  });

  it('reports a refused service account bind, and a changed configuration replaces the pool', async () => {
    const id = randomUUID();
    const wrong = provider(slapd, { bindCredential: 'not-the-password' }, id);
    const { error } = await failure(findLdapEntry(wrong, 'jdoe', { byEmail: false }));
    expect(error).toBeInstanceOf(LdapUnavailableError);
    expect(error).toMatchObject({ kind: 'service-bind' });
    expect((error as Error).message).toMatch(/service account bind \(invalid credentials\)/);
    // Same provider, corrected credential: a new pool, working at once.
    expect(await findLdapEntry(provider(slapd, {}, id), 'jdoe', { byEmail: false })).toBeDefined();
    // And back: the pool of the good credential is not reused for the bad one.
    expect((await failure(findLdapEntry(provider(slapd, { bindCredential: 'not-the-password' }, id), 'jdoe', { byEmail: false }))).error)
      .toMatchObject({ kind: 'service-bind' });
    // Anonymous (authType none) works where the directory allows reading.
    expect(await findLdapEntry(provider(slapd, { authType: 'none', bindDn: '', bindCredential: '' }), 'jdoe', { byEmail: false })).toBeDefined();
  });

  it('pages through 2,500 entries 1,000 at a time, and selects changed entries', async () => {
    const entries = Array.from({ length: BULK }, (_, i) => personLdif({ uid: `bulk${String(i).padStart(4, '0')}`, cn: `Bulk ${i}`, sn: 'Bulk', ou: 'bulk' }));
    await slapd.bulkAdd([ouLdif('bulk'), ...entries]);
    const bulk = provider(slapd, { usersDn: `ou=bulk,${slapd.baseDn}` });
    const collect = async (settings: LdapProviderConfig, options: { changedSince?: Date }): Promise<{ pages: number[]; uids: Set<string> }> => {
      const pages: number[] = [];
      const uids = new Set<string>();
      await searchLdapEntries(settings, { pageSize: 1000, ...options }, async (page: LdapEntry[]) => {
        pages.push(page.length);
        for (const entry of page) uids.add(firstValue(entry, 'uid')!);
      });
      return { pages, uids };
    };
    const paged = await collect(bulk, {});
    expect(paged.pages).toEqual([1000, 1000, 500]);
    expect(paged.uids.size).toBe(BULK);
    const unpaged = await collect(provider(slapd, { usersDn: `ou=bulk,${slapd.baseDn}`, pagination: 'false' }), {});
    expect(unpaged.pages).toEqual([1000, 1000, 500]);
    expect(unpaged.uids.size).toBe(BULK);

    // modifyTimestamp has one-second resolution: let the bulk load's second pass first.
    await sleep(1100);
    const since = new Date();
    await slapd.modify(`dn: ${personDn('bulk0042', 'bulk')}\nchangetype: modify\nreplace: sn\nsn: Changed\n`);
    const changed = await collect(bulk, { changedSince: since });
    expect([...changed.uids]).toEqual(['bulk0042']);
    expect((await collect(bulk, { changedSince: new Date(Date.now() + 3_600_000) })).uids.size).toBe(0);
  });
});

describe.skipIf(!run)('LDAP directory down, hung and back', () => {
  let slapd: Slapd;

  beforeAll(async () => {
    slapd = await startSlapd({ tls: false });
    await slapd.add(personLdif({ uid: 'jdoe', cn: 'John Doe', sn: 'Doe', mail: 'jdoe@example.org', password: PASSWORD }));
  }, 60_000);
  afterAll(async () => {
    await closeLdapPools();
    await slapd?.destroy();
  });

  it('is unavailable while stopped and works again once restarted, with the same provider', async () => {
    const config = provider(slapd, { connectionTimeout: '500', readTimeout: '1000' });
    expect(await findLdapEntry(config, 'jdoe', { byEmail: false })).toBeDefined(); // a pooled connection now idles
    await slapd.stop();
    const lookup = await failure(findLdapEntry(config, 'jdoe', { byEmail: false }));
    expect(lookup.error).toBeInstanceOf(LdapUnavailableError);
    expect(lookup.error).toMatchObject({ kind: 'refused' });
    expect((await failure(ldapBind(config, personDn('jdoe'), PASSWORD))).error).toBeInstanceOf(LdapUnavailableError);
    await slapd.start();
    expect((await findLdapEntry(config, 'jdoe', { byEmail: false }))?.dn).toBe(personDn('jdoe'));
    expect(await ldapBind(config, personDn('jdoe'), PASSWORD)).toBe(true);
  });

  it('times out on a hung directory and recovers when it answers again', async () => {
    const config = provider(slapd, { connectionTimeout: '300', readTimeout: '600' });
    expect(await findLdapEntry(config, 'jdoe', { byEmail: false })).toBeDefined();
    slapd.pause();
    await stoppedProcess(slapd.pid!);
    try {
      const lookup = await failure(findLdapEntry(config, 'jdoe', { byEmail: false }));
      expect(lookup.error).toMatchObject({ kind: 'read-timeout' });
      expect(lookup.ms).toBeLessThan(3 * (300 + 600));
      const bind = await failure(ldapBind(config, personDn('jdoe'), PASSWORD));
      expect(bind.error).toBeInstanceOf(LdapUnavailableError);
      expect(bind.ms).toBeLessThan(3 * (300 + 600));
    } finally {
      slapd.resume();
    }
    expect((await findLdapEntry(config, 'jdoe', { byEmail: false }))?.dn).toBe(personDn('jdoe'));
  });
});

describe.skipIf(!run)('LDAP providers of a realm and testLDAPConnection', () => {
  let slapd: Slapd;
  let bench: AdminBench;
  const realm = 'ldap-test';

  beforeAll(async () => {
    [slapd, bench] = await Promise.all([startSlapd(), startAdminBench()]);
    await bench.admin.realms.create({ realm, enabled: true });
  }, 60_000);
  afterAll(async () => {
    await bench?.stop();
    await slapd?.destroy();
  });

  const ldapComponent = (name: string, config: Record<string, string>) => bench.admin.components.create({
    realm, name, providerId: 'ldap', providerType: USER_STORAGE,
    config: Object.fromEntries(Object.entries({
      connectionUrl: slapd.url, usersDn: slapd.peopleDn, bindDn: slapd.adminDn, bindCredential: slapd.adminPassword,
      editMode: 'READ_ONLY', vendor: 'other', ...config,
    }).map(([k, v]) => [k, [v]])),
  });

  it('loads the enabled providers by priority, with their mappers and opened credential', async () => {
    const { id: second } = await ldapComponent('second', { priority: '20' });
    const { id: first } = await ldapComponent('first', { priority: '10', vendor: 'ad', 'cloakroom.tlsCaBundle': slapd.caPem });
    await ldapComponent('off', { priority: '0', enabled: 'false' });
    const row = await bench.server.store.db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow();
    const providers = await loadLdapProviders(bench.server.store.db, bench.server.box, row.id);
    expect(providers.map((p) => p.name)).toEqual(['first', 'second']);
    expect(providers[0]).toMatchObject({ id: first, vendor: 'ad', uuidLDAPAttribute: 'objectGUID', bindCredential: slapd.adminPassword, tlsCaBundle: slapd.caPem.trim() });
    expect(providers[1]!.id).toBe(second);
    // Keycloak's default mappers, created with the provider.
    expect(providers[1]!.mappers.map((m) => m.name).sort()).toEqual(['Kerberos principal attribute mapper', 'creation date', 'email', 'first name', 'last name', 'modify date', 'username']);
    expect(providers[1]!.mappers.find((m) => m.name === 'username')).toMatchObject({ providerId: 'user-attribute-ldap-mapper', config: { 'ldap.attribute': 'uid' } });
    // The realm context memoizes them; a component write through the Admin API drops the context.
    const context = await bench.server.registry.get(realm);
    expect((await realmLdapProviders(context!)).map((p) => p.name)).toEqual(['first', 'second']);
    expect(await realmLdapProviders(context!)).toBe(await realmLdapProviders(context!));
    for (const p of await bench.admin.components.find({ realm, type: USER_STORAGE })) await bench.admin.components.del({ realm, id: p.id! });
    expect(await realmLdapProviders((await bench.server.registry.get(realm))!)).toEqual([]);
  });

  const test = (payload: Record<string, string>) => bench.admin.realms.testLDAPConnection({ realm }, payload);
  const errorOf = (promise: Promise<unknown>) => promise.then(
    () => undefined,
    (error: { response?: Response; responseData?: unknown }) => ({ status: error.response?.status, body: error.responseData }),
  );

  it('answers 204 when the connection and the bind work', async () => {
    await expect(test({ action: 'testConnection', connectionUrl: slapd.url })).resolves.toBeFalsy();
    await expect(test({ action: 'testAuthentication', connectionUrl: slapd.url, authType: 'simple', bindDn: slapd.adminDn, bindCredential: slapd.adminPassword, connectionTimeout: '2000' })).resolves.toBeFalsy();
    await expect(test({ action: 'testAuthentication', connectionUrl: slapd.url, authType: 'none' })).resolves.toBeFalsy();
  });

  it('answers 400 with Keycloak\'s error codes when they fail', async () => {
    const port = await closedPort();
    expect(await errorOf(test({ action: 'testAuthentication', connectionUrl: slapd.url, authType: 'simple', bindDn: slapd.adminDn, bindCredential: 'wrong' })))
      .toEqual({ status: 400, body: { errorMessage: 'AuthenticationFailure' } });
    expect(await errorOf(test({ action: 'testConnection', connectionUrl: `ldap://127.0.0.1:${port}` })))
      .toEqual({ status: 400, body: { errorMessage: 'ConnectionFailed' } });
    expect(await errorOf(test({ action: 'testConnection', connectionUrl: slapd.ldapsUrl })))
      .toEqual({ status: 400, body: { errorMessage: 'SSLHandshakeFailed' } });
    expect(await errorOf(test({ action: 'testConnection', connectionUrl: slapd.url, startTls: 'true' })))
      .toEqual({ status: 400, body: { errorMessage: 'SSLHandshakeFailed' } });
    expect(await errorOf(test({ action: 'testAuthentication', connectionUrl: slapd.url, authType: 'simple' })))
      .toEqual({ status: 400, body: { errorMessage: 'InvalidBindDN' } });
    expect(await errorOf(test({ action: 'queryEverything', connectionUrl: slapd.url })))
      .toEqual({ status: 400, body: { errorMessage: 'NamingError' } });
  });

  it('stays within the given timeout on a server that never answers', async () => {
    const hole = await blackHole();
    try {
      const started = Date.now();
      expect(await errorOf(test({ action: 'testConnection', connectionUrl: hole.url, connectionTimeout: '500' })))
        .toMatchObject({ status: 400 });
      expect(Date.now() - started).toBeLessThan(3 * 2 * 500);
    } finally {
      await hole.close();
    }
  });

  it('uses the stored credential (and CA) for the mask only with the stored URL and bind DN', async () => {
    const { id } = await ldapComponent('stored', { connectionUrl: slapd.ldapsUrl, 'cloakroom.tlsCaBundle': slapd.caPem });
    const masked = { action: 'testAuthentication', authType: 'simple', bindCredential: '**********', componentId: id };
    await expect(test({ ...masked, connectionUrl: slapd.ldapsUrl, bindDn: slapd.adminDn })).resolves.toBeFalsy();
    await expect(test({ ...masked, connectionUrl: slapd.ldapsUrl, bindDn: slapd.adminDn.toUpperCase() })).resolves.toBeFalsy();
    // Another server or another DN: the mask is taken literally (and fails), the secret never leaves.
    expect(await errorOf(test({ ...masked, connectionUrl: `${slapd.ldapsUrl} ${slapd.ldapsUrl}`, bindDn: slapd.adminDn })))
      .toEqual({ status: 400, body: { errorMessage: 'AuthenticationFailure' } });
    expect(await errorOf(test({ ...masked, connectionUrl: slapd.ldapsUrl, bindDn: `cn=other,${slapd.baseDn}` })))
      .toEqual({ status: 400, body: { errorMessage: 'AuthenticationFailure' } });
    expect(await errorOf(test({ ...masked, componentId: randomUUID(), connectionUrl: slapd.url, bindDn: slapd.adminDn })))
      .toEqual({ status: 400, body: { errorMessage: 'AuthenticationFailure' } });
  });

  it('requires manage-realm', async () => {
    const viewer = await bench.realmAdmin(realm, ['view-realm']);
    expect(await errorOf(viewer.realms.testLDAPConnection({ realm }, { action: 'testConnection', connectionUrl: slapd.url })))
      .toMatchObject({ status: 403 });
    const manager = await bench.realmAdmin(realm, ['manage-realm']);
    await expect(manager.realms.testLDAPConnection({ realm }, { action: 'testConnection', connectionUrl: slapd.url })).resolves.toBeFalsy();
  });
});
