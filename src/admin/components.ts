// Admin REST API: components (Keycloak's generic provider instances: user storage such as LDAP
// and its mappers, key providers, client registration policies...), stored as Keycloak stores
// them: a tree under the realm, config values as string arrays, secret values sealed. Creating an
// LDAP provider creates Keycloak's default LDAP mappers as sub-components. LDAP connections, sync
// and key generation from key-provider components are not done here.
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import type { Db } from '../store/db.ts';
import { COMPONENT_SECRET_KEYS, openSecrets, sealSecrets, withSecrets } from '../store/sealed-config.ts';
import type { Component } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

type Config = Record<string, string[]>;

const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const LDAP_MAPPER = 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper';

/** Provider ids per provider type that Keycloak ships (what realm.addComponentModel accepts). */
const PROVIDERS: Record<string, Set<string>> = {
  [USER_STORAGE]: new Set(['ldap', 'kerberos']),
  [LDAP_MAPPER]: new Set([
    'user-attribute-ldap-mapper', 'full-name-ldap-mapper', 'hardcoded-ldap-attribute-mapper', 'hardcoded-ldap-role-mapper',
    'hardcoded-ldap-group-mapper', 'hardcoded-attribute-mapper', 'group-ldap-mapper', 'role-ldap-mapper',
    'msad-user-account-control-mapper', 'msad-lds-user-account-control-mapper', 'certificate-ldap-mapper',
    'kerberos-principal-attribute-mapper',
  ]),
  'org.keycloak.keys.KeyProvider': new Set([
    'rsa-generated', 'rsa', 'rsa-enc-generated', 'rsa-enc', 'ecdsa-generated', 'ecdh-generated', 'eddsa-generated',
    'hmac-generated', 'aes-generated', 'java-keystore',
  ]),
  'org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy': new Set([
    'trusted-hosts', 'consent-required', 'scope', 'max-clients', 'client-disabled', 'allowed-protocol-mappers',
    'allowed-client-templates', 'registration-web-origins',
  ]),
  'org.keycloak.userprofile.UserProfileProvider': new Set(['declarative-user-profile']),
};

// ---------------------------------------------------------------------------------------------
// LDAP mapper types offered under an LDAP provider (GET /components/{id}/sub-component-types),
// with the config properties of Keycloak's mapper factories.

type Property = { name: string; label: string; helpText: string; type: string; defaultValue?: string; required?: boolean };
type LdapMapperType = { helpText: string; properties: (parent: Config) => Property[]; sync?: boolean };

const READ_ONLY_HELP = "Read-only attribute is imported from LDAP to UserModel, but it's not saved back to LDAP when user is updated in Keycloak.";
const writable = (parent: Config): boolean => first(parent, 'editMode') === 'WRITABLE';

