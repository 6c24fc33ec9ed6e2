// LDAP federation in `npm run bench` (issue 7): a real slapd (test/support/slapd.ts, run from
// source like the rest of the bench), a realm `bench-ldap` with an LDAP provider whose user logs
// in through the password grant, and a second provider over 10,000 generated entries for a full
// sync through the Admin API.
import http from 'node:http';

import { ouLdif, personLdif, slapdAvailable, startSlapd, type Slapd } from '../test/support/slapd.ts';

export const LDAP_REALM = 'bench-ldap';
export const LDAP_CLIENT = { clientId: 'bench-ldap-app', secret: 'bench-ldap-secret' };
export const LDAP_USER = { username: 'ldap-bench-user', password: 'Ldap-Bench-Password-1' };
const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const BULK_OU = 'bulk';

/** Why the LDAP scenarios cannot run here (no slapd / ldap-utils), or undefined. */
export function ldapSkipReason(): string | undefined {
  try {
    return slapdAvailable('bench LDAP scenarios') ? undefined : 'slapd or ldap-utils is not installed (see the warning above)';
  } catch (error) {
    return (error as Error).message;
  }
}

type Json = { status: number; body: unknown };

/** An Admin API call as JSON with a generous timeout (a sync of many entries takes a while). */
export function adminJson(baseUrl: string, token: string, method: string, path: string, body?: unknown, timeoutMs = 30 * 60_000): Promise<Json> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(`${baseUrl}/admin/realms${path}`, {
      method, agent: false,
      headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout: ${method} ${path}`)));
    req.end(payload);
  });
}

function expectStatus(what: string, res: Json, ...statuses: number[]): void {
  if (!statuses.includes(res.status)) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
}

function providerConfig(slapd: Slapd, usersDn: string): Record<string, string[]> {
  return {
    vendor: ['other'], connectionUrl: [slapd.url], usersDn: [usersDn], bindDn: [slapd.adminDn], bindCredential: [slapd.adminPassword],
    editMode: ['READ_ONLY'], usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'], uuidLDAPAttribute: ['entryUUID'],
    userObjectClasses: ['inetOrgPerson, organizationalPerson'], searchScope: ['1'], pagination: ['true'], batchSizeForSync: ['1000'],
    enabled: ['true'], priority: ['0'], fullSyncPeriod: ['-1'], changedSyncPeriod: ['-1'],
  };
}

export type LdapBench = { slapd: Slapd; realmId: string };

/** slapd with the bench user, the realm, its client and the login provider. */
export async function setUpLdapBench(baseUrl: string, token: string): Promise<LdapBench> {
  const slapd = await startSlapd({ tls: false });
  try {
    await slapd.add([
      personLdif({ uid: LDAP_USER.username, cn: 'Ldap Bench', sn: 'Bench', mail: `${LDAP_USER.username}@example.org`, password: LDAP_USER.password }),
      ouLdif(BULK_OU),
    ]);
    expectStatus('create realm', await adminJson(baseUrl, token, 'POST', '', {
      realm: LDAP_REALM, enabled: true,
      clients: [{ clientId: LDAP_CLIENT.clientId, secret: LDAP_CLIENT.secret, directAccessGrantsEnabled: true, standardFlowEnabled: false }],
    }), 201);
    const realm = await adminJson(baseUrl, token, 'GET', `/${LDAP_REALM}`);
    expectStatus('read realm', realm, 200);
    const realmId = (realm.body as { id: string }).id;
    expectStatus('create LDAP provider', await adminJson(baseUrl, token, 'POST', `/${LDAP_REALM}/components`, {
      name: 'directory', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId, config: providerConfig(slapd, slapd.peopleDn),
    }), 201);
    return { slapd, realmId };
  } catch (error) {
    await slapd.destroy();
    throw error;
  }
}

/** Whether the bench user is a local user linked to an LDAP provider (imported by a login). */
export async function ldapUserImported(baseUrl: string, token: string): Promise<boolean> {
  const res = await adminJson(baseUrl, token, 'GET', `/${LDAP_REALM}/users?exact=true&username=${LDAP_USER.username}`);
  expectStatus('find LDAP user', res, 200);
  const [user] = res.body as { federationLink?: string }[];
  return typeof user?.federationLink === 'string';
}

/** Adds `count` generated people under ou=bulk (one ldapadd); returns the seconds it took. */
export async function addBulkEntries(slapd: Slapd, count: number): Promise<number> {
  const started = performance.now();
  const width = String(count).length;
  await slapd.bulkAdd(Array.from({ length: count }, (_, i) => {
    const uid = `bulk-${String(i).padStart(width, '0')}`;
    return personLdif({ uid, cn: `Bulk ${i}`, sn: 'Generated', givenName: 'Bulk', mail: `${uid}@example.org`, ou: BULK_OU });
  }));
  return (performance.now() - started) / 1000;
}

/** The provider over ou=bulk; returns its id. */
export async function createBulkProvider(baseUrl: string, token: string, bench: LdapBench): Promise<string> {
  const res = await adminJson(baseUrl, token, 'POST', `/${LDAP_REALM}/components`, {
    name: 'bulk', providerId: 'ldap', providerType: USER_STORAGE, parentId: bench.realmId,
    config: providerConfig(bench.slapd, `ou=${BULK_OU},${bench.slapd.baseDn}`),
  });
  expectStatus('create bulk LDAP provider', res, 201);
  const list = await adminJson(baseUrl, token, 'GET', `/${LDAP_REALM}/components?name=bulk&type=${USER_STORAGE}`);
  expectStatus('find bulk LDAP provider', list, 200);
  const [provider] = list.body as { id: string }[];
  if (!provider) throw new Error('bulk LDAP provider not found after creation');
  return provider.id;
}

export type SyncRun = { seconds: number; result: { ignored: boolean; added: number; updated: number; removed: number; failed: number; status: string } };

/** POST .../user-storage/{id}/sync?action=triggerFullSync, timed. */
export async function fullSync(baseUrl: string, token: string, providerId: string): Promise<SyncRun> {
  const started = performance.now();
  const res = await adminJson(baseUrl, token, 'POST', `/${LDAP_REALM}/user-storage/${providerId}/sync?action=triggerFullSync`);
  expectStatus('full sync', res, 200);
  return { seconds: (performance.now() - started) / 1000, result: res.body as SyncRun['result'] };
}
