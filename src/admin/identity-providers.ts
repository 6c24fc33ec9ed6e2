// Admin REST API: identity provider instances, their mappers, the mapper types each provider
// offers and import-config (an OIDC discovery document or SAML metadata turned into a config map).
// Brokering (logins through these providers) is not done here: instances are validated, stored
// with their secrets sealed, and returned as Keycloak's IdentityProviderRepresentation.
import { X509Certificate } from 'node:crypto';
import net from 'node:net';

import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import { parseSamlMetadata, SamlMetadataError } from '../broker/saml-metadata.ts';
import { splitList } from '../federation/finesse/config.ts';
import { parseRealmSettings } from '../realms/settings.ts';
import type { Db } from '../store/db.ts';
import { IDENTITY_PROVIDER_SECRET_KEYS, sealSecrets, withSecrets, openSecrets } from '../store/sealed-config.ts';
import type { IdentityProvider } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

/** Provider ids Cloakroom accepts (Keycloak's built-in ones relevant here). */
const OIDC_FAMILY = new Set(['oidc', 'keycloak-oidc']);
const SOCIAL = new Set(['google', 'github', 'microsoft', 'facebook']);
export const IDENTITY_PROVIDER_IDS = new Set([...OIDC_FAMILY, 'oauth2', 'saml', 'finesse', ...SOCIAL]);

/** Keycloak's built-in top-level flows (a realm may name others in its *Flow settings). */
const BUILT_IN_FLOWS = ['browser', 'direct grant', 'registration', 'reset credentials', 'clients', 'first broker login', 'docker auth'];

// ---------------------------------------------------------------------------------------------
// Mapper types: id, display name and category, help text, config properties, and the provider
// ids they apply to ('*' = any), as Keycloak's IdentityProviderMapper factories declare them.

type ConfigProperty = { name: string; label: string; helpText: string; type: string; defaultValue?: string; options?: string[] };
type MapperType = { name: string; category: string; helpText: string; providers: string[]; properties: ConfigProperty[] };

const ROLE_HELP = "Click 'Select Role' button to browse roles, or just type it in the textbox.  To reference a client role the syntax is clientname.clientrole, i.e. myclient.myrole";
const CLAIM_HELP = "Name of claim to search for in token. You can reference nested claims using a '.', i.e. 'address.locality'. To use dot (.) literally, escape it with backslash (\\.)";
const OIDC = ['oidc', 'keycloak-oidc'];
const SAML_ATTRIBUTE_NAME: ConfigProperty = { name: 'attribute.name', label: 'Attribute Name', helpText: 'Name of attribute to search for in assertion.  You can leave this blank and specify a friendly name instead.', type: 'String' };
const SAML_FRIENDLY_NAME: ConfigProperty = { name: 'attribute.friendly.name', label: 'Friendly Name', helpText: 'Friendly name of attribute to search for in assertion.  You can leave this blank and specify a name instead.', type: 'String' };
const CLAIMS_MAP: ConfigProperty = { name: 'claims', label: 'Claims', helpText: CLAIM_HELP.replace('Name of claim', 'Name and value of the claims'), type: 'Map' };
const REGEX_VALUES: ConfigProperty = { name: 'are.claim.values.regex', label: 'Regex Claim Values', helpText: 'If enabled claim values are interpreted as regular expressions.', type: 'boolean' };
const JSON_ATTRIBUTE_PROPERTIES: ConfigProperty[] = [
  { name: 'jsonField', label: 'Social Profile JSON Field Path', helpText: "Path of field in Social provider User Profile JSON data to get value from. You can use dot notation for nesting and square brackets for array index. Eg. 'contact.address[0].country'.", type: 'String' },
  { name: 'userAttribute', label: 'User Attribute Name', helpText: 'User attribute name to store information into.', type: 'String' },
];
const jsonAttributeImporter = (provider: string): MapperType => ({
  name: 'Attribute Importer', category: 'Attribute Importer', providers: [provider], properties: JSON_ATTRIBUTE_PROPERTIES,
  helpText: 'Import user profile information if it exists in Social provider JSON data into the specified user attribute.',
});

