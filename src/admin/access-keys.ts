// Admin REST API: a user's access keys (beyond Keycloak; CXone's "Access Key" permission):
// create (201 with the secret, shown only in that answer), list and read (never a secret),
// enable/disable and relabel, delete. view-users reads, manage-users writes. Writes drop the
// realm's cached state on every instance (the router's default), so a disabled key stops working
// everywhere at once.
import {
  AccessKeyError, accessKeyRepresentation, accessKeyUpdateRep, createAccessKey, deleteAccessKey, findUserAccessKey,
  listAccessKeys, newAccessKeyRep, updateAccessKey, type NewAccessKeyInput,
} from '../access-keys/management.ts';
import { parseRealmSettings } from '../realms/settings.ts';
import { UUID } from './realms.ts';
import { badRequest, conflict, createdWithBody, noContent, notFound, ok, type AdminRouter, type RealmRequest, type Reply } from './router.ts';

function adminError(error: unknown): unknown {
  if (!(error instanceof AccessKeyError)) return error;
  if (error.reason === 'not_found') return notFound(error.message);
  if (error.reason === 'limit') return conflict(error.message);
  return badRequest(error.message);
}

/** Runs a key operation, answering AccessKeyErrors as Keycloak-style admin errors. */
async function answer(run: () => Promise<Reply>): Promise<Reply> {
  try {
    return await run();
  } catch (error) {
    throw adminError(error);
  }
}

const keyRealm = (req: RealmRequest) => ({ id: req.realm.id, settings: parseRealmSettings(req.realm.settings) });

async function findUserId(req: RealmRequest): Promise<string> {
  const id = req.params.id ?? '';
  const user = UUID.test(id)
    ? await req.db.selectFrom('users').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!user) throw notFound('User not found');
  return user.id;
}

/** The body is optional: a POST without one creates an unlabelled key that does not expire. */
async function newKeyBody(req: RealmRequest): Promise<NewAccessKeyInput> {
  const length = req.ctx.request.length;
  if (!req.ctx.get('content-type') && (length === undefined || length === 0)) return {};
  return req.json(newAccessKeyRep);
}

export function registerAccessKeysRoutes(admin: AdminRouter): void {
  const { db, box } = admin.services;

  admin.realm('post', '/users/:id/access-keys', { permission: 'manage-users' }, (req) => answer(async () => {
    const userId = await findUserId(req);
    const body = await newKeyBody(req);
    const key = await createAccessKey(db, box, keyRealm(req), userId, body);
    return createdWithBody(key.id, key);
  }));

  admin.realm('get', '/users/:id/access-keys', { permission: 'view-users' }, async (req) => {
    const userId = await findUserId(req);
    return ok(await listAccessKeys(db, req.realm.id, userId));
  });

  admin.realm('get', '/users/:id/access-keys/:keyId', { permission: 'view-users' }, (req) => answer(async () => {
    const userId = await findUserId(req);
    return ok(accessKeyRepresentation(await findUserAccessKey(db, req.realm.id, userId, req.params.keyId ?? '')));
  }));

  admin.realm('put', '/users/:id/access-keys/:keyId', { permission: 'manage-users' }, (req) => answer(async () => {
    const userId = await findUserId(req);
    const body = await req.json(accessKeyUpdateRep);
    await updateAccessKey(db, keyRealm(req), userId, req.params.keyId ?? '', body);
    return noContent();
  }));

  admin.realm('delete', '/users/:id/access-keys/:keyId', { permission: 'manage-users' }, (req) => answer(async () => {
    const userId = await findUserId(req);
    await deleteAccessKey(db, req.realm.id, userId, req.params.keyId ?? '');
    return noContent();
  }));
}
