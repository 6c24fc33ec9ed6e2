// Access keys in realm JSON (issue 6): exports carry each key's digest (never its secret) inside
// its user, and importing that export into another server sharing the master key gives keys
// that still verify. Checked with checkAccessKey/findAccessKey directly, independent of the
// token exchanges.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { checkAccessKey, findAccessKey } from '../../src/access-keys/access-keys.ts';
import { createAccessKey, updateAccessKey } from '../../src/access-keys/management.ts';
import { exportRealm } from '../../src/realms/export.ts';
import { ImportError, importRealm } from '../../src/realms/import.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

type Json = Record<string, any>;

const MASTER_KEY = crypto.randomBytes(32).toString('base64');
let source: TestServer;
let target: TestServer;
let stranger: TestServer;

beforeAll(async () => {
  [source, target, stranger] = await Promise.all([
    startTestServer({ env: { CLOAKROOM_MASTER_KEY: MASTER_KEY } }),
    startTestServer({ env: { CLOAKROOM_MASTER_KEY: MASTER_KEY } }),
    startTestServer(), // another master key
  ]);
}, 60_000);
afterAll(async () => { await Promise.all([source?.stop(), target?.stop(), stranger?.stop()]); });

const json = (value: unknown): Json => JSON.parse(JSON.stringify(value)) as Json;
const userNamed = (rep: Json, username: string): Json => rep.users.find((u: Json) => u.username === username);

/** A realm with an application user holding three keys (one disabled, one expiring) and a human. */
async function sourceRealm(name: string): Promise<{ realmId: string; botId: string; keys: Array<{ id: string; secret: string }> }> {
  const { realmId } = await source.importRealm({
    realm: name, enabled: true,
    users: [
      { username: 'ivr-bot', enabled: true, application: true },
      { username: 'alice', enabled: true, credentials: [{ type: 'password', value: 'Alice-Secret-1' }] },
    ],
  });
  const { db } = source.store;
  const { box } = source;
  const bot = await db.selectFrom('users').select('id').where('realm_id', '=', realmId).where('username', '=', 'ivr-bot').executeTakeFirstOrThrow();
  const realm = { id: realmId, settings: { attributes: { 'cloakroom.accessKeys.maxActivePerUser': '5' } } };
  const plain = await createAccessKey(db, box, realm, bot.id, { label: 'prod' });
  const expiring = await createAccessKey(db, box, realm, bot.id, { expiresAt: Date.now() + 86_400_000 });
  const disabled = await createAccessKey(db, box, realm, bot.id, { label: 'retired' });
  await updateAccessKey(db, realm, bot.id, disabled.id, { enabled: false });
  await db.updateTable('access_keys').set({ last_used_at: new Date(1_750_000_000_000) }).where('id', '=', plain.id).execute();
  return { realmId, botId: bot.id, keys: [plain, expiring, disabled] };
}