export const IDENTITY_PROVIDER_MAPPER_TYPES: Record<string, MapperType> = {
  'oidc-hardcoded-role-idp-mapper': {
    name: 'Hardcoded Role', category: 'Role Importer', providers: ['*'],
    helpText: 'When user is imported from provider, hardcode a role mapping for it.',
    properties: [{ name: 'role', label: 'Role', helpText: `Role to grant to user.  ${ROLE_HELP}`, type: 'Role' }],
  },
  'hardcoded-attribute-idp-mapper': {
    name: 'Hardcoded Attribute', category: 'Attribute Importer', providers: ['*'],
    helpText: 'When user is imported from provider, hardcode a value to a specific user attribute.',
    properties: [
      { name: 'attribute', label: 'User Attribute', helpText: 'Name of user attribute you want to hardcode', type: 'String' },
      { name: 'attribute.value', label: 'User Attribute Value', helpText: 'Value you want to hardcode', type: 'String' },
    ],
  },
  'hardcoded-user-session-attribute-idp-mapper': {
    name: 'Hardcoded User Session Attribute', category: 'Attribute Importer', providers: ['*'],
    helpText: 'When user is imported from provider, hardcode a value to a specific user session attribute.',
    properties: [
      { name: 'attribute', label: 'User Session Attribute', helpText: 'Name of user session attribute you want to hardcode', type: 'String' },
      { name: 'attribute.value', label: 'User Session Attribute Value', helpText: 'Value you want to hardcode', type: 'String' },
    ],
  },
  'oidc-hardcoded-group-idp-mapper': {
    name: 'Hardcoded Group', category: 'Group Importer', providers: ['*'],
    helpText: 'Assign the user to the specified group.',
    properties: [{ name: 'group', label: 'Group', helpText: 'Group to assign the user.', type: 'Group' }],
  },
  'oidc-user-attribute-idp-mapper': {
    name: 'Attribute Importer', category: 'Attribute Importer', providers: OIDC,
    helpText: 'Import declared claim if it exists in ID, access token or the claim set returned by the user profile endpoint into the specified user property or attribute.',
    properties: [
      { name: 'claim', label: 'Claim', helpText: CLAIM_HELP, type: 'String' },
      { name: 'user.attribute', label: 'User Attribute Name', helpText: 'User attribute name to store claim.  Use email, lastName, and firstName to map to those predefined user properties.', type: 'String' },
    ],
  },
  'oidc-role-idp-mapper': {
    name: 'Claim to Role', category: 'Role Importer', providers: OIDC,
    helpText: 'If a claim exists, grant the user the specified realm or client role.',
    properties: [
      { name: 'claim', label: 'Claim', helpText: CLAIM_HELP, type: 'String' },
      { name: 'claim.value', label: 'Claim Value', helpText: 'Value the claim must have.  If the claim is an array, then the value must be contained in the array.', type: 'String' },
      { name: 'role', label: 'Role', helpText: `Role to grant to user if claim is present.  ${ROLE_HELP}`, type: 'Role' },
    ],
  },
  'oidc-advanced-role-idp-mapper': {
    name: 'Advanced Claim to Role', category: 'Role Importer', providers: OIDC,
    helpText: 'If all claims exists, grant the user the specified realm or client role.',
    properties: [CLAIMS_MAP, REGEX_VALUES, { name: 'role', label: 'Role', helpText: `Role to grant to user if claim is present. ${ROLE_HELP}`, type: 'Role' }],
  },
  'oidc-advanced-group-idp-mapper': {
    name: 'Advanced Claim to Group', category: 'Group Importer', providers: OIDC,
    helpText: 'If all claims exists, assign the user to the specified group.',
    properties: [CLAIMS_MAP, REGEX_VALUES, { name: 'group', label: 'Group', helpText: 'Group to assign the user to if claim is present.', type: 'Group' }],
  },
  'oidc-username-idp-mapper': {
    name: 'Username Template Importer', category: 'Preprocessor', providers: [...OIDC, ...SOCIAL],
    helpText: 'Format the username to import.',
    properties: [{
      name: 'template', label: 'Template', type: 'String', defaultValue: '${ALIAS}.${CLAIM.preferred_username}',
      helpText: "Template to use to format the username to import.  Substitutions are enclosed in ${}.  For example: '${ALIAS}.${CLAIM.sub}'.  ALIAS is the provider alias.  CLAIM.<NAME> references an ID or Access token claim.",
    }],
  },
  'keycloak-oidc-role-to-role-idp-mapper': {
    name: 'External Role to Role', category: 'Role Importer', providers: ['keycloak-oidc'],
    helpText: 'Looks for an external role in a keycloak access token.  If external role exists, grant the user the specified realm or client role.',
    properties: [
      { name: 'external.role', label: 'External role', helpText: 'External role to check for.  To reference a client role the syntax is clientname.clientrole, i.e. myclient.myrole', type: 'String' },
      { name: 'role', label: 'Role', helpText: `Role to grant to user if external role is present.  ${ROLE_HELP}`, type: 'Role' },
    ],
  },
  'saml-user-attribute-idp-mapper': {
    name: 'Attribute Importer', category: 'Attribute Importer', providers: ['saml'],
    helpText: 'Import declared saml attribute if it exists in assertion into the specified user property or attribute.',
    properties: [SAML_ATTRIBUTE_NAME, SAML_FRIENDLY_NAME, { name: 'user.attribute', label: 'User Attribute Name', helpText: 'User attribute name to store saml attribute.  Use email, lastName, and firstName to map to those predefined user properties.', type: 'String' }],
  },
  'saml-role-idp-mapper': {
    name: 'SAML Attribute to Role', category: 'Role Mapper', providers: ['saml'],
    helpText: 'If an attribute exists, grant the user the specified realm or client role.',
    properties: [
      SAML_ATTRIBUTE_NAME, SAML_FRIENDLY_NAME,
      { name: 'attribute.value', label: 'Attribute Value', helpText: 'Value the attribute must have.  If the attribute is a list, then the value must be contained in the list.', type: 'String' },
      { name: 'role', label: 'Role', helpText: `Role to grant to user.  ${ROLE_HELP}`, type: 'Role' },
    ],
  },
  'saml-username-idp-mapper': {
    name: 'Username Template Importer', category: 'Preprocessor', providers: ['saml'],
    helpText: 'Format the username to import.',
    properties: [
      {
        name: 'template', label: 'Template', type: 'String', defaultValue: '${ALIAS}.${NAMEID}',
        helpText: "Template to use to format the username to import.  Substitutions are enclosed in ${}.  For example: '${ALIAS}.${NAMEID}'.  ALIAS is the provider alias.  NAMEID is that SAML name id assertion.  ATTRIBUTE.<NAME> references a SAML attribute where name is the attribute name or friendly name.",
      },
      {
        name: 'target', label: 'Target', type: 'List', defaultValue: 'LOCAL', options: ['LOCAL', 'BROKER_ID', 'BROKER_USERNAME'],
        helpText: 'Destination field for the mapper. LOCAL (default) means that the changes are applied to the username stored in local database upon user import. BROKER_ID and BROKER_USERNAME means that the changes are stored into the ID or username used for federation user lookup, respectively.',
      },
    ],
  },
  'github-user-attribute-mapper': jsonAttributeImporter('github'),
  'google-user-attribute-mapper': jsonAttributeImporter('google'),
  'microsoft-user-attribute-mapper': jsonAttributeImporter('microsoft'),
  'facebook-user-attribute-mapper': jsonAttributeImporter('facebook'),
};

