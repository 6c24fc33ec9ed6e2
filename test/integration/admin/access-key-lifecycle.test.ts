// Issue 6's "done when": an integration created through the Admin API gets tokens with its key in
// each of the three ways, and loses access the moment its key (or its user) is disabled.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { basicAuth, postForm } from '../../support/server.ts';

let bench: AdminBench;
let tokenUrl: string;
let legacyUrl: string;
beforeAll(async () => {
  bench = await startAdminBench();
  tokenUrl = `${bench.server.url}/realms/cx/protocol/openid-connect/token`;
  legacyUrl = `${bench.server.url}/realms/cx/authentication/v1/token/access-key`;
}, 60_000);
afterAll(async () => { await bench?.stop(); });

const claimsOf = (jwt: string): Record<string, unknown> => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

async function exchanges(key: { id: string; secret: string }, appSecret: string): Promise<number[]> {
  const cc = await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth(key.id, key.secret) });
  const password = await postForm(tokenUrl, { grant_type: 'password', username: key.id, password: key.secret }, { authorization: basicAuth('crm', appSecret) });
  const legacy = await fetch(legacyUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ accessKeyId: key.id, accessKeySecret: key.secret }) });
  return [cc.status, password.status, legacy.status];
}

describe('an integration set up through the Admin API', () => {
  it('gets tokens in all three ways and loses access at once when its key or user is disabled', async () => {
    const { admin } = bench;
    await admin.realms.create({ realm: 'cx', enabled: true });
    const { id: appId } = await admin.clients.create({ realm: 'cx', clientId: 'crm', publicClient: false, directAccessGrantsEnabled: true, standardFlowEnabled: false });
    const { value: appSecret } = await admin.clients.getClientSecret({ realm: 'cx', id: appId });
    await admin.roles.create({ realm: 'cx', name: 'ivr' });
    const { id: botId } = await admin.users.create({ realm: 'cx', username: 'ivr-bot', enabled: true, application: true } as never);
    const role = await admin.roles.findOneByName({ realm: 'cx', name: 'ivr' });
    await admin.users.addRealmRoleMappings({ realm: 'cx', id: botId, roles: [{ id: role!.id!, name: 'ivr' }] });

    const created = await bench.api(`/cx/users/${botId}/access-keys`, { method: 'POST', body: JSON.stringify({ label: 'ivr' }) });
    expect(created.status).toBe(201);
    const key = await created.json() as { id: string; secret: string };

    expect(await exchanges(key, appSecret!)).toEqual([200, 200, 200]);
    const cc = await (await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth(key.id, key.secret) })).json() as { access_token: string };
    expect(claimsOf(cc.access_token)).toMatchObject({ sub: botId, azp: key.id, preferred_username: 'ivr-bot' });
    expect((claimsOf(cc.access_token).realm_access as { roles: string[] }).roles).toContain('ivr');
    const userinfoUrl = `${bench.server.url}/realms/cx/protocol/openid-connect/userinfo`;
    const info = await fetch(userinfoUrl, { headers: { authorization: `Bearer ${cc.access_token}` } });
    expect(info.status).toBe(200);
    expect(await info.json()).toMatchObject({ sub: botId, preferred_username: 'ivr-bot' });

    // Disabling the key ends every way at once (no cache lag).
    expect((await bench.api(`/cx/users/${botId}/access-keys/${key.id}`, { method: 'PUT', body: JSON.stringify({ enabled: false }) })).status).toBe(204);
    const refused = await exchanges(key, appSecret!);
    expect(refused.every((status) => status >= 400)).toBe(true);
    expect((await fetch(userinfoUrl, { headers: { authorization: `Bearer ${cc.access_token}` } })).status).toBe(401);

    // Re-enabled it works again; disabling the user through the Admin API ends it too.
    expect((await bench.api(`/cx/users/${botId}/access-keys/${key.id}`, { method: 'PUT', body: JSON.stringify({ enabled: true }) })).status).toBe(204);
    expect(await exchanges(key, appSecret!)).toEqual([200, 200, 200]);
    await admin.users.update({ realm: 'cx', id: botId }, { enabled: false });
    expect((await exchanges(key, appSecret!)).every((status) => status >= 400)).toBe(true);

    // A role removed through the Admin API leaves the next token at once.
    await admin.users.update({ realm: 'cx', id: botId }, { enabled: true });
    await admin.users.delRealmRoleMappings({ realm: 'cx', id: botId, roles: [{ id: role!.id!, name: 'ivr' }] });
    const after = await (await postForm(tokenUrl, { grant_type: 'client_credentials' }, { authorization: basicAuth(key.id, key.secret) })).json() as { access_token: string };
    expect((claimsOf(after.access_token).realm_access as { roles: string[] } | undefined)?.roles ?? []).not.toContain('ivr');
  });
});