const LDAP_MAPPER_TYPES: Record<string, LdapMapperType> = {
  'user-attribute-ldap-mapper': {
    helpText: 'Used to map single attribute from LDAP user to attribute of UserModel in Keycloak DB',
    properties: (parent) => [
      { name: 'user.model.attribute', label: 'User Model Attribute', type: 'String', helpText: "Name of the UserModel property or attribute you want to map the LDAP attribute into. For example 'firstName', 'lastName, 'email', 'street' etc." },
      { name: 'ldap.attribute', label: 'LDAP Attribute', type: 'String', helpText: "Name of mapped attribute on LDAP object. For example 'cn', 'sn, 'mail', 'street' etc." },
      { name: 'read.only', label: 'Read Only', type: 'boolean', helpText: READ_ONLY_HELP, defaultValue: String(!writable(parent)) },
      ...(first(parent, 'importEnabled') !== 'false'
        ? [{ name: 'always.read.value.from.ldap', label: 'Always Read Value From LDAP', type: 'boolean', defaultValue: 'false', helpText: 'If on, then during reading of the LDAP attribute value will always used instead of the value from Keycloak DB' }]
        : []),
      { name: 'is.mandatory.in.ldap', label: 'Is Mandatory In LDAP', type: 'boolean', defaultValue: 'false', helpText: 'If true, attribute is mandatory in LDAP. Hence if there is no value in Keycloak DB, the empty value will be set to be propagated to LDAP' },
      { name: 'is.binary.attribute', label: 'Is Binary Attribute', type: 'boolean', defaultValue: 'false', helpText: 'Should be true for binary LDAP attributes' },
    ],
  },
  'full-name-ldap-mapper': {
    helpText: "Used to map full-name of user from single attribute in LDAP (usually 'cn' attribute) to firstName and lastName attributes of UserModel in Keycloak DB",
    properties: (parent) => [
      { name: 'ldap.full.name.attribute', label: 'LDAP Full Name Attribute', type: 'String', defaultValue: 'cn', helpText: "Name of LDAP attribute, which contains fullName of user. Usually it will be 'cn' " },
      { name: 'read.only', label: 'Read Only', type: 'boolean', defaultValue: String(!writable(parent)), helpText: "For Read-only is data imported from LDAP to Keycloak DB, but it's not saved back to LDAP when user is updated in Keycloak." },
      { name: 'write.only', label: 'Write Only', type: 'boolean', defaultValue: String(writable(parent)), helpText: 'For Write-only is data propagated to LDAP when user is created or updated in Keycloak. But this mapper is not used to propagate data from LDAP back into Keycloak. This setting is useful if you configured separate firstName and lastName attribute mappers and you want to use those to read attribute from LDAP into Keycloak' },
    ],
  },
  'hardcoded-ldap-attribute-mapper': {
    helpText: 'This mapper is supported just if syncRegistrations is enabled. When new user is registered in Keycloak, he will be written to the LDAP with the hardcoded value of some specified attribute.',
    properties: () => [
      { name: 'ldap.attribute.name', label: 'LDAP Attribute Name', type: 'String', required: true, helpText: 'Name of the LDAP attribute, which will be added to the new user during registration' },
      { name: 'ldap.attribute.value', label: 'LDAP Attribute Value', type: 'String', required: true, helpText: "Value of the LDAP attribute, which will be added to the new user during registration. You can either hardcode any value like 'foo' but you can also use some special tokens. Only supported token right now is '${RANDOM}' , which will be replaced with some randomly generated String." },
    ],
  },
  'hardcoded-ldap-role-mapper': {
    helpText: 'When user is imported from LDAP, he will be automatically added into this configured role.',
    properties: () => [{ name: 'role', label: 'Role', type: 'Role', required: true, helpText: "Role to grant to user.  Click 'Select Role' button to browse roles, or just type it in the textbox.  To reference a client role the syntax is clientname.clientrole, i.e. myclient.myrole" }],
  },
  'hardcoded-ldap-group-mapper': {
    helpText: 'When user is imported from LDAP, he will be automatically added into this configured group.',
    properties: () => [{ name: 'group', label: 'Group', type: 'String', required: true, helpText: "Group to add the user in. Fill the full path of the group including path. For example '/root-group/child-group'" }],
  },
  'hardcoded-attribute-mapper': {
    helpText: 'This mapper will hardcode any model user attribute and some property (like emailVerified or enabled) when importing user from ldap.',
    properties: () => [
      { name: 'user.model.attribute', label: 'User Model Attribute Name', type: 'UserProfileAttributeList', required: true, helpText: 'Name of the model attribute, which will be added when importing user from ldap' },
      { name: 'attribute.value', label: 'Attribute Value', type: 'String', required: true, helpText: 'Value of the model attribute, which will be added when importing user from ldap.' },
    ],
  },
  'msad-user-account-control-mapper': {
    helpText: "Mapper specific to MSAD. It's able to integrate the MSAD user account state into Keycloak account state (account enabled, password is expired etc). It's using userAccountControl and pwdLastSet MSAD attributes for that. For example if pwdLastSet is 0, the Keycloak user is required to update password, if userAccountControl is 514 (disabled account) the Keycloak user is disabled as well etc. Mapper is also able to handle exception code from LDAP user authentication.",
    properties: () => [],
  },
  'kerberos-principal-attribute-mapper': {
    helpText: 'This mapper will update Kerberos principal attribute in the DB when the attribute changes in LDAP.',
    properties: () => [],
  },
};

// ---------------------------------------------------------------------------------------------
// Helpers