function mapperTypeSupported(typeId: string, providerId: string): boolean {
  const type = IDENTITY_PROVIDER_MAPPER_TYPES[typeId];
  return type !== undefined && (type.providers.includes('*') || type.providers.includes(providerId));
}

/** Keycloak's IdentityProviderMapperTypeRepresentation map for one provider id. */
function mapperTypesFor(providerId: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [id, type] of Object.entries(IDENTITY_PROVIDER_MAPPER_TYPES)) {
    if (!mapperTypeSupported(id, providerId)) continue;
    out[id] = {
      id, name: type.name, category: type.category, helpText: type.helpText,
      properties: type.properties.map((p) => ({ ...p, secret: false, required: false, readOnly: false })),
    };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Representations

/** A config map as Keycloak's Jackson reads Map<String, String>: scalars become strings. */
const stringConfig = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

/** Keycloak's removeEmptyString: null and empty values are dropped. */
function cleanConfig(config: z.infer<typeof stringConfig> | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config ?? {})) {
    if (value === null || value === '') continue;
    out[key] = String(value);
  }
  return out;
}

const idpRep = z.object({
  alias: z.string().nullish(),
  internalId: z.string().nullish(),
  providerId: z.string().nullish(),
  displayName: z.string().nullish(),
  enabled: z.boolean().nullish(),
  trustEmail: z.boolean().nullish(),
  storeToken: z.boolean().nullish(),
  addReadTokenRoleOnCreate: z.boolean().nullish(),
  authenticateByDefault: z.boolean().nullish(),
  linkOnly: z.boolean().nullish(),
  hideOnLogin: z.boolean().nullish(),
  firstBrokerLoginFlowAlias: z.string().nullish(),
  postBrokerLoginFlowAlias: z.string().nullish(),
  config: stringConfig.nullish(),
}).loose();
type IdpRep = z.infer<typeof idpRep>;

/** Fields with a column or computed on output; every other field of a body is kept in `extra`. */
const IDP_COLUMN_FIELDS = new Set(['alias', 'internalId', 'providerId', 'displayName', 'enabled', 'trustEmail', 'storeToken', 'linkOnly', 'hideOnLogin', 'config']);

/** Keycloak's IdentityProviderRepresentation (secrets masked). */
function idpRepresentation(req: RealmRequest, row: IdentityProvider): Record<string, unknown> {
  const extra = row.extra as Record<string, unknown>;
  return {
    addReadTokenRoleOnCreate: false,
    authenticateByDefault: false,
    ...extra,
    alias: row.alias,
    internalId: row.internal_id,
    providerId: row.provider_id,
    ...(row.display_name !== null ? { displayName: row.display_name } : {}),
    enabled: row.enabled,
    trustEmail: row.trust_email,
    storeToken: row.store_token,
    linkOnly: row.link_only,
    hideOnLogin: row.hide_on_login,
    config: withSecrets(req.services.box, row.config as Record<string, string>, row.secrets_sealed, 'masked'),
  };
}

/** Keycloak's toBriefRepresentation (plus the representation's primitive defaults). */
function briefIdpRepresentation(row: IdentityProvider): Record<string, unknown> {
  return {
    alias: row.alias, internalId: row.internal_id, providerId: row.provider_id,
    ...(row.display_name !== null ? { displayName: row.display_name } : {}),
    enabled: row.enabled, linkOnly: row.link_only, hideOnLogin: row.hide_on_login,
    trustEmail: false, storeToken: false, addReadTokenRoleOnCreate: false, authenticateByDefault: false, config: {},
  };
}

