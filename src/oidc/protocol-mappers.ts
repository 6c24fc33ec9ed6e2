// Keycloak's OIDC protocol mappers: each turns the subject of a token (user, roles, groups,
// session) into claims of the access token, ID token, userinfo or introspection answer, as the
// mapper's config says. Pure functions over loaded data: no I/O here.

export type TokenKind = 'access' | 'id' | 'userinfo' | 'introspection';

export type MapperModel = { name: string; protocolMapper: string; config: Record<string, string> };

export type SubjectUser = {
  id: string;
  username: string;
  email: string | null;
  emailVerified: boolean;
  firstName: string | null;
  lastName: string | null;
  createdTimestamp: number;
  attributes: Record<string, string[]>;
};

export type TokenSubject = {
  user: SubjectUser;
  /** Effective realm role names (composites expanded, limited by the client's role scope). */
  realmRoles: string[];
  /** Effective client roles by clientId. */
  clientRoles: Record<string, string[]>;
  /** Group paths ('/a/b'), loaded only when a group mapper is present. */
  groups: string[];
  /** The client the token is issued to. */
  clientId: string;
  webOrigins: string[];
  redirectUris: string[];
  /** User session notes (AUTH_TIME, clientHost, clientAddress, client_id...). */
  sessionNotes: Record<string, string>;
  acr: string;
};

type Claims = Record<string, unknown>;

/** The OIDC mapper types this engine applies (serverinfo lists them; others are stored but inert). */
export const PROTOCOL_MAPPER_TYPES: Record<string, { name: string; category: string }> = {
  'oidc-usermodel-attribute-mapper': { name: 'User Attribute', category: 'Token mapper' },
  'oidc-usermodel-property-mapper': { name: 'User Property', category: 'Token mapper' },
  'oidc-full-name-mapper': { name: 'User\'s full name', category: 'Token mapper' },
  'oidc-hardcoded-claim-mapper': { name: 'Hardcoded claim', category: 'Token mapper' },
  'oidc-usermodel-realm-role-mapper': { name: 'User Realm Role', category: 'Token mapper' },
  'oidc-usermodel-client-role-mapper': { name: 'User Client Role', category: 'Token mapper' },
  'oidc-group-membership-mapper': { name: 'Group Membership', category: 'Token mapper' },
  'oidc-allowed-origins-mapper': { name: 'Allowed Web Origins', category: 'Token mapper' },
  'oidc-acr-mapper': { name: 'Authentication Context Class Reference (ACR)', category: 'Token mapper' },
  'oidc-sub-mapper': { name: 'Subject (sub)', category: 'Token mapper' },
  'oidc-usersessionmodel-note-mapper': { name: 'User Session Note', category: 'Token mapper' },
  'oidc-address-mapper': { name: 'User Address', category: 'Token mapper' },
  'oidc-audience-mapper': { name: 'Audience', category: 'Token mapper' },
  'oidc-audience-resolve-mapper': { name: 'Audience Resolve', category: 'Token mapper' },
};

const INCLUDE_KEY: Record<TokenKind, string> = {
  access: 'access.token.claim',
  id: 'id.token.claim',
  userinfo: 'userinfo.token.claim',
  introspection: 'introspection.token.claim',
};

/**
 * Keycloak: a mapper without introspection.token.claim follows access.token.claim, one without
 * userinfo.token.claim follows id.token.claim.
 */
export function mapperApplies(config: Record<string, string>, kind: TokenKind): boolean {
  const fallback = kind === 'introspection' ? config[INCLUDE_KEY.access] : kind === 'userinfo' ? config[INCLUDE_KEY.id] : undefined;
  const value = config[INCLUDE_KEY[kind]] ?? fallback;
  return value === 'true';
}

/** `a.b.c` nests; `a\.b` is a literal dot (Keycloak's escaping). */
export function splitClaimPath(name: string): string[] {
  return name.split(/(?<!\\)\./).map((part) => part.replace(/\\\./g, '.')).filter((part) => part !== '');
}

