// A real OpenLDAP slapd for tests and benches: each startSlapd() runs its own slapd from a
// generated slapd.conf in a fresh temp dir, on free loopback ports (ldap:// with StartTLS and
// ldaps://, certificates from a test CA made once per process), with the memberof overlay and
// the base entries dc=example,dc=org, ou=people, ou=groups. Fixtures are loaded online (ldapadd)
// so memberOf is maintained. Without slapd a suite is skipped with a printed reason, except on
// CI (CI=true) where that is an error (see slapdAvailable).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, InvalidCredentialsError, type Entry } from 'ldapts';

import { AddressInUse, watchPeer } from './peer-process.ts';

export const SLAPD_PATH = process.env.SLAPD_PATH || '/usr/sbin/slapd';
const SCHEMA_DIR = process.env.SLAPD_SCHEMA_DIR || '/etc/ldap/schema';
const MODULE_DIR = process.env.SLAPD_MODULE_DIR || '/usr/lib/ldap';

export type SlapdOptions = {
  /** ldaps:// listener and StartTLS on ldap:// with a test CA (default true; false: plain ldap:// only). */
  tls?: boolean;
  /** Load the AD-like schema (objectclass cloakroomAdUser, see AD_SCHEMA) (default false). */
  adSchema?: boolean;
};

export type SlapdSearchOptions = {
  /** Default: the base DN. */
  base?: string;
  /** Default: sub. */
  scope?: 'base' | 'one' | 'sub';
  /** Attributes returned as Buffer (default: objectGUID, unicodePwd). */
  explicitBufferAttributes?: string[];
};