function first(config: Config, key: string): string | undefined {
  return config[key]?.[0];
}

/** Keycloak's toModel: null and blank values dropped, keys without values dropped. */
function cleanConfig(config: Record<string, (string | null)[] | null> | null | undefined): Config {
  const out: Config = {};
  for (const [key, values] of Object.entries(config ?? {})) {
    const kept = (values ?? []).filter((v): v is string => v !== null && v.trim() !== '');
    if (kept.length > 0) out[key] = kept;
  }
  return out;
}

function representation(req: RealmRequest, row: Component): Record<string, unknown> {
  return {
    id: row.id,
    ...(row.name !== '' ? { name: row.name } : {}),
    providerId: row.provider_id,
    providerType: row.provider_type,
    parentId: row.parent_id,
    ...(row.sub_type !== null ? { subType: row.sub_type } : {}),
    config: withSecrets(req.services.box, row.config as Config, row.secrets_sealed, 'masked'),
  };
}

async function findComponent(db: Db, realmId: string, id: string): Promise<Component | undefined> {
  if (!UUID.test(id)) return undefined;
  return db.selectFrom('components').selectAll().where('realm_id', '=', realmId).where('id', '=', id).executeTakeFirst();
}

/** A parent reference: the realm (by id or, as some clients send, by name) or a component of it. */
function parentRef(req: RealmRequest, parent: string | null | undefined): string | undefined {
  if (parent === undefined || parent === null || parent === '') return undefined;
  if (parent === req.realm.name) return req.realm.id;
  return parent;
}

// ---------------------------------------------------------------------------------------------
// Validation: Keycloak's ComponentFactory.validateConfiguration for the providers it validates,
// with the messages of its admin message bundle.

const EDIT_MODES = new Set(['READ_ONLY', 'WRITABLE', 'UNSYNCED']);

/**
 * LDAPStorageProviderFactory.validateConfiguration. Beyond Keycloak's server (whose admin console
 * requires them), Cloakroom also requires connectionUrl (ldap:// or ldaps:// URLs) and usersDn,
 * without which the provider cannot work; the attribute settings default as in Keycloak's LDAPConfig.
 */
function validateLdap(config: Config): void {
  const url = first(config, 'connectionUrl')?.trim();
  if (!url) throw badRequest('LDAP connection URL (connectionUrl) is required');
  for (const one of url.split(/\s+/)) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(one);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'ldap:' && parsed.protocol !== 'ldaps:')) throw badRequest(`Invalid LDAP connection URL: ${one}`);
  }
  if (!first(config, 'usersDn')?.trim()) throw badRequest('LDAP users DN (usersDn) is required');
  const filter = first(config, 'customUserSearchFilter')?.trim();
  if (filter && (!filter.startsWith('(') || !filter.endsWith(')'))) {
    throw badRequest('Custom configured LDAP filter does not start with "(" or does not end with ")".');
  }
  const isNumber = (value: string | undefined): boolean => value === undefined || value === '' || /^-?\d+$/.test(value);
  if (!isNumber(first(config, 'connectionTimeout'))) throw badRequest('Connection Timeout must be a number');
  if (!isNumber(first(config, 'readTimeout'))) throw badRequest('Read Timeout must be a number');
  const editMode = first(config, 'editMode');
  if (editMode === undefined) throw badRequest('Edit Mode is mandatory');
  if (!EDIT_MODES.has(editMode)) throw badRequest(`Invalid value for editMode: ${editMode} (expected READ_ONLY, WRITABLE or UNSYNCED)`);
  if (editMode !== 'WRITABLE' && first(config, 'validatePasswordPolicy') === 'true') {
    throw badRequest('Validate Password Policy is applicable only with WRITABLE edit mode');
  }
  if (first(config, 'importEnabled') === 'false' && editMode === 'UNSYNCED') {
    throw badRequest("Can't disable Importing users when LDAP provider mode is UNSYNCED");
  }
}

function required(config: Config, key: string, label: string): string {
  const value = first(config, key);
  if (value === undefined || value.trim() === '') throw badRequest(`Missing configuration for '${label}'`);
  return value;
}

