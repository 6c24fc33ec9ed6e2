// Admin REST API: login authenticators (beyond Keycloak; CXone's named password/lockout/MFA
// policies) and their assignment to users and groups. The realm default authenticator is the
// realm's own passwordPolicy / brute-force / otpPolicy fields: writing it writes the realm
// settings, so realm JSON and `PUT /admin/realms/{realm}` stay in step with it.
import { sql } from 'kysely';
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import {
  CXONE_PRESET, EXTRA_FIELDS, MFA_REQUIREMENTS, OTP_ALGORITHMS, REALM_MIRRORED_FIELDS, parseAuthenticatorSettings,
  type AuthenticatorSettings,
} from '../login/authenticator-settings.ts';
import { isValidIpRange } from '../login/ip-ranges.ts';
import { authenticatorSettings, ensureDefaultAuthenticator, loginAuthenticatorFor } from '../login/login-authenticators.ts';
import {
  PasswordPolicyError, formatPasswordPolicy, parsePasswordPolicy, passwordRules, withPasswordRules, type PasswordRules,
} from '../login/password-policy.ts';
import type { Db } from '../store/db.ts';
import type { LoginAuthenticator, Realm } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

const count = z.number().int().min(0).max(2 ** 31 - 1);

const passwordRulesRep = z.object({
  minLength: count.optional(), maxLength: count.optional(), minLowerCase: count.optional(), minUpperCase: count.optional(),
  minDigits: count.optional(), minSpecialChars: count.optional(), notUsername: z.boolean().optional(),
  notContainsUsername: z.boolean().optional(), notEmail: z.boolean().optional(), regexPatterns: z.array(z.string().max(1000)).max(20).optional(),
  historyDepth: count.optional(), notRecentlyUsedDays: count.optional(), maxAgeDays: count.optional(),
}).strict();

const ipRange = z.string().max(64).refine(isValidIpRange, 'not an IP address or CIDR range');

/** Everything an authenticator can carry; all optional so PUT can change a part. */
const authenticatorRep = z.object({
  id: z.string().optional(),
  name: z.string().trim().min(1).max(255).optional(),
  description: z.string().max(1000).nullish(),
  default: z.boolean().optional(),
  preset: z.enum(['keycloak', 'cxone']).optional(),
  passwordPolicy: z.string().max(4000).optional(),
  passwordRules: passwordRulesRep.optional(),
  bruteForceProtected: z.boolean().optional(),
  permanentLockout: z.boolean().optional(),
  maxTemporaryLockouts: count.optional(),
  bruteForceStrategy: z.enum(['MULTIPLE', 'LINEAR']).optional(),
  failureFactor: count.min(1).optional(),
  waitIncrementSeconds: count.optional(),
  quickLoginCheckMilliSeconds: count.optional(),
  minimumQuickLoginWaitSeconds: count.optional(),
  maxFailureWaitSeconds: count.optional(),
  maxDeltaTimeSeconds: count.optional(),
  otpPolicyType: z.enum(['totp', 'hotp']).optional(),
  otpPolicyAlgorithm: z.enum(OTP_ALGORITHMS).optional(),
  otpPolicyDigits: z.union([z.literal(6), z.literal(8)]).optional(),
  otpPolicyLookAheadWindow: count.max(100).optional(),
  otpPolicyPeriod: count.min(1).max(3600).optional(),
  otpPolicyInitialCounter: count.optional(),
  otpPolicyCodeReusable: z.boolean().optional(),
  mfa: z.enum(MFA_REQUIREMENTS).optional(),
  allowedIpRanges: z.array(ipRange).max(100).optional(),
  /** Read-only in answers; accepted and ignored on input. */
  usersAssigned: z.unknown().optional(),
}).loose();
type AuthenticatorInput = z.infer<typeof authenticatorRep>;

const assignmentRep = z.object({ id: z.string().optional(), name: z.string().optional() }).loose();

function representation(realm: Realm, row: LoginAuthenticator): Record<string, unknown> {
  const settings = authenticatorSettings(realm, row);
  return {
    id: row.id, name: row.name, ...(row.description ? { description: row.description } : {}), default: row.is_default,
    ...settings, passwordRules: passwordRules(parsePasswordPolicy(settings.passwordPolicy)),
  };
}

