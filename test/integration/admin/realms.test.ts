import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

describe('realms', () => {
  it('lists master for the bootstrap admin', async () => {
    const realms = await bench.admin.realms.find();
    expect(realms.map((r) => r.realm)).toContain('master');
  });

  it('creates, reads, updates and deletes a realm', async () => {
    const { realmName } = await bench.admin.realms.create({ realm: 'acme', enabled: true, displayName: 'Acme' });
    expect(realmName).toBe('acme');
    const realm = await bench.admin.realms.findOne({ realm: 'acme' });
    expect(realm).toMatchObject({ realm: 'acme', displayName: 'Acme', enabled: true, accessTokenLifespan: 300 });
    await bench.admin.realms.update({ realm: 'acme' }, { accessTokenLifespan: 600, displayName: 'Acme Corp' });
    expect(await bench.admin.realms.findOne({ realm: 'acme' })).toMatchObject({ accessTokenLifespan: 600, displayName: 'Acme Corp' });
    await expect(bench.admin.realms.create({ realm: 'acme' })).rejects.toMatchObject({ response: { status: 409 } });
    await bench.admin.realms.del({ realm: 'acme' });
    expect(await bench.admin.realms.findOne({ realm: 'acme' })).toBeNull();
  });

  it('rejects a wrongly typed field with 400 naming it', async () => {
    await bench.admin.realms.create({ realm: 'typed' });
    const response = await bench.api('/typed', { method: 'PUT', body: JSON.stringify({ accessTokenLifespan: 'long' }) });
    expect(response.status).toBe(400);
    expect((await response.json() as { errorMessage: string }).errorMessage).toContain('accessTokenLifespan');
  });

  it('answers 401 without a token', async () => {
    const response = await fetch(`${bench.server.url}/admin/realms`);
    expect(response.status).toBe(401);
  });
});