/** Keycloak's getRoleFromString: a realm role, or clientId.roleName. */
async function roleExists(db: Db, realmId: string, role: string): Promise<boolean> {
  const realmRole = await db.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('client_id', 'is', null).where('name', '=', role).executeTakeFirst();
  if (realmRole) return true;
  const dot = role.lastIndexOf('.');
  if (dot <= 0) return false;
  const clientRole = await db.selectFrom('roles').innerJoin('clients', 'clients.id', 'roles.client_id').select('roles.id')
    .where('roles.realm_id', '=', realmId).where('clients.client_id', '=', role.slice(0, dot)).where('roles.name', '=', role.slice(dot + 1)).executeTakeFirst();
  return clientRole !== undefined;
}

async function groupPathExists(db: Db, realmId: string, path: string): Promise<boolean> {
  let parent: string | null = null;
  for (const name of path.split('/').filter((s) => s !== '')) {
    const query = db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', name);
    const group: { id: string } | undefined = await (parent === null ? query.where('parent_id', 'is', null) : query.where('parent_id', '=', parent)).executeTakeFirst();
    if (!group) return false;
    parent = group.id;
  }
  return parent !== null;
}

async function validateLdapMapper(db: Db, realmId: string, providerId: string, config: Config, parent: Component | undefined): Promise<void> {
  if (!parent || parent.provider_type !== USER_STORAGE || parent.provider_id !== 'ldap') throw badRequest("can't find parent component model");
  const bool = (key: string): boolean => first(config, key) === 'true';
  switch (providerId) {
    case 'user-attribute-ldap-mapper':
      required(config, 'user.model.attribute', 'User Model Attribute');
      required(config, 'ldap.attribute', 'LDAP Attribute');
      if (bool('is.binary.attribute') && !bool('always.read.value.from.ldap')) {
        throw badRequest("With Binary attribute enabled, the 'Always read value from LDAP' must be enabled too");
      }
      return;
    case 'full-name-ldap-mapper':
      required(config, 'ldap.full.name.attribute', 'LDAP Full Name Attribute');
      if (bool('write.only') && first(parent.config as Config, 'editMode') !== 'WRITABLE') {
        throw badRequest("Can't set write only when LDAP provider mode is not WRITABLE");
      }
      if (bool('write.only') && bool('read.only')) throw badRequest("Can't set write-only and read-only together");
      return;
    case 'hardcoded-ldap-attribute-mapper':
      required(config, 'ldap.attribute.name', 'LDAP Attribute Name');
      required(config, 'ldap.attribute.value', 'LDAP Attribute Value');
      return;
    case 'hardcoded-attribute-mapper': {
      const attribute = required(config, 'user.model.attribute', 'Attribute Name');
      required(config, 'attribute.value', 'Attribute Value');
      if (['username', 'email'].includes(attribute.toLowerCase())) throw badRequest('Attribute Name cannot be set to username or email');
      return;
    }
    case 'hardcoded-ldap-role-mapper': {
      const role = first(config, 'role');
      if (role === undefined) throw badRequest("Role can't be null");
      if (!(await roleExists(db, realmId, role))) throw badRequest('There is no role corresponding to configured value');
      return;
    }
    case 'hardcoded-ldap-group-mapper': {
      const group = first(config, 'group');
      if (group === undefined) throw badRequest("Group can't be null");
      if (!(await groupPathExists(db, realmId, group))) throw badRequest('There is no group corresponding to configured value');
      return;
    }
    default:
      return;
  }
}

type Draft = { id: string; name: string; providerId: string; providerType: string; parentId: string; subType: string | null; config: Config };

/** Checks the provider, the parent and the provider's own rules; returns the parent component, if any. */
async function validateComponent(req: RealmRequest, draft: Draft, secrets: Config): Promise<Component | undefined> {
  if (!PROVIDERS[draft.providerType]?.has(draft.providerId)) throw badRequest('Invalid provider type or no such provider');
  let parent: Component | undefined;
  if (draft.parentId !== req.realm.id) {
    parent = await findComponent(req.db, req.realm.id, draft.parentId);
    if (!parent) throw badRequest(`Invalid parent id ${draft.parentId}: no such component in realm ${req.realm.name}`);
    if (parent.id === draft.id) throw badRequest('A component cannot be its own parent');
  }
  const full = { ...draft.config, ...secrets };
  if (draft.providerType === USER_STORAGE && draft.providerId === 'ldap') validateLdap(full);
  if (draft.providerType === LDAP_MAPPER) await validateLdapMapper(req.db, req.realm.id, draft.providerId, full, parent);
  return parent;
}