function mapperRepresentation(row: { id: string; name: string; mapper_type: string; config: unknown }, alias: string): Record<string, unknown> {
  return { id: row.id, name: row.name, identityProviderAlias: alias, identityProviderMapper: row.mapper_type, config: row.config };
}

// ---------------------------------------------------------------------------------------------
// Validation (Keycloak: ReservedCharValidator.validateNoSpace on the alias, then the provider
// config's validate(realm): URL checks against the realm's sslRequired, PKCE method, SAML's
// metadata URL). Beyond Keycloak's server, Cloakroom requires what a provider cannot work
// without, as Keycloak's admin console does: a client id for OAuth/OIDC/social providers, the
// endpoints (or an issuer / discovery URL) for OIDC and OAuth 2, an SSO URL or metadata for SAML.

const RESERVED_CHARS = /[:/?#@!$&()*+,;=[\]\\]/;

function validateAlias(alias: string | null | undefined): string {
  if (alias === undefined || alias === null || alias.trim() === '') throw badRequest('Identity Provider alias is required');
  if (/\s/.test(alias)) throw badRequest('Empty Space not allowed.');
  const reserved = RESERVED_CHARS.exec(alias);
  if (reserved) throw badRequest(`Character '${reserved[0]}' not allowed.`);
  // Other characters that break a URL path segment (Keycloak puts the alias in broker URLs).
  if (/[%"<>^`{|}]/.test(alias) || /[\u0000-\u001f\u007f]/.test(alias)) throw badRequest('Identity Provider alias contains a character not allowed in a URL');
  return alias;
}

/** java.net.InetAddress's isAnyLocal/isLoopback/isSiteLocal, for IP literals and localhost. */
function isLocalHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (net.isIPv4(h)) {
    const [a, b] = h.split('.').map(Number) as [number, number];
    return a === 0 || a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
  }
  if (net.isIPv6(h)) return h === '::' || h === '::1' || /^fe[c-f]/.test(h);
  return false;
}

/** Keycloak's checkUrl: well-formed, http(s), https unless the realm's sslRequired allows it. */
function checkUrl(sslRequired: string, url: string | undefined, name: string): void {
  if (url === undefined) return;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest(`The url [${name}] is malformed`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw badRequest(`Invalid protocol/scheme for url [${name}]`);
  const required = sslRequired === 'all' || (sslRequired !== 'none' && !isLocalHost(parsed.hostname));
  if (parsed.protocol !== 'https:' && required) throw badRequest(`The url [${name}] requires secure connections`);
}

function validateConfig(req: RealmRequest, providerId: string, config: Record<string, string>, secrets: Record<string, string>): void {
  const sslRequired = parseRealmSettings(req.realm.settings).sslRequired;
  const has = (key: string): boolean => (config[key] ?? secrets[key] ?? '').trim() !== '';
  if (providerId === 'saml') {
    checkUrl(sslRequired, config.singleLogoutServiceUrl, 'singleLogoutServiceUrl');
    checkUrl(sslRequired, config.singleSignOnServiceUrl, 'singleSignOnServiceUrl');
    if (has('metadataDescriptorUrl')) checkUrl(sslRequired, config.metadataDescriptorUrl, 'metadataDescriptorUrl');
    if (config.useMetadataDescriptorUrl === 'true' && !has('metadataDescriptorUrl')) {
      throw badRequest('useMetadataDescriptorUrl needs a non-empty URL for metadataDescriptorUrl');
    }
    if (has('artifactResolutionServiceUrl')) checkUrl(sslRequired, config.artifactResolutionServiceUrl, 'artifactResolutionServiceUrl');
    if (config.nameIDPolicyFormat === 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient' && config.principalType === 'SUBJECT') {
      throw badRequest('Can not have Transient NameID Policy Format together with SUBJECT Principal Type');
    }
    if (!has('singleSignOnServiceUrl') && !has('metadataDescriptorUrl')) {
      throw badRequest('SAML identity provider requires singleSignOnServiceUrl or metadataDescriptorUrl');
    }
    return;
  }
  if (providerId === 'finesse') {
    validateFinesseConfig(sslRequired, config, has);
    return;
  }
  // OAuth 2 family (oidc, keycloak-oidc, oauth2 and the social providers built on it).
  checkUrl(sslRequired, config.authorizationUrl, 'authorization_url');
  checkUrl(sslRequired, config.tokenUrl, 'token_url');
  checkUrl(sslRequired, config.userInfoUrl, 'userinfo_url');
  checkUrl(sslRequired, config.tokenIntrospectionUrl, 'tokenIntrospection_url');
  if (config.pkceEnabled === 'true' && config.pkceMethod !== 'plain' && config.pkceMethod !== 'S256') {
    throw badRequest(`PKCE Method not supported: ${config.pkceMethod ?? null}`);
  }
  if (!has('clientId')) throw badRequest('Identity provider config requires clientId');
  if (OIDC_FAMILY.has(providerId)) {
    const endpoints = has('authorizationUrl') && has('tokenUrl');
    if (!endpoints && !has('issuer') && !has('metadataDescriptorUrl')) {
      throw badRequest('OpenID Connect identity provider requires authorizationUrl and tokenUrl, or an issuer or metadataDescriptorUrl');
    }
  } else if (providerId === 'oauth2' && !(has('authorizationUrl') && has('tokenUrl'))) {
    throw badRequest('OAuth 2.0 identity provider requires authorizationUrl and tokenUrl');
  }
}

/** Millisecond timeouts beyond this are a typo, not a wish (a login would wait that long). */
const FINESSE_MAX_TIMEOUT_MS = 600_000;

/**
 * A `finesse` provider's config (src/federation/finesse/config.ts reads it): base URLs required
 * and https (http only when the realm's sslRequired is none), numeric timeouts, a CA bundle made
 * of PEM certificates, booleans that say true or false, admin credentials as a pair.
 */
function validateFinesseConfig(sslRequired: string, config: Record<string, string>, has: (key: string) => boolean): void {
  const urls = splitList(config.finesseUrls);
  if (urls.length === 0) throw badRequest('Finesse identity provider requires finesseUrls');
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw badRequest('The url [finesseUrls] is malformed');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw badRequest('Invalid protocol/scheme for url [finesseUrls]');
    if (parsed.protocol !== 'https:' && sslRequired !== 'none') throw badRequest('The url [finesseUrls] requires secure connections');
    if (parsed.username || parsed.password || parsed.search || parsed.hash) {
      throw badRequest('The url [finesseUrls] must not contain credentials, a query or a fragment');
    }
  }
  for (const key of ['connectTimeout', 'readTimeout']) {
    const value = config[key]?.trim();
    if (value !== undefined && (!/^\d{1,9}$/.test(value) || Number(value) <= 0 || Number(value) > FINESSE_MAX_TIMEOUT_MS)) {
      throw badRequest(`${key} must be a number of milliseconds between 1 and ${FINESSE_MAX_TIMEOUT_MS}`);
    }
  }
  const period = config.syncPeriod?.trim();
  if (period !== undefined && !/^-?\d{1,9}$/.test(period)) throw badRequest('syncPeriod must be a number of seconds');
  for (const key of ['tlsVerify', 'createUsers']) {
    const value = config[key]?.trim().toLowerCase();
    if (value !== undefined && value !== 'true' && value !== 'false') throw badRequest(`${key} must be true or false`);
  }
  if (has('caBundle')) {
    const pems = config.caBundle!.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    if (pems.length === 0) throw badRequest('caBundle contains no PEM certificate');
    pems.forEach((pem, index) => {
      try {
        new X509Certificate(pem);
      } catch {
        throw badRequest(`caBundle certificate ${index + 1} cannot be parsed`);
      }
    });
  }
  if (config.teamsGroupPath !== undefined && config.teamsGroupPath.split('/').every((s) => s.trim() === '')) {
    throw badRequest('teamsGroupPath must name a group, e.g. /finesse-teams');
  }
  for (const clientId of splitList(config.tokenExchangeClients)) {
    if (clientId.length > 255 || /[\u0000-\u001f\u007f]/.test(clientId)) throw badRequest(`Invalid client id in tokenExchangeClients: ${clientId.slice(0, 64)}`);
  }
  if (has('finesseAdminUsername') !== has('finesseAdminPassword')) {
    throw badRequest('finesseAdminUsername and finesseAdminPassword must be set together');
  }
}

function validateFlow(req: RealmRequest, alias: string | null | undefined): string | undefined {
  if (alias === undefined || alias === null || alias.trim() === '') return undefined;
  const settings = req.realm.settings as Record<string, unknown>;
  const realmFlows = Object.entries(settings).filter(([key, value]) => key.endsWith('Flow') && typeof value === 'string').map(([, value]) => value as string);
  if (!BUILT_IN_FLOWS.includes(alias) && !realmFlows.includes(alias)) throw badRequest(`No available authentication flow with alias: ${alias}`);
  return alias;
}

type IdpValues = {
  alias: string; providerId: string; displayName: string | null; enabled: boolean; trustEmail: boolean; storeToken: boolean;
  linkOnly: boolean; hideOnLogin: boolean; config: Record<string, string>; extra: Record<string, unknown>;
};

/** The stored values of a representation (Keycloak's RepresentationToModel.toModel). */
function idpValues(req: RealmRequest, body: Record<string, unknown>, rep: IdpRep, alias: string, providerId: string): IdpValues {
  const config = cleanConfig(rep.config);
  let hideOnLogin = rep.hideOnLogin ?? false;
  // Keycloak still reads the legacy config attribute and moves it to the field.
  if (config.hideOnLoginPage !== undefined) {
    hideOnLogin = config.hideOnLoginPage === 'true';
    delete config.hideOnLoginPage;
  }
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!IDP_COLUMN_FIELDS.has(key) && value !== undefined && value !== null) extra[key] = value;
  }
  const first = validateFlow(req, rep.firstBrokerLoginFlowAlias);
  const post = validateFlow(req, rep.postBrokerLoginFlowAlias);
  if (first) extra.firstBrokerLoginFlowAlias = first; else delete extra.firstBrokerLoginFlowAlias;
  if (post) extra.postBrokerLoginFlowAlias = post; else delete extra.postBrokerLoginFlowAlias;
  delete extra.types; // computed by Keycloak from the provider, never stored
  return {
    alias, providerId, displayName: rep.displayName ?? null, enabled: rep.enabled ?? true, trustEmail: rep.trustEmail ?? false,
    storeToken: rep.storeToken ?? false, linkOnly: rep.linkOnly ?? false, hideOnLogin, config, extra,
  };
}

