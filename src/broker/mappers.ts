// Identity provider mappers, as Keycloak's IdentityProviderMapper implementations behave: what a
// brokered identity means for the local user (username, attributes, roles, groups). evaluate()
// is pure: it reads the identity and the mapper configs and says what should hold. apply() writes
// it inside the caller's transaction, under each mapper's sync mode (its own `syncMode` config, or
// the provider's when INHERIT/unset):
//   - 'import': the user was just created (or linked): everything is set and granted;
//   - 'FORCE': every login: attributes are overwritten (removed when the claim is gone), roles and
//     groups of matching importers granted and of non-matching ones taken away (unless another
//     mapper granted the same one in this login, Keycloak's KEYCLOAK-8730 rule);
//   - 'LEGACY': every login, but nothing is taken away;
//   - 'IMPORT' at a later login: nothing changes.
import type { Db } from '../store/db.ts';
import { findGroupIdByPath } from '../store/groups.ts';
import { findRole, roleContainer } from '../store/roles.ts';
import type { IdentityProviderMapperModel } from './identity-providers.ts';
import { BrokerError, type BrokeredIdentity } from './types.ts';

export type SyncMode = 'IMPORT' | 'FORCE' | 'LEGACY';
/** 'import' when the user was just created or linked; otherwise the provider's sync mode. */
export type SyncStage = 'import' | SyncMode;

export type MapperOutcome = {
  /** From a Username Template Importer. */
  username?: string;
  /** User attributes: values to set, or null to remove (FORCE). email/firstName/lastName are the user's own fields. */
  attributes: Map<string, { values: string[] | null; mode: SyncMode | undefined }>;
  /** Role specs (realm role, or clientId.role) and whether their importer matched. */
  roles: { spec: string; applies: boolean; hardcoded: boolean; mapper: string; mode: SyncMode | undefined }[];
  /** Group paths and whether their importer matched. */
  groups: { path: string; applies: boolean; hardcoded: boolean; mapper: string; mode: SyncMode | undefined }[];
};

/** A mapper's own sync mode; undefined = INHERIT (the provider's). */
function mapperSyncMode(mapper: IdentityProviderMapperModel): SyncMode | undefined {
  const mode = mapper.config.syncMode;
  return mode === 'IMPORT' || mode === 'FORCE' || mode === 'LEGACY' ? mode : undefined;
}

/** A claim by Keycloak's path syntax: dots separate levels, `\.` is a literal dot. */
export function claimValue(claims: Record<string, unknown> | undefined, path: string): unknown {
  if (!claims || !path) return undefined;
  const parts = path.split(/(?<!\\)\./).map((p) => p.replaceAll('\\.', '.'));
  let current: unknown = claims;
  for (const part of parts) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/** An OIDC claim as Keycloak's claim mappers look for it: ID token and user info, then the upstream access token. */
function oidcClaim(identity: BrokeredIdentity, path: string): unknown {
  return claimValue(identity.claims, path) ?? claimValue(identity.accessTokenClaims, path);
}

/** A claim's values as strings (arrays flattened, objects as JSON). */
function claimStrings(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value.flatMap(claimStrings);
  if (typeof value === 'object') return [JSON.stringify(value)];
  return [String(value)];
}

/** SAML attribute values by Name or FriendlyName (BrokeredIdentity.attributes holds both). */
function samlAttribute(identity: BrokeredIdentity, config: Record<string, string>): string[] {
  const name = config['attribute.name']?.trim();
  const friendly = config['attribute.friendly.name']?.trim();
  return (name ? identity.attributes?.[name] : undefined) ?? (friendly ? identity.attributes?.[friendly] : undefined) ?? [];
}

/** Advanced Claim to Role/Group: `claims` is a JSON list of {key, value}; all must match. */
function advancedClaimsMatch(identity: BrokeredIdentity, config: Record<string, string>, mapper: string): boolean {
  let rules: unknown;
  try {
    rules = JSON.parse(config.claims || '[]');
  } catch {
    throw new BrokerError('identity_provider_error', `mapper ${mapper}: claims is not JSON`);
  }
  if (!Array.isArray(rules)) throw new BrokerError('identity_provider_error', `mapper ${mapper}: claims is not a list`);
  const regex = config['are.claim.values.regex'] === 'true';
  return rules.every((rule: { key?: unknown; value?: unknown }) => {
    const values = claimStrings(oidcClaim(identity, String(rule.key ?? '')));
    const wanted = String(rule.value ?? '');
    if (!regex) return values.includes(wanted);
    let pattern: RegExp;
    try {
      pattern = new RegExp(`^(?:${wanted})$`);
    } catch {
      throw new BrokerError('identity_provider_error', `mapper ${mapper}: bad regular expression`);
    }
    return values.some((v) => pattern.test(v));
  });
}

/** `${ALIAS}`, `${CLAIM.x}`, `${NAMEID}`, `${ATTRIBUTE.x}`, with `| lowercase`, `| uppercase`, `| localpart`. */
export function usernameFromTemplate(template: string, identity: BrokeredIdentity): string {
  return template.replace(/\$\{([^}|]+)((?:\s*\|\s*\w+)*)\}/g, (_whole, variable: string, pipes: string) => {
    const name = variable.trim();
    let value: string;
    if (name === 'ALIAS') value = identity.alias;
    else if (name === 'NAMEID') value = identity.nameId ?? '';
    else if (name.startsWith('CLAIM.')) value = claimStrings(oidcClaim(identity, name.slice('CLAIM.'.length)))[0] ?? '';
    else if (name.startsWith('ATTRIBUTE.')) value = identity.attributes?.[name.slice('ATTRIBUTE.'.length)]?.[0] ?? '';
    else value = '';
    for (const pipe of pipes.split('|').map((p) => p.trim()).filter(Boolean)) {
      if (pipe === 'lowercase') value = value.toLowerCase();
      else if (pipe === 'uppercase') value = value.toUpperCase();
      else if (pipe === 'localpart') value = value.split('@')[0] ?? value;
    }
    return value;
  });
}

