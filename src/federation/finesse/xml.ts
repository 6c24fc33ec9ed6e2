// Finesse REST documents (cx-platforms.md section 2): <User>, <Users> (a list of User) and
// <Teams> (a list of Team), parsed into typed objects. The XML comes from a remote server, so
// it is treated as hostile: no DOCTYPE, no entity definitions (XML bombs, external entities),
// only the five predefined entities and character references are decoded, numbers stay text
// (a loginId "001001" keeps its zeros), and any shape we cannot read is refused with a reason.
import { createRequire } from 'node:module';

import type { XMLParser } from 'fast-xml-parser';

export type FinesseRole = 'Agent' | 'Supervisor';

export type FinesseTeam = { id: string; name: string };

export type FinesseUser = {
  loginId: string;
  loginName: string;
  firstName: string | null;
  lastName: string | null;
  extension: string | null;
  roles: FinesseRole[];
  teamId: string | null;
  teamName: string | null;
  /** The teams a supervisor supervises (<teams><Team>); empty for agents. */
  supervisedTeams: FinesseTeam[];
};

/** A Finesse answer we cannot use (malformed XML, wrong shape, unexpected status...): refused, nothing created. */
export class FinesseResponseError extends Error {
  /** Why, for logs and events (never contains credentials). */
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`unusable answer from Finesse: ${reason}`, options);
    this.name = 'FinesseResponseError';
    this.reason = reason;
  }
}

// Paths (fast-xml-parser jPath) of the elements that repeat; a single one still becomes a list.
const LIST_PATHS = new Set([
  'User.roles.role', 'User.teams.Team',
  'Users.User', 'Users.User.roles.role', 'Users.User.teams.Team',
  'Teams.Team',
]);

// fast-xml-parser is loaded at the first Finesse answer, not at server start (idle memory).
const requireModule = createRequire(import.meta.url);
let parserInstance: XMLParser | undefined;
function xmlLibrary(): typeof import('fast-xml-parser') {
  return requireModule('fast-xml-parser') as typeof import('fast-xml-parser');
}
const parser = (): XMLParser => parserInstance ??= new (xmlLibrary().XMLParser)({
  processEntities: false,
  htmlEntities: false,
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (_name, jPath) => LIST_PATHS.has(String(jPath)),
});

/** Refused before parsing: a DOCTYPE is where entity definitions (and bombs) live. */
const DTD = /<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)/i;

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** One pass over the text: `&amp;lt;` stays `&lt;`, nothing ever expands beyond one character. */
function decodeEntities(text: string): string {
  return text.replace(/&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|([a-zA-Z]+));/g, (whole, hex: string | undefined, dec: string | undefined, name: string | undefined) => {
    if (name !== undefined) return PREDEFINED[name] ?? whole;
    const code = Number.parseInt(hex ?? dec ?? '', hex !== undefined ? 16 : 10);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : whole;
  });
}

type Node = Record<string, unknown>;