export type Slapd = {
  /** ldap://127.0.0.1:P (StartTLS available when tls). */
  url: string;
  /** ldaps://127.0.0.1:P2, or '' without tls. */
  ldapsUrl: string;
  port: number;
  /** 0 without tls. */
  ldapsPort: number;
  baseDn: 'dc=example,dc=org';
  adminDn: 'cn=admin,dc=example,dc=org';
  adminPassword: string;
  peopleDn: 'ou=people,dc=example,dc=org';
  groupsDn: 'ou=groups,dc=example,dc=org';
  /** The test CA (PEM) that signed the server certificate (SAN IP:127.0.0.1, DNS:localhost); '' without tls. */
  caPem: string;
  /** The instance's temp dir (slapd.conf, data/, certificates). */
  dir: string;
  /** slapd's PID while it runs. */
  readonly pid: number | undefined;
  /** Adds LDIF records (ldapadd as the admin; one process for all records). */
  add(ldif: string | string[]): Promise<void>;
  /** Applies LDIF change records (ldapmodify as the admin; `changetype: modify` may be left out). */
  modify(ldif: string): Promise<void>;
  delete(dn: string): Promise<void>;
  /** Searches as the admin (attrs default: all user attributes). */
  search(filter: string, attrs?: string[], options?: SlapdSearchOptions): Promise<Entry[]>;
  /** Simple bind as dn on ldap://: true when accepted, false on invalidCredentials (49) or an empty password. */
  checkBind(dn: string, password: string): Promise<boolean>;
  /** Adds many records fast: one ldapadd process reading them all (parents before children). */
  bulkAdd(entries: string[]): Promise<void>;
  /** SIGTERM and wait for exit; the data stays. */
  stop(): Promise<void>;
  /** Starts again on the same ports with the same data. */
  start(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel but never answered (a hung directory). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Stops slapd and removes its temp dir. */
  destroy(): Promise<void>;
};

/** Thrown when ldapadd/ldapmodify fails; resultCode is its exit status (the LDAP result code, e.g. 68 already exists). */
export class LdapToolError extends Error {
  resultCode: number;
  constructor(message: string, resultCode: number) {
    super(message);
    this.name = 'LdapToolError';
    this.resultCode = resultCode;
  }
}

const BASE_DN = 'dc=example,dc=org';
const ADMIN_DN = 'cn=admin,dc=example,dc=org';
const PEOPLE_DN = 'ou=people,dc=example,dc=org';
const GROUPS_DN = 'ou=groups,dc=example,dc=org';

// --- availability -------------------------------------------------------------------------

function findOnPath(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function slapdMissingReason(): string | undefined {
  try {
    accessSync(SLAPD_PATH, constants.X_OK);
  } catch (error) {
    return `${SLAPD_PATH} is not an executable (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
  for (const tool of ['ldapmodify', 'openssl']) {
    if (!findOnPath(tool)) return `${tool} is not on PATH`;
  }
  return undefined;
}

/**
 * Whether LDAP suites can run. When slapd (or ldap-utils, openssl) is missing: prints why and
 * returns false, or throws when CI=true (a CI run must not silently skip the LDAP tests).
 * Use as `describe.skipIf(!slapdAvailable('ldap login'))(...)`.
 */
export function slapdAvailable(suite = 'LDAP tests'): boolean {
  const reason = slapdMissingReason();
  if (!reason) return true;
  if (process.env.CI === 'true') throw new Error(`${suite}: slapd is required on CI but ${reason}`);
  console.warn(`[skip] ${suite}: ${reason} (install Debian's slapd ldap-utils, or set SLAPD_PATH)`);
  return false;
}

// --- LDIF fixtures ------------------------------------------------------------------------

/** {SSHA} hash as slappasswd makes it: base64(SHA1(password + salt) + salt). */
export function sshaPassword(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

/** Escapes an RDN value (RFC 4514). */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

// RFC 2849 SAFE-STRING: printable ASCII, not starting with space, ':' or '<', no trailing space.
const SAFE_LDIF_VALUE = /^(?:[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b\x0c\x0e-\x7f]*)?$/;

/** One LDIF line `attr: value`, base64 (`attr:: ...`) for binary or unsafe values. */
export function ldifLine(attr: string, value: string | Buffer): string {
  if (Buffer.isBuffer(value)) return `${attr}:: ${value.toString('base64')}`;
  if (SAFE_LDIF_VALUE.test(value) && !value.endsWith(' ')) return `${attr}: ${value}`;
  return `${attr}:: ${Buffer.from(value, 'utf8').toString('base64')}`;
}

type LdifValues = string | number | Buffer | (string | number | Buffer)[];

function ldifLines(attributes: Record<string, LdifValues | undefined | null>): string[] {
  const lines: string[] = [];
  for (const [attr, values] of Object.entries(attributes)) {
    if (values === undefined || values === null) continue;
    for (const value of Array.isArray(values) ? values : [values]) {
      lines.push(ldifLine(attr, typeof value === 'number' ? String(value) : value));
    }
  }
  return lines;
}

/** DN of a person made by personLdif: uid=<uid>,ou=<ou>,dc=example,dc=org. */
export function personDn(uid: string, ou = 'people'): string {
  return `uid=${escapeDnValue(uid)},ou=${escapeDnValue(ou)},${BASE_DN}`;
}

/** DN of a group made by groupLdif: cn=<cn>,ou=<ou>,dc=example,dc=org. */
export function groupDn(cn: string, ou = 'groups'): string {
  return `cn=${escapeDnValue(cn)},ou=${escapeDnValue(ou)},${BASE_DN}`;
}

export type PersonFixture = {
  uid: string;
  cn: string;
  sn: string;
  givenName?: string;
  mail?: string;
  /** Stored as {SSHA}; no userPassword when omitted. */
  password?: string;
  /** OU under the base DN (default people; it must exist, see ouLdif). */
  ou?: string;
  /** Extra object classes, e.g. ['cloakroomAdUser'] with adSchema. */
  objectClasses?: string[];
  /** Extra attributes (Buffer values are written base64), e.g. { objectGUID: Buffer, userAccountControl: 512 }. */
  attributes?: Record<string, LdifValues>;
};

/** An inetOrgPerson add record (no trailing blank line). */
export function personLdif(person: PersonFixture): string {
  return [
    ldifLine('dn', personDn(person.uid, person.ou)),
    ...ldifLines({
      objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson', ...(person.objectClasses ?? [])],
      uid: person.uid,
      cn: person.cn,
      sn: person.sn,
      givenName: person.givenName,
      mail: person.mail,
      userPassword: person.password === undefined ? undefined : sshaPassword(person.password),
      ...person.attributes,
    }),
  ].join('\n');
}

/** Keycloak's value for a groupOfNames without members (member is required). */
export const EMPTY_MEMBER = 'cn=empty-membership-placeholder';

export type GroupFixture = {
  cn: string;
  /** Member DNs; none gives Keycloak's placeholder member (EMPTY_MEMBER). */
  members: string[];
  /** OU under the base DN (default groups). */
  ou?: string;
  description?: string;
  objectClasses?: string[];
  attributes?: Record<string, LdifValues>;
};

/** A groupOfNames add record (memberOf appears on the members through the overlay). */
export function groupLdif(group: GroupFixture): string {
  return [
    ldifLine('dn', groupDn(group.cn, group.ou)),
    ...ldifLines({
      objectClass: ['top', 'groupOfNames', ...(group.objectClasses ?? [])],
      cn: group.cn,
      member: group.members.length > 0 ? group.members : [EMPTY_MEMBER],
      description: group.description,
      ...group.attributes,
    }),
  ].join('\n');
}

/** An organizationalUnit add record: ou=<ou>,<parentDn> (default under the base DN). */
export function ouLdif(ou: string, parentDn: string = BASE_DN): string {
  return [ldifLine('dn', `ou=${escapeDnValue(ou)},${parentDn}`), ...ldifLines({ objectClass: ['top', 'organizationalUnit'], ou })].join('\n');
}

const BASE_LDIF = [
  [ldifLine('dn', BASE_DN), ...ldifLines({ objectClass: ['top', 'dcObject', 'organization'], dc: 'example', o: 'Example' })].join('\n'),
  ouLdif('people'),
  ouLdif('groups'),
];

// --- configuration ------------------------------------------------------------------------

/**
 * AD-like attributes on OpenLDAP (OIDs under the example arc 1.3.6.1.4.1.99999): enough to run
 * the Active Directory code paths (objectGUID, sAMAccountName, userPrincipalName,
 * userAccountControl, pwdLastSet, whenChanged, unicodePwd) against slapd. Unlike AD, slapd
 * maintains none of them: tests set them.
 */
export const AD_SCHEMA = `
attributetype ( 1.3.6.1.4.1.99999.1.1.1 NAME 'objectGUID'
  DESC 'AD-like: 16-byte binary GUID'
  EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.2 NAME 'sAMAccountName'
  DESC 'AD-like: logon name'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.3 NAME 'userPrincipalName'
  DESC 'AD-like: user@domain'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.4 NAME 'userAccountControl'
  DESC 'AD-like: account flags (2 = disabled, 512 = normal account)'
  EQUALITY integerMatch ORDERING integerOrderingMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.5 NAME 'pwdLastSet'
  DESC 'AD-like: FILETIME of the last password change (0 = must change)'
  EQUALITY integerMatch ORDERING integerOrderingMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.6 NAME 'whenChanged'
  DESC 'AD-like: last change time'
  EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.7 NAME 'unicodePwd'
  DESC 'AD-like: quoted UTF-16LE password (stored as written, not usable for bind)'
  EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.2.1 NAME 'cloakroomAdUser'
  DESC 'AD-like user attributes'
  AUXILIARY
  MAY ( objectGUID $ sAMAccountName $ userPrincipalName $ userAccountControl $ pwdLastSet $ whenChanged $ unicodePwd ) )
`;

type Tls = { caPem: string; caFile: string; certFile: string; keyFile: string };

function slapdConf(dir: string, rootpw: string, tls: Tls | undefined, adSchema: boolean): string {
  const q = (p: string) => `"${p}"`;
  return [
    ...['core', 'cosine', 'inetorgperson', 'nis'].map((s) => `include ${q(path.join(SCHEMA_DIR, `${s}.schema`))}`),
    ...(adSchema ? [`include ${q(path.join(dir, 'ad.schema'))}`] : []),
    `pidfile ${q(path.join(dir, 'slapd.pid'))}`,
    `argsfile ${q(path.join(dir, 'slapd.args'))}`,
    `modulepath ${q(MODULE_DIR)}`,
    'moduleload back_mdb',
    'moduleload memberof',
    // Sync tests read 10,000+ entries; paging is the client's business, not a server limit.
    'sizelimit unlimited',
    ...(tls ? [
      `TLSCACertificateFile ${q(tls.caFile)}`,
      `TLSCertificateFile ${q(tls.certFile)}`,
      `TLSCertificateKeyFile ${q(tls.keyFile)}`,
      'TLSVerifyClient never',
    ] : []),
    'database mdb',
    `suffix "${BASE_DN}"`,
    `rootdn "${ADMIN_DN}"`,
    `rootpw ${rootpw}`,
    `directory ${q(path.join(dir, 'data'))}`,
    'maxsize 1073741824',
    // Test data: no fsync, fast bulk loads.
    'dbnosync',
    'envflags writemap nometasync',
    'index objectClass eq',
    'index uid,mail,cn eq',
    'index member,memberOf eq',
    'index entryUUID eq',
    ...(adSchema ? ['index sAMAccountName,userPrincipalName eq'] : []),
    'overlay memberof',
    'memberof-group-oc groupOfNames',
    'memberof-member-ad member',
    'memberof-memberof-ad memberOf',
    // Members may be added before their entries exist (and the empty placeholder never does).
    'memberof-dangling ignore',
    // Deleting or renaming a user updates the groups' member values.
    'memberof-refint TRUE',
    // The admin (rootdn) bypasses these; users bind with their password and may change it;
    // anything else is readable (also anonymously, for authType "none").
    'access to dn.base="" by * read',
    'access to dn.base="cn=Subschema" by * read',
    'access to attrs=userPassword by self write by anonymous auth by * none',
    'access to * by * read',
    '',
  ].join('\n');
}

// --- tools and TLS material (cached on disk) ------------------------------------------------

let tlsMaterial: Promise<Tls> | undefined;

// Shared by every test process and run (test workers are killed without exit handlers, so a
// per-process dir would leak); made once, atomically.
const TLS_CACHE = path.join(os.tmpdir(), `cloakroom-slapd-tls-v1-${process.getuid?.() ?? 'user'}`);

function run(command: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LDAPNOINIT: '1' } });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on('error', () => { /* the tool exited early; its status says why */ });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), code: code ?? (signal ? 128 : 1) });
    });
    child.stdin.end(input ?? '');
  });
}