function checkProviderId(providerId: string | null | undefined): string {
  if (!providerId || !IDENTITY_PROVIDER_IDS.has(providerId)) throw badRequest(`Invalid identity provider id [${providerId ?? null}]`);
  return providerId;
}

// ---------------------------------------------------------------------------------------------
// Lookups

/** Keycloak's getByIdOrAlias. */
async function findIdp(db: Db, realmId: string, aliasOrId: string): Promise<IdentityProvider | undefined> {
  const byAlias = await db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realmId).where('alias', '=', aliasOrId).executeTakeFirst();
  if (byAlias || !UUID.test(aliasOrId)) return byAlias;
  return db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realmId).where('internal_id', '=', aliasOrId).executeTakeFirst();
}

async function requireIdp(req: RealmRequest): Promise<IdentityProvider> {
  const row = await findIdp(req.db, req.realm.id, req.params.alias ?? '');
  if (!row) throw notFound('Could not find identity provider');
  return row;
}

async function requireMapper(req: RealmRequest, idp: IdentityProvider): Promise<{ id: string; name: string; mapper_type: string; config: unknown }> {
  const id = req.params.id ?? '';
  const row = UUID.test(id)
    ? await req.db.selectFrom('identity_provider_mappers').select(['id', 'name', 'mapper_type', 'config'])
      .where('identity_provider_id', '=', idp.internal_id).where('id', '=', id).executeTakeFirst()
    : undefined;
  if (!row) throw notFound('Model not found');
  return row;
}