function convert(value: unknown, jsonType: string | undefined): unknown {
  if (value === undefined || value === null) return undefined;
  switch (jsonType) {
    case 'long':
    case 'int': {
      const n = typeof value === 'number' ? value : Number.parseInt(String(value), 10);
      return Number.isFinite(n) ? n : undefined;
    }
    case 'boolean':
      return typeof value === 'boolean' ? value : String(value).toLowerCase() === 'true';
    case 'JSON':
      if (typeof value !== 'string') return value;
      try {
        return JSON.parse(value);
      } catch {
        return undefined;
      }
    default:
      return typeof value === 'string' ? value : typeof value === 'object' ? value : String(value);
  }
}

export function setClaim(claims: Claims, name: string, value: unknown): void {
  const path = splitClaimPath(name);
  if (path.length === 0 || value === undefined) return;
  let node: Claims = claims;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Claims;
  }
  node[path.at(-1)!] = value;
}

function addToClaimList(claims: Claims, name: string, values: string[]): void {
  if (values.length === 0) return;
  const path = splitClaimPath(name);
  let node: Claims = claims;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Claims;
  }
  const last = path.at(-1)!;
  const existing = Array.isArray(node[last]) ? (node[last] as string[]) : [];
  node[last] = [...new Set([...existing, ...values])];
}

function mappedValue(values: string[], config: Record<string, string>): unknown {
  const jsonType = config['jsonType.label'];
  if (config.multivalued === 'true') return values.map((v) => convert(v, jsonType)).filter((v) => v !== undefined);
  return convert(values[0], jsonType);
}

/** User attribute lookup, with the user-profile built-ins Keycloak 24+ exposes as attributes. */
function userAttribute(user: SubjectUser, name: string): string[] {
  switch (name) {
    case 'username': return [user.username];
    case 'email': return user.email ? [user.email] : [];
    case 'firstName': return user.firstName ? [user.firstName] : [];
    case 'lastName': return user.lastName ? [user.lastName] : [];
    default: return user.attributes[name] ?? [];
  }
}

function userProperty(user: SubjectUser, name: string): unknown {
  switch (name) {
    case 'id': return user.id;
    case 'username': return user.username;
    case 'email': return user.email ?? undefined;
    case 'emailVerified': return user.emailVerified;
    case 'firstName': return user.firstName ?? undefined;
    case 'lastName': return user.lastName ?? undefined;
    case 'createdTimestamp': return user.createdTimestamp;
    default: return undefined;
  }
}

function prefixed(roles: string[], prefix: string | undefined): string[] {
  return prefix ? roles.map((r) => prefix + r) : roles;
}

function allowedOrigins(subject: TokenSubject): string[] {
  const origins = new Set<string>();
  for (const origin of subject.webOrigins) {
    if (origin === '+') {
      // '+' = every origin of the client's redirect URIs (Keycloak's WebOriginsUtils).
      for (const uri of subject.redirectUris) {
        try {
          const url = new URL(uri.replace(/\*$/, ''));
          if (url.origin !== 'null') origins.add(url.origin);
        } catch { /* not an absolute URI: no origin */ }
      }
    } else if (origin !== '') {
      origins.add(origin);
    }
  }
  return [...origins];
}