/** New settings: the current ones (or Keycloak's defaults), then the preset, then the fields given. */
function mergeSettings(current: AuthenticatorSettings, input: AuthenticatorInput): AuthenticatorSettings {
  const base: Record<string, unknown> = { ...current, ...(input.preset === 'cxone' ? CXONE_PRESET : input.preset === 'keycloak' ? parseAuthenticatorSettings({}) : {}) };
  for (const field of [...REALM_MIRRORED_FIELDS, ...EXTRA_FIELDS]) {
    if (input[field] !== undefined) base[field] = input[field];
  }
  let policy;
  try {
    policy = parsePasswordPolicy(String(base.passwordPolicy ?? ''), { strict: true });
  } catch (error) {
    if (error instanceof PasswordPolicyError) throw badRequest(error.message);
    throw error;
  }
  if (input.passwordRules) policy = withPasswordRules(policy, input.passwordRules as PasswordRules);
  base.passwordPolicy = formatPasswordPolicy(policy);
  return parseAuthenticatorSettings(base);
}

const pick = (settings: AuthenticatorSettings, fields: readonly string[]): Record<string, unknown> =>
  Object.fromEntries(fields.map((f) => [f, (settings as Record<string, unknown>)[f]]));

/** Writes the default authenticator's Keycloak fields into the realm settings. */
async function writeRealmFields(db: Db, realmId: string, settings: AuthenticatorSettings): Promise<void> {
  const fields = pick(settings, REALM_MIRRORED_FIELDS);
  // An empty policy is stored as Keycloak does: no passwordPolicy field.
  if (fields.passwordPolicy === '') fields.passwordPolicy = null;
  await db.updateTable('realms')
    .set({ settings: sql`settings || ${JSON.stringify(fields)}::jsonb`, updated_at: new Date() })
    .where('id', '=', realmId).execute();
}

async function findAuthenticator(req: RealmRequest, id: string | undefined): Promise<LoginAuthenticator> {
  const row = id && UUID.test(id)
    ? await req.db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!row) throw notFound('Could not find login authenticator');
  return row;
}

async function nameTaken(db: Db, realmId: string, name: string, exceptId?: string): Promise<boolean> {
  let query = db.selectFrom('login_authenticators').select('id').where('realm_id', '=', realmId).where(sql`lower(name)`, '=', name.toLowerCase());
  if (exceptId) query = query.where('id', '!=', exceptId);
  return (await query.executeTakeFirst()) !== undefined;
}

/** Makes `row` the realm default: the old default keeps its settings as its own config. */
async function makeDefault(db: Db, realm: Realm, row: LoginAuthenticator, settings: AuthenticatorSettings): Promise<void> {
  const old = await ensureDefaultAuthenticator(db, realm.id);
  if (old.id === row.id) return;
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('login_authenticators').set({ is_default: false, config: JSON.stringify(authenticatorSettings(realm, old)) })
      .where('id', '=', old.id).execute();
    await trx.updateTable('login_authenticators').set({ is_default: true, config: JSON.stringify(pick(settings, EXTRA_FIELDS)) })
      .where('id', '=', row.id).execute();
    await writeRealmFields(trx, realm.id, settings);
  });
}

/** The assignment target's realm-checked id, or undefined to clear it. */
async function assignmentTarget(req: RealmRequest): Promise<string> {
  const body = await req.json(assignmentRep);
  let query = req.db.selectFrom('login_authenticators').select('id').where('realm_id', '=', req.realm.id);
  if (body.id !== undefined) {
    if (!UUID.test(body.id)) throw notFound('Could not find login authenticator');
    query = query.where('id', '=', body.id.toLowerCase());
  } else if (body.name !== undefined) {
    query = query.where(sql`lower(name)`, '=', body.name.toLowerCase());
  } else {
    throw badRequest('Give the login authenticator as {"id": ...} or {"name": ...}');
  }
  const row = await query.executeTakeFirst();
  if (!row) throw notFound('Could not find login authenticator');
  return row.id;
}