// ---------------------------------------------------------------------------------------------
// Keycloak's LDAPStorageProviderFactory.onCreate: default mappers by vendor and edit mode.

type MapperSeed = { name: string; providerId: string; config: Record<string, string> };

/** Keycloak's LDAPConfig defaults for the attributes the default mappers use. */
function ldapDefaults(config: Config): { ad: boolean; username: string; rdn: string } {
  const ad = first(config, 'vendor') === 'ad';
  const username = first(config, 'usernameLDAPAttribute') ?? (ad ? 'cn' : 'uid');
  let rdn = first(config, 'rdnLDAPAttribute') ?? username;
  if (first(config, 'rdnLDAPAttribute') === undefined && rdn.toLowerCase() === 'samaccountname') rdn = 'cn';
  return { ad, username, rdn };
}

function defaultKerberosPrincipalAttribute(vendor: string | undefined): string {
  if (vendor === 'rhds') return 'krbPrincipalName';
  if (vendor === 'ad') return 'userPrincipalName';
  return 'krb5PrincipalName';
}

export function defaultLdapMappers(config: Config): MapperSeed[] {
  const { ad, username, rdn } = ldapDefaults(config);
  const editMode = first(config, 'editMode');
  const readOnly = String(editMode === 'READ_ONLY' || editMode === 'UNSYNCED');
  const alwaysRead = String(editMode === 'READ_ONLY' || editMode === 'WRITABLE');
  const attribute = (name: string, model: string, ldap: string, ro: string, always: string, mandatory: string): MapperSeed => ({
    name, providerId: 'user-attribute-ldap-mapper',
    config: { 'user.model.attribute': model, 'ldap.attribute': ldap, 'read.only': ro, 'always.read.value.from.ldap': always, 'is.mandatory.in.ldap': mandatory },
  });
  const seeds: MapperSeed[] = [attribute('username', 'username', username, readOnly, 'false', 'true')];
  if (rdn.toLowerCase() === 'cn') {
    if (username.toLowerCase() === 'cn') {
      seeds.push(attribute('first name', 'firstName', 'givenName', readOnly, alwaysRead, 'true'));
    } else if (editMode === 'WRITABLE') {
      seeds.push(attribute('first name', 'firstName', 'givenName', readOnly, alwaysRead, 'true'));
      seeds.push(attribute('username-cn', 'username', 'cn', readOnly, 'false', 'true'));
    } else {
      seeds.push({ name: 'full name', providerId: 'full-name-ldap-mapper', config: { 'ldap.full.name.attribute': 'cn', 'read.only': readOnly, 'write.only': 'false' } });
    }
  } else {
    seeds.push(attribute('first name', 'firstName', 'cn', readOnly, alwaysRead, 'true'));
  }
  seeds.push(attribute('last name', 'lastName', 'sn', readOnly, alwaysRead, 'true'));
  seeds.push(attribute('email', 'email', 'mail', readOnly, 'false', 'false'));
  seeds.push(attribute('creation date', 'createTimestamp', ad ? 'whenCreated' : 'createTimestamp', 'true', alwaysRead, 'false'));
  seeds.push(attribute('modify date', 'modifyTimestamp', ad ? 'whenChanged' : 'modifyTimestamp', 'true', alwaysRead, 'false'));
  if (ad) seeds.push({ name: 'MSAD account controls', providerId: 'msad-user-account-control-mapper', config: { 'always.read.enabled.value.from.ldap': alwaysRead } });
  seeds.push({ name: 'Kerberos principal attribute mapper', providerId: 'kerberos-principal-attribute-mapper', config: {} });
  if (!ad && first(config, 'syncRegistrations') === 'true' && first(config, 'usePasswordModifyExtendedOp') === 'true') {
    seeds.push({ name: 'random initial password', providerId: 'hardcoded-ldap-attribute-mapper', config: { 'ldap.attribute.name': 'userPassword', 'ldap.attribute.value': '${RANDOM}' } });
  }
  return seeds;
}