function parseDocument(xml: string, root: string): unknown {
  if (DTD.test(xml)) throw new FinesseResponseError('the document has a DOCTYPE or entity declarations (refused)');
  const valid = xmlLibrary().XMLValidator.validate(xml);
  if (valid !== true) throw new FinesseResponseError(`malformed XML: ${valid.err.msg} (line ${valid.err.line})`);
  let doc: unknown;
  try {
    doc = parser().parse(xml);
  } catch (error) {
    throw new FinesseResponseError(`malformed XML: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  const top = doc as Node;
  const roots = Object.keys(top);
  if (roots.length !== 1 || !(root in top)) throw new FinesseResponseError(`expected a <${root}> document, got ${roots.length === 0 ? 'nothing' : `<${roots.join('>, <')}>`}`);
  return top[root];
}

/** An element's text; null when absent or empty; refused when it is not text (nested or repeated). */
function text(node: Node, key: string, where: string): string | null {
  const value = node[key];
  if (value === undefined || value === '') return null;
  if (typeof value !== 'string') throw new FinesseResponseError(`<${key}> of ${where} is not a text element`);
  const decoded = decodeEntities(value).trim();
  return decoded === '' ? null : decoded;
}

/** A container element's children (`<roles/>` is an empty string: no children). */
function children(node: Node, container: string, child: string, where: string): unknown[] {
  const value = node[container];
  if (value === undefined || value === '') return [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FinesseResponseError(`<${container}> of ${where} is not a list element`);
  const items = (value as Node)[child];
  if (items === undefined) return [];
  return Array.isArray(items) ? items : [items];
}

function asNode(value: unknown, what: string): Node {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FinesseResponseError(`${what} is empty or not an element`);
  return value as Node;
}

function role(value: unknown): FinesseRole | undefined {
  if (typeof value !== 'string') return undefined;
  const name = decodeEntities(value).trim().toLowerCase();
  return name === 'agent' ? 'Agent' : name === 'supervisor' ? 'Supervisor' : undefined;
}

/** A <Team>: id required; the name falls back to the id (groups are named after teams). */
function team(value: unknown, where: string): FinesseTeam | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const id = text(value as Node, 'id', where);
  if (id === null) return undefined;
  return { id, name: text(value as Node, 'name', where) ?? id };
}

function userFrom(value: unknown, where: string): FinesseUser {
  const node = asNode(value, where);
  const loginId = text(node, 'loginId', where);
  if (loginId === null) throw new FinesseResponseError(`${where} has no loginId`);
  const roles = new Set<FinesseRole>();
  for (const r of children(node, 'roles', 'role', where)) {
    const known = role(r);
    if (known) roles.add(known);
  }
  const teams = new Map<string, FinesseTeam>();
  for (const t of children(node, 'teams', 'Team', where)) {
    const known = team(t, `a team of ${where}`);
    if (known && !teams.has(known.id)) teams.set(known.id, known);
  }
  return {
    loginId,
    // UCCE always sends loginName; without it the loginId is the only name there is.
    loginName: text(node, 'loginName', where) ?? loginId,
    firstName: text(node, 'firstName', where),
    lastName: text(node, 'lastName', where),
    extension: text(node, 'extension', where),
    roles: (['Agent', 'Supervisor'] as const).filter((r) => roles.has(r)),
    teamId: text(node, 'teamId', where),
    teamName: text(node, 'teamName', where),
    supervisedTeams: [...teams.values()],
  };
}

/** GET /finesse/api/User/{id}. */
export function parseFinesseUser(xml: string): FinesseUser {
  return userFrom(parseDocument(xml, 'User'), '<User>');
}

/**
 * GET /finesse/api/Users. A malformed document is refused whole; a single unusable <User>
 * (no loginId...) is skipped and reported through `onSkip`, so one bad record does not block
 * the provisioning of all others.
 */
export function parseFinesseUsers(xml: string, onSkip?: (index: number, reason: string) => void): FinesseUser[] {
  const root = parseDocument(xml, 'Users');
  if (root === '') return [];
  const items = asNode(root, '<Users>').User;
  const list = items === undefined ? [] : Array.isArray(items) ? items : [items];
  const users: FinesseUser[] = [];
  list.forEach((item, index) => {
    try {
      users.push(userFrom(item, `<User> #${index + 1}`));
    } catch (error) {
      if (!(error instanceof FinesseResponseError)) throw error;
      onSkip?.(index, error.reason);
    }
  });
  return users;
}

/** GET /finesse/api/Teams (entries without an id are skipped). */
export function parseFinesseTeams(xml: string): FinesseTeam[] {
  const root = parseDocument(xml, 'Teams');
  if (root === '') return [];
  const items = asNode(root, '<Teams>').Team;
  const list = items === undefined ? [] : Array.isArray(items) ? items : [items];
  const teams = new Map<string, FinesseTeam>();
  list.forEach((item, index) => {
    const known = team(item, `<Team> #${index + 1}`);
    if (known && !teams.has(known.id)) teams.set(known.id, known);
  });
  return [...teams.values()];
}