export function evaluateMappers(mappers: readonly IdentityProviderMapperModel[], identity: BrokeredIdentity): MapperOutcome {
  const outcome: MapperOutcome = { attributes: new Map(), roles: [], groups: [] };
  for (const mapper of mappers) {
    const { config } = mapper;
    const mode = mapperSyncMode(mapper);
    const setAttribute = (name: string | undefined, values: string[]): void => {
      if (!name?.trim()) return;
      outcome.attributes.set(name.trim(), { values: values.length > 0 ? values : null, mode });
    };
    switch (mapper.type) {
      case 'oidc-hardcoded-role-idp-mapper':
        if (config.role) outcome.roles.push({ spec: config.role, applies: true, hardcoded: true, mapper: mapper.name, mode });
        break;
      case 'oidc-hardcoded-group-idp-mapper':
        if (config.group) outcome.groups.push({ path: config.group, applies: true, hardcoded: true, mapper: mapper.name, mode });
        break;
      case 'hardcoded-attribute-idp-mapper':
        setAttribute(config.attribute, config['attribute.value'] !== undefined ? [config['attribute.value']] : []);
        break;
      case 'oidc-user-attribute-idp-mapper':
        setAttribute(config['user.attribute'], claimStrings(oidcClaim(identity, config.claim ?? '')));
        break;
      case 'github-user-attribute-mapper': case 'google-user-attribute-mapper': case 'microsoft-user-attribute-mapper': case 'facebook-user-attribute-mapper':
        setAttribute(config.userAttribute, claimStrings(claimValue(identity.claims, (config.jsonField ?? '').replace(/\[(\d+)\]/g, '.$1'))));
        break;
      case 'saml-user-attribute-idp-mapper':
        setAttribute(config['user.attribute'], samlAttribute(identity, config));
        break;
      case 'oidc-role-idp-mapper': {
        const values = claimStrings(oidcClaim(identity, config.claim ?? ''));
        if (config.role) outcome.roles.push({ spec: config.role, applies: values.includes(config['claim.value'] ?? ''), hardcoded: false, mapper: mapper.name, mode });
        break;
      }
      case 'oidc-advanced-role-idp-mapper':
        if (config.role) outcome.roles.push({ spec: config.role, applies: advancedClaimsMatch(identity, config, mapper.name), hardcoded: false, mapper: mapper.name, mode });
        break;
      case 'oidc-advanced-group-idp-mapper':
        if (config.group) outcome.groups.push({ path: config.group, applies: advancedClaimsMatch(identity, config, mapper.name), hardcoded: false, mapper: mapper.name, mode });
        break;
      case 'keycloak-oidc-role-to-role-idp-mapper': {
        // The upstream Keycloak access token: realm_access.roles, or resource_access.{client}.roles for client.role.
        const external = config['external.role'] ?? '';
        const token = identity.accessTokenClaims ?? {};
        const realmRoles = claimStrings(claimValue(token, 'realm_access.roles'));
        const dot = external.lastIndexOf('.');
        const clientRoles = dot > 0
          ? claimStrings((((token.resource_access ?? {}) as Record<string, { roles?: unknown }>)[external.slice(0, dot)])?.roles)
          : [];
        const applies = realmRoles.includes(external) || (dot > 0 && clientRoles.includes(external.slice(dot + 1)));
        if (config.role) outcome.roles.push({ spec: config.role, applies, hardcoded: false, mapper: mapper.name, mode });
        break;
      }
      case 'saml-role-idp-mapper':
        if (config.role) outcome.roles.push({ spec: config.role, applies: samlAttribute(identity, config).includes(config['attribute.value'] ?? ''), hardcoded: false, mapper: mapper.name, mode });
        break;
      case 'oidc-username-idp-mapper':
        outcome.username = usernameFromTemplate(config.template || '${ALIAS}.${CLAIM.preferred_username}', identity);
        break;
      case 'saml-username-idp-mapper':
        // BROKER_ID / BROKER_USERNAME targets change the lookup key, not the local username.
        if ((config.target ?? 'LOCAL') === 'LOCAL') outcome.username = usernameFromTemplate(config.template || '${ALIAS}.${NAMEID}', identity);
        break;
      default:
        // hardcoded-user-session-attribute-idp-mapper (session notes) and unknown types change no user data.
        break;
    }
  }
  return outcome;
}