/** Ids of a component's descendants (LDAP mappers are one level down; deeper trees work too). */
async function descendants(db: Db, realmId: string, id: string): Promise<string[]> {
  const out: string[] = [];
  let frontier = [id];
  while (frontier.length > 0) {
    const children = await db.selectFrom('components').select('id').where('realm_id', '=', realmId).where('parent_id', 'in', frontier).execute();
    frontier = children.map((c) => c.id).filter((c) => !out.includes(c) && c !== id);
    out.push(...frontier);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Routes

const configSchema = z.record(z.string(), z.array(z.string().nullable()).nullable());

const componentRep = z.object({
  id: z.string().nullish(),
  name: z.string().nullish(),
  providerId: z.string().nullish(),
  providerType: z.string().nullish(),
  parentId: z.string().nullish(),
  subType: z.string().nullish(),
  config: configSchema.nullish(),
}).loose();

export function registerComponentsRoutes(admin: AdminRouter): void {
  const { db, box } = admin.services;

  admin.realm('get', '/components', { permission: 'view-realm' }, async (req) => {
    const parent = parentRef(req, req.query.parent);
    const type = req.query.type;
    let query = db.selectFrom('components').selectAll().where('realm_id', '=', req.realm.id);
    // Keycloak: a type without a parent means top-level components of that type.
    const parentId = parent ?? (type !== undefined ? req.realm.id : undefined);
    if (parentId !== undefined) {
      if (!UUID.test(parentId)) return ok([]);
      query = query.where('parent_id', '=', parentId);
    }
    if (type !== undefined) query = query.where('provider_type', '=', type);
    if (req.query.name !== undefined) query = query.where('name', '=', req.query.name);
    if (req.query.providerId !== undefined) query = query.where('provider_id', '=', req.query.providerId);
    const rows = await query.orderBy('name').orderBy('id').execute();
    return ok(rows.map((row) => representation(req, row)));
  });

  admin.realm('post', '/components', { permission: 'manage-realm', secretBody: true }, async (req) => {
    const body = await req.json(componentRep);
    const id = body.id ?? newId();
    if (!UUID.test(id)) throw badRequest(`Invalid component id: ${id}`);
    const parentId = parentRef(req, body.parentId) ?? req.realm.id;
    if (!UUID.test(parentId)) throw badRequest(`Invalid parent id ${parentId}: no such component in realm ${req.realm.name}`);
    const { config, sealed } = sealSecrets(box, cleanConfig(body.config), COMPONENT_SECRET_KEYS);
    const draft: Draft = {
      id, name: body.name ?? '', providerId: body.providerId ?? '', providerType: body.providerType ?? '', parentId,
      subType: body.subType ?? null, config,
    };
    await validateComponent(req, draft, openSecrets<string[]>(box, sealed));
    if (await db.selectFrom('components').select('id').where('id', '=', id).executeTakeFirst()) throw conflict(`Component ${id} already exists`);
    await db.transaction().execute(async (trx) => {
      const insert = (row: Draft, secrets: string | null) => trx.insertInto('components').values({
        id: row.id, realm_id: req.realm.id, parent_id: row.parentId, name: row.name, provider_id: row.providerId,
        provider_type: row.providerType, sub_type: row.subType, config: JSON.stringify(row.config), secrets_sealed: secrets,
      }).execute();
      if (draft.providerType === USER_STORAGE && draft.providerId === 'ldap') {
        // Keycloak's onCreate stores the vendor's default Kerberos principal attribute on the provider.
        if (!first(draft.config, 'krbPrincipalAttribute')) draft.config.krbPrincipalAttribute = [defaultKerberosPrincipalAttribute(first(draft.config, 'vendor'))];
        await insert(draft, sealed);
        for (const seed of defaultLdapMappers({ ...draft.config })) {
          const mapperConfig = Object.fromEntries(Object.entries(seed.config).map(([k, v]) => [k, [v]]));
          await insert({ id: newId(), name: seed.name, providerId: seed.providerId, providerType: LDAP_MAPPER, parentId: id, subType: null, config: mapperConfig }, null);
        }
      } else {
        await insert(draft, sealed);
      }
    });
    return created(id);
  });

  admin.realm('get', '/components/:id', { permission: 'view-realm' }, async (req) => {
    const row = await findComponent(db, req.realm.id, req.params.id ?? '');
    if (!row) throw notFound('Could not find component');
    return ok(representation(req, row));
  });

  admin.realm('put', '/components/:id', { permission: 'manage-realm', secretBody: true }, async (req) => {
    const current = await findComponent(db, req.realm.id, req.params.id ?? '');
    if (!current) throw notFound('Could not find component');
    const body = await req.json(componentRep);
    // Keycloak's updateComponent: given fields replace, config keys merge (a blank value removes
    // the key, the secret mask keeps the stored secret).
    const previousSecrets = openSecrets<string[]>(box, current.secrets_sealed);
    const merged: Config = { ...(current.config as Config), ...previousSecrets };
    for (const [key, values] of Object.entries(body.config ?? {})) {
      const kept = (values ?? []).filter((v): v is string => v !== null && v.trim() !== '');
      if (kept.length === 0) delete merged[key];
      else merged[key] = kept;
    }
    const { config, sealed } = sealSecrets(box, merged, COMPONENT_SECRET_KEYS, previousSecrets);
    const parentId = parentRef(req, body.parentId) ?? current.parent_id;
    if (!UUID.test(parentId)) throw badRequest(`Invalid parent id ${parentId}: no such component in realm ${req.realm.name}`);
    const draft: Draft = {
      id: current.id, name: body.name ?? current.name, providerId: body.providerId ?? current.provider_id,
      providerType: body.providerType ?? current.provider_type, parentId, subType: body.subType ?? current.sub_type, config,
    };
    const parent = await validateComponent(req, draft, openSecrets<string[]>(box, sealed));
    // The stored id: the body's may differ in case.
    if (parent && parent.id !== current.parent_id && (await descendants(db, req.realm.id, current.id)).includes(parent.id)) {
      throw badRequest('A component cannot be moved under one of its sub-components');
    }
    await db.updateTable('components').set({
      name: draft.name, provider_id: draft.providerId, provider_type: draft.providerType, parent_id: draft.parentId,
      sub_type: draft.subType, config: JSON.stringify(config), secrets_sealed: sealed,
    }).where('id', '=', current.id).execute();
    return noContent();
  });

  admin.realm('delete', '/components/:id', { permission: 'manage-realm' }, async (req) => {
    const current = await findComponent(db, req.realm.id, req.params.id ?? '');
    if (!current) throw notFound('Could not find component');
    const ids = [current.id, ...(await descendants(db, req.realm.id, current.id))];
    await db.transaction().execute(async (trx) => {
      // Keycloak removes the users imported from a user storage provider with it.
      if (current.provider_type === USER_STORAGE) {
        await trx.deleteFrom('users').where('realm_id', '=', req.realm.id).where('federation_link', '=', current.id).execute();
      }
      await trx.deleteFrom('components').where('realm_id', '=', req.realm.id).where('id', 'in', ids).execute();
    });
    return noContent();
  });

  admin.realm('get', '/components/:id/sub-component-types', { permission: 'view-realm' }, async (req) => {
    const parent = await findComponent(db, req.realm.id, req.params.id ?? '');
    if (!parent) throw notFound('Could not find parent component');
    const type = req.query.type;
    if (!type) throw badRequest('must specify a subtype');
    // Only LDAP providers have sub-components among the providers Cloakroom knows.
    if (type !== LDAP_MAPPER) return ok([]);
    const parentConfig = parent.config as Config;
    return ok(Object.entries(LDAP_MAPPER_TYPES).map(([id, mapper]) => ({
      id,
      helpText: mapper.helpText,
      properties: mapper.properties(parentConfig).map((p) => ({ ...p, required: p.required ?? false, secret: false, readOnly: false })),
      metadata: { fedToKeycloakSyncSupported: false, keycloakToFedSyncSupported: false },
    })));
  });
}