async function openssl(args: string[]): Promise<void> {
  const result = await run('openssl', args);
  if (result.code !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr.trim()}`);
}

async function makeTestCa(dir: string): Promise<void> {
  const file = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '3650',
    '-subj', '/CN=Cloakroom Test LDAP CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await openssl(['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid,issuer',
    '',
  ].join('\n'));
  await openssl(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-out', file('server.pem'), '-days', '3650', '-extfile', file('server.ext')]);
}

/** A test CA and a server certificate for 127.0.0.1/localhost (EC P-256), made once and cached in the temp dir. */
function testTls(): Promise<Tls> {
  tlsMaterial ??= (async () => {
    const file = (name: string) => path.join(TLS_CACHE, name);
    // The dir appears complete (rename), so its CA file says it is there.
    const complete = () => readFile(file('ca.pem'), 'utf8').catch(() => undefined);
    let caPem = await complete();
    if (caPem === undefined) {
      const staging = await mkdtemp(`${TLS_CACHE}.staging-`);
      try {
        await makeTestCa(staging);
        await rename(staging, TLS_CACHE);
      } catch (error) {
        await rm(staging, { recursive: true, force: true });
        // Another process made it first (rename onto a non-empty dir fails): use theirs.
        if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      }
      caPem = await complete();
      if (caPem === undefined) throw new Error(`incomplete test CA in ${TLS_CACHE}: remove it`);
    }
    return { caPem, caFile: file('ca.pem'), certFile: file('server.pem'), keyFile: file('server.key') };
  })();
  return tlsMaterial;
}

// --- process bookkeeping: no slapd outlives the test process --------------------------------

type Running = { child: ChildProcess; watchdog: ChildProcess; exited: Promise<void>; paused: boolean };
const live = new Map<string, Running | undefined>();

process.on('exit', () => {
  for (const [dir, running] of live) {
    if (running) {
      if (running.watchdog.pid) try { process.kill(running.watchdog.pid, 'SIGKILL'); } catch { /* gone */ }
      if (running.child.pid) try { process.kill(running.child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

// If this process dies without running exit handlers (SIGKILL, a killed test worker), the
// watchdog sees its stdin close, stops slapd and removes the dir. A line on stdin disarms it.
const WATCHDOG = `
if read -r _; then exit 0; fi
kill -CONT "$1" 2>/dev/null; kill -TERM "$1" 2>/dev/null
i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$1" 2>/dev/null
rm -rf "$2"
`;

function disarm(watchdog: ChildProcess): void {
  if (watchdog.stdin && !watchdog.stdin.destroyed) watchdog.stdin.end('disarm\n');
}

// --- starting and waiting -------------------------------------------------------------------

/** Two distinct free loopback ports (slapd cannot bind port 0; a race is retried by the caller). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function adminClient<T>(url: string, password: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ url, connectTimeout: 2_000, timeout: 30_000 });
  try {
    await client.bind(ADMIN_DN, password);
    return await fn(client);
  } finally {
    await client.unbind().catch(() => {});
  }
}


/** Spawns slapd and waits until the admin can bind; AddressInUse when a port was taken. */
async function launch(dir: string, port: number, ldapsPort: number, adminPassword: string): Promise<Running> {
  const urls = [`ldap://127.0.0.1:${port}/`, ...(ldapsPort ? [`ldaps://127.0.0.1:${ldapsPort}/`] : [])].join(' ');
  // -d keeps slapd in the foreground (its PID is the child's); level "none" logs only errors.
  const child = spawn(SLAPD_PATH, ['-d', 'none', '-f', path.join(dir, 'slapd.conf'), '-h', urls], { stdio: ['ignore', 'ignore', 'pipe'] });
  const peer = watchPeer(child);
  const { exited } = peer;
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'slapd-watchdog', String(child.pid ?? 0), dir], { stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.on('error', () => { /* without sh, only the exit handler cleans up */ });
  watchdog.stdin?.on('error', () => {});
  void exited.then(() => disarm(watchdog));
  const running: Running = { child, watchdog, exited, paused: false };

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (peer.exitCode() !== undefined) {
      if (/errno=98|Address already in use/.test(peer.log())) throw new AddressInUse(peer.log());
      throw new Error(`slapd exited (${peer.exitCode()}) before answering:\n${peer.log().trim()}`);
    }
    try {
      await adminClient(`ldap://127.0.0.1:${port}`, adminPassword, async () => {});
      return running;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`slapd did not answer on port ${port} within 15 s:\n${peer.log().trim()}`);
      }
      await Promise.race([sleep(25), exited]);
    }
  }
}