export function registerLoginAuthenticatorRoutes(admin: AdminRouter): void {
  const { db } = admin.services;
  const base = '/login-authenticators';

  admin.realm('get', base, { permission: 'view-realm' }, async (req) => {
    await ensureDefaultAuthenticator(db, req.realm.id);
    const rows = await db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', req.realm.id)
      .orderBy('is_default', 'desc').orderBy(sql`lower(name)`).execute();
    return ok(rows.map((row) => representation(req.realm, row)));
  });

  admin.realm('post', base, { permission: 'manage-realm' }, async (req) => {
    const input = await req.json(authenticatorRep);
    if (!input.name) throw badRequest("Invalid value for field 'name': required");
    await ensureDefaultAuthenticator(db, req.realm.id);
    if (await nameTaken(db, req.realm.id, input.name)) throw conflict(`Login authenticator with name ${input.name} already exists`);
    const settings = mergeSettings(parseAuthenticatorSettings({}), input);
    const id = newId();
    await db.insertInto('login_authenticators').values({
      id, realm_id: req.realm.id, name: input.name, description: input.description ?? null, is_default: false, config: JSON.stringify(settings),
    }).execute();
    if (input.default) await makeDefault(db, req.realm, await findAuthenticator(req, id), settings);
    return created(id);
  });

  admin.realm('get', `${base}/:id`, { permission: 'view-realm' }, async (req) => {
    await ensureDefaultAuthenticator(db, req.realm.id);
    return ok(representation(req.realm, await findAuthenticator(req, req.params.id)));
  });

  admin.realm('put', `${base}/:id`, { permission: 'manage-realm' }, async (req) => {
    const input = await req.json(authenticatorRep);
    const row = await findAuthenticator(req, req.params.id);
    if (input.name !== undefined && await nameTaken(db, req.realm.id, input.name, row.id)) {
      throw conflict(`Login authenticator with name ${input.name} already exists`);
    }
    if (row.is_default && input.default === false) throw badRequest('Make another login authenticator the default instead');
    const settings = mergeSettings(authenticatorSettings(req.realm, row), input);
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('login_authenticators').set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        config: JSON.stringify(row.is_default ? pick(settings, EXTRA_FIELDS) : settings),
      }).where('id', '=', row.id).execute();
      if (row.is_default) await writeRealmFields(trx, req.realm.id, settings);
    });
    if (input.default && !row.is_default) await makeDefault(db, req.realm, row, settings);
    return noContent();
  });

  admin.realm('delete', `${base}/:id`, { permission: 'manage-realm' }, async (req) => {
    const row = await findAuthenticator(req, req.params.id);
    if (row.is_default) throw badRequest('The default login authenticator cannot be deleted');
    // Users and groups that had it fall back (ON DELETE SET NULL) to their groups' or the default.
    await db.deleteFrom('login_authenticators').where('id', '=', row.id).execute();
    return noContent();
  });

  // Assignment to users: GET shows the effective one and where it comes from.
  admin.realm('get', '/users/:id/login-authenticator', { permission: 'view-users' }, async (req) => {
    const user = await findUser(req);
    await ensureDefaultAuthenticator(db, req.realm.id);
    const effective = await loginAuthenticatorFor(db, req.realm, user);
    const source = user.login_authenticator_id ? 'user' : effective.isDefault ? 'default' : 'group';
    const row = await findAuthenticator(req, effective.id);
    return ok({ ...representation(req.realm, row), source });
  });

  admin.realm('put', '/users/:id/login-authenticator', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    const id = await assignmentTarget(req);
    await db.updateTable('users').set({ login_authenticator_id: id }).where('id', '=', user.id).execute();
    return noContent();
  });

  admin.realm('delete', '/users/:id/login-authenticator', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const user = await findUser(req);
    await db.updateTable('users').set({ login_authenticator_id: null }).where('id', '=', user.id).execute();
    return noContent();
  });

  admin.realm('get', '/groups/:id/login-authenticator', { permission: 'view-users' }, async (req) => {
    const group = await findGroup(req);
    if (!group.login_authenticator_id) throw notFound('No login authenticator assigned to this group');
    return ok(representation(req.realm, await findAuthenticator(req, group.login_authenticator_id)));
  });

  admin.realm('put', '/groups/:id/login-authenticator', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const group = await findGroup(req);
    const id = await assignmentTarget(req);
    await db.updateTable('groups').set({ login_authenticator_id: id }).where('id', '=', group.id).execute();
    return noContent();
  });

  admin.realm('delete', '/groups/:id/login-authenticator', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const group = await findGroup(req);
    await db.updateTable('groups').set({ login_authenticator_id: null }).where('id', '=', group.id).execute();
    return noContent();
  });
}

async function findUser(req: RealmRequest) {
  const id = req.params.id ?? '';
  const user = UUID.test(id)
    ? await req.db.selectFrom('users').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!user) throw notFound('User not found');
  return user;
}

async function findGroup(req: RealmRequest) {
  const id = req.params.id ?? '';
  const group = UUID.test(id)
    ? await req.db.selectFrom('groups').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id.toLowerCase()).executeTakeFirst()
    : undefined;
  if (!group) throw notFound('Could not find group by id');
  return group;
}