describe('access keys in realm JSON', () => {
  it('exports digests, imports them, and the keys verify on a server with the same master key', async () => {
    const { keys } = await sourceRealm('ak-export');
    const [plain, expiring, disabled] = keys as [{ id: string; secret: string }, { id: string; secret: string }, { id: string; secret: string }];
    const exported = json(await exportRealm(source.store.db, source.box, 'ak-export', { users: true, secrets: 'open' }));
    const text = JSON.stringify(exported);
    for (const key of keys) expect(text).not.toContain(key.secret);

    const bot = userNamed(exported, 'ivr-bot');
    expect(bot.application).toBe(true);
    expect(userNamed(exported, 'alice')).not.toHaveProperty('application');
    expect(userNamed(exported, 'alice')).not.toHaveProperty('accessKeys');
    const rows = await source.store.db.selectFrom('access_keys').selectAll().where('user_id', '=', (await source.store.db.selectFrom('users').select('id').where('username', '=', 'ivr-bot').executeTakeFirstOrThrow()).id).execute();
    const digestOf = (id: string): string => rows.find((r) => r.id === id)!.secret_digest;
    expect(bot.accessKeys).toHaveLength(3);
    expect(bot.accessKeys).toEqual(expect.arrayContaining([
      { id: plain.id, secretDigest: digestOf(plain.id), label: 'prod', createdAt: expect.any(Number), expiresAt: null, enabled: true, lastUsedAt: 1_750_000_000_000 },
      { id: expiring.id, secretDigest: digestOf(expiring.id), label: null, createdAt: expect.any(Number), expiresAt: expect.any(Number), enabled: true, lastUsedAt: null },
      { id: disabled.id, secretDigest: digestOf(disabled.id), label: 'retired', createdAt: expect.any(Number), expiresAt: null, enabled: false, lastUsedAt: null },
    ]));

    // Into a fresh server sharing the master key: the same keys, and they verify.
    const { realmId } = await target.importRealm(exported);
    const found = await findAccessKey(target.store.db, realmId, plain.id);
    expect(found).toBeDefined();
    expect(checkAccessKey(target.box, found, plain.secret, found!.user_enabled)).toBeUndefined();
    expect(checkAccessKey(target.box, found, expiring.secret, true)).toBe('wrong_secret');
    const foundExpiring = await findAccessKey(target.store.db, realmId, expiring.id);
    expect(checkAccessKey(target.box, foundExpiring, expiring.secret, true)).toBeUndefined();
    const foundDisabled = await findAccessKey(target.store.db, realmId, disabled.id);
    expect(checkAccessKey(target.box, foundDisabled, disabled.secret, true)).toBe('key_disabled');
    const targetBot = await target.store.db.selectFrom('users').select(['id', 'application']).where('realm_id', '=', realmId).where('username', '=', 'ivr-bot').executeTakeFirstOrThrow();
    expect(targetBot.application).toBe(true);
    expect(found!.user_id).toBe(targetBot.id);

    // What the target exports is what the source exported.
    const again = json(await exportRealm(target.store.db, target.box, 'ak-export', { users: true, secrets: 'open' }));
    expect(userNamed(again, 'ivr-bot').accessKeys).toEqual(bot.accessKeys);

    // Under another master key the digests never match.
    const other = await stranger.importRealm(exported);
    const elsewhere = await findAccessKey(stranger.store.db, other.realmId, plain.id);
    expect(elsewhere).toBeDefined();
    expect(checkAccessKey(stranger.box, elsewhere, plain.secret, true)).toBe('wrong_secret');
  });

  it('leaves keys out of exports without secrets', async () => {
    await sourceRealm('ak-masked');
    const masked = json(await exportRealm(source.store.db, source.box, 'ak-masked', { users: true, secrets: 'masked' }));
    expect(userNamed(masked, 'ivr-bot')).not.toHaveProperty('accessKeys');
    expect(userNamed(masked, 'ivr-bot').application).toBe(true);
  });

  it('validates imported keys', async () => {
    const key = (overrides: Json): Json => ({ id: 'A'.repeat(52), secretDigest: 'x'.repeat(43), createdAt: 1_700_000_000_000, enabled: true, ...overrides });
    const realm = (name: string, ...accessKeys: Json[]): Json => ({ realm: name, users: [{ username: 'bot', application: true, accessKeys }] });
    for (const bad of [key({ id: 'a'.repeat(52) }), key({ id: 'A'.repeat(51) }), key({ secretDigest: 'not a digest' }), key({ expiresAt: 'soon' }), key({ enabled: 'yes' })]) {
      await expect(importRealm(target.store.db, target.box, realm('ak-bad', bad))).rejects.toBeInstanceOf(ImportError);
    }
    await expect(importRealm(target.store.db, target.box, realm('ak-twice', key({}), key({})))).rejects.toThrow(/listed twice/);

    // Key ids are unique on a server: a second realm cannot import the same keys.
    const first = await importRealm(target.store.db, target.box, realm('ak-once', key({ id: 'B'.repeat(52) })));
    expect((await findAccessKey(target.store.db, first.realmId, 'B'.repeat(52)))?.secret_digest).toBe('x'.repeat(43));
    await expect(importRealm(target.store.db, target.box, realm('ak-copy', key({ id: 'B'.repeat(52) })))).rejects.toThrow(/already exists/);
    expect(await target.store.db.selectFrom('realms').select('id').where('name', '=', 'ak-copy').executeTakeFirst()).toBeUndefined();
  });
});