/** Keycloak's search: "exact" in quotes, otherwise a prefix (with * as wildcard), on alias or display name. */
function searchPattern(search: string): { exact: string } | { like: string } {
  if (search.length >= 2 && search.startsWith('"') && search.endsWith('"')) return { exact: search.slice(1, -1) };
  let like = search.replace(/[\\%_]/g, '\\$&').replaceAll('*', '%');
  if (!like.endsWith('%')) like += '%';
  return { like: like.toLowerCase() };
}

// ---------------------------------------------------------------------------------------------
// import-config

const IMPORT_TIMEOUT_MS = 10_000;
const IMPORT_MAX_BYTES = 1024 * 1024;

async function fetchDocument(url: string): Promise<string> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest('Invalid fromUrl');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw badRequest('Invalid fromUrl');
  let response: Response;
  try {
    response = await fetch(parsed, { signal: AbortSignal.timeout(IMPORT_TIMEOUT_MS), redirect: 'follow', headers: { accept: 'application/json, application/xml;q=0.9, */*;q=0.5' } });
  } catch {
    throw badRequest(`Could not fetch ${url}`);
  }
  if (!response.ok) throw badRequest(`Could not fetch ${url}: HTTP ${response.status}`);
  const text = await response.text().catch(() => undefined);
  if (text === undefined) throw badRequest(`Could not fetch ${url}`);
  if (text.length > IMPORT_MAX_BYTES) throw badRequest('The document is too large');
  return text;
}

/** Keycloak's OIDCIdentityProviderFactory.parseOIDCConfig. */
function parseOidcDiscovery(text: string): Record<string, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw badRequest('failed to load openid connect metadata');
  }
  const rep = doc as Record<string, unknown> | null;
  const str = (key: string): string | undefined => (typeof rep?.[key] === 'string' ? rep[key] : undefined);
  if (typeof rep !== 'object' || rep === null || Array.isArray(rep) || (!str('issuer') && !str('authorization_endpoint'))) {
    throw badRequest('failed to load openid connect metadata');
  }
  const config: Record<string, string> = {};
  const set = (key: string, value: string | undefined): void => { if (value !== undefined) config[key] = value; };
  set('issuer', str('issuer'));
  set('logoutUrl', str('end_session_endpoint'));
  set('authorizationUrl', str('authorization_endpoint'));
  set('tokenUrl', str('token_endpoint'));
  set('userInfoUrl', str('userinfo_endpoint'));
  if (str('jwks_uri')) {
    config.validateSignature = 'true';
    config.useJwksUrl = 'true';
    config.jwksUrl = str('jwks_uri')!;
  }
  set('tokenIntrospectionUrl', str('introspection_endpoint'));
  return config;
}

// ---------------------------------------------------------------------------------------------
// Routes

const mapperRep = z.object({
  id: z.string().nullish(),
  name: z.string().nullish(),
  identityProviderAlias: z.string().nullish(),
  identityProviderMapper: z.string().nullish(),
  config: stringConfig.nullish(),
}).loose();