async function ldapTool(url: string, password: string, args: string[], ldif: string): Promise<void> {
  const result = await run('ldapmodify', ['-x', '-H', url, '-D', ADMIN_DN, '-w', password, ...args], ldif);
  if (result.code !== 0) {
    throw new LdapToolError(`ldapmodify ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`, result.code);
  }
}

function joinRecords(records: string | string[]): string {
  const list = Array.isArray(records) ? records : [records];
  return `${list.map((r) => r.trim()).filter((r) => r.length > 0).join('\n\n')}\n`;
}

/** Starts a fresh slapd with the base entries (about 0.3 s; the first TLS start also makes the test CA). */
export async function startSlapd(options: SlapdOptions = {}): Promise<Slapd> {
  const useTls = options.tls ?? true;
  const adSchema = options.adSchema ?? false;
  const tls = useTls ? await testTls() : undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cloakroom-slapd-'));
  live.set(dir, undefined);
  const adminPassword = randomBytes(12).toString('hex');
  await mkdir(path.join(dir, 'data'));
  if (adSchema) await writeFile(path.join(dir, 'ad.schema'), AD_SCHEMA);
  await writeFile(path.join(dir, 'slapd.conf'), slapdConf(dir, sshaPassword(adminPassword), tls, adSchema));

  let port = 0;
  let ldapsPort = 0;
  let running: Running | undefined;
  for (let attempt = 1; !running; attempt++) {
    const ports = await freePorts(2);
    port = ports[0]!;
    ldapsPort = tls ? ports[1]! : 0;
    try {
      running = await launch(dir, port, ldapsPort, adminPassword);
    } catch (error) {
      if (!(error instanceof AddressInUse) || attempt >= 10) {
        live.delete(dir);
        await rm(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  live.set(dir, running);

  const url = `ldap://127.0.0.1:${port}`;
  const add = (ldif: string | string[]) => ldapTool(url, adminPassword, ['-a'], joinRecords(ldif));

  const stop = async () => {
    const current = running;
    if (!current) return;
    running = undefined;
    live.set(dir, undefined);
    disarm(current.watchdog);
    if (current.paused) current.child.kill('SIGCONT');
    current.child.kill('SIGTERM');
    const killed = await Promise.race([current.exited.then(() => true), sleep(10_000).then(() => false)]);
    if (!killed) {
      current.child.kill('SIGKILL');
      await current.exited;
    }
  };

  const slapd: Slapd = {
    url,
    ldapsUrl: tls ? `ldaps://127.0.0.1:${ldapsPort}` : '',
    port,
    ldapsPort,
    baseDn: BASE_DN,
    adminDn: ADMIN_DN,
    adminPassword,
    peopleDn: PEOPLE_DN,
    groupsDn: GROUPS_DN,
    caPem: tls?.caPem ?? '',
    dir,
    get pid() { return running?.child.pid; },
    add,
    modify: (ldif) => ldapTool(url, adminPassword, [], joinRecords(ldif)),
    delete: (dn) => adminClient(url, adminPassword, (client) => client.del(dn)),
    async search(filter, attrs, searchOptions = {}) {
      return adminClient(url, adminPassword, async (client) => {
        const result = await client.search(searchOptions.base ?? BASE_DN, {
          scope: searchOptions.scope ?? 'sub',
          filter,
          ...(attrs ? { attributes: attrs } : {}),
          explicitBufferAttributes: searchOptions.explicitBufferAttributes ?? ['objectGUID', 'unicodePwd'],
        });
        return result.searchEntries;
      });
    },
    async checkBind(dn, password) {
      if (password === '') return false;
      const client = new Client({ url, connectTimeout: 2_000, timeout: 10_000 });
      try {
        await client.bind(dn, password);
        return true;
      } catch (error) {
        if (error instanceof InvalidCredentialsError) return false;
        throw error;
      } finally {
        await client.unbind().catch(() => {});
      }
    },
    bulkAdd: (entries) => add(entries),
    stop,
    async start() {
      if (running) return;
      // The ports were ours a moment ago; someone else may hold one briefly.
      for (let attempt = 1; ; attempt++) {
        try {
          running = await launch(dir, port, ldapsPort, adminPassword);
          live.set(dir, running);
          return;
        } catch (error) {
          if (!(error instanceof AddressInUse) || attempt >= 20) throw error;
          await sleep(100);
        }
      }
    },
    pause() {
      if (!running || running.paused) return;
      running.child.kill('SIGSTOP');
      running.paused = true;
    },
    resume() {
      if (!running || !running.paused) return;
      running.child.kill('SIGCONT');
      running.paused = false;
    },
    async destroy() {
      await stop();
      live.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };

  try {
    await add(BASE_LDIF);
  } catch (error) {
    await slapd.destroy();
    throw error;
  }
  return slapd;
}