const USER_FIELDS: Record<string, 'email' | 'first_name' | 'last_name'> = { email: 'email', firstName: 'first_name', lastName: 'last_name' };

/** Writes a mapper outcome to the user (inside the caller's transaction). */
export async function applyMapperOutcome(trx: Db, realmId: string, userId: string, outcome: MapperOutcome, stage: SyncStage): Promise<void> {
  const effective = (mode: SyncMode | undefined): SyncStage => (stage === 'import' ? 'import' : mode ?? stage);
  const user = await trx.selectFrom('users').select(['attributes']).where('id', '=', userId).executeTakeFirstOrThrow();
  const attributes: Record<string, string[]> = { ...(user.attributes as Record<string, string[]>) };
  const fields: Partial<Record<'email' | 'first_name' | 'last_name', string | null>> = {};
  let attributesChanged = false;
  for (const [name, { values, mode }] of outcome.attributes) {
    const due = effective(mode);
    if (due === 'IMPORT') continue;
    const field = USER_FIELDS[name];
    if (field) {
      if (values !== null) fields[field] = field === 'email' ? values[0]!.toLowerCase() : values[0]!;
      else if (due === 'FORCE') fields[field] = null;
      continue;
    }
    if (values !== null) {
      attributes[name] = values;
      attributesChanged = true;
    } else if (due === 'FORCE' && name in attributes) {
      delete attributes[name];
      attributesChanged = true;
    }
  }
  if (attributesChanged || Object.keys(fields).length > 0) {
    await trx.updateTable('users').set({ ...fields, ...(attributesChanged ? { attributes: JSON.stringify(attributes) } : {}) }).where('id', '=', userId).execute();
  }

  const granted = new Set<string>();
  const revoke: string[] = [];
  for (const role of outcome.roles) {
    const due = effective(role.mode);
    if (due === 'IMPORT') continue;
    const { container, name } = await roleContainer(trx, realmId, role.spec);
    const roleId = await findRole(trx, realmId, container, name);
    if (!roleId) throw new BrokerError('identity_provider_error', `mapper ${role.mapper}: role ${role.spec} not found`);
    if (role.applies) {
      granted.add(roleId);
      await trx.insertInto('user_roles').values({ user_id: userId, role_id: roleId }).onConflict((oc) => oc.doNothing()).execute();
    } else if (due === 'FORCE' && !role.hardcoded) {
      revoke.push(roleId);
    }
  }
  for (const roleId of revoke.filter((id) => !granted.has(id))) {
    await trx.deleteFrom('user_roles').where('user_id', '=', userId).where('role_id', '=', roleId).execute();
  }

  const joined = new Set<string>();
  const leave: string[] = [];
  for (const group of outcome.groups) {
    const due = effective(group.mode);
    if (due === 'IMPORT') continue;
    const groupId = await findGroupIdByPath(trx, realmId, group.path);
    if (!groupId) throw new BrokerError('identity_provider_error', `mapper ${group.mapper}: group ${group.path} not found`);
    if (group.applies) {
      joined.add(groupId);
      await trx.insertInto('user_groups').values({ user_id: userId, group_id: groupId }).onConflict((oc) => oc.doNothing()).execute();
    } else if (due === 'FORCE' && !group.hardcoded) {
      leave.push(groupId);
    }
  }
  for (const groupId of leave.filter((id) => !joined.has(id))) {
    await trx.deleteFrom('user_groups').where('user_id', '=', userId).where('group_id', '=', groupId).execute();
  }
}