const importConfigBody = z.object({
  providerId: z.string(),
  fromUrl: z.string(),
  alias: z.string().nullish(),
}).loose();

export function registerIdentityProvidersRoutes(admin: AdminRouter): void {
  const { db, box } = admin.services;
  const view = { permission: 'view-identity-providers' as const };
  const manage = { permission: 'manage-identity-providers' as const, resourceType: 'IDENTITY_PROVIDER' };
  const manageMapper = { permission: 'manage-identity-providers' as const, resourceType: 'IDENTITY_PROVIDER_MAPPER' };

  admin.realm('get', '/identity-provider/instances', view, async (req) => {
    const { first, max } = req.page(100);
    let query = db.selectFrom('identity_providers').selectAll().where('realm_id', '=', req.realm.id).orderBy('alias');
    const search = req.query.search?.trim();
    if (search) {
      const pattern = searchPattern(search);
      query = 'exact' in pattern
        ? query.where((eb) => eb.or([eb('alias', '=', pattern.exact), eb('display_name', '=', pattern.exact)]))
        : query.where((eb) => eb.or([eb(eb.fn('lower', ['alias']), 'like', pattern.like), eb(eb.fn('lower', ['display_name']), 'like', pattern.like)]));
    }
    // realmOnly: providers not linked to an organization; Cloakroom has no organizations.
    if (first > 0) query = query.offset(first);
    if (max !== undefined) query = query.limit(max);
    const rows = await query.execute();
    const brief = req.bool('briefRepresentation') === true;
    return ok(rows.map((row) => (brief ? briefIdpRepresentation(row) : idpRepresentation(req, row))));
  });

  admin.realm('post', '/identity-provider/instances', { ...manage, secretBody: true }, async (req) => {
    const body = await req.json(idpRep);
    const alias = validateAlias(body.alias);
    const providerId = checkProviderId(body.providerId);
    const values = idpValues(req, body, body, alias, providerId);
    const { config, sealed } = sealSecrets(box, values.config, IDENTITY_PROVIDER_SECRET_KEYS);
    validateConfig(req, providerId, values.config, {});
    const taken = await db.selectFrom('identity_providers').select('internal_id').where('realm_id', '=', req.realm.id).where('alias', '=', alias).executeTakeFirst();
    if (taken) throw conflict(`Identity Provider ${alias} already exists`);
    const internalId = body.internalId && UUID.test(body.internalId) ? body.internalId : newId();
    try {
      await db.insertInto('identity_providers').values({
        internal_id: internalId, realm_id: req.realm.id, alias, provider_id: providerId, display_name: values.displayName,
        enabled: values.enabled, trust_email: values.trustEmail, store_token: values.storeToken, link_only: values.linkOnly,
        hide_on_login: values.hideOnLogin, config: JSON.stringify(config), secrets_sealed: sealed, extra: JSON.stringify(values.extra),
      }).execute();
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw conflict(`Identity Provider ${alias} already exists`);
      throw error;
    }
    return created(alias);
  });

  admin.realm('post', '/identity-provider/import-config', { permission: 'manage-identity-providers', changesRealm: false }, async (req) => {
    const body = await req.json(importConfigBody);
    if (body.alias) {
      if (/\s/.test(body.alias)) throw badRequest('Empty Space not allowed.');
      const reserved = RESERVED_CHARS.exec(body.alias);
      if (reserved) throw badRequest(`Character '${reserved[0]}' not allowed.`);
    }
    const providerId = checkProviderId(body.providerId);
    if (providerId !== 'saml' && providerId !== 'oauth2' && !OIDC_FAMILY.has(providerId)) {
      throw badRequest(`Importing a configuration is not supported for provider [${providerId}]`);
    }
    const text = await fetchDocument(body.fromUrl);
    let config: Record<string, string>;
    try {
      config = providerId === 'saml' ? parseSamlMetadata(text) : parseOidcDiscovery(text);
    } catch (error) {
      if (error instanceof SamlMetadataError) throw badRequest(error.message);
      throw error;
    }
    config.metadataDescriptorUrl = body.fromUrl;
    return ok(config);
  });

  admin.realm('get', '/identity-provider/instances/:alias', view, async (req) => ok(idpRepresentation(req, await requireIdp(req))));

  admin.realm('put', '/identity-provider/instances/:alias', { ...manage, secretBody: true }, async (req) => {
    const current = await requireIdp(req);
    const body = await req.json(idpRep);
    // Keycloak replaces the instance with the representation; alias and provider id stay unless given.
    const alias = body.alias === undefined || body.alias === null ? current.alias : validateAlias(body.alias);
    if (body.providerId !== undefined && body.providerId !== null) checkProviderId(body.providerId);
    const values = idpValues(req, body, body, alias, current.provider_id);
    const previous = openSecrets<string>(box, current.secrets_sealed);
    const { config, sealed } = sealSecrets(box, values.config, IDENTITY_PROVIDER_SECRET_KEYS, previous);
    const kept = openSecrets<string>(box, sealed);
    validateConfig(req, current.provider_id, config, kept);
    await db.transaction().execute(async (trx) => {
      if (alias !== current.alias) {
        const taken = await trx.selectFrom('identity_providers').select('internal_id').where('realm_id', '=', req.realm.id).where('alias', '=', alias).executeTakeFirst();
        if (taken) throw conflict(`Identity Provider ${alias} already exists`);
        // Links of users follow the rename (Keycloak's updateUsersAfterProviderAliasChange).
        await trx.updateTable('federated_identities').set({ identity_provider: alias })
          .where('realm_id', '=', req.realm.id).where('identity_provider', '=', current.alias).execute();
      }
      await trx.updateTable('identity_providers').set({
        alias, display_name: values.displayName, enabled: values.enabled, trust_email: values.trustEmail, store_token: values.storeToken,
        link_only: values.linkOnly, hide_on_login: values.hideOnLogin, config: JSON.stringify(config), secrets_sealed: sealed,
        extra: JSON.stringify(values.extra),
      }).where('internal_id', '=', current.internal_id).execute();
    });
    return noContent();
  });

  admin.realm('delete', '/identity-provider/instances/:alias', manage, async (req) => {
    const current = await requireIdp(req);
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('federated_identities').where('realm_id', '=', req.realm.id).where('identity_provider', '=', current.alias).execute();
      // Mappers go with the instance (ON DELETE CASCADE).
      await trx.deleteFrom('identity_providers').where('internal_id', '=', current.internal_id).execute();
    });
    return noContent();
  });

  admin.realm('get', '/identity-provider/instances/:alias/mapper-types', view, async (req) => {
    const idp = await requireIdp(req);
    return ok(mapperTypesFor(idp.provider_id));
  });

  admin.realm('get', '/identity-provider/instances/:alias/mappers', view, async (req) => {
    const idp = await requireIdp(req);
    const rows = await db.selectFrom('identity_provider_mappers').select(['id', 'name', 'mapper_type', 'config'])
      .where('identity_provider_id', '=', idp.internal_id).orderBy('id').execute();
    return ok(rows.map((row) => mapperRepresentation(row, idp.alias)));
  });

  admin.realm('post', '/identity-provider/instances/:alias/mappers', manageMapper, async (req) => {
    const idp = await requireIdp(req);
    const body = await req.json(mapperRep);
    const name = body.name?.trim();
    if (!name) throw badRequest('Mapper name is required');
    const type = body.identityProviderMapper ?? '';
    if (!mapperTypeSupported(type, idp.provider_id)) {
      throw badRequest(`Mapper type [${type}] is not available for identity provider [${idp.provider_id}]`);
    }
    const taken = await db.selectFrom('identity_provider_mappers').select('id')
      .where('identity_provider_id', '=', idp.internal_id).where('name', '=', body.name!).executeTakeFirst();
    if (taken) throw badRequest(`Failed to add mapper '${body.name}' to identity provider [${idp.provider_id}].`);
    const id = body.id && UUID.test(body.id) ? body.id : newId();
    try {
      await db.insertInto('identity_provider_mappers').values({
        id, realm_id: req.realm.id, identity_provider_id: idp.internal_id, name: body.name!, mapper_type: type,
        config: JSON.stringify(cleanConfig(body.config)),
      }).execute();
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw badRequest(`Failed to add mapper '${body.name}' to identity provider [${idp.provider_id}].`);
      throw error;
    }
    return created(id);
  });

  admin.realm('get', '/identity-provider/instances/:alias/mappers/:id', view, async (req) => {
    const idp = await requireIdp(req);
    return ok(mapperRepresentation(await requireMapper(req, idp), idp.alias));
  });

  admin.realm('put', '/identity-provider/instances/:alias/mappers/:id', manageMapper, async (req) => {
    const idp = await requireIdp(req);
    const current = await requireMapper(req, idp);
    const body = await req.json(mapperRep);
    const name = body.name === undefined || body.name === null ? current.name : body.name;
    if (!name.trim()) throw badRequest('Mapper name is required');
    const type = body.identityProviderMapper ?? current.mapper_type;
    if (!mapperTypeSupported(type, idp.provider_id)) {
      throw badRequest(`Mapper type [${type}] is not available for identity provider [${idp.provider_id}]`);
    }
    if (name !== current.name) {
      const taken = await db.selectFrom('identity_provider_mappers').select('id')
        .where('identity_provider_id', '=', idp.internal_id).where('name', '=', name).executeTakeFirst();
      if (taken) throw badRequest('Identity provider mapper name must be unique per identity provider');
    }
    await db.updateTable('identity_provider_mappers').set({
      name, mapper_type: type, config: JSON.stringify(body.config === undefined ? current.config : cleanConfig(body.config)),
    }).where('id', '=', current.id).execute();
    return noContent();
  });

  admin.realm('delete', '/identity-provider/instances/:alias/mappers/:id', manageMapper, async (req) => {
    const idp = await requireIdp(req);
    const current = await requireMapper(req, idp);
    await db.deleteFrom('identity_provider_mappers').where('id', '=', current.id).execute();
    return noContent();
  });
}