/** Applies one mapper. Audience claims go through `audiences` (merged into `aud` by the caller). */
function applyMapper(mapper: MapperModel, subject: TokenSubject, claims: Claims, audiences: Set<string>): void {
  const { config } = mapper;
  const claimName = config['claim.name'];
  switch (mapper.protocolMapper) {
    case 'oidc-usermodel-attribute-mapper': {
      const values = userAttribute(subject.user, config['user.attribute'] ?? '');
      if (values.length > 0 && claimName) setClaim(claims, claimName, mappedValue(values, config));
      break;
    }
    case 'oidc-usermodel-property-mapper': {
      const value = userProperty(subject.user, config['user.attribute'] ?? '');
      if (claimName) setClaim(claims, claimName, convert(value, config['jsonType.label']));
      break;
    }
    case 'oidc-full-name-mapper': {
      const name = [subject.user.firstName, subject.user.lastName].filter(Boolean).join(' ');
      if (name) claims.name = name;
      break;
    }
    case 'oidc-hardcoded-claim-mapper':
      if (claimName) setClaim(claims, claimName, convert(config['claim.value'], config['jsonType.label']));
      break;
    case 'oidc-usermodel-realm-role-mapper': {
      const roles = prefixed(subject.realmRoles, config['usermodel.realmRoleMapping.rolePrefix']);
      addToClaimList(claims, claimName || 'realm_access.roles', roles);
      break;
    }
    case 'oidc-usermodel-client-role-mapper': {
      const only = config['usermodel.clientRoleMapping.clientId'];
      for (const [clientId, roles] of Object.entries(subject.clientRoles)) {
        if (only && only !== clientId) continue;
        const name = (claimName || 'resource_access.${client_id}.roles').replaceAll('${client_id}', clientId.replaceAll('.', '\\.'));
        addToClaimList(claims, name, prefixed(roles, config['usermodel.clientRoleMapping.rolePrefix']));
      }
      break;
    }
    case 'oidc-group-membership-mapper': {
      // Keycloak gives full paths only when full.path is "true".
      const groups = config['full.path'] === 'true'
        ? subject.groups
        : subject.groups.map((path) => path.slice(path.lastIndexOf('/') + 1));
      if (claimName) addToClaimList(claims, claimName, groups);
      break;
    }
    case 'oidc-allowed-origins-mapper': {
      const origins = allowedOrigins(subject);
      if (origins.length > 0) claims['allowed-origins'] = origins;
      break;
    }
    case 'oidc-acr-mapper':
      claims.acr = subject.acr;
      break;
    case 'oidc-sub-mapper':
      claims.sub = subject.user.id;
      break;
    case 'oidc-usersessionmodel-note-mapper': {
      const note = subject.sessionNotes[config['user.session.note'] ?? ''];
      if (note !== undefined && claimName) setClaim(claims, claimName, convert(note, config['jsonType.label']));
      break;
    }
    case 'oidc-address-mapper': {
      // Each part reads the attribute its config names (user.attribute.<part>), default the part's name.
      const attr = (part: string): string | undefined => subject.user.attributes[config[`user.attribute.${part}`] || part]?.[0];
      claims.address = Object.fromEntries(Object.entries({
        formatted: attr('formatted'), street_address: attr('street'), locality: attr('locality'),
        region: attr('region'), postal_code: attr('postal_code'), country: attr('country'),
      }).filter(([, v]) => v !== undefined));
      break;
    }
    case 'oidc-audience-mapper': {
      const audience = config['included.client.audience'] || config['included.custom.audience'];
      if (audience) audiences.add(audience);
      break;
    }
    case 'oidc-audience-resolve-mapper':
      // Every other client for which the token carries client roles is an audience.
      for (const [clientId, roles] of Object.entries(subject.clientRoles)) {
        if (clientId !== subject.clientId && roles.length > 0) audiences.add(clientId);
      }
      break;
    default:
      // Mapper types we do not implement (yet) add nothing, as Keycloak does for a disabled mapper.
      break;
  }
}

/** Audience mappers are not flagged per token kind in old exports; resolve runs for access tokens only. */
function appliesTo(mapper: MapperModel, kind: TokenKind): boolean {
  if (mapper.protocolMapper === 'oidc-audience-resolve-mapper') return kind === 'access' || kind === 'introspection';
  return mapperApplies(mapper.config, kind);
}

/**
 * Claims of one token kind from the mappers in force. Audience resolution runs last, after
 * the role mappers, as Keycloak orders it by priority.
 */
export function mapClaims(mappers: MapperModel[], subject: TokenSubject, kind: TokenKind): { claims: Claims; audiences: string[] } {
  const claims: Claims = {};
  const audiences = new Set<string>();
  const ordered = [
    ...mappers.filter((m) => m.protocolMapper !== 'oidc-audience-resolve-mapper'),
    ...mappers.filter((m) => m.protocolMapper === 'oidc-audience-resolve-mapper'),
  ];
  for (const mapper of ordered) {
    if (appliesTo(mapper, kind)) applyMapper(mapper, subject, claims, audiences);
  }
  return { claims, audiences: [...audiences] };
}

/** Keycloak's `aud`: absent when empty, a string when single, otherwise an array. */
export function audienceClaim(audiences: Iterable<string>): string | string[] | undefined {
  const list = [...new Set(audiences)];
  if (list.length === 0) return undefined;
  return list.length === 1 ? list[0] : list;
}
